"""Likelihoods of autoregressive models: tokens (with their shift convention) and images.

**The convention (used by every sequence model, loss and sampler in jaxgen).** A sequence is
int32 tokens ``x = (x_0, ..., x_{T-1})``, shape ``(B, T)``, each in ``0..V-1`` for a
vocabulary of size ``V``. A model factorises ``p(x) = prod_t p(x_t | x_{<t})`` and is run
with teacher forcing on the *shifted* sequence ``inputs = shift_right(x, bos=bos)``::

    inputs = (bos, x_0, x_1, ..., x_{T-2}),      logits[:, t] parametrises p(x_t | x_{<t}),

so the model's output at position ``t`` may depend on ``inputs[:, :t + 1]`` (inclusive) and on
nothing later; in terms of the data, ``logits[:, t]`` depends on ``x_{t'}`` only for
``t' < t``. The start token is one extra input id, ``bos = V`` by default: models embed
``V + 1`` input ids and output ``V`` logits. The caller does the shift (the models never do).
The 8x8 digits are sequences of ``T = 64`` tokens in raster order (row by row), the grey
level ``k`` in ``0..16`` being token ``k`` (``V = 17``, ``bos = 17``); text is UTF-8 bytes
(``V = 256``, ``bos = 256``, see :mod:`jaxgen.data.text`).

**Loss.** With ``log_softmax`` over the last axis and an optional weight mask
``m[b, t]`` (1 = scored, 0 = padding), the per-example negative log-likelihood in nats is::

    nll[b] = - sum_t m[b, t] log softmax(logits[b, t])[x[b, t]],   n[b] = sum_t m[b, t],

the maximum-likelihood objective of the chain-rule factorisation (Bengio et al. 2003,
sec. 1). :func:`token_cross_entropy` returns ``(nll, terms)`` with the terms
``num_tokens = n`` and ``bits_per_token = nll / (n log 2)``; a corpus figure is
``bits_per_token(nll.sum(), n.sum())``. For images :func:`bits_per_dim` (``nats / (D log
2)``, ``D = H W C``) is :func:`jaxgen.core.bits_per_dim`, re-exported here. Both are exact
discrete log-likelihoods: a digit model scores ``-log2 P(levels)`` per pixel.

**Images.** An image model (PixelCNN, gated PixelCNN) maps integer levels ``x`` (B, H, W, C)
in ``0..L-1`` to logits (B, H, W, C, L) with ``logits[:, i, j, c]`` a function of the entries
before (i, j, c) in raster order only (van den Oord et al. 2016a, eq. 1-2); the ``D = H W C``
positions are one sequence and, in one network pass,

    log p(x) = sum_{i,j,c} log softmax(logits[:, i, j, c])[x_ijc]      (:func:`image_log_prob`).

:func:`image_nll` is the training objective ``-log p(x)`` (nats, (B,)) with the term
``bits_per_dim = -log p(x) / (D log 2)``: exact discrete bits/dim, the unit of every jaxgen
likelihood (a uniform model on the 8x8 digits, ``L = 17``, scores ``log2 17 = 4.09``).

References:
  Bengio, Ducharme, Vincent, Jauvin. A Neural Probabilistic Language Model. JMLR 2003.
  van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016a.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.units import bits_per_dim
from jaxgen.core.validation import check_binary

__all__ = [
    "bits_per_dim",
    "bits_per_token",
    "check_tokens",
    "image_log_prob",
    "image_nll",
    "shift_right",
    "token_cross_entropy",
]


def check_tokens(tokens: jax.Array, *, name: str = "tokens", ndim: int = 2) -> jax.Array:
    """``tokens`` as a JAX integer array of rank ``ndim`` ((B, T) by default), or ValueError."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != ndim:
        shape = "(B, T)" if ndim == 2 else "(B,)" if ndim == 1 else f"rank {ndim}"
        raise ValueError(f"{name} must have shape {shape}, got {tokens.shape}.")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer tokens, got dtype {tokens.dtype}.")
    return tokens


def _concrete(x: jax.Array) -> np.ndarray | None:
    """``x`` as NumPy when its values are known (not inside a trace), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def shift_right(tokens: jax.Array, *, bos: int) -> jax.Array:
    """Model inputs for teacher forcing: ``(bos, x_0, ..., x_{T-2})``, shape (B, T) int32."""
    tokens = check_tokens(tokens)
    if int(bos) != bos or bos < 0:
        raise ValueError(f"bos must be a non-negative integer, got {bos!r}.")
    start = jnp.full((tokens.shape[0], 1), bos, jnp.int32)
    return jnp.concatenate([start, tokens[:, :-1].astype(jnp.int32)], axis=1)


def token_cross_entropy(
    logits: jax.Array, targets: jax.Array, *, mask: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example summed negative log-likelihood in nats, and its terms.

    Args:
      logits: ``(B, T, V)`` unnormalised log-probabilities; ``logits[:, t]`` scores
        ``targets[:, t]`` (see the module docstring for the shift).
      targets: ``(B, T)`` integer tokens in ``0..V-1`` (checked when not traced).
      mask: optional ``(B, T)`` weights (bool or 0/1 floats); 0 drops a position. A
        concrete mask holding other values raises ``ValueError`` (a traced one is not checked).

    Returns:
      ``(nll, terms)``, all ``(B,)`` in the float dtype of ``logits`` (at least float32):
      ``nll[b] = -sum_t mask[b, t] log p(targets[b, t])``; terms ``num_tokens[b] =
      sum_t mask[b, t]`` (``T`` without a mask) and ``bits_per_token = nll / (num_tokens
      log 2)`` (0 for an example with no scored token).
    """
    logits = jnp.asarray(logits)
    targets = check_tokens(targets, name="targets")
    if logits.ndim != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must have shape (B, T, V) = {targets.shape} + (V,), got {logits.shape}."
        )
    vocab = logits.shape[-1]
    values = _concrete(targets)
    if values is not None and values.size and (values.min() < 0 or values.max() >= vocab):
        raise ValueError(
            f"targets must lie in 0..{vocab - 1} (V = {vocab}), got values in "
            f"{values.min()}..{values.max()}."
        )
    dtype = jnp.result_type(logits.dtype, jnp.float32)
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    if mask is None:
        weights = jnp.ones(targets.shape, dtype)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != targets.shape:
            raise ValueError(f"mask must have shape {targets.shape}, got {mask.shape}.")
        check_binary(mask, "mask")
        weights = mask.astype(dtype)
    nll = -jnp.sum(weights * picked, axis=1)
    count = jnp.sum(weights, axis=1)
    scored = count > 0
    bits = jnp.where(scored, bits_per_token(nll, jnp.where(scored, count, 1.0)), 0.0)
    return nll, {"num_tokens": count, "bits_per_token": bits}


def bits_per_token(nats: jax.Array, num_tokens: jax.Array) -> jax.Array:
    """``nats / (num_tokens log 2)``, elementwise (per example, or totals for a corpus):
    :func:`jaxgen.core.bits_per_dim` of the nats per token."""
    return bits_per_dim(jnp.asarray(nats) / jnp.asarray(num_tokens), 1)


def image_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
    """``log p(x) = sum_{i,j,c} log softmax(logits[:, i, j, c])[x_ijc]`` per image (B,), nats.

    Args:
      logits: (B, ..., L) float, e.g. (B, H, W, C, L).
      x: integer levels with shape ``logits.shape[:-1]``. Levels outside ``0..L-1`` raise a
        ``ValueError`` when ``x`` is concrete; under ``jit`` they give NaN.
    """
    logits = jnp.asarray(logits)
    x = jnp.asarray(x)
    if logits.ndim < 2 or x.shape != logits.shape[:-1]:
        raise ValueError(
            f"x must have shape logits.shape[:-1] with logits (B, ..., L); got x {x.shape} "
            f"and logits {logits.shape}."
        )
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"x must hold integer levels, got dtype {x.dtype}.")
    num_levels = logits.shape[-1]
    values = _concrete(x)
    if values is not None and values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_levels:
            raise ValueError(f"x must lie in 0..{num_levels - 1}, got values in {low}..{high}.")
    dtype = jnp.result_type(logits.dtype, jnp.float32)
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    index = jnp.clip(x, 0, num_levels - 1)[..., None]
    picked = jnp.take_along_axis(log_probs, index, axis=-1)[..., 0]
    picked = jnp.where((x >= 0) & (x < num_levels), picked, jnp.nan)
    return jnp.sum(picked, axis=tuple(range(1, picked.ndim)))


def image_nll(logits: jax.Array, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative log-likelihood of integer images under per-position logits, and its terms.

    The maximum-likelihood objective of PixelCNN (van den Oord et al. 2016a, eq. 1-2):
    ``nll[b] = -sum_{i,j,c} log softmax(logits[b, i, j, c])[x[b, i, j, c]]`` (see the
    module docstring), i.e. ``-``:func:`image_log_prob`.

    Args:
      logits: ``(B, H, W, C, L)`` (any ``(B, ..., L)``) unnormalised log-probabilities of
        the ``L`` levels at every position, each a function of the positions before it.
      x: ``(B, H, W, C)`` integer levels in ``0..L-1`` (checked when not traced; NaN for an
        out-of-range level under ``jit``).

    Returns:
      ``(nll, terms)``, all ``(B,)`` in the float dtype of ``logits`` (at least float32):
      ``nll`` in nats; terms ``bits_per_dim = nll / (D log 2)`` with ``D = H W C`` the
      number of scored values (:func:`jaxgen.core.bits_per_dim`).
    """
    nll = -image_log_prob(logits, x)
    num_dims = math.prod(jnp.shape(x)[1:])
    return nll, {"bits_per_dim": bits_per_dim(nll, num_dims)}
