"""The KL-regularised autoencoder of latent diffusion's first stage (Rombach et al. 2022).

An encoder gives a diagonal Gaussian ``q(z | x) = N(mu(x), diag(sigma(x)^2))`` over a
*spatial* latent (B, h, w, c); a decoder gives ``p(x | z)``. The first stage is trained with
one reparameterised ``z = mu + sigma * eps`` per example (Rombach et al. 2022, sec. 3.1 and
appendix G, "KL-reg."; Kingma and Welling 2014, eq. 10)::

    loss(x) = -log p(x | z) + kl_weight * KL(q(z | x) || N(0, I)),

with the analytic Gaussian KL (Kingma and Welling 2014, appendix B). It is the beta-VAE
objective with a *tiny* weight (LDM: ``kl_weight = 1e-6``): the KL only keeps the latent
scale from drifting, it does not make ``N(0, I)`` a good prior. The latents are then
near-deterministic (``sigma`` small) and their spread is not 1, which is why the second
stage divides them by the empirical std of the posterior means
(:func:`posterior_mean_std`, LDM's "scale factor" ``1 / std``).

The Gaussian and its KL are :class:`jaxgen.vae.gaussian.DiagonalGaussian`'s; the checks are
:mod:`jaxgen.vae.elbo`'s. LDM's perceptual (LPIPS) and patch-GAN terms are not part of this
objective (see :mod:`jaxgen.recipes.kl_autoencoder`).

References:
  Rombach, Blattmann, Lorenz, Esser, Ommer. High-Resolution Image Synthesis with Latent
  Diffusion Models. CVPR 2022.
  Kingma and Welling. Auto-Encoding Variational Bayes. ICLR 2014.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_finite_number
from jaxgen.vae.elbo import (
    DecoderFn,
    EncoderFn,
    LogLikelihoodFn,
    check_per_example,
    check_posterior,
)

__all__ = ["kl_autoencoder_loss", "posterior_mean_std"]


def kl_autoencoder_loss(
    encoder_fn: EncoderFn,
    decoder_fn: DecoderFn,
    log_likelihood_fn: LogLikelihoodFn,
    x: jax.Array,
    key: jax.Array,
    *,
    kl_weight: float | jax.Array = 1e-6,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-log p(x | z) + kl_weight * KL(q(z | x) || N(0, I))`` per example, one
    reparameterised ``z ~ q(z | x)`` (Rombach et al. 2022, sec. 3.1).

    Args:
      encoder_fn: ``x -> DiagonalGaussian`` with ``mean``/``log_std`` of shape (B, *latent).
      decoder_fn: ``z -> out``, the raw decoder output.
      log_likelihood_fn: ``(out, x) -> log p(x | z)``, (B,).
      x: data (B, *event).
      key: the key of the one ``z`` per example (``posterior.sample(key)``).
      kl_weight: weight of the KL, a scalar ``>= 0`` (checked when concrete).

    Returns:
      ``(loss, terms)``, each (B,): ``terms`` holds ``"reconstruction"`` (``-log p(x | z)``,
      nats), ``"kl"`` (the analytic KL, nats), ``"weighted_kl"`` (``kl_weight * kl``) and
      ``"elbo"`` (``-(reconstruction + kl)``, the bound at weight 1, whatever ``kl_weight``).
    """
    kl_weight = jnp.asarray(kl_weight)
    if kl_weight.ndim != 0:
        raise ValueError(f"kl_weight must be a scalar, got shape {kl_weight.shape}.")
    check_finite_number(kl_weight, "kl_weight", low=0.0)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    posterior = encoder_fn(x)
    check_posterior(posterior, x)
    z = posterior.sample(key)
    log_px = check_per_example(log_likelihood_fn(decoder_fn(z), x), x.shape[0], "log_likelihood_fn")
    reconstruction = -log_px
    kl = posterior.kl()
    weighted_kl = kl_weight.astype(kl.dtype) * kl
    terms = {
        "reconstruction": reconstruction,
        "kl": kl,
        "weighted_kl": weighted_kl,
        "elbo": -(reconstruction + kl),
    }
    return reconstruction + weighted_kl, terms


def posterior_mean_std(means: np.ndarray | jax.Array) -> float:
    """The empirical std of the posterior means over a data set, all latent elements pooled:
    ``s = sqrt(mean_{n,j} (mu_nj - mean(mu))^2)`` for means (N, *latent). Latent diffusion
    trains on ``z / s`` (LDM's scale factor ``1 / s``) so that its latents have unit variance.
    """
    means = np.asarray(means, np.float64)
    if means.ndim < 2 or means.shape[0] < 2:
        raise ValueError(f"means must have shape (N >= 2, *latent), got {means.shape}.")
    return float(means.std())
