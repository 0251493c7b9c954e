"""Normalizing flows as a recipe: RealNVP (Dinh et al. 2017), Glow (Kingma and Dhariwal
2018) on images and a RealNVP on 2-D data, trained by exact maximum likelihood.

The objective is the pure :func:`jaxgen.flows.flow_nll` of the network's bijection (for
Glow the map to the standardized latent, so its learned prior is part of the density).
Images with ``L`` discrete levels are dequantized uniformly, ``y = (k + u) / L`` with
``u ~ U[0, 1)^D``, and the per-example loss is the negative of the discrete bound
``log P(k) >= E_u[log p(y)] - D log L`` (Theis et al. 2016) in nats, so the test bits/dim
are in the same discrete unit as DDPM's bound and the other families' likelihoods. 2-D
data are continuous: the loss is ``-log p(x)`` in nats.

Glow's ActNorm layers take a data-dependent initialization (Glow sec. 3.1): the recipe
declares ``init_batch_size = model.data_init_size`` and ``init_params(key, init_batch)``
pushes those training examples (passed in by the run floor as an argument of the jitted
init, dequantized with a fixed key) through the flow, setting each layer so that its
output has zero mean and unit variance per channel; under the engine's jitted, sharded
init the statistics are those of that whole global batch. Samples are
:func:`jaxgen.flows.sample` (one inverse pass, per-example noise) with a temperature
(``model.sample_temperature`` or ``sample(temperature=...)``; Glow's reduced-temperature
sampling, ``z ~ N(0, T^2 I)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import core, flows
from jaxgen.config import ConfigError
from jaxgen.nets.flow_nets import Glow, RealNVP, RealNVP2D, data_init_params
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks, nll_summary
from jaxgen.recipes.modules import ModuleSet

ARCHITECTURES = ("realnvp", "glow", "realnvp2d")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Flow architecture and size.

    ``num_scales``: RealNVP's scales or Glow's levels; ``num_couplings``: RealNVP's
    couplings per scale or Glow's steps per level (and the 2-D flow's couplings);
    ``hidden`` the 2-D flow's MLP widths. ``data_init_size``: the training examples of
    Glow's ActNorm initialization. ``eval_dequantization_samples`` dequantization draws per
    test image are averaged in ``jaxgen eval``. ``sample_temperature`` and
    ``eval_dequantization_samples`` may change after training.
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


class FlowRecipe(Recipe):
    """Exact-likelihood normalizing flows; see the module docstring."""

    family = "flow"
    config_class = FlowConfig
    sample_options = ("temperature",)
    eval_time_fields = ("sample_temperature", "eval_dequantization_samples")

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
        # Glow's data-dependent ActNorm init needs training examples (set per instance: the
        # size is a config field).
        self.init_batch_size = m.data_init_size if m.architecture == "glow" else 0
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

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """Fresh parameters; for Glow with ``init_batch`` (``init_batch_size`` training
        examples under ``data_key``, an argument of the jitted init) every ActNorm is set
        from the dequantized batch (fixed dequantization key 0). Without ``init_batch``
        (shape planning, restoring a checkpoint) ActNorm keeps its identity init."""
        params = self.modules.init(key)
        if self.config.model.architecture != "glow" or init_batch is None:
            return params
        y = self.dequantize(jnp.asarray(init_batch[self.data_key]), jax.random.key(0))
        return {"flow": data_init_params(self.modules.graphdefs["flow"], params["flow"], y)}

    # ------------------------------------------------------------------ likelihood

    def dequantize(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Images in [-1, 1] to ``(k + u) / L`` in [0, 1) (as inside ``flows.flow_nll``)."""
        levels = core.images_to_levels(x, num_levels=self.num_levels)
        return flows.uniform_dequantize(levels, key, num_levels=self.num_levels, dtype=x.dtype)

    def _glow(self) -> bool:
        return self.config.model.architecture == "glow"

    def forward_fn(self, params: Any) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
        """The bijection to the standard normal base: Glow's ``forward_standardized``
        (its learned prior included), the RealNVPs' ``forward``."""
        flow = self.modules.bind(params, "flow")
        return flow.forward_standardized if self._glow() else flow.forward

    def loss(self, params, batch, key):
        """:func:`jaxgen.flows.flow_nll`: ``(nll (B,), {base_log_prob, log_det,
        bits_per_dim (images)})``."""
        return flows.flow_nll(
            self.forward_fn(params), batch[self.data_key], key, num_levels=self.num_levels
        )

    # ------------------------------------------------------------------ sampling, evaluation

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        temperature: float | None = None,
        **options: Any,
    ) -> core.SamplerOutput:
        """``num_samples`` samples, example ``i`` from ``core.example_keys(key, num_samples,
        start=first_index)[i]`` alone: one inverse pass of ``z ~ N(0, T^2 I)``
        (``temperature`` default ``model.sample_temperature``); images come back at their
        levels in [-1, 1] (the bin of ``y``), flat data as drawn."""
        del condition  # unconditional
        self.check_sample_options(options)
        if temperature is None:
            temperature = self.config.model.sample_temperature
        flow = self.modules.bind(params, "flow")
        inverse = flow.inverse_standardized if self._glow() else flow.inverse
        keys = core.example_keys(key, num_samples, start=first_index)
        out = flows.sample(inverse, keys, (num_samples, self.num_dims), temperature=temperature)
        if self.num_levels is None:
            return out
        levels = flows.unit_to_levels(out.samples, num_levels=self.num_levels)
        images = core.levels_to_images(levels, num_levels=self.num_levels)
        return core.SamplerOutput(images, out.nfe)

    def _eval_chunk(self, params, data, key):
        draws = self.config.model.eval_dequantization_samples
        keys = jax.random.split(key, draws)

        def log_prob(k):
            return -flows.flow_nll(self.forward_fn(params), data, k, num_levels=self.num_levels)[0]

        return jnp.mean(jax.vmap(log_prob)(keys), axis=0)

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
