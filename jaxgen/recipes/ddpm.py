"""DDPM (Ho et al. 2020) as a recipe: a U-Net trained with ``L_simple``, sampled
ancestrally or with DDIM, evaluated with the full variational bound in bits/dim.

The maths lives in ``jaxgen.diffusion`` (pure JAX); this file only connects it to the
``UNet`` Flax module and to the training engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxgen import diffusion
from jaxgen.config import ConfigError
from jaxgen.nets.unet import UNet, UNetConfig
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.registry import register

SAMPLERS = ("ancestral", "ddim")
MODEL_VARIANCES = ("beta", "posterior")


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    """DDPM model, noise schedule and sampler.

    The defaults are the paper's CIFAR-10 settings: T = 1000, linear betas 1e-4..0.02,
    epsilon prediction with L_simple, sigma_t^2 = beta_t, ancestral sampling with x0
    clipped to [-1, 1].
    """

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    schedule: str = "linear"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "eps"
    model_variance: str = "beta"
    clip_denoised: bool = True
    sampler: str = "ancestral"
    ddim_steps: int = 100
    ddim_eta: float = 0.0


@register
class DDPMRecipe(Recipe):
    """U-Net + L_simple + ancestral/DDIM sampling + variational bound."""

    family = "ddpm"
    config_class = DDPMConfig

    def setup(self) -> None:
        m: DDPMConfig = self.config.model
        check_choice("model.prediction", m.prediction, diffusion.PREDICTIONS)
        check_choice("model.sampler", m.sampler, SAMPLERS)
        check_choice("model.model_variance", m.model_variance, MODEL_VARIANCES)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"DDPM's U-Net needs (H, W, C) images, the dataset has shape {self.data_shape}"
            )
        schedule_kwargs = (
            {"beta_start": m.beta_start, "beta_end": m.beta_end} if m.schedule == "linear" else {}
        )
        self.schedule = diffusion.make_schedule(m.schedule, m.num_timesteps, **schedule_kwargs)
        abstract = nnx.eval_shape(lambda: self._make_unet(jax.random.key(0)))
        self.graphdef, _ = nnx.split(abstract)

    # ------------------------------------------------------------------ networks

    def _make_unet(self, key: jax.Array) -> UNet:
        return UNet(self.config.model.unet, image_shape=self.data_shape, rngs=nnx.Rngs(key))

    def init_params(self, key: jax.Array) -> Any:
        return nnx.to_pure_dict(nnx.split(self._make_unet(key))[1])

    def model_fn(self, params: Any, *, dropout_key: jax.Array | None = None) -> Callable:
        """The network as the callable ``f(x, t)`` that the diffusion functions take."""
        unet = nnx.merge(self.graphdef, params)

        def fn(x: jax.Array, t: jax.Array) -> jax.Array:
            return unet(x, t, key=dropout_key)

        return fn

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        dropout_key, diffusion_key = jax.random.split(key)
        return diffusion.ddpm_loss(
            self.model_fn(params, dropout_key=dropout_key),
            self.schedule,
            batch[self.data_key],
            diffusion_key,
            prediction=self.config.model.prediction,
        )

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        sampler: str | None = None,
        num_steps: int | None = None,
        eta: float | None = None,
    ) -> jax.Array:
        m: DDPMConfig = self.config.model
        sampler = sampler or m.sampler
        check_choice("sampler", sampler, SAMPLERS)
        shape = (num_samples, *self.data_shape)
        common = dict(prediction=m.prediction, clip_denoised=m.clip_denoised)
        if sampler == "ancestral":
            out = diffusion.ancestral_sample(
                self.model_fn(params),
                self.schedule,
                key,
                shape,
                model_variance=m.model_variance,
                **common,
            )
        else:
            out = diffusion.ddim_sample(
                self.model_fn(params),
                self.schedule,
                key,
                shape,
                num_steps=num_steps or m.ddim_steps,
                eta=m.ddim_eta if eta is None else eta,
                **common,
            )
        return out.samples

    def variational_bound(self, params: Any, images: jax.Array, key: jax.Array):
        """Per-example negative ELBO in nats, with the discretized decoder on the data's levels."""
        m: DDPMConfig = self.config.model
        return diffusion.variational_bound(
            self.model_fn(params),
            self.schedule,
            images,
            key,
            prediction=m.prediction,
            model_variance=m.model_variance,
            num_levels=self.num_levels,
            clip_denoised=False,
        )

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Test bits/dim (upper bound, Ho et al. eq. 5 with the discretized decoder).

        Chunks of ``eval.batch_size`` images are split over all devices; the last chunk is
        padded so the bound compiles once."""
        nats, terms = evaluate_in_chunks(
            self.variational_bound, params, images, key, batch_size=self.config.eval.batch_size
        )
        totals = {"total": nats, **{k: terms[k] for k in ("prior", "diffusion", "decoder")}}
        num_dims = int(np.prod(self.data_shape))
        per_dim = {k: float(v.mean()) / (num_dims * np.log(2.0)) for k, v in totals.items()}
        return {
            "bits_per_dim": per_dim["total"],
            "bpd_prior": per_dim["prior"],
            "bpd_diffusion": per_dim["diffusion"],
            "bpd_decoder": per_dim["decoder"],
            "num_examples": float(len(images)),
        }
