"""Multi-scale factoring out (RealNVP sec. 3.6; Glow sec. 3, Fig. 2b) and the
base densities of the factored-out latents.

At each scale but the last, a multi-scale flow splits its state ``h`` (after the scale's
couplings) into two halves along the channels: one half ``z^(i)`` leaves the flow as part of
the latent, the other continues to the next scale (RealNVP sec. 3.6:
``(z^(i+1), h^(i+1)) = f^(i+1)(h^(i))``), and the final scale's output is the last latent
part. Computation and parameters at the finer scales then act on fewer dimensions, and the
factored-out parts are modelled at their own scale. :func:`split_channels` returns
``(kept, factored)`` = (first half, second half) of the channels; :func:`concat_channels`
undoes it. Both are coordinate selections (log-determinant 0).

The latent is the list of parts ``[z^(1), ..., z^(L)]`` (finest scale first);
:func:`flatten_latents` concatenates them, each flattened per example, into ``(B, D)``
and :func:`unflatten_latents` splits that back given the per-example part shapes.

Base densities, per example (B,):

* :func:`standard_normal_log_prob`: ``sum -1/2 (z^2 + log 2 pi)`` (RealNVP's prior);
* :func:`gaussian_log_prob`: ``sum -1/2 (((z - m) / s)^2 + 2 log s + log 2 pi)`` with
  ``log s = log_std``: Glow's learned prior (their code's ``learntop`` and the split prior),
  where ``(m, log s)`` of a factored-out part are computed from the kept half, so
  ``p(z^(i) | h^(i))`` is a conditional Gaussian and the latent is still exactly invertible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "concat_channels",
    "flatten_latents",
    "gaussian_log_prob",
    "split_channels",
    "standard_normal_log_prob",
    "unflatten_latents",
]

_LOG_2PI = math.log(2.0 * math.pi)


def split_channels(h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(kept, factored)``: the first and the second half of the last axis (even size)."""
    h = jnp.asarray(h)
    if h.ndim < 2 or h.shape[-1] % 2:
        raise ValueError(f"split_channels expects (B, ..., C) with C even, got {h.shape}")
    half = h.shape[-1] // 2
    return h[..., :half], h[..., half:]


def concat_channels(kept: jax.Array, factored: jax.Array) -> jax.Array:
    """The inverse of :func:`split_channels`."""
    kept, factored = jnp.asarray(kept), jnp.asarray(factored)
    if kept.shape != factored.shape:
        raise ValueError(
            f"concat_channels needs halves of equal shape, got {kept.shape} and {factored.shape}"
        )
    return jnp.concatenate([kept, factored], axis=-1)


def flatten_latents(parts: Sequence[jax.Array]) -> jax.Array:
    """``(B, D)``: each part ``(B, ...)`` flattened per example, concatenated in order."""
    if not parts:
        raise ValueError("flatten_latents needs at least one part")
    batch = parts[0].shape[0]
    if any(p.ndim < 1 or p.shape[0] != batch for p in parts):
        raise ValueError(f"every part needs the batch size {batch}: {[p.shape for p in parts]}")
    return jnp.concatenate([jnp.reshape(p, (batch, -1)) for p in parts], axis=1)


def unflatten_latents(z: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    """Split ``z`` ``(B, D)`` into parts of per-example shapes ``shapes``."""
    z = jnp.asarray(z)
    sizes = [math.prod(s) for s in shapes]
    if z.ndim != 2 or z.shape[1] != sum(sizes):
        raise ValueError(
            f"z must have shape (B, {sum(sizes)}) for parts {list(shapes)}, got {z.shape}"
        )
    parts, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        parts.append(z[:, start : start + size].reshape((z.shape[0], *shape)))
        start += size
    return parts


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over every axis but the first, (B,)."""
    z = jnp.asarray(z)
    return _sum_event(-0.5 * (z * z + _LOG_2PI))


def gaussian_log_prob(z: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log N(z; mean, exp(log_std)^2)`` (diagonal) summed per example, (B,)."""
    z, mean, log_std = jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_std)
    if mean.shape != z.shape or log_std.shape != z.shape:
        raise ValueError(
            f"mean and log_std must have z's shape {z.shape}, got {mean.shape}, {log_std.shape}"
        )
    u = (z - mean) * jnp.exp(-log_std)
    return _sum_event(-0.5 * (u * u + _LOG_2PI) - log_std)


def _sum_event(values: jax.Array) -> jax.Array:
    if values.ndim < 1:
        raise ValueError("expected a batch (B, ...)")
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)
