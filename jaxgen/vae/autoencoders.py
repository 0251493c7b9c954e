"""Deterministic autoencoders, the baselines of the VAE family: plain, regularized,
denoising (Vincent et al. 2008) and contractive (Rifai et al. 2011).

An encoder ``f`` maps data to a code ``z = f(x~)`` and a decoder ``g`` maps it back. With a
per-example reconstruction loss ``R(g(z), x)`` (e.g. a negative log-likelihood, or
``1/2 ||g(z) - x||^2``) the per-example objective is::

    loss(x) = R(g(f(x~)), x) + lambda * Omega,

where the target is always the clean ``x`` and ``x~ ~ C(x~ | x)`` is a corruption of it:

* ``"none"``: ``x~ = x`` (plain autoencoder).
* ``"gaussian"``: ``x~ = x + sigma eps``, ``eps ~ N(0, I)`` (additive isotropic Gaussian
  noise, Vincent et al. 2010).
* ``"masking"``: each entry of ``x`` is independently set to 0 with probability ``p``
  (``x~ = m * x``, ``m ~ Bernoulli(1 - p)``, no rescaling; the masking "destruction" of
  Vincent et al. 2008). A denoising autoencoder minimizes ``E_{x, x~ ~ C} R(g(f(x~)), x)``
  and so learns to undo ``C`` (Vincent et al. 2008, Section 2).

Penalties ``Omega`` on the code (per example, summed over the code's axes):

* ``"l2"``: ``||z||^2 = sum_j z_j^2``; ``"l1"``: ``||z||_1 = sum_j |z_j|`` (sparse codes);
* ``"contractive"``: ``||J_f(x~)||_F^2 = sum_{ij} (d z_j / d x~_i)^2``, the squared
  Frobenius norm of the encoder's Jacobian at its input (Rifai et al. 2011's CAE). It is
  computed per example (a ``vmap`` over single examples of ``jacrev`` or ``jacfwd``,
  whichever needs fewer passes), so the encoder must treat examples independently
  (no batch statistics). For an affine encoder ``z = W x + b`` it is ``||W||_F^2``; for
  ``z = sigma(W x + b)`` it is ``sum_j sigma'(a_j)^2 ||W_j||^2``.

A linear autoencoder with squared error and no penalty or corruption has, at its global
minimum, a code spanning the principal subspace of the data (Baldi and Hornik 1989).

Returned per example, (B,): ``loss`` and ``terms`` ``"reconstruction"`` (``R``) and
``"penalty"`` (``Omega``, before the weight ``lambda``).

References:
  Baldi, Hornik. Neural networks and principal component analysis: learning from examples
  without local minima. Neural Networks 1989.
  Vincent, Larochelle, Bengio, Manzagol. Extracting and Composing Robust Features with
  Denoising Autoencoders. ICML 2008.
  Vincent, Larochelle, Lajoie, Bengio, Manzagol. Stacked Denoising Autoencoders. JMLR 2010.
  Rifai, Vincent, Muller, Glorot, Bengio. Contractive Auto-Encoders: Explicit Invariance
  During Feature Extraction. ICML 2011.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_finite_number
from jaxgen.vae.gaussian import sum_event

__all__ = ["CORRUPTIONS", "PENALTIES", "autoencoder_loss", "corrupt", "code_penalty"]

PENALTIES: tuple[str, ...] = ("none", "l2", "l1", "contractive")
CORRUPTIONS: tuple[str, ...] = ("none", "gaussian", "masking")


def _check_options(penalty: str, corruption: str, noise_std: Any, mask_prob: Any) -> None:
    check_choice("penalty", penalty, PENALTIES)
    check_choice("corruption", corruption, CORRUPTIONS)
    if isinstance(noise_std, (int, float)) and not noise_std >= 0.0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}.")
    if isinstance(mask_prob, (int, float)) and not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must lie in [0, 1), got {mask_prob}.")


def corrupt(
    x: jax.Array,
    key: jax.Array,
    *,
    corruption: str,
    noise_std: float = 0.1,
    mask_prob: float = 0.25,
) -> jax.Array:
    """The corrupted input ``x~ ~ C(x~ | x)`` (see the module doc), shape of ``x``."""
    _check_options("none", corruption, noise_std, mask_prob)
    if corruption == "gaussian":
        return x + noise_std * jax.random.normal(key, x.shape, x.dtype)
    if corruption == "masking":
        keep = jax.random.bernoulli(key, 1.0 - mask_prob, x.shape)
        return jnp.where(keep, x, jnp.zeros_like(x))
    return x


def code_penalty(
    encoder_fn: Callable[[jax.Array], jax.Array],
    x_in: jax.Array,
    z: jax.Array,
    *,
    penalty: str,
) -> jax.Array:
    """``Omega`` per example, (B,): ``z = encoder_fn(x_in)`` is the code of ``x_in``."""
    check_choice("penalty", penalty, PENALTIES)
    if penalty == "l2":
        return sum_event(jnp.square(z))
    if penalty == "l1":
        return sum_event(jnp.abs(z))
    if penalty == "contractive":
        return _contractive(encoder_fn, x_in, z)
    return jnp.zeros((z.shape[0],), z.dtype)


def _contractive(encoder_fn, x_in: jax.Array, z: jax.Array) -> jax.Array:
    """``||d z / d x_in||_F^2`` per example via a vmap of single-example Jacobians."""

    def single(xi: jax.Array) -> jax.Array:
        return encoder_fn(xi[None])[0]

    # Reverse mode costs one pass per code entry, forward mode one per input entry.
    code_size, input_size = math.prod(z.shape[1:]), math.prod(x_in.shape[1:])
    jac_fn = jax.jacrev(single) if code_size <= input_size else jax.jacfwd(single)
    jac = jax.vmap(jac_fn)(x_in)  # (B, *code, *input)
    return sum_event(jnp.square(jac))


def autoencoder_loss(
    encoder_fn: Callable[[jax.Array], jax.Array],
    decoder_fn: Callable[[jax.Array], Any],
    reconstruction_fn: Callable[[Any, jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    penalty: str = "none",
    penalty_weight: float = 0.0,
    corruption: str = "none",
    noise_std: float = 0.1,
    mask_prob: float = 0.25,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example autoencoder loss ``R(g(f(x~)), x) + penalty_weight * Omega`` (module doc).

    Args:
      encoder_fn: ``x~ -> z``, an array ``(B, *latent)``.
      decoder_fn: ``z -> out``, the raw decoder output.
      reconstruction_fn: ``(out, x) -> (B,)``, a per-example reconstruction loss against the
        clean ``x``.
      x: float data ``(B, *event)``.
      key: a ``jax.random.key`` (used by the corruption only).
      penalty: one of :data:`PENALTIES`, on the code of the (corrupted) input.
      penalty_weight: ``lambda``.
      corruption: one of :data:`CORRUPTIONS`.
      noise_std: ``sigma`` of ``"gaussian"`` corruption.
      mask_prob: probability that ``"masking"`` zeroes an entry, in ``[0, 1)``.

    Returns:
      ``(loss (B,), terms)`` with ``terms["reconstruction"]`` and ``terms["penalty"]``
      (unweighted), each ``(B,)``.
    """
    _check_options(penalty, corruption, noise_std, mask_prob)
    check_finite_number(penalty_weight, "penalty_weight", low=0.0)
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array, got dtype {x.dtype}.")
    x_in = corrupt(x, key, corruption=corruption, noise_std=noise_std, mask_prob=mask_prob)
    z = encoder_fn(x_in)
    if jnp.ndim(z) < 1 or jnp.shape(z)[0] != x.shape[0]:
        raise ValueError(
            f"encoder_fn must return a code of shape ({x.shape[0]}, *latent), got {jnp.shape(z)}."
        )
    reconstruction = reconstruction_fn(decoder_fn(z), x)
    if jnp.shape(reconstruction) != (x.shape[0],):
        raise ValueError(
            f"reconstruction_fn must return shape ({x.shape[0]},) (one value per example), "
            f"got {jnp.shape(reconstruction)}."
        )
    omega = code_penalty(encoder_fn, x_in, z, penalty=penalty)
    loss = reconstruction + penalty_weight * omega
    return loss, {"reconstruction": reconstruction, "penalty": omega}
