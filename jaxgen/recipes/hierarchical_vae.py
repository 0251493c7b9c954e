"""A Markovian hierarchical VAE with top-down (ladder) inference (Sonderby et al. 2016):
latents ``z_L -> ... -> z_1 -> x``, MLP networks on flattened data.

Networks: a bottom-up MLP tower ``d_l = MLP_l(d_{l-1})`` (``d_0 = x``) whose heads give the
Gaussian messages ``N(mu_hat_l, s_hat_l^2)``; top-down MLPs ``p(z_l | z_{l+1})``; a decoder
``p(x | z_1)``. The ELBO, the ladder posterior, ancestral sampling and the importance-
sampled test NLL are the pure functions of ``jaxgen.vae.hierarchical``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.config import ConfigError
from jaxgen.core.sampling import SamplerOutput, example_keys
from jaxgen.nets.mlp import ACTIVATIONS, MLP, activation_fn
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.vae import (
    SAMPLE_MODES,
    encoder_output,
    flat_size,
    latent_variable_metrics,
    vae_figures,
)
from jaxgen.vae import elbo, hierarchical
from jaxgen.vae.gaussian import precision_weighted_merge


@dataclasses.dataclass(frozen=True)
class HierarchicalVAEConfig:
    """Latent sizes from the data upwards (``latent_dims[0]`` is ``z_1``) and the width of
    the deterministic layer of each level; Sonderby et al.'s MNIST model has
    ``latent_dims=(64, 32, 16, 8, 4)``, ``hidden=(512, 256, 128, 64, 32)``."""

    latent_dims: tuple[int, ...] = (64, 32, 16, 8, 4)
    hidden: tuple[int, ...] = (512, 256, 128, 64, 32)
    activation: str = "leaky_relu"
    likelihood: str = "discretized_logistic"
    fixed_std: float = 1.0
    binarize: str = "none"
    beta: float = 1.0
    kl_warmup_steps: int = 0
    min_log_std: float = -7.0
    sample_mode: str = "mean"
    eval_importance_samples: int = 1000
    eval_chunk_size: int = 100


class HierarchicalVAERecipe(Recipe):
    """Ladder VAE on flattened data; see the module docstring."""

    family = "hierarchical_vae"
    config_class = HierarchicalVAEConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_mode", "eval_importance_samples", "eval_chunk_size")

    def setup(self) -> None:
        m: HierarchicalVAEConfig = self.config.model
        check_choice("model.activation", m.activation, ACTIVATIONS)
        check_choice("model.sample_mode", m.sample_mode, SAMPLE_MODES)
        if not m.latent_dims or len(m.latent_dims) != len(m.hidden):
            raise ConfigError(
                f"model.latent_dims {m.latent_dims} and model.hidden {m.hidden} must be "
                "non-empty and of the same length (one deterministic width per level)"
            )
        if min(m.latent_dims) < 1 or min(m.hidden) < 1:
            raise ConfigError("model.latent_dims and model.hidden must be positive")
        if m.eval_importance_samples % m.eval_chunk_size:
            raise ConfigError(
                "model.eval_importance_samples must be a multiple of model.eval_chunk_size"
            )
        self.likelihood = DecoderLikelihood(
            m.likelihood, self.num_levels, fixed_std=m.fixed_std, binarize=m.binarize
        )
        self.num_dims = flat_size(self.data_shape)
        self.out_shape = (
            *self.data_shape[:-1],
            self.likelihood.decoder_channels(self.data_shape[-1]),
        )
        levels = len(m.latent_dims)
        act = m.activation
        factories = {}
        widths = (self.num_dims, *m.hidden)
        for i in range(levels):
            factories[f"up_{i + 1}"] = functools.partial(
                MLP, widths[i], (m.hidden[i],), m.hidden[i], activation=act
            )
            factories[f"message_{i + 1}"] = functools.partial(
                MLP, m.hidden[i], (), 2 * m.latent_dims[i], activation=act
            )
        for i in range(levels - 1):
            factories[f"prior_{i + 1}"] = functools.partial(
                MLP,
                m.latent_dims[i + 1],
                (m.hidden[i], m.hidden[i]),
                2 * m.latent_dims[i],
                activation=act,
            )
        factories["decoder"] = functools.partial(
            MLP,
            m.latent_dims[0],
            (m.hidden[0], m.hidden[0]),
            flat_size(self.out_shape),
            activation=act,
        )
        self.modules = ModuleSet(factories)

    # ------------------------------------------------------------------ networks

    def init_params(self, key: jax.Array, init_batch: Any = None) -> Any:
        return self.modules.init(key)

    def bottom_up_fn(self, params):
        m: HierarchicalVAEConfig = self.config.model
        act = activation_fn(m.activation)

        def fn(x):
            d = x.reshape(x.shape[0], -1)
            messages = []
            for i in range(len(m.latent_dims)):
                d = act(self.modules.bind(params, f"up_{i + 1}")(d))
                raw = self.modules.bind(params, f"message_{i + 1}")(d)
                messages.append(encoder_output(raw, min_log_std=m.min_log_std))
            return messages

        return fn

    def top_down_fns(self, params):
        m: HierarchicalVAEConfig = self.config.model

        def prior(i):
            net = self.modules.bind(params, f"prior_{i + 1}")
            return lambda z: encoder_output(net(z), min_log_std=m.min_log_std)

        return [prior(i) for i in range(len(m.latent_dims) - 1)]

    def decoder_fn(self, params):
        net = self.modules.bind(params, "decoder")
        return lambda z: net(z).reshape(z.shape[0], *self.out_shape)

    def _networks(self, params):
        return self.bottom_up_fn(params), self.top_down_fns(params), self.decoder_fn(params)

    # ------------------------------------------------------------------ engine hooks

    def loss(self, params, batch, key):
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.asarray(2**30))
        return per_example, terms

    def training_loss(self, params, batch, key, step):
        m: HierarchicalVAEConfig = self.config.model
        data_key, loss_key = jax.random.split(key)
        x = self.likelihood.train_data(batch[self.data_key], data_key)
        beta = m.beta * elbo.kl_warmup(step, warmup_steps=m.kl_warmup_steps)
        per_example, terms = hierarchical.ladder_elbo_loss(
            *self._networks(params), self.likelihood.log_likelihood, x, loss_key, beta=beta
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
        temperature: float = 1.0,
    ) -> SamplerOutput:
        """Ancestral samples at temperature ``T`` (``L`` network passes: ``L - 1`` top-down and
        the decoder); example ``i`` splits its key ``example_keys(key, num_samples,
        start=first_index)[i]`` into its latents' key and (``sample_mode='sample'``) its
        ``x ~ p(x | z_1)`` key."""
        del condition  # unconditional
        m: HierarchicalVAEConfig = self.config.model
        keys = example_keys(key, num_samples, start=first_index)
        pairs = jax.vmap(jax.random.split)(keys)  # (B, 2): (latents key, x key)
        out = hierarchical.ladder_sample(
            self.top_down_fns(params),
            self.decoder_fn(params),
            pairs[:, 0],
            (num_samples, m.latent_dims[-1]),
            temperature=temperature,
        )
        if m.sample_mode == "sample":
            return SamplerOutput(self.likelihood.sample(out.samples, pairs[:, 1]), out.nfe)
        return SamplerOutput(self.likelihood.picture(out.samples), out.nfe)

    # ------------------------------------------------------------------ evaluation

    def posterior_mean_path(self, params, x):
        """``z_1`` reached by following the ladder posterior's means (for reconstructions)."""
        messages = self.bottom_up_fn(params)(x)
        z = messages[-1].mean
        for message, prior in zip(messages[-2::-1], self.top_down_fns(params)[::-1], strict=True):
            z = precision_weighted_merge(message, prior(z)).mean
        return z

    def _eval_chunk(self, params, images, key):
        m: HierarchicalVAEConfig = self.config.model
        data_key, nll_key, elbo_key = jax.random.split(key, 3)
        x = self.likelihood.eval_data(images, data_key)
        nets = self._networks(params)
        log_px, _ = hierarchical.ladder_importance_log_likelihood(
            *nets,
            self.likelihood.log_likelihood,
            x,
            nll_key,
            num_samples=m.eval_importance_samples,
            chunk_size=m.eval_chunk_size,
        )
        keys = jax.random.split(elbo_key, m.eval_chunk_size)
        bound = jax.vmap(
            lambda k: hierarchical.ladder_elbo_loss(*nets, self.likelihood.log_likelihood, x, k)[1]
        )(keys)
        return {"log_px": log_px, "elbo": bound["elbo"].mean(0), "kl": bound["kl"].mean(0)}

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
            posterior_means=None,
            num_importance_samples=self.config.model.eval_importance_samples,
        )

    def figures(self, params, images, key):
        if len(self.data_shape) != 3:
            return {}
        decode = lambda z: self.likelihood.picture(self.decoder_fn(params)(z))  # noqa: E731
        return vae_figures(
            lambda x: self.posterior_mean_path(params, x),
            decode,
            images,
            latent_dim=0,  # z_1 is not N(0, I) in a hierarchy: no manifold picture
            sample=self.sample(params, key, 64).samples,
        )
