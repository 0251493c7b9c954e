"""Timestep embeddings for diffusion networks (pure JAX)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def sinusoidal_embedding(t: jax.Array, dim: int, *, max_period: float = 10000.0) -> jax.Array:
    """Transformer sinusoidal embedding of a batch of (possibly non-integer) timesteps.

    With ``half = dim // 2`` and frequencies ``f_i = exp(-log(max_period) * i / half)`` for
    ``i = 0 .. half - 1``, the embedding of ``t`` is ``[sin(t f_0), ..., sin(t f_{half-1}),
    cos(t f_0), ..., cos(t f_{half-1})]``, followed by a single zero when ``dim`` is odd.
    This is the positional encoding of Vaswani et al. (2017), ``sin(t / max_period**(2i/dim))``,
    used by DDPM to condition the U-Net on the timestep.

    Args:
      t: timesteps of shape ``(B,)``, integer or float.
      dim: embedding width, at least 2.
      max_period: the longest period; the shortest is ``2 pi``.

    Returns:
      An array of shape ``(B, dim)``, float: ``t``'s dtype if ``t`` is float, otherwise the
      default float dtype.

    References:
      Vaswani et al., "Attention is all you need", 2017, section 3.5.
      Ho, Jain and Abbeel, "Denoising diffusion probabilistic models", 2020, appendix B.
    """
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"sinusoidal_embedding expects t of shape (B,), got shape {t.shape}")
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"sinusoidal_embedding expects an integer dim >= 2, got {dim!r}")
    if not max_period > 0:
        raise ValueError(f"max_period must be positive, got {max_period}")
    dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.result_type(float)
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=dtype) / half)
    args = t.astype(dtype).reshape(-1, 1) * freqs.reshape(1, half)
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros((t.shape[0], 1), dtype)], axis=-1)
    return emb
