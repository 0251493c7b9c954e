"""Flow matching and rectified flow (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024) as
a recipe: a U-Net (images) or a :class:`~jaxgen.nets.DenoisingMLP` (flat data) regressed on
the conditional velocity of a Gaussian path, sampled by integrating the velocity ODE.

**Convention: data at t = 0, source at t = 1.** For a pair ``(x_data, x_source)`` from the
coupling and ``t`` from the time sampler, ``x_t = alpha(t) x_data + sigma(t) x_source`` and
the loss is ``||f(x_t, t) - target||^2 / D`` (target ``u = alpha' x_data + sigma' x_source``
for the velocity; :func:`jaxgen.flow_matching.flow_matching_loss`). Samples solve ``dx/dt =
u(x, t)`` from ``x(1) = x_source`` to ``t = 0``. The source is ``N(0, I)`` or another data
set (data-to-data transport: the moons into eight Gaussians, digits of one class into
another). On a Gaussian source the velocity is also a score (``velocity_to_score``), so
DPM-Solver++ and EDM's sampler run through :class:`jaxgen.flow_matching.PathSDE`, and the
exact likelihood (instantaneous change of variables) gives bits/dim on the data's levels.

Teacher pairs (reflow, one-step distillation; Liu et al. 2023) are made by the run floor
(:mod:`jaxgen.run.teacher`): the batch then carries the source column ``"source"``, and
``objective="distill"`` trains ``f(x_source, 1) = x_source - x_teacher`` only.

With ``model.unet.num_classes = K > 0`` the U-Net is class-conditional: labels are dropped
with ``model.guidance.p_uncond`` and samples take classifier-free guidance ``u + s (c - u)``
of the velocity (:mod:`jaxgen.recipes.guidance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core
from jaxgen import flow_matching as fm
from jaxgen.config import ConfigError
from jaxgen.data.registry import DATASET_NAMES, load_dataset
from jaxgen.nets import DenoisingMLP, UNet, precision
from jaxgen.recipes import guidance as guide
from jaxgen.recipes.base import Recipe, check_choice, evaluate_in_chunks
from jaxgen.recipes.flow_matching_config import (
    GAUSSIAN,
    GAUSSIAN_ONLY_SAMPLERS,
    SAMPLERS,
    FlowMatchingConfig,
    check_config,
)
from jaxgen.recipes.super_resolution import (
    evaluate_restoration,
    image_conditioning_for,
    inputs_for_batch,
    label_condition,
    sample_inputs,
)
from jaxgen.sde import samplers as sde_samplers

__all__ = ["FlowMatchingConfig", "FlowMatchingRecipe", "SAMPLERS"]

TIME_SCALE = 999.0  # the network sees 999 t (the DDPM step scale of its sinusoidal features)
SINGULAR_END = 1e-3  # kept away from t where a converted parameterization divides by zero
GUIDANCE_OPTIONS = ("guidance_scale", "guidance_interval", "guidance_rescale")
STRAIGHTNESS_EXAMPLES = 128


class FlowMatchingRecipe(Recipe):
    """U-Net / MLP + conditional flow matching + ODE samplers + exact likelihood."""

    family = "flow_matching"
    config_class = FlowMatchingConfig
    samplers = SAMPLERS
    sample_options = ("sampler", "num_steps", *GUIDANCE_OPTIONS, "augmentation_level")
    eval_time_fields = (
        "sampler",
        "sample_steps",
        "sample_t_min",
        "adaptive_rtol",
        "adaptive_atol",
        "source_sample_split",
        "likelihood_divergence",
        "likelihood_probes",
        "likelihood_rtol",
        "likelihood_atol",
        "likelihood_t_min",
    )

    def setup(self) -> None:
        m: FlowMatchingConfig = self.config.model
        check_config(m)
        self.images = len(self.data_shape) == 3
        if not self.images and len(self.data_shape) != 1:
            raise ConfigError(
                f"flow matching needs (H, W, C) images or flat (D,) data, the dataset has "
                f"shape {self.data_shape}"
            )
        try:
            kwargs = {"linear": {"sigma_min": m.sigma_min}, "cosine": {}}.get(
                m.path, {"beta_min": m.beta_min, "beta_max": m.beta_max}
            )
            self.path = fm.make_path(m.path, **kwargs)
        except ValueError as err:
            raise ConfigError(f"model.path={m.path!r}: {err}") from None
        vp = m.path == "vp"
        self.train_t_min = (1e-5 if vp else 0.0) if m.train_t_min is None else m.train_t_min
        default_end = SINGULAR_END if vp or m.parameterization == "x0" else 0.0
        self.t_end = default_end if m.sample_t_min is None else m.sample_t_min
        self.t_start = 1.0 - SINGULAR_END if m.parameterization == "eps" else 1.0
        self.likelihood_t_min = self.t_end if m.likelihood_t_min is None else m.likelihood_t_min
        classes = m.unet.num_classes if self.images else 0
        self.classes = guide.check_conditioning(classes, self.num_classes, self.config.data.name)
        if not self.classes and m.guidance.guides:
            raise ConfigError(
                f"model.guidance.scale={m.guidance.scale!r} / rescale={m.guidance.rescale!r} "
                "ask for classifier-free guidance of an unconditional model "
                "(model.unet.num_classes = 0)"
            )
        self.source_train = self.source_sample = None
        if m.source != GAUSSIAN and m.teacher_workdir is None:
            self.source_train = self.source_rows(m.source_split)
            self.source_sample = self.source_rows(m.source_sample_split)
        self.image_conditioning = image_conditioning_for(m.super_resolution, self.data_shape)
        if self.image_conditioning is not None:
            self.sample_condition_split = self.config.eval.split  # held-out images
        abstract = nnx.eval_shape(lambda: self._make_net(jax.random.key(0)))
        self.graphdef, _ = nnx.split(abstract)

    def source_rows(self, split: str) -> np.ndarray:
        """The source data set's ``split`` (one class of it with ``model.source_class``), as
        float32 rows of the data's shape; ``ConfigError`` for an unknown name, another shape
        or an empty selection."""
        m: FlowMatchingConfig = self.config.model
        if m.source not in DATASET_NAMES:
            raise ConfigError(
                f"model.source: unknown source {m.source!r} (known: gaussian, "
                f"{', '.join(DATASET_NAMES)})"
            )
        try:
            data = load_dataset(m.source, split, data_dir=self.config.data.data_dir)
        except ValueError as err:
            raise ConfigError(f"model.source={m.source!r}: {err}") from None
        if tuple(data.event_shape) != self.data_shape:
            raise ConfigError(
                f"model.source={m.source!r} has examples of shape {tuple(data.event_shape)}, the "
                f"data {self.config.data.name!r} {self.data_shape}: source and target shapes "
                "must be equal"
            )
        rows = data.source.get(np.arange(len(data.source)))
        x = np.asarray(rows[data.data_key], np.float32)
        if m.source_class is not None:
            if "label" not in rows:
                raise ConfigError(f"model.source_class: {m.source!r} has no labels")
            x = x[np.asarray(rows["label"]) == m.source_class]
        if len(x) == 0:
            raise ConfigError(
                f"model.source={m.source!r} split {split!r} class {m.source_class!r} is empty"
            )
        return x

    # ------------------------------------------------------------------ networks

    def _make_net(self, key: jax.Array) -> nnx.Module:
        m: FlowMatchingConfig = self.config.model
        if self.images:
            unet = m.unet
            if self.image_conditioning is not None:
                unet = self.image_conditioning.unet_config(unet)
            return UNet(unet, image_shape=self.data_shape, rngs=nnx.Rngs(key))
        return DenoisingMLP(self.data_shape[0], m.mlp_hidden, rngs=nnx.Rngs(key))

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        del init_batch  # no data-dependent initialisation
        return nnx.to_pure_dict(nnx.split(self._make_net(key))[1])

    def network(
        self,
        params: Any,
        *,
        labels: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The raw network ``f(x, t)`` (its ``parameterization``); a class-conditional one at
        ``labels`` (``NULL_LABEL``, the unconditional model, where None); a super-resolution
        one given ``image_inputs`` (the condition's network inputs)."""
        net = precision.merge(self.graphdef, params)

        def fn(x: jax.Array, t: jax.Array) -> jax.Array:
            kwargs = inputs_for_batch(image_inputs, x.shape[0])
            if self.classes:
                y = labels if labels is not None else jnp.full((x.shape[0],), guide.NULL_LABEL)
                kwargs["y"] = jnp.asarray(y, jnp.int32)
            return net(x, TIME_SCALE * t, key=dropout_key, **kwargs)

        return fn

    def velocity_fn(
        self,
        params: Any,
        *,
        labels: jax.Array | None = None,
        image_inputs: Mapping[str, jax.Array] | None = None,
    ) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The model as the velocity ``u(x, t)`` the ODE samplers integrate (converted from
        ``x0`` / ``eps`` on the path, :func:`jaxgen.flow_matching.convert_model`)."""
        net = self.network(params, labels=labels, image_inputs=image_inputs)
        param = self.config.model.parameterization
        if param == "velocity":
            return net
        return fm.convert_model(net, self.path, source=param, target="velocity")

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Per-example conditional flow matching (or, for ``objective="distill"``, one-step
        distillation at ``t = 1``), with the pair's transport cost as a term."""
        m: FlowMatchingConfig = self.config.model
        dropout_key, source_key, loss_key, couple_key = jax.random.split(key, 4)
        labels = None
        if self.classes:
            labels = guide.drop_labels(
                jax.random.fold_in(key, 5),
                guide.batch_labels(batch, self.config.data.name),
                m.guidance.p_uncond,
            )
        x_data = batch[self.data_key]
        image_inputs = None
        if self.image_conditioning is not None:
            image_inputs = self.image_conditioning.training_inputs(
                x_data, jax.random.fold_in(key, 6)
            )
        net = self.network(
            params, labels=labels, dropout_key=dropout_key, image_inputs=image_inputs
        )
        if m.objective == "distill":
            velocity = net if m.parameterization == "velocity" else self.velocity_fn(params)
            per_example, terms = fm.distillation_loss(velocity, batch["source"], x_data)
            return per_example, {"mse": terms["mse"]}
        x_source = self._training_source(batch, x_data, source_key)
        try:
            if m.coupling == "paired":
                x_source, x_data = fm.paired_coupling(x_source, x_data)
            elif m.coupling.startswith("ot_"):
                x_source, x_data = fm.ot_coupling(
                    x_source,
                    x_data,
                    method=m.coupling[3:],
                    key=couple_key,
                    epsilon=m.sinkhorn_epsilon,
                )
        except ValueError as err:
            raise ConfigError(f"model.coupling={m.coupling!r}: {err}") from None
        per_example, terms = fm.flow_matching_loss(
            net,
            self.path,
            x_data,
            loss_key,
            x_source=x_source,
            parameterization=m.parameterization,
            time_sampler=m.time_sampler,
            t_min=self.train_t_min,
            loc=m.logit_normal_loc,
            scale=m.logit_normal_scale,
        )
        terms = dict(terms, transport_cost=fm.transport_cost(x_source, x_data))
        return per_example, terms

    def _training_source(self, batch: Mapping[str, jax.Array], x_data: jax.Array, key: jax.Array):
        if "source" in batch:  # given pairs (a paired source data set, a teacher's pairs)
            return batch["source"]
        if self.config.model.coupling == "paired":
            raise ConfigError("model.coupling='paired': the batch has no 'source' column")
        if self.source_train is None:
            return jax.random.normal(key, x_data.shape, x_data.dtype)
        index = jax.random.randint(key, (x_data.shape[0],), 0, len(self.source_train))
        return jnp.asarray(self.source_train)[index].astype(x_data.dtype)

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
        """``num_samples`` samples (images clipped to [-1, 1]) and the network evaluations.
        Example ``i`` is example ``first_index + i`` of the draw: its Gaussian source from
        ``core.example_keys(key, num_samples, start=first_index)[i]`` alone, or source row
        ``(first_index + i) mod N`` of ``model.source_sample_split``. Options: ``sampler``
        (:data:`SAMPLERS`, default ``model.sampler``), ``num_steps`` (default
        ``model.sample_steps``; not for ``adaptive``), and for a class-conditional model
        ``guidance_scale`` / ``guidance_interval`` / ``guidance_rescale`` of the velocity;
        its classes are ``condition["label"]`` or ``(first_index + i) mod K``. A
        super-resolution model super-resolves ``condition["low_resolution"]`` (or
        ``condition["image"]`` downsampled) at ``augmentation_level``."""
        _, out = self.sample_pairs(
            params, key, num_samples, first_index=first_index, condition=condition, **options
        )
        return out

    def sample_pairs(
        self,
        params: Any,
        key: jax.Array,
        num_samples: int,
        *,
        first_index: int | jax.Array = 0,
        condition: Mapping[str, jax.Array] | None = None,
        **options: Any,
    ) -> tuple[jax.Array | None, core.SamplerOutput]:
        """``(x_source, samples)``: :meth:`sample` with the source it started from (None for
        the SDE samplers, which draw their own prior)."""
        self.check_sample_options(options)
        image_inputs = sample_inputs(
            self.image_conditioning,
            condition,
            num_samples,
            key,
            first_index=first_index,
            options=options,
        )
        m: FlowMatchingConfig = self.config.model
        sampler = options.get("sampler") or m.sampler
        check_choice("sampler", sampler, SAMPLERS)
        num_steps = options.get("num_steps")
        steps = m.sample_steps if num_steps is None else num_steps
        if sampler == "adaptive" and num_steps is not None:
            raise ConfigError("num_steps does not apply to the 'adaptive' sampler (tolerances do)")
        if sampler in GAUSSIAN_ONLY_SAMPLERS and self.source_train is not None:
            raise ConfigError(
                f"sampler {sampler!r} needs a Gaussian source; this model transports "
                f"{m.source!r} (use euler, midpoint, heun, rk4 or adaptive)"
            )
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
            sigma_range=self._noise_range(),
        )
        keys = core.example_keys(key, num_samples, start=first_index)
        shape = (num_samples, *self.data_shape)
        if self.source_sample is None:
            x_source = fm.samplers.start_state(keys, shape, None)
        else:
            index = (first_index + jnp.arange(num_samples)) % len(self.source_sample)
            x_source = jnp.asarray(self.source_sample)[index]
        if sampler == "adaptive" and plan.labels is not None:
            out = self._adaptive_per_example(params, plan, x_source, image_inputs)
        else:
            velocity = self._guided_velocity(params, plan, image_inputs)
            out = self._solve(velocity, sampler, keys, shape, x_source, steps)
        bounded = self.images and self.num_levels is not None  # latents are not bounded
        samples = jnp.clip(out.samples, -1.0, 1.0) if bounded else out.samples
        source = None if sampler in GAUSSIAN_ONLY_SAMPLERS else x_source
        return source, core.SamplerOutput(samples, out.nfe)

    def _guided_velocity(self, params: Any, plan: guide.GuidancePlan, image_inputs=None):
        """The velocity of ``plan``: classifier-free guidance ``u + s (c - u)`` is taken in
        v-space (``v = alpha x_source - sigma x_data``, where Lin et al.'s rescale is
        defined); CFG commutes with the affine map ``v <-> u`` (``alpha^2 + sigma^2 > 0``)."""
        if plan.labels is None:
            return self.velocity_fn(params, image_inputs=image_inputs)

        def cond_v(x: jax.Array, t: jax.Array, labels: jax.Array) -> jax.Array:
            u = self.velocity_fn(params, labels=labels, image_inputs=image_inputs)
            return fm.convert_model(u, self.path, source="velocity", target="v")(x, t)

        model, _ = guide.guided_model(cond_v, plan, parameterization="v", path=self.path)
        return fm.convert_model(model, self.path, source="v", target="velocity")

    def _solve(self, velocity, sampler, keys, shape, x_source, steps) -> core.SamplerOutput:
        m: FlowMatchingConfig = self.config.model
        ends = {"t_min": self.t_end, "t_max": self.t_start}
        if sampler == "adaptive":
            return fm.adaptive_sample(
                velocity,
                keys,
                shape,
                source=x_source,
                rtol=m.adaptive_rtol,
                atol=m.adaptive_atol,
                **ends,
            )
        if sampler in GAUSSIAN_ONLY_SAMPLERS:
            score = fm.velocity_to_score(velocity, self.path)
            sde = fm.PathSDE(self.path)
            t_min = self.t_end if self.t_end > 0 else None
            if sampler == "dpm_solver":
                return sde_samplers.dpm_solver_sample(
                    score, sde, keys, shape, num_steps=steps, t_min=t_min
                )
            if sampler == "unipc":
                return sde_samplers.unipc_sample(
                    score, sde, keys, shape, num_steps=steps, t_min=t_min
                )
            return sde_samplers.edm_sample(score, sde, keys, shape, num_steps=steps, t_min=t_min)
        solver = {
            "euler": fm.euler_sample,
            "midpoint": fm.midpoint_sample,
            "heun": fm.heun_sample,
            "rk4": fm.rk4_sample,
        }[sampler]
        return solver(velocity, keys, shape, source=x_source, num_steps=steps, **ends)

    def _adaptive_per_example(self, params, plan, x_source, image_inputs) -> core.SamplerOutput:
        """The adaptive solve of a labelled draw, each example with its own guided velocity
        (the solver calls the velocity one example at a time)."""

        def one(x1: jax.Array, label: jax.Array, inputs: Any) -> core.SamplerOutput:
            inputs = jax.tree.map(lambda a: a[None], inputs)
            velocity = self._guided_velocity(params, plan._replace(labels=label[None]), inputs)
            out = self._solve(velocity, "adaptive", None, (1, *self.data_shape), x1[None], 0)
            return core.SamplerOutput(out.samples[0], jnp.reshape(out.nfe, (-1,))[0])

        out = jax.vmap(one)(x_source, plan.labels, image_inputs or {})
        return core.SamplerOutput(out.samples, jnp.max(out.nfe))

    def _noise_range(self) -> tuple[float, float]:
        """The samplers' EDM noise range ``sigma / alpha`` from ``t_end`` to ``t_start``."""
        with jax.ensure_compile_time_eval():
            t = jnp.asarray([self.t_end, self.t_start])
            alpha, sigma = (np.asarray(v, np.float64) for v in self.path.coefficients(t)[:2])
        ratio = [s / a if a > 0 else np.inf for a, s in zip(alpha, sigma, strict=True)]
        return float(ratio[0]), float(ratio[1])

    # ------------------------------------------------------------------ evaluation

    def bits_per_dim(
        self, params: Any, images: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Per-example bits/dim ``-(log p(y) + D log w) / (D ln 2)`` of the dequantised data
        through the exact ODE likelihood ``log p(x) = log N(x(1)) + int div u dt``
        (:func:`jaxgen.flow_matching.bits_per_dim`; the unconditional model)."""
        m: FlowMatchingConfig = self.config.model
        return fm.bits_per_dim(
            self.velocity_fn(params),
            images,
            key,
            num_levels=self.num_levels,
            dequantize=self.num_levels is not None,
            t_min=self.likelihood_t_min,
            t_max=self.t_start,
            divergence=m.likelihood_divergence,
            num_probes=m.likelihood_probes,
            rtol=m.likelihood_rtol,
            atol=m.likelihood_atol,
        )

    def _straightness(self, params: Any, x_source: jax.Array):
        return fm.straightness(self.velocity_fn(params), x_source, num_steps=10)

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Test bits/dim through the exact likelihood (Gaussian source; the unconditional
        model of a class-conditional one, nothing when ``p_uncond = 0``), and Liu et al.'s
        straightness ``E int ||(x_1 - x_0) - u(x_t, t)||^2 dt`` with the transport cost of
        the flow from :data:`STRAIGHTNESS_EXAMPLES` sources."""
        m: FlowMatchingConfig = self.config.model
        out: dict[str, float] = evaluate_restoration(self, params, images, key)
        if (self.classes and m.guidance.p_uncond == 0.0) or self.image_conditioning is not None:
            return out  # (a super-resolution model: its restoration metrics only)
        if m.objective == "flow_matching" and self.t_end == 0.0 and self.t_start == 1.0:
            n = STRAIGHTNESS_EXAMPLES
            if self.source_sample is None:
                shape = (n, *self.data_shape)
                x1 = fm.samplers.start_state(jax.random.fold_in(key, 7), shape, None)
            else:
                x1 = jnp.asarray(self.source_sample[np.arange(n) % len(self.source_sample)])
            s, terms = jax.jit(self._straightness)(params, x1)
            out["straightness"] = float(np.mean(s))
            out["transport_cost"] = float(np.mean(terms["transport_cost"]))
        if m.source == GAUSSIAN and m.objective == "flow_matching":
            bpd, terms = evaluate_in_chunks(
                self.bits_per_dim, params, images, key, batch_size=self.config.eval.batch_size
            )
            out["bits_per_dim"] = float(bpd.mean())
            out["bits_per_dim_stderr"] = (
                float(bpd.std(ddof=1) / np.sqrt(len(bpd))) if len(bpd) > 1 else 0.0
            )
            out["likelihood_nfe_mean"] = float(terms["nfe"].mean())
            out["num_examples"] = float(len(images))
        return out
