"""DDPM (Ho et al. 2020) as a recipe: a U-Net trained with ``L_simple``, sampled
ancestrally, with DDIM, or with the few-step ODE solvers DPM-Solver++ and UniPC on the
continuous-time view of its schedule (:mod:`jaxgen.diffusion.continuous`: log-SNR
interpolated linearly between the integer steps, the network called at fractional steps),
evaluated with the full variational bound in bits/dim.

With ``model.unet.num_classes = K > 0`` the U-Net is class-conditional: training drops
labels with probability ``model.guidance.p_uncond`` (Ho and Salimans 2022), and sampling
takes ``condition={"label": ...}`` and classifier-free or classifier guidance
(:mod:`jaxgen.recipes.guidance`) with every sampler.

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
from jaxgen.diffusion import continuous
from jaxgen.nets import UNet, UNetConfig, precision
from jaxgen.recipes import guidance as guide
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.guidance import GuidanceConfig
from jaxgen.recipes.super_resolution import (
    SuperResolutionConfig,
    evaluate_restoration,
    image_conditioning_for,
    inputs_for_batch,
    label_condition,
    sample_inputs,
)
from jaxgen.sde import samplers as sde_samplers

SAMPLERS: tuple[str, ...] = ("ancestral", "ddim", "dpm_solver", "unipc")
ODE_SAMPLERS: tuple[str, ...] = ("dpm_solver", "unipc")
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
      sampler: ``ancestral`` (``T`` steps), ``ddim`` (``sample_steps`` steps, noise
        ``ddim_eta``), or ``dpm_solver`` / ``unipc`` (``sample_steps`` model calls of
        DPM-Solver++ / UniPC of order ``solver_order`` on the ``spacing`` grid of
        :data:`jaxgen.sde.samplers.SPACINGS`, UniPC's ``B(h)`` ``unipc_variant``; they solve
        the probability-flow ODE of the schedule's continuous-time view,
        :class:`jaxgen.diffusion.continuous.ContinuousSchedule`, with ``x0`` clipped when
        ``clip_denoised``). The default grid is ``time_quadratic``: on the digits DDPM at
        5 calls it had FD 13.4 (DPM-Solver++ 2M) against 25.6 on ``log_snr``, whose first
        steps are spent at noise levels where the image is not yet formed (the log-SNR of
        Ho et al.'s schedule spans -10.1 to 9.2).
      guidance: condition dropout and default guidance of a class-conditional U-Net
        (``unet.num_classes > 0``; ignored otherwise).
      super_resolution: ``factor > 1`` makes this ``p(x | y)`` for ``y`` the image
        downsampled by ``factor`` (SR3 / a cascade stage; :mod:`jaxgen.recipes.super_resolution`).
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
    solver_order: int = 2
    spacing: str = "time_quadratic"
    unipc_variant: str = "bh2"
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)
    super_resolution: SuperResolutionConfig = dataclasses.field(
        default_factory=SuperResolutionConfig
    )


class DDPMRecipe(Recipe):
    """U-Net + L_simple + ancestral/DDIM sampling + variational bound."""

    family = "ddpm"
    config_class = DDPMConfig
    samplers = SAMPLERS
    sample_options = ("sampler", "num_steps", "eta", *guide.GUIDANCE_OPTIONS, "augmentation_level")
    eval_time_fields = (
        "sampler",
        "sample_steps",
        "ddim_eta",
        "clip_denoised",
        "solver_order",
        "spacing",
        "unipc_variant",
    )

    def setup(self) -> None:
        m: DDPMConfig = self.config.model
        check_choice("model.parameterization", m.parameterization, diffusion.PARAMETERIZATIONS)
        check_choice("model.sampler", m.sampler, SAMPLERS)
        check_choice("model.model_variance", m.model_variance, MODEL_VARIANCES)
        check_choice("model.spacing", m.spacing, sde_samplers.SPACINGS)
        check_choice("model.unipc_variant", m.unipc_variant, sde_samplers.UNIPC_VARIANTS)
        check_choice("model.solver_order", m.solver_order, sde_samplers.UNIPC_ORDERS)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"DDPM's U-Net needs (H, W, C) images, the dataset has shape {self.data_shape}"
            )
        schedule_kwargs = (
            {"beta_start": m.beta_start, "beta_end": m.beta_end}
            if m.schedule in ("linear", "scaled_linear")
            else {}
        )
        self.schedule = diffusion.make_schedule(m.schedule, m.num_timesteps, **schedule_kwargs)
        self.continuous = continuous.ContinuousSchedule(self.schedule)
        self.classes = guide.check_conditioning(
            m.unet.num_classes, self.num_classes, self.config.data.name
        )
        if not self.classes and m.guidance.guides:
            raise ConfigError(
                f"model.guidance.scale={m.guidance.scale!r} / rescale={m.guidance.rescale!r} "
                "ask for classifier-free guidance of an unconditional model "
                "(model.unet.num_classes = 0)"
            )
        self.image_conditioning = image_conditioning_for(m.super_resolution, self.data_shape)
        if self.image_conditioning is not None:
            self.sample_condition_split = self.config.eval.split  # held-out images
        abstract = nnx.eval_shape(lambda: self._make_unet(jax.random.key(0)))
        self.graphdef, _ = nnx.split(abstract)

    # ------------------------------------------------------------------ networks

    def _make_unet(self, key: jax.Array) -> UNet:
        unet = self.config.model.unet
        if self.image_conditioning is not None:
            unet = self.image_conditioning.unet_config(unet)
        return UNet(unet, image_shape=self.data_shape, rngs=nnx.Rngs(key))

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return nnx.to_pure_dict(nnx.split(self._make_unet(key))[1])

    def model_fn(
        self,
        params: Any,
        *,
        dropout_key: jax.Array | None = None,
        labels: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> Callable:
        """The network as the callable ``f(x, t)`` that the diffusion functions take (a
        class-conditional one at ``labels``, ``NULL_LABEL`` where None; a super-resolution
        one given ``image_inputs``, the condition's network inputs)."""
        if self.classes:
            cond = self.conditional_model_fn(
                params, dropout_key=dropout_key, image_inputs=image_inputs
            )
            return lambda x, t: cond(x, t, _labels_or_null(labels, x))
        unet, extra = precision.merge(self.graphdef, params), dict(image_inputs or {})

        def fn(x: jax.Array, t: jax.Array) -> jax.Array:
            return unet(x, t, key=dropout_key, **inputs_for_batch(extra, x.shape[0]))

        return fn

    def conditional_model_fn(
        self,
        params: Any,
        *,
        dropout_key: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> guide.ConditionalModel:
        """The class-conditional network as ``f(x, t, labels)`` (label -1: unconditional);
        an unconditional network ignores ``labels``."""
        if not self.classes:
            model = self.model_fn(params, dropout_key=dropout_key, image_inputs=image_inputs)
            return lambda x, t, labels: model(x, t)
        unet, extra = precision.merge(self.graphdef, params), dict(image_inputs or {})

        def fn(x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
            return unet(x, t, y=labels, key=dropout_key, **inputs_for_batch(extra, x.shape[0]))

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
        image_inputs = None
        if self.image_conditioning is not None:
            image_inputs = self.image_conditioning.training_inputs(
                batch[self.data_key], jax.random.fold_in(key, 3)
            )
        return diffusion.ddpm_loss(
            self.model_fn(
                params, dropout_key=dropout_key, labels=labels, image_inputs=image_inputs
            ),
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
        start=first_index)[i]`` alone). Options: ``sampler`` (one of :data:`SAMPLERS`,
        default ``model.sampler``), ``num_steps`` (the steps of DDIM, DPM-Solver++ or UniPC,
        default ``model.sample_steps``; given without ``sampler`` (and without ``eta``) it is a
        budget of model calls, spent on the measured best sampler and grid for it,
        :func:`jaxgen.sde.samplers.recommended_sampler`), ``eta`` (DDIM's noise, default
        ``model.ddim_eta``); guidance: ``guidance_scale`` (``s``, may be traced),
        ``guidance_interval`` (EDM sigma ``(low, high)``), ``guidance_rescale`` (phi, may be
        traced), ``classifier`` (``(log_prob_fn, params)``; the ancestral sampler shifts the
        mean, the others the eps/score); see :mod:`jaxgen.recipes.guidance`. A
        class-conditional model draws ``condition["label"]`` or, without it, classes
        ``(first_index + i) mod K``. The ODE solvers' output is clipped to ``[-1, 1]``.
        A super-resolution model super-resolves ``condition["low_resolution"]`` (or
        ``condition["image"]`` downsampled) with its augmentation at ``augmentation_level``
        (:mod:`jaxgen.recipes.super_resolution`)."""
        self.check_sample_options(options)
        image_inputs = sample_inputs(
            self.image_conditioning,
            condition,
            num_samples,
            key,
            first_index=first_index,
            options=options,
        )
        m: DDPMConfig = self.config.model
        sampler, num_steps, solver_options = self._sampler_plan(options)
        eta = options.get("eta")
        plan = guide.plan_guidance(
            options,
            m.guidance,
            num_classes=self.classes,
            condition=label_condition(
                condition,
                self.image_conditioning,
                class_conditional=bool(self.classes),
                options=options,
            ),
            num_samples=num_samples,
            first_index=first_index,
            sigma_range=guide.noise_range(self.schedule, 0, m.num_timesteps - 1),
        )
        ode = sampler in ODE_SAMPLERS
        # The ODE solvers call the network at fractional steps: guidance reads the path there.
        path = continuous.index_path(self.continuous) if ode else self.schedule
        model = self.model_fn(params, image_inputs=image_inputs)
        parameterization = m.parameterization
        if plan.labels is not None:
            model, parameterization = guide.guided_model(
                self.conditional_model_fn(params, image_inputs=image_inputs),
                plan,
                parameterization=m.parameterization,
                path=path,
                ancestral_schedule=self.schedule if sampler == "ancestral" else None,
                model_variance=m.model_variance,
            )
        keys = core.example_keys(key, num_samples, start=first_index)
        shape = (num_samples, *self.data_shape)
        if ode:
            score_fn = continuous.continuous_score_fn(
                model,
                self.continuous,
                parameterization=parameterization,
                clip_denoised=m.clip_denoised,
            )
            solve = (
                sde_samplers.dpm_solver_sample
                if sampler == "dpm_solver"
                else sde_samplers.unipc_sample
            )
            out = solve(
                score_fn, self.continuous, keys, shape, num_steps=num_steps, **solver_options
            )
            samples = out.samples if self.num_levels is None else jnp.clip(out.samples, -1.0, 1.0)
            return core.SamplerOutput(samples, out.nfe)  # continuous data (latents): unclipped
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
            num_steps=num_steps,
            eta=m.ddim_eta if eta is None else eta,
            **common,
        )

    def _sampler_plan(self, options: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]]:
        """``(sampler, num_steps, solver options)``: ``num_steps`` (without ``sampler`` and
        ``eta``) as a budget for :func:`jaxgen.sde.samplers.recommended_sampler`, else the
        named sampler (or ``model.sampler``) with the config's steps, order, grid and
        variant. A recommended sampler this recipe lacks (``edm``) is replaced by ``unipc``
        with the config's options. ``ConfigError`` for ``num_steps``/``eta`` with the
        ancestral sampler, ``eta`` with an ODE solver, or an order above the step count."""
        m: DDPMConfig = self.config.model
        named, num_steps, eta = options.get("sampler"), options.get("num_steps"), options.get("eta")
        if named is None and num_steps is not None and eta is None:
            try:
                rec = sde_samplers.recommended_sampler(num_steps)
            except ValueError as err:
                raise ConfigError(f"num_steps: {err}") from None
            if rec["sampler"] in ODE_SAMPLERS:
                return rec["sampler"], rec["num_steps"], rec["options"]
            named = "unipc"  # a row this recipe lacks (edm): the ODE solver it has
        sampler = named or m.sampler
        check_choice("sampler", sampler, SAMPLERS)
        if sampler == "ancestral" and (num_steps is not None or eta is not None):
            raise ConfigError(
                "num_steps and eta apply to the 'ddim' sampler (num_steps also to 'dpm_solver' "
                f"and 'unipc'); 'ancestral' takes all {m.num_timesteps} steps"
            )
        steps = m.sample_steps if num_steps is None else num_steps
        if sampler == "ddim":
            return sampler, steps, {}
        if eta is not None:
            raise ConfigError(f"eta applies to the 'ddim' sampler; {sampler!r} is deterministic")
        if isinstance(steps, int) and m.solver_order > steps:
            raise ConfigError(
                f"model.solver_order={m.solver_order} needs at least {m.solver_order} steps "
                f"of the {sampler!r} sampler, got num_steps={steps} (use solver_order <= "
                f"{steps} or more steps)"
            )
        solver_options: dict[str, Any] = dict(order=m.solver_order, spacing=m.spacing)
        if sampler == "unipc":
            solver_options["variant"] = m.unipc_variant
        return sampler, steps, solver_options

    def variational_bound(
        self, params: Any, images: jax.Array, key: jax.Array, labels: jax.Array | None = None
    ):
        """Per-example negative ELBO in nats, with the discretized decoder on the data's
        levels (a class-conditional model's at ``labels``, its unconditional one's without;
        a super-resolution model's given the downsampled ``images``, unaugmented: the bound
        on ``-log p(x | y)``)."""
        m: DDPMConfig = self.config.model
        image_inputs = None
        if self.image_conditioning is not None:
            image_inputs = self.image_conditioning.sampling_inputs(
                {"image": images}, images.shape[0], key, level=0.0
            )
        return diffusion.variational_bound(
            self.model_fn(params, labels=labels, image_inputs=image_inputs),
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
        restoration = evaluate_restoration(self, params, images, key)
        if self.classes and self.config.model.guidance.p_uncond == 0.0:
            return restoration
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
            **restoration,
        }


def _labels_or_null(labels: jax.Array | None, x: jax.Array) -> jax.Array:
    if labels is None:
        return jnp.full((x.shape[0],), guide.NULL_LABEL, jnp.int32)
    return labels
