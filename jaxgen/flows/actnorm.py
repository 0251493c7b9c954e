"""Activation normalization, ActNorm (Kingma and Dhariwal 2018, Glow, sec. 3.1, Table 1).

A per-channel affine map on ``(B, ..., C)`` (images ``(B, H, W, C)`` or flat ``(B, C)``)::

    y = x * exp(log_scale) + bias,         log |det dy/dx| = H * W * sum_c log_scale_c

(the log-scale is stored instead of Glow's scale ``s`` so that it stays invertible; ``H * W``
is the number of positions, 1 for flat data). The inverse is
``x = (y - bias) * exp(-log_scale)`` with the opposite log-determinant.

**Data-dependent initialization** (Glow sec. 3.1): on an initial minibatch, choose the
parameters so that the output has zero mean and unit variance per channel::

    mu_c = mean(x[..., c]),   sigma_c^2 = mean((x[..., c] - mu_c)^2)    (over batch and space)
    log_scale_c = -log(sigma_c + eps),   bias_c = -mu_c * exp(log_scale_c)

(``eps`` keeps a constant channel finite, as Glow's ``1e-6``). Under plain ``jit`` a batch
sharded over devices is one array, so these means are already over the global batch. Inside
``shard_map`` / ``pmap`` each device sees its shard only: pass ``axis_name`` and the two
means are ``lax.pmean``-ed over that axis, giving the statistics of the global batch (exact
for equal shard sizes, which ``shard_map`` guarantees); the variance is taken about the
global mean (two passes), not from per-device second moments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["actnorm_data_init", "actnorm_forward", "actnorm_inverse"]


def actnorm_forward(
    x: jax.Array, log_scale: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(x * exp(log_scale) + bias, log_det (B,))``, parameters of shape ``(C,)``."""
    x, log_scale, bias = _check(x, log_scale, bias, "actnorm_forward")
    shape = (1,) * (x.ndim - 1) + log_scale.shape
    y = x * jnp.exp(log_scale).reshape(shape) + bias.reshape(shape)
    return y, _log_det(x, log_scale)


def actnorm_inverse(
    y: jax.Array, log_scale: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``((y - bias) * exp(-log_scale), -log_det (B,))``."""
    y, log_scale, bias = _check(y, log_scale, bias, "actnorm_inverse")
    shape = (1,) * (y.ndim - 1) + log_scale.shape
    x = (y - bias.reshape(shape)) * jnp.exp(-log_scale).reshape(shape)
    return x, -_log_det(y, log_scale)


def actnorm_data_init(
    x: jax.Array, *, axis_name: str | None = None, eps: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
    """``(log_scale, bias)``, each ``(C,)``: the output on ``x`` has zero mean and unit
    standard deviation per channel (over the global batch when ``axis_name`` is given)."""
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"actnorm_data_init expects a float array (B, ..., C), got {x.shape}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    if axis_name is not None:
        mean = jax.lax.pmean(mean, axis_name)
    centred = x - mean.reshape((1,) * (x.ndim - 1) + mean.shape)
    var = jnp.mean(centred * centred, axis=axes)
    if axis_name is not None:
        var = jax.lax.pmean(var, axis_name)
    log_scale = -jnp.log(jnp.sqrt(var) + eps)
    return log_scale, -mean * jnp.exp(log_scale)


def _check(x, log_scale, bias, name):
    x, log_scale, bias = jnp.asarray(x), jnp.asarray(log_scale), jnp.asarray(bias)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} expects a float array (B, ..., C), got {x.dtype} {x.shape}")
    channels = x.shape[-1]
    if log_scale.shape != (channels,) or bias.shape != (channels,):
        raise ValueError(
            f"{name}: log_scale and bias must have shape ({channels},), got "
            f"{log_scale.shape} and {bias.shape}"
        )
    return x, log_scale.astype(x.dtype), bias.astype(x.dtype)


def _log_det(x: jax.Array, log_scale: jax.Array) -> jax.Array:
    positions = 1
    for size in x.shape[1:-1]:
        positions *= size
    return jnp.full(x.shape[:1], positions * jnp.sum(log_scale), x.dtype)
