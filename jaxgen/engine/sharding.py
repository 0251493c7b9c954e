"""Device mesh and shardings for the train state and batches.

Data parallelism is the default: the batch is split over the ``data`` axis and the state
is replicated. With ``shard_params`` the large leaves of the state (parameters, Adam
moments, EMA) are also split over ``data`` along their largest divisible dimension
(ZeRO-3 / FSDP style); XLA inserts the all-gathers and reduce-scatters. The mesh uses
``Auto`` axis types so the same step function serves both layouts.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over ``num_devices`` (default: all) devices with one ``data`` axis."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if n < 1 or n > len(devices):
        raise ValueError(f"asked for a mesh of {n} devices but {len(devices)} are available")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def leaf_sharding(shape: tuple[int, ...], mesh: Mesh, *, min_size: int) -> NamedSharding:
    """Shard the largest dimension divisible by the data-axis size, if the leaf is large."""
    n = mesh.shape[DATA_AXIS]
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return replicated(mesh)
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % n == 0:
            spec = [None] * len(shape)
            spec[dim] = DATA_AXIS
            return NamedSharding(mesh, PartitionSpec(*spec))
    return replicated(mesh)


def state_shardings(
    abstract_state: Any, mesh: Mesh, *, shard_params: bool, min_size: int = 2**18
) -> Any:
    """Sharding tree for a (abstract) state: replicated, or FSDP for large leaves."""
    if not shard_params:
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    return jax.tree.map(
        lambda leaf: leaf_sharding(tuple(leaf.shape), mesh, min_size=min_size), abstract_state
    )


def output_sharding(num_examples: int, mesh: Mesh) -> NamedSharding:
    """Split a batch of outputs over the data axis when it divides evenly, else replicate.

    Given to ``jax.jit(..., out_shardings=...)`` of a sampler, this makes each device draw
    its own slice of the samples (XLA propagates the sharding back to the noise)."""
    if num_examples % mesh.shape[DATA_AXIS] == 0:
        return batch_sharding(mesh)
    return replicated(mesh)


def pad_to_devices(x: np.ndarray, size: int, mesh: Mesh) -> tuple[jax.Array, int]:
    """Pad ``x`` along axis 0 (repeating its last row) to ``size`` rounded up to a multiple
    of the data-axis size, and place it split over the data axis. Returns (array, len(x))."""
    n = x.shape[0]
    devices = mesh.shape[DATA_AXIS]
    total = -(-max(size, n) // devices) * devices
    if total > n:
        x = np.concatenate([x, np.repeat(x[-1:], total - n, axis=0)], axis=0)
    return jax.device_put(x, batch_sharding(mesh)), n
