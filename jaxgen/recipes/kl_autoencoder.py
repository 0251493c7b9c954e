"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, sec. 3.1 and
appendix G) as a recipe: VQ-VAE's convolutional encoder and decoder
(:mod:`jaxgen.nets.conv_autoencoder`), spatial latents ``(H / 2^n, W / 2^n, c)``, and the
objective :func:`jaxgen.vae.kl_autoencoder_loss`
``-log p(x | z) + kl_weight * KL(q(z | x) || N(0, I))`` with one reparameterised ``z``.

The encoder outputs ``2 c`` channels, split into the posterior mean and log-std (bounded
below by ``model.min_log_std``). The decoder likelihood is one of
:class:`~jaxgen.recipes.decoder_likelihood.DecoderLikelihood`'s. LDM's autoencoders are
trained with an L1 reconstruction loss plus a perceptual (LPIPS) loss and a patch-GAN
discriminator; those two terms are **not** included here: both exist to restore texture
and sharpness in large natural images, LPIPS needs a VGG trained on ImageNet (no such
network for 8x8 grey digits, and none ships with the project), and a patch discriminator
on an 8x8 image is a whole-image discriminator on 64 pixels that would trade
reconstruction fidelity, the one thing the second stage needs, for adversarial
sharpness. A likelihood that learns its scale (``discretized_logistic``) already gives
near-exact reconstructions at this size.

This is the first stage of latent diffusion (the first-stage protocol of
``jaxgen.recipes.first_stage``): ``encode_latents`` is the posterior mean (deterministic),
``decode_latents`` the decoder's mean picture in [-1, 1]. On its own the recipe samples by
decoding ``z ~ N(0, I)``; with LDM's tiny KL weight the aggregate posterior is far from
``N(0, I)`` (its spread is ``latent_std``, not 1, and it is not Gaussian), so those samples
are poor: the model is meant to be sampled through a second stage.

Evaluation (held-out): ``reconstruction_nats`` / ``reconstruction_bits_per_dim`` (``-log p(x |
mu(x))`` under the decoder, discrete where the data are), ``mean_squared_error`` (per pixel,
in [-1, 1]) and ``psnr`` (``10 log10(2^2 / mse)``, the data range being 2) of the decoder's
mean picture of the posterior mean, ``kl_nats`` (the analytic KL per example),
``neg_elbo_nats`` (one reparameterised ``z``), ``latent_std`` (the empirical std of the
posterior means over the held-out set, all elements pooled: the scale latent diffusion
divides by) and, on the digits, ``reconstruction_digit_fd`` (the digit FD of the
reconstructions, 0 for the test set itself).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.core.units import bits_per_dim
from jaxgen.nets.conv_autoencoder import ConvDecoder, ConvEncoder
from jaxgen.recipes.base import Recipe, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.vae import encoder_output, latent_decoder_sample, vae_figures
from jaxgen.vae.kl_autoencoder import kl_autoencoder_loss, posterior_mean_std


@dataclasses.dataclass(frozen=True)
class KLAutoencoderConfig:
    """LDM's KL-regularised first stage at a small size. ``kl_weight`` defaults to LDM's
    1e-6; ``likelihood`` is a :class:`DecoderLikelihood` name (LDM uses L1 + LPIPS +
    patch-GAN, see the module docstring for why only the likelihood is kept).
    ``min_log_std`` floors the posterior log-std (LDM learns it freely; a higher floor makes
    the decoder robust to small latent errors, see ``experiments/kl_autoencoder_digits.py``)."""

    latent_channels: int = 4
    num_downsamples: int = 2
    channels: int = 128
    residual_channels: int = 64
    num_residual_blocks: int = 2
    likelihood: str = "discretized_logistic"
    fixed_std: float = 1.0
    kl_weight: float = 1e-6
    min_log_std: float = -7.0
    sample_temperature: float = 1.0


def psnr(mean_squared_error: float, *, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(R^2 / mse)`` in dB, ``R`` the data range (2 for
    images in [-1, 1], so it equals the usual PSNR of the images mapped to [0, 1])."""
    if mean_squared_error <= 0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / mean_squared_error))


class KLAutoencoderRecipe(Recipe):
    """Conv KL-regularised autoencoder (LDM's first stage); see the module docstring."""

    family = "kl_autoencoder"
    config_class = KLAutoencoderConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature",)

    def setup(self) -> None:
        m: KLAutoencoderConfig = self.config.model
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"the KL autoencoder needs (H, W, C) images, the data have shape {self.data_shape}"
            )
        if m.num_downsamples < 0:
            raise ConfigError(f"model.num_downsamples must be >= 0, got {m.num_downsamples}")
        factor = 2**m.num_downsamples
        if self.data_shape[0] % factor or self.data_shape[1] % factor:
            raise ConfigError(
                f"model.num_downsamples={m.num_downsamples}: the image size {self.data_shape[:2]} "
                f"is not divisible by {factor}"
            )
        if m.latent_channels < 1:
            raise ConfigError(f"model.latent_channels must be >= 1, got {m.latent_channels}")
        if min(m.channels, m.residual_channels) < 1 or m.num_residual_blocks < 0:
            raise ConfigError(
                "model.channels and model.residual_channels must be >= 1 and "
                f"model.num_residual_blocks >= 0, got {m.channels}, {m.residual_channels} and "
                f"{m.num_residual_blocks}"
            )
        if not (math.isfinite(m.kl_weight) and m.kl_weight >= 0):
            raise ConfigError(f"model.kl_weight must be a finite number >= 0, got {m.kl_weight}")
        self.likelihood = DecoderLikelihood(m.likelihood, self.num_levels, fixed_std=m.fixed_std)
        self.latent_shape = (
            self.data_shape[0] // factor,
            self.data_shape[1] // factor,
            m.latent_channels,
        )
        self.num_dims = int(np.prod(self.data_shape))
        net = dict(
            channels=m.channels,
            residual_channels=m.residual_channels,
            num_residual_blocks=m.num_residual_blocks,
            num_downsamples=m.num_downsamples,
        )
        self.modules = ModuleSet(
            {
                "encoder": lambda rngs: ConvEncoder(
                    self.data_shape[-1], 2 * m.latent_channels, rngs=rngs, **net
                ),
                "decoder": lambda rngs: ConvDecoder(
                    m.latent_channels,
                    self.likelihood.decoder_channels(self.data_shape[-1]),
                    rngs=rngs,
                    **net,
                ),
            }
        )

    # ------------------------------------------------------------------ networks

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        return self.modules.init(key)

    def encoder_fn(self, params: Any):
        """``x -> q(z | x)``, a DiagonalGaussian over (B, h, w, c)."""
        net = self.modules.bind(params, "encoder")
        min_log_std = self.config.model.min_log_std
        return lambda x: encoder_output(net(x), min_log_std=min_log_std)

    def decoder_fn(self, params: Any):
        """``z -> out``, the raw decoder output (the likelihood's parameters)."""
        return self.modules.bind(params, "decoder")

    # ------------------------------------------------------------------ first-stage protocol

    def _check_shape(self, array: jax.Array, expected: tuple[int, ...], what: str) -> None:
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{what} must have shape (B, {', '.join(map(str, expected))}) (h, w, c) = "
                f"{tuple(expected)}, got {tuple(array.shape)}"
            )

    def encode_latents(self, params: Any, images: jax.Array) -> jax.Array:
        """The posterior mean ``mu(x)`` (B, h, w, c) of images (B, H, W, C) in [-1, 1]:
        the deterministic latent of LDM's first stage."""
        self._check_shape(images, self.data_shape, "images")
        return self.encoder_fn(params)(images).mean

    def decode_latents(self, params: Any, latents: jax.Array) -> jax.Array:
        """The decoder's mean picture ``E[x | z]`` (B, H, W, C) in [-1, 1] of latents
        (B, h, w, c) (``DecoderLikelihood.picture``)."""
        self._check_shape(latents, self.latent_shape, "latents")
        return self.likelihood.picture(self.decoder_fn(params)(latents))

    def reconstruct(self, params: Any, images: jax.Array) -> jax.Array:
        """The model's reconstruction: the decoder's picture of the posterior mean."""
        return self.decode_latents(params, self.encode_latents(params, images))

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(0))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        """:func:`jaxgen.vae.kl_autoencoder_loss` on the likelihood's training data."""
        data_key, loss_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        per_example, terms = kl_autoencoder_loss(
            self.encoder_fn(params),
            self.decoder_fn(params),
            self.likelihood.log_likelihood,
            x,
            loss_key,
            kl_weight=self.config.model.kl_weight,
        )
        return per_example, terms, {}

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
        temperature: float | None = None,
    ) -> SamplerOutput:
        """``z = T eps``, ``eps ~ N(0, I)`` of ``latent_shape``, decoded to the mean picture
        (one decoder pass; ``T`` defaults to ``model.sample_temperature``). Poor with a tiny
        ``kl_weight``: see the module docstring."""
        del condition  # unconditional
        t = self.config.model.sample_temperature if temperature is None else temperature
        return latent_decoder_sample(
            self.decoder_fn(params),
            self.likelihood,
            example_keys(key, num_samples, start=first_index),
            self.latent_shape,
            temperature=t,
        )

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, images, key):
        data_key, z_key = jax.random.split(key)
        x = self.likelihood.eval_data(images, data_key)
        posterior = self.encoder_fn(params)(images)
        out = self.decoder_fn(params)(posterior.mean)
        picture = self.likelihood.picture(out)
        error = (picture - images).reshape(images.shape[0], -1)
        _, terms = kl_autoencoder_loss(
            self.encoder_fn(params),
            self.decoder_fn(params),
            self.likelihood.log_likelihood,
            x,
            z_key,
            kl_weight=self.config.model.kl_weight,
        )
        return {
            "reconstruction": -self.likelihood.log_likelihood(out, x),
            "neg_elbo": -terms["elbo"],
            "kl": terms["kl"],
            "squared_error": jnp.sum(error**2, axis=1),
            "posterior_mean": posterior.mean,
            "picture": picture,
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )

        def nats(neg_log_p):  # mean -log P on the discrete data
            log_p = -np.asarray(neg_log_p, np.float64)
            return float(-self.likelihood.discrete_log_prob(log_p, self.num_dims).mean())

        rec = nats(out["reconstruction"])
        mse = float(np.mean(out["squared_error"]) / self.num_dims)
        results = {
            "reconstruction_nats": rec,
            "reconstruction_bits_per_dim": float(bits_per_dim(rec, self.num_dims)),
            "neg_elbo_nats": nats(out["neg_elbo"]),
            "mean_squared_error": mse,
            "psnr": psnr(mse),
            "kl_nats": float(np.mean(out["kl"])),
            "num_examples": float(len(out["kl"])),
        }
        if len(out["kl"]) >= 2:
            results["latent_std"] = posterior_mean_std(out["posterior_mean"])
        if self.config.data.name == "digits" and len(out["kl"]) >= 2:
            from jaxgen.evaluation.digit_fd import digit_fd

            results["reconstruction_digit_fd"] = float(digit_fd(np.asarray(out["picture"])))
        return results

    def figures(self, params, images, key):
        return vae_figures(
            functools.partial(self.encode_latents, params),
            functools.partial(self.decode_latents, params),
            images,
            latent_dim=0,  # spatial latents: no 2-D latent manifold to draw
            sample=self.sample(params, key, 64).samples,
        )
