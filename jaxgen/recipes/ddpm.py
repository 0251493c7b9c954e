"""DDPM (Ho et al. 2020) as a recipe: a U-Net trained with ``L_simple``, sampled
ancestrally or with DDIM, evaluated with the full variational bound in bits/dim.

With ``model.unet.num_classes = K > 0`` the U-Net is class-conditional: training drops
labels with probability ``model.guidance.p_uncond`` (Ho and Salimans 2022), and sampling
takes ``condition={"label": ...}`` and classifier-free or classifier guidance
(:mod:`jaxgen.recipes.guidance`) with either sampler.

The maths lives in ``jaxgen.diffusion`` (pure JAX); this file only connects it to the
``UNet`` Flax module and to the training engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core, diffusion
from jaxgen.config import ConfigError
from jaxgen.nets import UNet, UNetConfig
from jaxgen.recipes import guidance as guide
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.guidance import GuidanceConfig

SAMPLERS: tuple[str, ...] = ("ancestral", "ddim")
MODEL_VARIANCES: tuple[str, ...] = diffusion.MODEL_VARIANCES


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    """DDPM model, noise schedule and sampler.

    The defaults are the paper's CIFAR-10 settings: T = 1000, linear betas 1e-4..0.02,
    epsilon prediction with L_simple, sigma_t^2 = beta_t, ancestral sampling with x0
    clipped to [-1, 1].

    Attributes:
      parameterization: what the U-Net predicts, one of
        :data:`jaxgen.diffusion.PARAMETERIZATIONS` (``eps``, ``x0``, ``v``).
      sampler: ``ancestral`` (``T`` steps) or ``ddim`` (``sample_steps`` steps, noise
        ``ddim_eta``).
      guidance: condition dropout and default guidance of a class-conditional U-Net
        (``unet.num_classes > 0``; ignored otherwise).
    """

    RENAMED: ClassVar[dict[str, str]] = {
        "prediction": "parameterization",
        "ddim_steps": "sample_steps",
    }

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    schedule: str = "linear"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    parameterization: str = "eps"
    model_variance: str = "beta"
    clip_denoised: bool = True
    sampler: str = "ancestral"
    sample_steps: int = 100
    ddim_eta: float = 0.0
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)


class DDPMRecipe(Recipe):
    """U-Net + L_simple + ancestral/DDIM sampling + variational bound."""

    family = "ddpm"
    config_class = DDPMConfig
    samplers = SAMPLERS
    sample_options = ("sampler", "num_steps", "eta", *guide.GUIDANCE_OPTIONS)
    eval_time_fields = ("sampler", "sample_steps", "ddim_eta", "clip_denoised")

    def setup(self) -> None:
        m: DDPMConfig = self.config.model
        check_choice("model.parameterization", m.parameterization, diffusion.PARAMETERIZATIONS)
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
        self.classes = guide.check_conditioning(
            m.unet.num_classes, self.num_classes, self.config.data.name
        )
        if not self.classes and m.guidance.guides:
            raise ConfigError(
                f"model.guidance.scale={m.guidance.scale!r} / rescale={m.guidance.rescale!r} "
                "ask for classifier-free guidance of an unconditional model "
                "(model.unet.num_classes = 0)"
            )
        abstract = nnx.eval_shape(lambda: self._make_unet(jax.random.key(0)))
        self.graphdef, _ = nnx.split(abstract)

    # ------------------------------------------------------------------ networks

    def _make_unet(self, key: jax.Array) -> UNet:
        return UNet(self.config.model.unet, image_shape=self.data_shape, rngs=nnx.Rngs(key))

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return nnx.to_pure_dict(nnx.split(self._make_unet(key))[1])

    def model_fn(
        self,
        params: Any,
        *,
        dropout_key: jax.Array | None = None,
        labels: jax.Array | None = None,
    ) -> Callable:
        """The network as the callable ``f(x, t)`` that the diffusion functions take (a
        class-conditional one at ``labels``, ``NULL_LABEL`` where None)."""
        if self.classes:
            cond = self.conditional_model_fn(params, dropout_key=dropout_key)
            return lambda x, t: cond(x, t, _labels_or_null(labels, x))
        unet = nnx.merge(self.graphdef, params)

        def fn(x: jax.Array, t: jax.Array) -> jax.Array:
            return unet(x, t, key=dropout_key)

        return fn

    def conditional_model_fn(
        self, params: Any, *, dropout_key: jax.Array | None = None
    ) -> guide.ConditionalModel:
        """The class-conditional network as ``f(x, t, labels)`` (label -1: unconditional);
        an unconditional network ignores ``labels``."""
        if not self.classes:
            model = self.model_fn(params, dropout_key=dropout_key)
            return lambda x, t, labels: model(x, t)
        unet = nnx.merge(self.graphdef, params)

        def fn(x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
            return unet(x, t, y=labels, key=dropout_key)

        return fn

    def noise_process(self) -> tuple:
        """A hashable description of the forward process (integer ``t`` on this schedule),
        equal to that of a noisy classifier trained for this model."""
        m: DDPMConfig = self.config.model
        return guide.ddpm_noise_process(m.schedule, m.num_timesteps, m.beta_start, m.beta_end)

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        dropout_key, diffusion_key = jax.random.split(key)
        labels = None
        if self.classes:
            labels = guide.drop_labels(
                jax.random.fold_in(key, 2),
                guide.batch_labels(batch, self.config.data.name),
                self.config.model.guidance.p_uncond,
            )
        return diffusion.ddpm_loss(
            self.model_fn(params, dropout_key=dropout_key, labels=labels),
            self.schedule,
            batch[self.data_key],
            diffusion_key,
            parameterization=self.config.model.parameterization,
        )

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> core.SamplerOutput:
        """``num_samples`` images; example ``i`` is example ``first_index + i`` of the draw
        with ``key`` (its noise comes from ``core.example_keys(key, num_samples,
        start=first_index)[i]`` alone). Options: ``sampler`` (``ancestral``/``ddim``),
        ``num_steps`` (DDIM's steps, default ``model.sample_steps``), ``eta`` (DDIM's noise,
        default ``model.ddim_eta``); guidance: ``guidance_scale`` (``s``, may be traced),
        ``guidance_interval`` (EDM sigma ``(low, high)``), ``guidance_rescale`` (phi, may be
        traced), ``classifier`` (``(log_prob_fn, params)``; the ancestral sampler shifts the
        mean, DDIM the eps); see :mod:`jaxgen.recipes.guidance`. A class-conditional model
        draws ``condition["label"]`` or, without it, classes ``(first_index + i) mod K``."""
        self.check_sample_options(options)
        m: DDPMConfig = self.config.model
        sampler = options.get("sampler") or m.sampler
        check_choice("sampler", sampler, SAMPLERS)
        num_steps, eta = options.get("num_steps"), options.get("eta")
        if sampler == "ancestral" and (num_steps is not None or eta is not None):
            raise ConfigError(
                "num_steps and eta apply to the 'ddim' sampler; 'ancestral' takes all "
                f"{m.num_timesteps} steps"
            )
        plan = guide.plan_guidance(
            options,
            m.guidance,
            num_classes=self.classes,
            condition=condition,
            num_samples=num_samples,
            first_index=first_index,
            sigma_range=guide.noise_range(self.schedule, 0, m.num_timesteps - 1),
        )
        model, parameterization = self.model_fn(params), m.parameterization
        if plan.labels is not None:
            model, parameterization = guide.guided_model(
                self.conditional_model_fn(params),
                plan,
                parameterization=m.parameterization,
                path=self.schedule,
                ancestral_schedule=self.schedule if sampler == "ancestral" else None,
                model_variance=m.model_variance,
            )
        keys = core.example_keys(key, num_samples, start=first_index)
        shape = (num_samples, *self.data_shape)
        common = dict(parameterization=parameterization, clip_denoised=m.clip_denoised)
        if sampler == "ancestral":
            return diffusion.ancestral_sample(
                model,
                self.schedule,
                keys,
                shape,
                model_variance=m.model_variance,
                **common,
            )
        return diffusion.ddim_sample(
            model,
            self.schedule,
            keys,
            shape,
            num_steps=m.sample_steps if num_steps is None else num_steps,
            eta=m.ddim_eta if eta is None else eta,
            **common,
        )

    def variational_bound(
        self, params: Any, images: jax.Array, key: jax.Array, labels: jax.Array | None = None
    ):
        """Per-example negative ELBO in nats, with the discretized decoder on the data's
        levels (a class-conditional model's at ``labels``, its unconditional one's without)."""
        m: DDPMConfig = self.config.model
        return diffusion.variational_bound(
            self.model_fn(params, labels=labels),
            self.schedule,
            images,
            key,
            parameterization=m.parameterization,
            model_variance=m.model_variance,
            num_levels=self.num_levels,
            clip_denoised=False,
        )

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Test bits/dim (upper bound, Ho et al. eq. 5 with the discretized decoder); for a
        class-conditional model, the bound of its unconditional model (null label; none when
        it was trained with ``p_uncond = 0``).

        Chunks of ``eval.batch_size`` images are split over all devices; the last chunk is
        padded so the bound compiles once."""
        if self.classes and self.config.model.guidance.p_uncond == 0.0:
            return {}
        nats, terms = evaluate_in_chunks(
            self.variational_bound, params, images, key, batch_size=self.config.eval.batch_size
        )
        totals = {"total": nats, **{k: terms[k] for k in ("prior", "diffusion", "decoder")}}
        num_dims = int(np.prod(self.data_shape))
        per_dim = {
            k: float(core.bits_per_dim(float(v.mean()), num_dims)) for k, v in totals.items()
        }
        return {
            "bits_per_dim": per_dim["total"],
            "bpd_prior": per_dim["prior"],
            "bpd_diffusion": per_dim["diffusion"],
            "bpd_decoder": per_dim["decoder"],
            "num_examples": float(len(images)),
        }


def _labels_or_null(labels: jax.Array | None, x: jax.Array) -> jax.Array:
    if labels is None:
        return jnp.full((x.shape[0],), guide.NULL_LABEL, jnp.int32)
    return labels
