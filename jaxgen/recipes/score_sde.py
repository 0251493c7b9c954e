"""Score-based generative models through SDEs (Song et al. 2021) as a recipe.

A U-Net (DDPM++ / NCSN++ options in :class:`jaxgen.nets.unet.UNetConfig`) trained with
denoising score matching under a VP, sub-VP or VE SDE; sampled with any of the samplers in
:mod:`jaxgen.sde.samplers`; evaluated with the exact likelihood of the probability-flow ODE
(dequantized, in bits/dim on the data's levels, the same unit as DDPM's bound).

With ``model.unet.num_classes = K > 0`` the network is class-conditional: training drops
labels with probability ``model.guidance.p_uncond`` and every sampler takes classifier-free
or classifier guidance as a transform of the score (:mod:`jaxgen.recipes.guidance`).

The maths lives in :mod:`jaxgen.sde` (pure JAX); this file only connects it to the Flax
network and to the training engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core
from jaxgen import sde as sde_lib
from jaxgen.config import ConfigError
from jaxgen.nets import UNet, precision
from jaxgen.recipes import guidance as guide
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.score_sde_config import NOISE_CONDITIONINGS, SAMPLERS, ScoreSDEConfig
from jaxgen.recipes.super_resolution import (
    evaluate_restoration,
    image_conditioning_for,
    inputs_for_batch,
    label_condition,
    sample_inputs,
)
from jaxgen.sde import likelihood, samplers, score_matching

__all__ = ["NOISE_CONDITIONINGS", "SAMPLERS", "ScoreSDEConfig", "ScoreSDERecipe"]


class ScoreSDERecipe(Recipe):
    """U-Net + denoising score matching + SDE/ODE samplers + ODE likelihood."""

    family = "score_sde"
    config_class = ScoreSDEConfig
    samplers = SAMPLERS
    sample_options = ("sampler", "num_steps", *guide.GUIDANCE_OPTIONS, "augmentation_level")
    eval_time_fields = (
        "sampler",
        "sample_steps",
        "sample_t_min",
        "predictor",
        "corrector",
        "snr",
        "num_corrector_steps",
        "solver_order",
        "spacing",
        "unipc_variant",
        "denoise",
        "likelihood_divergence",
        "likelihood_probes",
        "likelihood_rtol",
        "likelihood_atol",
        "likelihood_t_min",
    )

    def setup(self) -> None:
        m: ScoreSDEConfig = self.config.model
        check_choice("model.sde", m.sde, tuple(sde_lib.SDES))
        check_choice("model.parameterization", m.parameterization, sde_lib.PARAMETERIZATIONS)
        check_choice("model.weighting", m.weighting, score_matching.WEIGHTINGS)
        check_choice("model.sampler", m.sampler, SAMPLERS)
        check_choice("model.spacing", m.spacing, samplers.SPACINGS)
        check_choice("model.unipc_variant", m.unipc_variant, samplers.UNIPC_VARIANTS)
        check_choice("model.solver_order", m.solver_order, samplers.UNIPC_ORDERS)
        check_choice("model.noise_conditioning", m.noise_conditioning, NOISE_CONDITIONINGS)
        check_choice("model.loss_reduction", m.loss_reduction, score_matching.REDUCTIONS)
        if m.importance_sampling and m.weighting != "likelihood":
            raise ConfigError(
                f"model.importance_sampling needs model.weighting='likelihood', got {m.weighting!r}"
            )
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"the score model's U-Net needs (H, W, C) images, the dataset has shape "
                f"{self.data_shape}"
            )
        if m.sde == "ve":
            self.sde = sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max)
        else:
            self.sde = sde_lib.make_sde(m.sde, beta_min=m.beta_min, beta_max=m.beta_max)
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

    def noise_input(self, t: jax.Array) -> jax.Array:
        """The network's conditioning input for time ``t`` (see ``noise_conditioning``)."""
        kind = self.config.model.noise_conditioning
        if kind == "auto":
            kind = "log_sigma" if self.config.model.sde == "ve" else "time"
        if kind == "time":
            return 999.0 * t
        return jnp.log(self.sde.sigma_ratio(t))

    def network(
        self,
        params: Any,
        *,
        dropout_key: jax.Array | None = None,
        labels: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> Callable:
        """The raw network ``net(x, c)`` (``c``: the conditioning input); a class-conditional
        one at ``labels`` (``NULL_LABEL``, the unconditional model, where None); a
        super-resolution one given ``image_inputs`` (the condition's network inputs)."""
        unet, extra = precision.merge(self.graphdef, params), dict(image_inputs or {})
        if not self.classes:

            def net(x: jax.Array, c: jax.Array) -> jax.Array:
                return unet(x, c, key=dropout_key, **inputs_for_batch(extra, x.shape[0]))

            return net

        def cond_net(x: jax.Array, c: jax.Array) -> jax.Array:
            y = labels
            if y is None:
                y = jnp.full((x.shape[0],), guide.NULL_LABEL, jnp.int32)
            return unet(x, c, y=y, key=dropout_key, **inputs_for_batch(extra, x.shape[0]))

        return cond_net

    def score_fn(
        self,
        params: Any,
        *,
        labels: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> sde_lib.ScoreFn:
        """The trained model as ``score_fn(x, t)`` for the samplers and the likelihood (a
        class-conditional model's at ``labels``, its unconditional one's where None)."""
        m: ScoreSDEConfig = self.config.model
        net = self.network(params, labels=labels, image_inputs=image_inputs)
        return sde_lib.network_to_score(
            net,
            self.sde,
            parameterization=m.parameterization,
            sigma_data=m.sigma_data,
            noise_input=self.noise_input,
        )

    def conditional_score_fn(
        self, params: Any, *, image_inputs: Mapping[str, jax.Array] | None = None
    ) -> guide.ConditionalModel:
        """The class-conditional score ``s(x, t, labels) = grad_x log p_t(x | labels)``."""
        return lambda x, t, labels: self.score_fn(params, labels=labels, image_inputs=image_inputs)(
            x, t
        )

    def noise_process(self) -> tuple:
        """A hashable description of the forward SDE (float ``t``), equal to that of a noisy
        classifier trained for this model."""
        m: ScoreSDEConfig = self.config.model
        return guide.sde_noise_process(
            m.sde,
            beta_min=m.beta_min,
            beta_max=m.beta_max,
            sigma_min=m.sigma_min,
            sigma_max=m.sigma_max,
        )

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        m: ScoreSDEConfig = self.config.model
        dropout_key, loss_key = jax.random.split(key)
        labels = None
        if self.classes:
            labels = guide.drop_labels(
                jax.random.fold_in(key, 2),
                guide.batch_labels(batch, self.config.data.name),
                m.guidance.p_uncond,
            )
        image_inputs = None
        if self.image_conditioning is not None:
            image_inputs = self.image_conditioning.training_inputs(
                batch[self.data_key], jax.random.fold_in(key, 3)
            )
        return score_matching.dsm_loss(
            self.network(params, dropout_key=dropout_key, labels=labels, image_inputs=image_inputs),
            self.sde,
            batch[self.data_key],
            loss_key,
            parameterization=m.parameterization,
            weighting=m.weighting,
            importance_sampling=m.importance_sampling,
            t_min=m.train_t_min,
            reduce=m.loss_reduction,
            sigma_data=m.sigma_data,
            noise_input=self.noise_input,
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
        """Images in the data range (the sampler's output clipped to [-1, 1], as when
        images are written; :meth:`sample_raw` returns the raw output) and the number of
        network evaluations. Example ``i`` is example ``first_index + i`` of the draw with
        ``key``. Options: ``sampler`` (one of :data:`SAMPLERS`, default ``model.sampler``)
        and ``num_steps`` (default ``model.sample_steps``); ``num_steps`` without
        ``sampler`` is a budget of model calls, spent on the measured best sampler and grid
        for it (:func:`jaxgen.sde.samplers.recommended_sampler`); guidance (``guidance_scale``,
        ``guidance_interval``, ``guidance_rescale``, ``classifier``) as a transform of the
        score, the same for every sampler (:mod:`jaxgen.recipes.guidance`). A class-
        conditional model draws ``condition["label"]`` or classes ``(first_index + i) mod
        K``. A super-resolution model super-resolves ``condition["low_resolution"]`` (or
        ``condition["image"]`` downsampled) at ``augmentation_level``."""
        out = self.sample_raw(
            params, key, num_samples, first_index=first_index, condition=condition, **options
        )
        if self.num_levels is None:  # continuous data (latents) are not bounded
            return out
        return core.SamplerOutput(jnp.clip(out.samples, -1.0, 1.0), out.nfe)

    def sample_raw(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> core.SamplerOutput:
        """The chosen sampler's output as it is (see :meth:`sample`)."""
        self.check_sample_options(options)
        image_inputs = sample_inputs(
            self.image_conditioning,
            condition,
            num_samples,
            key,
            first_index=first_index,
            options=options,
        )
        m: ScoreSDEConfig = self.config.model
        sampler, steps, solver_options = self._sampler_plan(options)
        keys = core.example_keys(key, num_samples, start=first_index)
        shape = (num_samples, *self.data_shape)
        t_end = self.sde.t_min if m.sample_t_min is None else m.sample_t_min
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
            sigma_range=guide.noise_range(self.sde, t_end, self.sde.T),
        )
        score_fn = self.score_fn(params, image_inputs=image_inputs)
        if plan.labels is not None:
            score_fn, _ = guide.guided_model(
                self.conditional_score_fn(params, image_inputs=image_inputs),
                plan,
                parameterization="score",
                path=self.sde,
            )
        common = dict(num_steps=steps, t_min=m.sample_t_min)
        if sampler == "pc":
            return samplers.pc_sample(
                score_fn,
                self.sde,
                keys,
                shape,
                predictor=m.predictor,
                corrector=m.corrector,
                snr=m.snr,
                num_corrector_steps=m.num_corrector_steps,
                denoise=m.denoise,
                **common,
            )
        if sampler == "euler_maruyama":
            return samplers.euler_maruyama_sample(
                score_fn, self.sde, keys, shape, denoise=m.denoise, **common
            )
        if sampler == "ode_adaptive" and plan.labels is not None:
            return self._adaptive_per_example(params, plan, keys, common, image_inputs)
        if sampler in ("ode_euler", "ode_heun", "ode_adaptive"):
            return samplers.probability_flow_sample(
                score_fn, self.sde, keys, shape, method=sampler[len("ode_") :], **common
            )
        if sampler == "dpm_solver":
            return samplers.dpm_solver_sample(
                score_fn, self.sde, keys, shape, **solver_options, **common
            )
        if sampler == "unipc":
            return samplers.unipc_sample(
                score_fn, self.sde, keys, shape, **solver_options, **common
            )
        return samplers.edm_sample(score_fn, self.sde, keys, shape, **solver_options, **common)

    def _sampler_plan(self, options: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]]:
        """``(sampler, num_steps, options of the few-step solver)``: the named sampler (or
        ``model.sampler``) with the config's order/grid, or, for ``num_steps`` with no
        sampler named, the recommended sampler for that budget of calls. ``ConfigError`` for
        an order the step count cannot support."""
        m: ScoreSDEConfig = self.config.model
        named = options.get("sampler")
        num_steps = options.get("num_steps")
        if named is None and num_steps is not None:
            try:
                plan = samplers.recommended_sampler(num_steps)
            except ValueError as err:
                raise ConfigError(f"num_steps: {err}") from None
            return plan["sampler"], plan["num_steps"], plan["options"]
        sampler = named or m.sampler
        check_choice("sampler", sampler, SAMPLERS)
        steps = m.sample_steps if num_steps is None else num_steps
        solver_options: dict[str, Any] = {}
        if sampler in ("dpm_solver", "unipc"):
            if isinstance(steps, int) and m.solver_order > steps:
                raise ConfigError(
                    f"model.solver_order={m.solver_order} needs at least {m.solver_order} "
                    f"steps of the {sampler!r} sampler, got num_steps={steps} (use "
                    f"solver_order <= {steps} or more steps)"
                )
            solver_options = dict(order=m.solver_order, spacing=m.spacing)
            if sampler == "unipc":
                solver_options["variant"] = m.unipc_variant
        return sampler, steps, solver_options

    def _adaptive_per_example(
        self,
        params: Any,
        plan: guide.GuidancePlan,
        keys: jax.Array,
        common: dict,
        image_inputs: Mapping[str, jax.Array] | None,
    ) -> core.SamplerOutput:
        """The adaptive probability-flow solve of a labelled draw: it solves each example on
        its own (``vmap``), so each example's guided score is built with its own label (and
        its own image condition)."""

        def one(key: jax.Array, label: jax.Array, inputs: Any) -> core.SamplerOutput:
            inputs = jax.tree.map(lambda a: a[None], inputs)
            score_fn, _ = guide.guided_model(
                self.conditional_score_fn(params, image_inputs=inputs),
                plan._replace(labels=label[None]),
                parameterization="score",
                path=self.sde,
            )
            out = samplers.probability_flow_sample(
                score_fn, self.sde, key[None], (1, *self.data_shape), method="adaptive", **common
            )
            return core.SamplerOutput(out.samples[0], jnp.reshape(out.nfe, (-1,))[0])

        return jax.vmap(one)(keys, plan.labels, image_inputs or {})

    def bits_per_dim(
        self, params: Any, images: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Per-example dequantized bits/dim from the probability-flow ODE (an upper bound
        on the discrete data's bits/dim, in the unit of DDPM's discretized bound)."""
        m: ScoreSDEConfig = self.config.model

        def bpd(score_fn: sde_lib.ScoreFn, x: jax.Array, keys: jax.Array):
            return likelihood.bits_per_dim(
                score_fn,
                self.sde,
                x,
                keys,
                num_levels=self.num_levels,
                dequantize=self.num_levels is not None,
                divergence=m.likelihood_divergence,
                num_probes=m.likelihood_probes,
                t_min=m.likelihood_t_min,
                rtol=m.likelihood_rtol,
                atol=m.likelihood_atol,
            )

        if self.image_conditioning is None:
            return bpd(self.score_fn(params), images, key)
        # -log p(x | y), y unaugmented: the ODE is solved per example, so each example's
        # score is built with its own condition (and its own key of the batch's keys).
        inputs = self.image_conditioning.sampling_inputs(
            {"image": images}, images.shape[0], key, level=0.0
        )
        keys = core.example_keys(key, images.shape[0])

        def one(x: jax.Array, k: jax.Array, example_inputs: Any):
            example_inputs = jax.tree.map(lambda a: a[None], example_inputs)
            score_fn = self.score_fn(params, image_inputs=example_inputs)
            return jax.tree.map(lambda a: a[0], bpd(score_fn, x[None], k))

        return jax.vmap(one)(images, keys, inputs)

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Test bits/dim through the probability-flow ODE (Song et al. Sec. 4.3).

        Chunks of ``eval.batch_size`` images are split over all devices; the last chunk is
        padded so the solve compiles once. A class-conditional model is evaluated as its
        unconditional model (null label; nothing when trained with ``p_uncond = 0``)."""
        restoration = evaluate_restoration(self, params, images, key)
        if self.classes and self.config.model.guidance.p_uncond == 0.0:
            return restoration
        bpd_all, terms = evaluate_in_chunks(
            self.bits_per_dim, params, images, key, batch_size=self.config.eval.batch_size
        )
        return {
            "bits_per_dim": float(bpd_all.mean()),
            "bits_per_dim_stderr": float(bpd_all.std(ddof=1) / np.sqrt(len(bpd_all)))
            if len(bpd_all) > 1
            else 0.0,
            "likelihood_nfe_mean": float(terms["nfe"].mean()),
            "num_examples": float(len(images)),
            **restoration,
        }
