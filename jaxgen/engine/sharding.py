"""Device mesh and shardings for the train state and batches.

The mesh has two axes, ``data`` x ``fsdp`` (``jax.make_mesh``, devices ordered by process,
so the ``fsdp`` axis, the last one, stays inside a host and the slow network between hosts
carries only the ``data`` axis). A batch is split over both axes (every device gets its own
rows). The state is replicated (data parallelism), or with ``shard_params`` its large leaves
(parameters, Adam moments, EMA) are split along their largest divisible dimension (ZeRO-3 /
FSDP, Rajbhandari et al. 2020): over the ``fsdp`` axis when it has more than one device,
else over every device of a one-host job. XLA inserts the all-gathers and reduce-scatters.
With several slices (TPU pods joined by the data-centre network; on GPUs, the hosts),
``mesh_utils``'s hybrid mesh puts the slices on the ``data`` axis. The axes are ``Auto``,
so the same step function serves every layout.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxgen.config import ConfigError

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)


def make_mesh(num_devices: int | None = None, *, fsdp: int = 1, slices: int = 1) -> Mesh:
    """A ``data x fsdp`` mesh over ``num_devices`` (default: all) devices.

    ``fsdp`` devices (a divisor of the devices of one process, so the axis stays inside a
    host) share each parameter; the rest is ``data``. ``slices > 1`` builds a hybrid mesh
    whose ``data`` axis spans the slices (``mesh_utils.create_hybrid_device_mesh``)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if n < 1 or n > len(devices):
        raise ValueError(f"asked for a mesh of {n} devices but {len(devices)} are available")
    if not isinstance(fsdp, int) or fsdp < 1 or n % fsdp:
        raise ValueError(f"train.mesh_fsdp={fsdp} must be a positive divisor of the {n} devices")
    local = jax.local_device_count()
    if jax.process_count() > 1 and local % fsdp:
        raise ValueError(
            f"train.mesh_fsdp={fsdp} must divide the {local} devices of one process, so that "
            "parameter all-gathers stay inside a host"
        )
    if not isinstance(slices, int) or slices < 1 or (n // fsdp) % slices:
        raise ValueError(
            f"train.mesh_slices={slices} must be a positive divisor of the data axis ({n // fsdp})"
        )
    auto = (jax.sharding.AxisType.Auto,) * 2
    if slices > 1:
        by_slice = all(hasattr(d, "slice_index") for d in devices[:n])
        groups = len({d.slice_index if by_slice else d.process_index for d in devices[:n]})
        if groups != slices:
            kind = "slices (slice_index)" if by_slice else "processes (hosts)"
            raise ValueError(
                f"train.mesh_slices={slices} but the devices belong to {groups} {kind}; "
                f"set it to {groups}, or to 1 for one flat data axis"
            )
        grid = mesh_utils.create_hybrid_device_mesh(
            (n // fsdp // slices, fsdp),
            (slices, 1),
            devices[:n],
            process_is_granule=not by_slice,
        )
        return Mesh(grid, BATCH_AXES, axis_types=auto)
    return jax.make_mesh((n // fsdp, fsdp), BATCH_AXES, axis_types=auto, devices=devices[:n])


def mesh_for(config: Any, num_devices: int | None = None) -> Mesh:
    """The mesh a config's ``train.mesh_fsdp`` and ``train.mesh_slices`` ask for."""
    train = config.train
    try:
        return make_mesh(num_devices, fsdp=train.mesh_fsdp, slices=train.mesh_slices)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def batch_axes(mesh: Mesh) -> tuple[str, ...] | str:
    """The mesh axes a batch dimension is split over (all of them)."""
    return BATCH_AXES if FSDP_AXIS in mesh.axis_names else mesh.axis_names[0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _param_axes(mesh: Mesh) -> tuple[str, ...] | str:
    """Where parameters are split: the ``fsdp`` axis if it has several devices, else all."""
    if FSDP_AXIS in mesh.axis_names and mesh.shape[FSDP_AXIS] > 1:
        return FSDP_AXIS
    return batch_axes(mesh)


def leaf_sharding(shape: tuple[int, ...], mesh: Mesh, *, min_size: int) -> NamedSharding:
    """Split the largest dimension divisible by the parameter axes' size, if the leaf is
    large (``min_size`` elements or more); else replicate."""
    axes = _param_axes(mesh)
    n = mesh.shape[axes] if isinstance(axes, str) else mesh.size
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return replicated(mesh)
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % n == 0:
            spec = [None] * len(shape)
            spec[dim] = axes
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
    """Split a batch of outputs over the devices when it divides evenly, else replicate.

    Given to ``jax.jit(..., out_shardings=...)`` of a sampler, this makes each device draw
    its own slice of the samples (XLA propagates the sharding back to the noise)."""
    if num_examples % mesh.size == 0:
        return batch_sharding(mesh)
    return replicated(mesh)


def put_global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array that every process holds in full, placed with ``sharding`` (each
    process fills only its own devices' shards, so it also works across hosts)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def pad_to_devices(x: np.ndarray, size: int, mesh: Mesh) -> tuple[jax.Array, int]:
    """Pad ``x`` along axis 0 (repeating its last row) to ``size`` rounded up to a multiple
    of the mesh's devices, and place it split over them. Returns (array, len(x))."""
    n = x.shape[0]
    devices = mesh.size
    total = -(-max(size, n) // devices) * devices
    if total > n:
        x = np.concatenate([x, np.repeat(x[-1:], total - n, axis=0)], axis=0)
    return put_global(x, batch_sharding(mesh)), n
