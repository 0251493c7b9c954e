"""Timestep / noise-level embeddings for diffusion networks (pure JAX).

* ``sinusoidal_embedding``: the Transformer positional encoding used by DDPM (Ho et al. 2020,
  appendix B) for the integer step ``t``, and by DDPM++ (Song et al. 2021) for ``999 t``.
* ``gaussian_fourier_embedding``: random Fourier features ``[sin(2 pi w t), cos(2 pi w t)]``
  with fixed ``w_i ~ N(0, s^2)`` (Tancik et al. 2020), which NCSN++ (Song et al. 2021,
  appendix H.1, "Fourier feature embeddings" with ``s = 16``) applies to ``log sigma``.
  The frequencies come from ``gaussian_fourier_frequencies(num, scale=s, seed=k)``: a pure
  function of its arguments, so they are never part of a parameter tree and an optimizer
  cannot touch them.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


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


@functools.lru_cache(maxsize=64)
def _fourier_frequencies(num: int, scale: float, seed: int) -> np.ndarray:
    freqs = np.random.RandomState(seed).standard_normal(num) * scale
    freqs.setflags(write=False)
    return freqs


def gaussian_fourier_frequencies(num: int, *, scale: float, seed: int = 0) -> np.ndarray:
    """The fixed frequencies ``w_1 .. w_num ~ N(0, scale^2)`` of a Gaussian Fourier embedding.

    Drawn from NumPy's legacy ``RandomState(seed)``, whose stream NumPy keeps frozen across
    versions (NEP 19). So the frequencies depend only on ``(num, scale, seed)``: the same on
    every machine and every run, independent of any JAX PRNG key or JAX version.

    Returns:
      A read-only float64 array of shape ``(num,)``.
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"gaussian_fourier_frequencies expects an integer num >= 1, got {num!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"gaussian_fourier_frequencies expects a finite scale > 0, got {scale}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(
            f"gaussian_fourier_frequencies expects an integer seed in [0, 2**32), got {seed!r}"
        )
    return _fourier_frequencies(num, float(scale), seed)


def gaussian_fourier_embedding(t: jax.Array, frequencies: jax.Array | np.ndarray) -> jax.Array:
    """Random Fourier features of a batch of scalar conditioning inputs.

    With frequencies ``w_1 .. w_n``, the embedding of ``t`` is ``[sin(2 pi w_1 t), ...,
    sin(2 pi w_n t), cos(2 pi w_1 t), ..., cos(2 pi w_n t)]`` (Tancik et al. 2020; NCSN++ of
    Song et al. 2021 uses ``w_i ~ N(0, 16^2)`` and ``t = log sigma``). The frequencies are
    treated as constants: no gradient flows into them.

    Args:
      t: conditioning values of shape ``(B,)``, float or integer (e.g. ``log sigma``).
      frequencies: shape ``(n,)``, e.g. from ``gaussian_fourier_frequencies``.

    Returns:
      An array of shape ``(B, 2 n)``, float: ``t``'s dtype if ``t`` is float, otherwise the
      default float dtype.

    References:
      Tancik et al., "Fourier features let networks learn high frequency functions in low
      dimensional domains", NeurIPS 2020.
      Song et al., "Score-based generative modeling through stochastic differential
      equations", ICLR 2021, appendix H.1.
    """
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"gaussian_fourier_embedding expects t of shape (B,), got shape {t.shape}")
    if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
        raise ValueError(f"gaussian_fourier_embedding expects a float or integer t, got {t.dtype}")
    if np.ndim(frequencies) != 1 or np.shape(frequencies)[0] < 1:
        raise ValueError(
            f"gaussian_fourier_embedding expects frequencies of shape (n,) with n >= 1, "
            f"got shape {np.shape(frequencies)}"
        )
    dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.result_type(float)
    freqs = jax.lax.stop_gradient(jnp.asarray(frequencies, dtype))
    n = freqs.shape[0]
    args = (2 * math.pi) * t.astype(dtype).reshape(-1, 1) * freqs.reshape(1, n)
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
