"""VAE (Kingma and Welling 2014), beta-VAE (Higgins et al. 2017) and IWAE (Burda et al.
2016) as a recipe: MLP encoder and decoder on flattened data, trained with the ELBO (with
KL warm-up and free bits) or the IWAE bound, evaluated with an importance-sampled test NLL.

The maths lives in ``jaxgen.vae`` (pure JAX); this file wires it to the networks, the data
(binarization, dequantization: ``decoder_likelihood``) and the training engine.

Evaluation (``jaxgen eval``): on held-out data, ``nll_nats`` / ``bits_per_dim`` are the
importance-sampled estimate ``log p(x) ~= L_K`` with ``K = eval_importance_samples``
(Burda et al. use 5000); ``elbo_nats`` / ``elbo_bits_per_dim`` the negative ELBO (mean of the
K log-weights), ``kl_nats`` the analytic KL, and ``active_units`` the number of latent
units with ``Cov_x(E_q[z_u | x]) > 0.01`` (Burda et al. sec. 5.2).
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
from jaxgen.core.sampling import SamplerOutput, example_keys, normal
from jaxgen.core.units import bits_per_dim
from jaxgen.nets.mlp import ACTIVATIONS, MLP
from jaxgen.recipes import latent_figures
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.vae import elbo, iwae
from jaxgen.vae.gaussian import DiagonalGaussian

OBJECTIVES = ("elbo", "iwae")
SAMPLE_MODES = ("mean", "sample")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """A one-stochastic-layer VAE; the defaults are Burda et al.'s MNIST architecture
    (two deterministic layers of 200 tanh units, 50 latent units)."""

    latent_dim: int = 50
    hidden: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    likelihood: str = "discretized_logistic"
    fixed_std: float = 1.0
    binarize: str = "none"
    objective: str = "elbo"
    num_importance_samples: int = 1
    beta: float = 1.0
    kl_warmup_steps: int = 0
    kl_estimator: str = "analytic"
    free_bits: float = 0.0
    free_bits_mode: str = "batch"
    min_log_std: float = -7.0
    sample_mode: str = "mean"
    eval_importance_samples: int = 1000
    eval_chunk_size: int = 100


def flat_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def encoder_output(raw: jax.Array, *, min_log_std: float) -> DiagonalGaussian:
    """Split an encoder's last axis into ``(mean, log_std)``, log_std bounded below."""
    mean, log_std = jnp.split(raw, 2, axis=-1)
    return DiagonalGaussian(mean, jnp.maximum(log_std, min_log_std))


class VAERecipe(Recipe):
    """MLP VAE with the ELBO or IWAE objective; see the module docstring."""

    family = "vae"
    config_class = VAEConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_mode", "eval_importance_samples", "eval_chunk_size")

    def setup(self) -> None:
        m: VAEConfig = self.config.model
        check_choice("model.objective", m.objective, OBJECTIVES)
        check_choice("model.kl_estimator", m.kl_estimator, elbo.KL_ESTIMATORS)
        check_choice("model.free_bits_mode", m.free_bits_mode, elbo.FREE_BITS_MODES)
        check_choice("model.activation", m.activation, ACTIVATIONS)
        check_choice("model.sample_mode", m.sample_mode, SAMPLE_MODES)
        if m.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {m.latent_dim}")
        if not (m.beta >= 0 and m.free_bits >= 0 and m.kl_warmup_steps >= 0):
            raise ConfigError(
                "model.beta, model.free_bits and model.kl_warmup_steps must be >= 0, got "
                f"{m.beta}, {m.free_bits} and {m.kl_warmup_steps}"
            )
        if any(h < 1 for h in m.hidden):
            raise ConfigError(f"model.hidden widths must be >= 1, got {m.hidden}")
        if m.num_importance_samples < 1 or m.eval_importance_samples < 1:
            raise ConfigError("model.num_importance_samples and eval_importance_samples >= 1")
        if m.objective == "elbo" and m.num_importance_samples != 1:
            raise ConfigError(
                "model.num_importance_samples > 1 needs model.objective='iwae' (the ELBO uses "
                "one sample)"
            )
        if m.eval_importance_samples % m.eval_chunk_size:
            raise ConfigError(
                f"model.eval_importance_samples ({m.eval_importance_samples}) must be a "
                f"multiple of model.eval_chunk_size ({m.eval_chunk_size})"
            )
        self.likelihood = DecoderLikelihood(
            m.likelihood, self.num_levels, fixed_std=m.fixed_std, binarize=m.binarize
        )
        self.num_dims = flat_size(self.data_shape)
        out_channels = self.likelihood.decoder_channels(self.data_shape[-1])
        self.out_shape = (*self.data_shape[:-1], out_channels)
        self.modules = ModuleSet(
            {
                "encoder": lambda rngs: MLP(
                    self.num_dims, m.hidden, 2 * m.latent_dim, activation=m.activation, rngs=rngs
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

    # ------------------------------------------------------------------ networks

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        return self.modules.init(key)

    def encoder_fn(self, params: Any):
        net = self.modules.bind(params, "encoder")
        min_log_std = self.config.model.min_log_std
        return lambda x: encoder_output(net(x.reshape(x.shape[0], -1)), min_log_std=min_log_std)

    def decoder_fn(self, params: Any):
        net = self.modules.bind(params, "decoder")
        return lambda z: net(z).reshape(z.shape[0], *self.out_shape)

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(2**30))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        m: VAEConfig = self.config.model
        data_key, loss_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        args = (self.encoder_fn(params), self.decoder_fn(params), self.likelihood.log_likelihood)
        if m.objective == "iwae":
            per_example, terms = iwae.iwae_loss(
                *args, x, loss_key, num_samples=m.num_importance_samples
            )
        else:
            beta = m.beta * elbo.kl_warmup(step, warmup_steps=m.kl_warmup_steps)
            per_example, terms = elbo.elbo_loss(
                *args,
                x,
                loss_key,
                beta=beta,
                kl_estimator=m.kl_estimator,
                free_bits=m.free_bits,
                free_bits_mode=m.free_bits_mode,
            )
            terms = {**terms, "beta": jnp.broadcast_to(beta, per_example.shape)}
        return per_example, terms, {}

    def decode_pictures(self, params: Any, z: jax.Array) -> jax.Array:
        return self.likelihood.picture(self.decoder_fn(params)(z))

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Any = None,
        temperature: float = 1.0,
    ) -> SamplerOutput:
        """``z ~ N(0, T^2 I)`` decoded (one decoder pass): the decoder's mean picture, or with
        ``model.sample_mode='sample'`` a draw ``x ~ p(x | z)``. Example ``i`` splits its key
        ``example_keys(key, num_samples, start=first_index)[i]`` into its ``z`` key and its
        ``x`` key."""
        del condition  # unconditional
        return latent_decoder_sample(
            self.decoder_fn(params),
            self.likelihood,
            example_keys(key, num_samples, start=first_index),
            (self.config.model.latent_dim,),
            temperature=temperature,
            draw=self.config.model.sample_mode == "sample",
        )

    # ------------------------------------------------------------------ evaluation

    def _eval_chunk(self, params, images, key):
        m: VAEConfig = self.config.model
        data_key, nll_key, elbo_key = jax.random.split(key, 3)
        x = self.likelihood.eval_data(images, data_key)
        args = (self.encoder_fn(params), self.decoder_fn(params), self.likelihood.log_likelihood)
        log_px, _ = iwae.importance_log_likelihood(
            *args, x, nll_key, num_samples=m.eval_importance_samples, chunk_size=m.eval_chunk_size
        )
        _, terms = iwae.iwae_loss(*args, x, elbo_key, num_samples=m.eval_chunk_size)
        posterior = self.encoder_fn(params)(x)
        return {
            "log_px": log_px,
            "elbo": terms["elbo"],
            "kl": posterior.kl(),
            "posterior_mean": posterior.mean,
        }

    def evaluate(self, params, images, key):
        out = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        return latent_variable_metrics(
            self.likelihood,
            self.num_dims,
            log_px=out["log_px"],
            elbo=out["elbo"],
            kl=out["kl"],
            posterior_means=out["posterior_mean"],
            num_importance_samples=self.config.model.eval_importance_samples,
        )

    def figures(self, params, images, key):
        if len(self.data_shape) != 3:
            return {}
        return vae_figures(
            lambda x: self.encoder_fn(params)(x).mean,
            functools.partial(self.decode_pictures, params),
            images,
            latent_dim=self.config.model.latent_dim,
            sample=self.sample(params, key, 64).samples,
        )


def latent_decoder_sample(
    decoder_fn,
    likelihood: DecoderLikelihood,
    keys: jax.Array,
    latent_shape: tuple[int, ...],
    *,
    temperature: float = 1.0,
    draw: bool = False,
) -> SamplerOutput:
    """Decode ``z = T eps``, ``eps ~ N(0, I)`` of ``latent_shape`` per example: each of the
    ``(B,)`` per-example ``keys`` is split into the key of its ``eps`` and, with ``draw``,
    the key of its draw ``x ~ p(x | z)`` (else the decoder's mean picture); ``nfe = 1``."""
    pairs = jax.vmap(jax.random.split)(keys)  # (B, 2): (z key, x key) of each example
    z = temperature * normal(pairs[:, 0], latent_shape)
    out = decoder_fn(z)
    if draw:
        return SamplerOutput(likelihood.sample(out, pairs[:, 1]), 1)
    return SamplerOutput(likelihood.picture(out), 1)


def latent_variable_metrics(
    likelihood: DecoderLikelihood,
    num_dims: int,
    *,
    log_px: np.ndarray,
    elbo: np.ndarray,
    kl: np.ndarray,
    posterior_means: np.ndarray | None,
    num_importance_samples: int,
) -> dict[str, float]:
    """Test NLL and bound in nats and bits/dim (discrete where the data are), KL, active units."""
    log_p = likelihood.discrete_log_prob(np.asarray(log_px, np.float64), num_dims)
    log_elbo = likelihood.discrete_log_prob(np.asarray(elbo, np.float64), num_dims)
    out = {
        "nll_nats": float(-log_p.mean()),
        "nll_nats_stderr": float(log_p.std(ddof=1) / math.sqrt(len(log_p)))
        if len(log_p) > 1
        else 0.0,
        "bits_per_dim": float(bits_per_dim(-log_p.mean(), num_dims)),
        "elbo_nats": float(-log_elbo.mean()),
        "elbo_bits_per_dim": float(bits_per_dim(-log_elbo.mean(), num_dims)),
        "kl_nats": float(np.mean(kl)),
        "num_importance_samples": float(num_importance_samples),
        "num_examples": float(len(log_p)),
    }
    if posterior_means is not None:
        flat = np.asarray(posterior_means, np.float64).reshape(len(log_p), -1)
        out["active_units"] = float(np.sum(flat.var(axis=0) > 1e-2))
    return out


def vae_figures(encode_fn, decode_fn, images, *, latent_dim: int, sample=None):
    """Reconstructions, interpolations, samples and (2-D latents) the latent manifold."""
    x = jnp.asarray(np.asarray(images[:64], np.float32))
    figures = {
        "reconstructions": latent_figures.reconstruction_grid(x[:32], decode_fn(encode_fn(x[:32])))
    }
    if len(x) >= 16:
        figures["interpolations"] = latent_figures.interpolation_grid(
            encode_fn, decode_fn, x[:8], x[8:16]
        )
    if sample is not None:
        from jaxgen.images import make_grid

        figures["samples"] = make_grid(np.asarray(sample))
    if latent_dim == 2:
        figures["latent_manifold"] = latent_figures.latent_manifold_grid(decode_fn)
    return figures
