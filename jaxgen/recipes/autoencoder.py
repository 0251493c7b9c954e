"""Deterministic autoencoders, the baselines the VAE improves on: plain, regularized (a
penalty on the code: L2 as in Ghosh et al. 2020's RAE, L1, or the contractive Jacobian
penalty of Rifai et al. 2011) and denoising (Vincent et al. 2008), with MLP networks.

An autoencoder has no prior, so it does not generate by itself. Following Ghosh et al.
(2020, "ex-post density estimation"), the recipe keeps running moments of the training codes
(the ``code_stats`` state collection, an exponential moving average with bias correction)
and samples ``z ~ N(mean, cov)`` of the codes, decoded. Evaluation reports the held-out
reconstruction loss (nats under the decoder likelihood, and bits/dim of it), the squared
pixel error and the code penalty; it reports no likelihood, since there is none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys, normal
from jaxgen.core.units import bits_per_dim
from jaxgen.nets.mlp import ACTIVATIONS, MLP
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.vae import flat_size, vae_figures
from jaxgen.vae import autoencoders


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """MLP autoencoder; ``penalty``/``corruption`` make it regularized/denoising."""

    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "silu"
    likelihood: str = "gaussian_fixed"
    fixed_std: float = 0.1
    binarize: str = "none"
    penalty: str = "none"
    penalty_weight: float = 0.0
    corruption: str = "none"
    noise_std: float = 0.1
    mask_prob: float = 0.25
    code_stats_decay: float = 0.99


class AutoencoderRecipe(Recipe):
    """MLP autoencoder with an ex-post Gaussian over its codes; see the module docstring."""

    family = "autoencoder"
    config_class = AutoencoderConfig
    state_collections = ("code_stats",)

    def setup(self) -> None:
        m: AutoencoderConfig = self.config.model
        check_choice("model.activation", m.activation, ACTIVATIONS)
        check_choice("model.penalty", m.penalty, autoencoders.PENALTIES)
        check_choice("model.corruption", m.corruption, autoencoders.CORRUPTIONS)
        if m.penalty != "none" and m.penalty_weight <= 0:
            raise ConfigError(f"model.penalty={m.penalty!r} needs model.penalty_weight > 0")
        if not 0.0 <= m.code_stats_decay < 1.0:
            raise ConfigError(f"model.code_stats_decay must be in [0, 1), got {m.code_stats_decay}")
        self.likelihood = DecoderLikelihood(
            m.likelihood, self.num_levels, fixed_std=m.fixed_std, binarize=m.binarize
        )
        self.num_dims = flat_size(self.data_shape)
        self.out_shape = (
            *self.data_shape[:-1],
            self.likelihood.decoder_channels(self.data_shape[-1]),
        )
        self.modules = ModuleSet(
            {
                "encoder": lambda rngs: MLP(
                    self.num_dims, m.hidden, m.latent_dim, activation=m.activation, rngs=rngs
                ),
                "decoder": lambda rngs: MLP(
                    m.latent_dim,
                    tuple(reversed(m.hidden)),
                    flat_size(self.out_shape),
                    activation=m.activation,
                    rngs=rngs,
                ),
            }
        )

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        d = self.config.model.latent_dim
        params = self.modules.init(key)
        params["code_stats"] = {
            "mean": jnp.zeros((d,)),
            "second_moment": jnp.zeros((d, d)),
            "weight": jnp.zeros(()),
        }
        return params

    def encoder_fn(self, params):
        net = self.modules.bind(params, "encoder")
        return lambda x: net(x.reshape(x.shape[0], -1))

    def decoder_fn(self, params):
        net = self.modules.bind(params, "decoder")
        return lambda z: net(z).reshape(z.shape[0], *self.out_shape)

    def _reconstruction_fn(self, out, x):
        return -self.likelihood.log_likelihood(out, x)

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(0))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        m: AutoencoderConfig = self.config.model
        data_key, loss_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        per_example, terms = autoencoders.autoencoder_loss(
            self.encoder_fn(params),
            self.decoder_fn(params),
            self._reconstruction_fn,
            x,
            loss_key,
            penalty=m.penalty,
            penalty_weight=m.penalty_weight,
            corruption=m.corruption,
            noise_std=m.noise_std,
            mask_prob=m.mask_prob,
        )
        z = jax.lax.stop_gradient(self.encoder_fn(params)(x))
        stats, decay = params["code_stats"], m.code_stats_decay
        updated = {
            "mean": decay * stats["mean"] + (1 - decay) * jnp.mean(z, axis=0),
            "second_moment": decay * stats["second_moment"] + (1 - decay) * (z.T @ z) / len(z),
            "weight": decay * stats["weight"] + (1 - decay),
        }
        return per_example, terms, {"code_stats": updated}

    def code_distribution(self, params) -> tuple[jax.Array, jax.Array]:
        """Mean and covariance of the training codes (bias-corrected running moments)."""
        stats = params["code_stats"]
        weight = jnp.maximum(stats["weight"], 1e-12)
        mean = stats["mean"] / weight
        cov = stats["second_moment"] / weight - jnp.outer(mean, mean)
        return mean, 0.5 * (cov + cov.T)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
    ) -> SamplerOutput:
        """``z ~ N(mean, cov)`` of the training codes (``z = mean + C eps``, ``C C^T = cov +
        1e-5 I``, ``eps`` from each example's own key), decoded: one decoder pass."""
        del condition  # unconditional
        mean, cov = self.code_distribution(params)
        d = mean.shape[0]
        chol = jnp.linalg.cholesky(cov + 1e-5 * jnp.eye(d))
        eps = normal(example_keys(key, num_samples, start=first_index), (d,), mean.dtype)
        z = mean[None, :] + eps @ chol.T
        return SamplerOutput(self.likelihood.picture(self.decoder_fn(params)(z)), 1)

    def _eval_chunk(self, params, images, key):
        x = self.likelihood.eval_data(images, key)
        out = self.decoder_fn(params)(self.encoder_fn(params)(x))
        error = (self.likelihood.picture(out) - x).reshape(x.shape[0], -1)
        return {
            "reconstruction": self._reconstruction_fn(out, x),
            "squared_error": jnp.sum(error**2, axis=1),
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        rec = -self.likelihood.discrete_log_prob(-np.asarray(out["reconstruction"]), self.num_dims)
        return {
            "reconstruction_nats": float(rec.mean()),
            "reconstruction_bits_per_dim": float(bits_per_dim(rec.mean(), self.num_dims)),
            "mean_squared_error": float(np.mean(out["squared_error"]) / self.num_dims),
            "num_examples": float(len(rec)),
        }

    def figures(self, params, images, key):
        if len(self.data_shape) != 3:
            return {}
        decode = lambda z: self.likelihood.picture(self.decoder_fn(params)(z))  # noqa: E731
        return vae_figures(
            self.encoder_fn(params),
            decode,
            images,
            latent_dim=0,  # no N(0, I) prior to map
            sample=self.sample(params, key, 64).samples,
        )
