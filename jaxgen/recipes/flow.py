"""Normalizing flows as a recipe: RealNVP (Dinh et al. 2017), Glow (Kingma and Dhariwal
2018) on images and a RealNVP on 2-D data, trained by exact maximum likelihood.

Images with ``L`` discrete levels are dequantized uniformly, ``y = (k + u) / L`` with
``u ~ U[0, 1)^D`` (``jaxgen.flows.preprocessing``), and the per-example loss is the
negative of the discrete bound ``log P(k) >= E_u[log p(y)] - D log L`` (Theis et al. 2016)
in nats, so the test bits/dim are in the same discrete unit as DDPM's bound and the other
families' likelihoods. 2-D data are continuous: the loss is ``-log p(x)`` in nats.

Glow's ActNorm layers take a data-dependent initialization (Glow sec. 3.1): ``init_params``
pushes the first ``model.data_init_size`` training examples (dequantized with a fixed key)
through the flow and sets each layer so that its output has zero mean and unit variance
per channel; under the engine's jitted, sharded init the statistics are those of that
whole global batch. Samples use a temperature (``model.sample_temperature``; Glow's
reduced-temperature sampling, ``z ~ N(0, T^2 I)``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.flows.preprocessing import (
    discrete_log_prob_bound,
    images_to_levels,
    levels_to_images,
    uniform_dequantize,
    unit_to_levels,
)
from jaxgen.nets.flow_nets import Glow, RealNVP, RealNVP2D, data_init_params
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks, nll_summary
from jaxgen.recipes.modules import ModuleSet
from jaxgen.recipes.registry import register

ARCHITECTURES = ("realnvp", "glow", "realnvp2d")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Flow architecture and size.

    ``num_scales``: RealNVP's scales or Glow's levels; ``num_couplings``: RealNVP's
    couplings per scale or Glow's steps per level (and the 2-D flow's couplings);
    ``hidden`` the 2-D flow's MLP widths. ``eval_dequantization_samples`` dequantization
    draws per test image are averaged in ``jaxgen eval``.
    """

    architecture: str = "realnvp"
    num_scales: int = 2
    num_couplings: int = 3
    hidden_channels: int = 64
    num_res_blocks: int = 2
    learn_prior: bool = True
    hidden: tuple[int, ...] = (64, 64)
    data_init_size: int = 512
    sample_temperature: float = 1.0
    eval_dequantization_samples: int = 4


@register
class FlowRecipe(Recipe):
    """Exact-likelihood normalizing flows; see the module docstring."""

    family = "flow"
    config_class = FlowConfig

    def setup(self) -> None:
        m: FlowConfig = self.config.model
        check_choice("model.architecture", m.architecture, ARCHITECTURES)
        image = len(self.data_shape) == 3
        if image != (m.architecture != "realnvp2d"):
            raise ConfigError(
                f"model.architecture={m.architecture!r} does not fit {self.config.data.name!r} "
                f"(examples of shape {self.data_shape}); use 'realnvp2d' for flat data and "
                "'realnvp' or 'glow' for images"
            )
        if image and self.num_levels is None:
            raise ConfigError("image flows need discrete images (self.num_levels)")
        if m.eval_dequantization_samples < 1 or m.data_init_size < 1:
            raise ConfigError(
                "model.eval_dequantization_samples and model.data_init_size must be >= 1"
            )
        self.num_dims = int(np.prod(self.data_shape))
        if m.architecture == "realnvp":
            factory = lambda rngs: RealNVP(  # noqa: E731
                self.data_shape,
                num_scales=m.num_scales,
                num_couplings=m.num_couplings,
                hidden_channels=m.hidden_channels,
                num_res_blocks=m.num_res_blocks,
                rngs=rngs,
            )
        elif m.architecture == "glow":
            factory = lambda rngs: Glow(  # noqa: E731
                self.data_shape,
                num_levels=m.num_scales,
                num_steps=m.num_couplings,
                hidden_channels=m.hidden_channels,
                learn_prior=m.learn_prior,
                rngs=rngs,
            )
        else:
            factory = lambda rngs: RealNVP2D(  # noqa: E731
                self.data_shape[0], num_couplings=m.num_couplings, hidden=m.hidden, rngs=rngs
            )
        try:
            self.modules = ModuleSet({"flow": factory})
        except ValueError as error:
            raise ConfigError(f"model: {error}") from error

    # ------------------------------------------------------------------ parameters

    @functools.cache  # noqa: B019  (one recipe per run; read the data once, not per init)
    def _data_init_batch(self) -> np.ndarray:
        """The first ``model.data_init_size`` training examples (read once)."""
        from jaxgen.data.registry import load_dataset

        data = self.config.data
        train = load_dataset(data.name, "train", data_dir=data.data_dir, download=data.download)
        n = min(self.config.model.data_init_size, len(train.source))
        return np.asarray(train.source.get(np.arange(n))[train.data_key], np.float32)

    def init_params(self, key: jax.Array) -> Any:
        params = self.modules.init(key)
        if self.config.model.architecture != "glow":
            return params
        y = self.dequantize(jnp.asarray(self._data_init_batch()), jax.random.key(0))
        return {"flow": data_init_params(self.modules.graphdefs["flow"], params["flow"], y)}

    # ------------------------------------------------------------------ likelihood

    def dequantize(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Images in [-1, 1] to ``(k + u) / L`` in [0, 1)."""
        levels = images_to_levels(x, num_levels=self.num_levels)
        return uniform_dequantize(levels, key, num_levels=self.num_levels)

    def log_prob(self, params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        """Per-example ``log p`` in nats: the discrete bound for images (one dequantization
        draw), the exact density for flat data."""
        flow = self.modules.bind(params, "flow")
        if self.num_levels is None:
            return flow.log_prob(x)
        log_p = flow.log_prob(self.dequantize(x, key))
        return discrete_log_prob_bound(log_p, num_dims=self.num_dims, num_levels=self.num_levels)

    def loss(self, params, batch, key):
        log_p = self.log_prob(params, batch[self.data_key], key)
        terms = {}
        if self.num_levels is not None:
            terms["bits_per_dim"] = -log_p / (self.num_dims * jnp.log(2.0))
        return -log_p, terms

    # ------------------------------------------------------------------ sampling, evaluation

    def sample(self, params, key, num_samples):
        flow = self.modules.bind(params, "flow")
        y = flow.sample(key, num_samples, temperature=self.config.model.sample_temperature)
        if self.num_levels is None:
            return y
        levels = unit_to_levels(y, num_levels=self.num_levels)
        return levels_to_images(levels, num_levels=self.num_levels)

    def _eval_chunk(self, params, data, key):
        draws = self.config.model.eval_dequantization_samples
        keys = jax.random.split(key, draws)
        return jnp.mean(jax.vmap(lambda k: self.log_prob(params, data, k))(keys), axis=0)

    def evaluate(self, params, images, key):
        """Test negative log-likelihood (nats, standard error) and, for images, bits/dim of
        the dequantized bound (averaged over ``eval_dequantization_samples`` draws)."""
        log_p = evaluate_in_chunks(
            self._eval_chunk, params, images, key, batch_size=self.config.eval.batch_size
        )
        out = nll_summary(-np.asarray(log_p, np.float64), self.num_dims)
        if self.num_levels is None:  # a continuous density: nats only
            del out["bits_per_dim"]
        return out
