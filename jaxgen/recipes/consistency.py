"""Consistency models (Song et al. 2023; Song & Dhariwal 2024) as a recipe: consistency
distillation from a trained diffusion or flow run, or consistency training from scratch.

Everything lives in the EDM frame (:mod:`jaxgen.distillation`): ``x~ = x_0 + s eps`` and the
consistency function of a denoiser ``D(x~, s)`` is Song et al.'s (2023, App. C) ``f = c_skip(s)
x~ + c_out(s) F`` with ``c_skip = sigma_data^2 / ((s - sigma_min)^2 + sigma_data^2)`` on the
raw output ``F`` read off ``D`` (:func:`jaxgen.distillation.consistency_function`), so
``f(x~, sigma_min) = x~`` exactly.

* **Distillation** (``model.teacher_workdir`` set; Song et al. 2023, Alg. 2): the student has
  the teacher's network and parameterisation (its denoiser ``D`` is the teacher's adapter,
  :mod:`jaxgen.recipes.teacher_denoiser`, applied to the student's parameters) and starts as
  the teacher, so at large ``s`` it starts at the teacher's one-step denoiser. The levels
  are ``model.num_levels`` Karras levels (``rho``) on the teacher's range (or ``sigma_min``
  / ``sigma_max`` inside it), for a DDPM teacher moved to its discrete table, so teacher
  and student are evaluated at integer steps exactly. Per example ``n`` is drawn from
  ``index_distribution``; the teacher takes one ``solver`` step ``s_{n+1} -> s_n`` and the
  loss is ``lambda d(f(x_{n+1}, s_{n+1}), sg(f_target(x^_n, s_n)))``.
* **Training** (no teacher; Song et al. 2023, Alg. 3 with iCT's choices): its own U-Net
  (``model.unet``) with EDM's preconditioning (``D = c_skip x~ + c_out F(c_in x~, 250 log s)``,
  Karras et al. 2022 Table 1; the noise input of Song et al.'s code), levels on
  ``[sigma_min, sigma_max]`` (0.002, 80 by default) with iCT's curriculum ``N(k)`` from
  ``initial_levels`` to ``final_levels`` over ``train.num_steps`` (Song & Dhariwal eq. 7).

The target is the student under ``stop_gradient`` (``target_ema = 0``, iCT) or an EMA of it
with decay ``target_ema`` (Song et al. 2023; the ``"target"`` state collection, updated
from the parameters the step starts from). The metric is ``squared``, ``pseudo_huber`` (iCT)
or ``feature``: on 8x8 digits the squared distance of the shipped digit classifier's 128
features (:mod:`jaxgen.evaluation.digit_fd`, an LPIPS-like metric; note that digit FD
compares the same features, so a feature-metric model is scored by its own metric).

Sampling (Song et al. 2023, Alg. 1): ``num_steps = k`` in ``1..N-1`` evaluations at the
training levels of indices ``round((N - 1)(1 - j / k))``, ``j = 0..k-1`` (``s_{N-1} =
sigma_max`` first, then evenly spaced in Karras index, i.e. in ``s^(1/rho)``); ``N`` is the
last level count of training. Other counts are refused. ``evaluate`` reports nothing (a
consistency model has no likelihood, so no bits/dim); ``jaxgen eval`` scores its samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core
from jaxgen import distillation as cm
from jaxgen import sde as sde_lib
from jaxgen.config import ConfigError
from jaxgen.nets import UNet, UNetConfig, precision
from jaxgen.recipes.base import check_choice
from jaxgen.recipes.teacher_denoiser import Denoiser, DistillationRecipe

__all__ = ["ConsistencyConfig", "ConsistencyRecipe", "sampling_levels"]

WEIGHTINGS: tuple[str, ...] = tuple(cm.CONSISTENCY_WEIGHTINGS)
NOISE_INPUT_SCALE = 250.0  # the network sees 1000 * log(s) / 4 (Song et al.'s code)


@dataclasses.dataclass(frozen=True)
class ConsistencyConfig:
    """Consistency distillation (``teacher_workdir`` set) or training (None).

    Attributes:
      teacher_workdir: a finished ``ddpm``, ``score_sde``, ``flow_matching`` (Gaussian
        source) or ``progressive`` run; its config hash is recorded in the workdir and a
        changed teacher is refused when the run resumes.
      unet: the network of consistency training (distillation uses the teacher's).
      num_levels: ``N`` Karras levels of distillation (Song et al. 2023: 18 on CIFAR-10).
      solver: the teacher's ODE step, ``heun`` or ``euler``.
      metric: ``squared``, ``pseudo_huber`` (``huber_c`` None: ``0.00054 sqrt(d)``) or
        ``feature`` (digit-classifier features; 8x8 digits only).
      weighting: ``uniform`` or ``inverse_gap`` (``1 / (s_{n+1} - s_n)``); None: uniform for
        distillation, inverse_gap for training.
      index_distribution: ``uniform`` or ``lognormal`` (iCT eq. 9 with ``p_mean``,
        ``p_std``); None: uniform for distillation, lognormal for training.
      sigma_data: ``sigma_data`` of ``c_skip`` (and of EDM's preconditioning in training).
      target_ema: 0 (the target is the student under stop-gradient) or the EMA decay ``mu``.
      sigma_min, sigma_max, rho: the level range (None: the teacher's; 0.002 and 80 for
        training) and Karras' ``rho``.
      initial_levels, final_levels: iCT's curriculum ``s0``, ``s1`` (training only).
      sample_steps: default evaluations of ``sample`` (``1..N-1``).
      clip_denoised: the student's ``D`` clipped to [-1, 1] in value with the identity as
        its gradient (straight-through; distillation only): an eps-predicting student's
        ``x0`` at ``s ~ 150`` amplifies its error 150 times, and the teacher's own sampler
        clips it too.
    """

    teacher_workdir: str | None = None
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    num_levels: int = 18
    solver: str = "heun"
    metric: str = "pseudo_huber"
    huber_c: float | None = None
    weighting: str | None = None
    index_distribution: str | None = None
    p_mean: float = -1.1
    p_std: float = 2.0
    sigma_data: float = 0.5
    target_ema: float = 0.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    initial_levels: int = 10
    final_levels: int = 1280
    sample_steps: int = 1
    clip_denoised: bool = True


def sampling_levels(levels: Any, num_steps: int) -> np.ndarray:
    """The ``num_steps`` decreasing levels multistep sampling uses from increasing training
    ``levels (N,)``: indices ``round((N - 1)(1 - j / k))``, ``j = 0..k-1`` (module doc);
    ``ConfigError`` unless ``1 <= num_steps <= N - 1``."""
    levels = np.asarray(levels, np.float64)
    n = len(levels)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer):
        raise ConfigError(f"num_steps must be an integer, got {num_steps!r}")
    if not 1 <= num_steps <= n - 1:
        raise ConfigError(
            f"this consistency model was trained on {n} levels; num_steps must be in "
            f"1..{n - 1}, got {num_steps}"
        )
    index = np.rint((n - 1) * (1.0 - np.arange(num_steps) / num_steps)).astype(np.int64)
    return levels[index]


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model.{name} must be an integer >= {minimum}, got {value!r}")


class ConsistencyRecipe(DistillationRecipe):
    """Consistency distillation / training + multistep consistency sampling."""

    family = "consistency"
    config_class = ConsistencyConfig
    eval_time_fields = ("sample_steps",)

    def setup_distillation(self) -> None:
        m: ConsistencyConfig = self.config.model
        check_choice("model.solver", m.solver, cm.SOLVERS)
        check_choice("model.metric", m.metric, cm.METRICS)
        if m.weighting is not None:
            check_choice("model.weighting", m.weighting, WEIGHTINGS)
        if m.index_distribution is not None:
            check_choice("model.index_distribution", m.index_distribution, cm.INDEX_DISTRIBUTIONS)
        _positive_int("num_levels", m.num_levels, 2)
        _positive_int("initial_levels", m.initial_levels)
        _positive_int("final_levels", m.final_levels, m.initial_levels)
        _positive_int("sample_steps", m.sample_steps)
        if not 0.0 <= m.target_ema < 1.0:
            raise ConfigError(f"model.target_ema must be in [0, 1), got {m.target_ema!r}")
        if m.sigma_data <= 0 or m.rho <= 0:
            raise ConfigError(
                f"model.sigma_data and model.rho must be > 0, got {m.sigma_data!r}, {m.rho!r}"
            )
        distill = m.teacher_workdir is not None
        self.weighting = m.weighting or ("uniform" if distill else "inverse_gap")
        self.index_distribution = m.index_distribution or ("uniform" if distill else "lognormal")
        self.feature_fn = self._feature_fn() if m.metric == "feature" else None
        self.levels: np.ndarray | None = None
        if not distill:
            lo = 0.002 if m.sigma_min is None else m.sigma_min
            hi = 80.0 if m.sigma_max is None else m.sigma_max
            if not 0 < lo < hi:
                raise ConfigError(f"need 0 < model.sigma_min < model.sigma_max, got {lo}, {hi}")
            self.sigma_range = (float(lo), float(hi))
            total = self.config.train.num_steps
            final_n = int(
                cm.ict_num_levels(total - 1, total, initial=m.initial_levels, final=m.final_levels)
            )
            self.levels = np.asarray(
                cm.karras_levels(final_n, sigma_min=lo, sigma_max=hi, rho=m.rho), np.float64
            )
            abstract = nnx.eval_shape(lambda: self._make_unet(jax.random.key(0)))
            self.graphdef, _ = nnx.split(abstract)
            sampling_levels(self.levels, m.sample_steps)

    def teacher_attached(self) -> None:
        m: ConsistencyConfig = self.config.model
        teacher = self.require_teacher()
        lo = teacher.sigma_min if m.sigma_min is None else m.sigma_min
        hi = teacher.sigma_max if m.sigma_max is None else m.sigma_max
        tol = 1e-6
        if not teacher.sigma_min * (1 - tol) <= lo < hi <= teacher.sigma_max * (1 + tol):
            raise ConfigError(
                f"model.sigma_min/sigma_max = {lo}, {hi} must satisfy sigma_min < sigma_max "
                f"inside the teacher's levels [{teacher.sigma_min:.6g}, {teacher.sigma_max:.6g}]"
            )
        raw = np.asarray(
            cm.karras_levels(m.num_levels, sigma_min=lo, sigma_max=hi, rho=m.rho), np.float64
        )
        self.levels = teacher.snap(raw)
        self.sigma_range = (float(self.levels[0]), float(self.levels[-1]))
        sampling_levels(self.levels, m.sample_steps)

    # ------------------------------------------------------------------ networks

    def _make_unet(self, key: jax.Array) -> UNet:
        return UNet(self.config.model.unet, image_shape=self.data_shape, rngs=nnx.Rngs(key))

    def _feature_fn(self) -> Callable[[jax.Array], jax.Array]:
        from jaxgen.data.digits import IMAGE_SHAPE
        from jaxgen.evaluation.digit_fd import load_classifier_params

        if tuple(self.data_shape) != tuple(IMAGE_SHAPE):
            raise ConfigError(
                f"model.metric='feature' uses the digit classifier's features and needs 8x8 "
                f"digits, the data has shape {self.data_shape}"
            )
        graphdef, params = load_classifier_params()

        def features(x: jax.Array) -> jax.Array:
            return nnx.merge(graphdef, params).features(x)

        return features

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """``{"student", ["teacher"], ["target"]}``: distillation starts the student (and the
        EMA target) as copies of the teacher; training from a fresh U-Net."""
        del init_batch
        if self.teacher_workdir is None:
            net = nnx.to_pure_dict(nnx.split(self._make_unet(key))[1])
            params = {"student": net}
        else:
            teacher = self.teacher_network_init(key)
            params = {"student": jax.tree.map(jnp.copy, teacher), "teacher": teacher}
        if self.config.model.target_ema > 0:
            params["target"] = jax.tree.map(jnp.copy, params["student"])
        return params

    def denoiser(self, net_params: Any) -> Denoiser:
        """The student's ``D(x~, s)``: the teacher's adapter on ``net_params`` (distillation,
        straight-through clipped, ``clip_denoised``) or the EDM-preconditioned U-Net (training)."""
        if self.teacher_workdir is not None:
            clip = "straight_through" if self.config.model.clip_denoised else False
            return self.require_teacher().make_denoiser(net_params, clip=clip)
        unet = precision.merge(self.graphdef, net_params)
        sigma_data = self.config.model.sigma_data

        def denoise(x: jax.Array, sigma: jax.Array) -> jax.Array:
            c_skip, c_out, c_in, c_noise = sde_lib.edm_coefficients(sigma, sigma_data)
            b = core.parameterization.broadcast_to_event
            out = unet(b(c_in, x) * x, 1000.0 * c_noise)
            return b(c_skip, x) * x + b(c_out, x) * out

        return denoise

    def consistency_fn(self, net_params: Any) -> cm.consistency.ConsistencyFn:
        """The consistency function ``f(x~, s)`` of the student's denoiser on ``net_params``
        (:func:`jaxgen.distillation.consistency_function`; module doc)."""
        return cm.consistency_function(
            self.denoiser(net_params),
            sigma_min=self.sigma_range[0],
            sigma_data=self.config.model.sigma_data,
        )

    # ------------------------------------------------------------------ engine hooks

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return per_example, terms

    def training_loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
        """The distillation or training loss of the module doc at ``step`` (the iCT
        curriculum's ``N(step)``), with the teacher kept and the EMA target updated."""
        m: ConsistencyConfig = self.config.model
        x0 = batch[self.data_key]
        student = params["student"]
        target = params["target"] if "target" in params else jax.lax.stop_gradient(student)
        common = dict(
            metric=m.metric,
            weighting=self.weighting,
            index_distribution=self.index_distribution,
            p_mean=m.p_mean,
            p_std=m.p_std,
            feature_fn=self.feature_fn,
            huber_c=m.huber_c,
        )
        updates: dict[str, Any] = {}
        f_student, f_target = self.consistency_fn(student), self.consistency_fn(target)
        if self.teacher_workdir is not None:
            teacher = self.require_teacher()
            per_example, terms = cm.consistency_distillation_loss(
                f_student,
                f_target,
                teacher.make_denoiser(params["teacher"], clip=teacher.clip),
                x0,
                key,
                levels=jnp.asarray(self.levels, x0.dtype),
                solver=m.solver,
                **common,
            )
            updates["teacher"] = params["teacher"]
        else:
            total = self.config.train.num_steps
            num_levels = cm.ict_num_levels(
                step, total, initial=m.initial_levels, final=m.final_levels
            )
            per_example, terms = cm.consistency_training_loss(
                f_student,
                f_target,
                x0,
                key,
                num_levels=num_levels,
                sigma_min=self.sigma_range[0],
                sigma_max=self.sigma_range[1],
                rho=m.rho,
                max_levels=m.final_levels + 1,
                **common,
            )
            terms = dict(terms, num_levels=num_levels.astype(jnp.float32))
        if "target" in params:
            mu = m.target_ema
            updates["target"] = jax.tree.map(
                lambda t, s: mu * t + (1.0 - mu) * jax.lax.stop_gradient(s),
                params["target"],
                student,
            )
        terms = {k: v for k, v in terms.items() if k != "index"}
        return per_example, terms, updates

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
        """Multistep consistency sampling with ``num_steps`` (default ``model.sample_steps``)
        evaluations at :func:`sampling_levels` of the training levels, clipped to [-1, 1];
        example ``i`` is example ``first_index + i`` of the draw (its own key)."""
        del condition
        self.check_sample_options(options)
        steps = options.get("num_steps")
        steps = self.config.model.sample_steps if steps is None else steps
        if self.teacher_workdir is not None:
            self.require_teacher()
        sigmas = sampling_levels(self.levels, steps)
        keys = core.example_keys(key, num_samples, start=first_index)
        out = cm.multistep_consistency_sample(
            self.consistency_fn(params["student"]),
            keys,
            (num_samples, *self.data_shape),
            sigmas=sigmas,
            sigma_min=self.sigma_range[0],
        )
        return core.SamplerOutput(jnp.clip(out.samples, -1.0, 1.0), out.nfe)

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Nothing: a consistency model defines no likelihood (no bits/dim); ``jaxgen eval``
        scores its samples (digit FD on the digits)."""
        return {}
