"""Variational autoencoders and autoencoders as pure JAX functions (no Flax).

Every loss takes the model as callables: ``encoder_fn(x) -> DiagonalGaussian`` (or a code
array for plain autoencoders), ``decoder_fn(z) -> out`` and ``log_likelihood_fn(out, x) ->
(B,)``; it returns the per-example loss (B,) and a dict of named per-example terms (the
VAE-GAN, a three-player game, returns one such pair per player; :func:`vqvae_loss` adds a
third element, the EMA codebook's state update). The log-likelihood estimators
(:func:`importance_log_likelihood`, :func:`ladder_importance_log_likelihood`) return
``(log p(x) estimate (B,), terms)`` the same way.

* ``gaussian``: diagonal Gaussians, analytic and Monte Carlo KL, precision-weighted merge.
* ``likelihoods``: Bernoulli, Gaussian (fixed / learned std) and discretized logistic p(x|z).
* ``elbo``: the ELBO, beta-VAE, KL warm-up, free bits.
* ``iwae``: the IWAE bound and importance-sampled log p(x).
* ``kl_autoencoder``: latent diffusion's KL-regularised first stage (tiny-weight KL).
* ``hierarchical``: a Markovian hierarchy of latents with ladder (top-down) inference.
* ``vector_quantization``, ``code_prior``, ``vqvae``: VQ-VAE (quantization, the code prior,
  and the whole objective :func:`vqvae_loss` with its EMA codebook update).
* ``vqvae2``: the two-level VQ-VAE-2 objective :func:`vqvae2_loss` (top and bottom codes).
* ``vae_gan``: the VAE-GAN's feature-matching reconstruction and its three players' losses
  (each network evaluated once), with the gradient routing of a simultaneous game step.
* ``autoencoders``: plain, regularized, contractive and denoising autoencoders.

Samplers (:func:`ladder_sample`, :func:`factorized_prior_sample`) return
:class:`jaxgen.core.SamplerOutput` and draw every example from its own key.
"""

from jaxgen.vae import (
    autoencoders,
    code_prior,
    elbo,
    gaussian,
    hierarchical,
    iwae,
    kl_autoencoder,
    likelihoods,
    vae_gan,
    vector_quantization,
    vqvae,
    vqvae2,
)
from jaxgen.vae.autoencoders import autoencoder_loss
from jaxgen.vae.code_prior import (
    factorized_prior_log_prob,
    factorized_prior_loss,
    factorized_prior_sample,
    uniform_prior_log_prob,
    vq_negative_elbo,
)
from jaxgen.vae.elbo import elbo_loss, kl_warmup
from jaxgen.vae.gaussian import (
    DiagonalGaussian,
    kl_monte_carlo,
    precision_weighted_merge,
    standard_normal_log_prob,
)
from jaxgen.vae.hierarchical import (
    ladder_elbo_loss,
    ladder_importance_log_likelihood,
    ladder_sample,
    ladder_sample_with_latents,
)
from jaxgen.vae.iwae import importance_log_likelihood, iwae_loss
from jaxgen.vae.kl_autoencoder import kl_autoencoder_loss, posterior_mean_std
from jaxgen.vae.likelihoods import LIKELIHOODS, decoder_mean, decoder_sample, log_likelihood
from jaxgen.vae.vae_gan import (
    feature_matching_loss,
    player_terms,
    route_player_gradients,
    vae_gan_losses,
)
from jaxgen.vae.vector_quantization import (
    EMACodebookState,
    Quantized,
    codebook_perplexity,
    ema_codebook_update,
    init_ema_codebook,
    quantize,
    restart_dead_codes,
)
from jaxgen.vae.vqvae import vqvae_loss
from jaxgen.vae.vqvae2 import vqvae2_encode, vqvae2_loss

__all__ = [
    "LIKELIHOODS",
    "DiagonalGaussian",
    "EMACodebookState",
    "Quantized",
    "autoencoder_loss",
    "autoencoders",
    "code_prior",
    "codebook_perplexity",
    "decoder_mean",
    "decoder_sample",
    "elbo",
    "elbo_loss",
    "ema_codebook_update",
    "factorized_prior_log_prob",
    "factorized_prior_loss",
    "factorized_prior_sample",
    "feature_matching_loss",
    "gaussian",
    "hierarchical",
    "importance_log_likelihood",
    "init_ema_codebook",
    "iwae",
    "iwae_loss",
    "kl_autoencoder",
    "kl_autoencoder_loss",
    "kl_monte_carlo",
    "kl_warmup",
    "ladder_elbo_loss",
    "ladder_importance_log_likelihood",
    "ladder_sample",
    "ladder_sample_with_latents",
    "likelihoods",
    "log_likelihood",
    "player_terms",
    "posterior_mean_std",
    "precision_weighted_merge",
    "quantize",
    "restart_dead_codes",
    "route_player_gradients",
    "standard_normal_log_prob",
    "uniform_prior_log_prob",
    "vae_gan",
    "vae_gan_losses",
    "vector_quantization",
    "vq_negative_elbo",
    "vqvae",
    "vqvae_loss",
    "vqvae2",
    "vqvae2_encode",
    "vqvae2_loss",
]
