"""The common output of the DDPM/DDIM samplers, and their shared set-up.

A sampler returns :class:`SamplerOutput`: the samples and ``nfe``, the number of model
evaluations it made (one per step for the samplers here). ``nfe`` is a Python ``int``
known at trace time for fixed-step samplers, and stays one under ``jax.jit``/``jax.vmap``
(static auxiliary data of the pytree). Adaptive solvers, whose work depends on the data,
return it as an integer array instead, and then it is a leaf like ``samples``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SamplerOutput"]


class SamplerOutput(NamedTuple):
    """Samples of shape ``(B, *event)`` and the number of model evaluations (a static int,
    or an int array for adaptive solvers)."""

    samples: jax.Array
    nfe: int | jax.Array


def _flatten(out: SamplerOutput):
    if isinstance(out.nfe, int):
        return (out.samples,), out.nfe
    return (out.samples, out.nfe), None


def _unflatten(nfe, children) -> SamplerOutput:
    if nfe is None:
        return SamplerOutput(children[0], children[1])
    return SamplerOutput(children[0], nfe)


jax.tree_util.register_pytree_node(SamplerOutput, _flatten, _unflatten)


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Validates a static sample shape ``(B, *event)`` and returns it as a tuple of ints."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as err:
        raise ValueError(
            f"shape must be a static tuple of ints (B, *event), got {shape!r}."
        ) from err
    if len(shape) < 1 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}.")
    return shape


def initial_noise_and_step_keys(
    key: jax.Array, shape: tuple[int, ...], num_steps: int, dtype: jnp.dtype
) -> tuple[jax.Array, jax.Array]:
    """``x_T ~ N(0, I)`` and one key per step, split identically by every sampler.

    Sharing the split makes samplers comparable path by path: for the same ``key``, DDIM
    with ``eta = 1`` on all ``T`` steps draws exactly the noise of ancestral sampling, and
    DDIM with any number of steps starts from the same ``x_T``.
    """
    key_init, key_steps = jax.random.split(key)
    x_T = jax.random.normal(key_init, shape, dtype=dtype)
    return x_T, jax.random.split(key_steps, num_steps)
