"""Teacher adapters: a trained diffusion or flow model seen as a denoiser in the EDM frame.

Every Gaussian-path model here (DDPM, score SDE, Gaussian-source flow matching) lives on
``x_t = alpha_t x_0 + sigma_t eps``. In the EDM frame (Karras et al. 2022) the scaled state is
``x~ = x_t / alpha_t`` at noise level ``s = sigma_t / alpha_t`` (EDM's sigma), so ``x~ = x_0 + s
eps`` and the probability-flow ODE is ``dx~/ds = (x~ - D(x~, s)) / s`` with the denoiser
``D(x~, s) = E[x_0 | x~]``. :func:`teacher_model` turns a recipe into a :class:`TeacherModel`:
the denoiser ``D(x~, s)`` of any parameters of its network (so the same adapter applied to a
student with the teacher's architecture gives the student's denoiser), the teacher's level
range ``[sigma_min, sigma_max]``, the map ``s -> `` the network's time input, and the
family's own DDIM grid (progressive distillation's teacher grid):

* ``ddpm`` (discrete ``T`` steps): levels come from the table ``s_t = sqrt(1 - abar_t) /
  sqrt(abar_t)``, ``t = 0..T-1``; a level is mapped to the table entry nearest in
  ``log s`` and the network sees that integer ``t`` and ``x_t = sqrt(abar_t) x~``
  (levels chosen from the table, :meth:`TeacherModel.snap`, are hit exactly). The DDIM grid
  of ``S`` steps is ``s`` at DDIM's timesteps (:func:`jaxgen.diffusion.ddim_timesteps`,
  uniform) followed by 0. ``sigma_min = s_0``, ``sigma_max = s_{T-1}``.
* ``score_sde`` (VP, sub-VP, VE): ``t = sde.t_from_sigma_ratio(s)``, ``x_t = alpha(t) x~``
  and the network's prediction read as ``x_0``
  (:func:`jaxgen.sde.network_to_denoiser`); levels from ``sigma_ratio(t_min)`` to
  ``sigma_ratio(T)``; DDIM grid: ``S`` times uniform from ``T`` to ``t_min``, then 0.
* ``flow_matching`` (Gaussian source, ``flow_matching`` objective): ``t`` from the path's
  ``t_from_log_snr(-2 log s)``, ``x_t = alpha(t) x~`` and the network converted to ``x_0``
  on the path (:func:`jaxgen.flow_matching.convert_model`); levels: the range of
  :class:`jaxgen.flow_matching.PathSDE` (EDM's 0.002 to 80 where the path reaches it); DDIM
  grid as for the score SDE on ``PathSDE``'s ``[t_min, T]``.
* ``progressive`` (a progressively distilled run): its student, with the adapter of the
  run's root teacher, and only the grid it was distilled for (``final_steps``).

Class-conditional teachers are refused (``ConfigError``): their distillation would need the
null label and guidance inside the distillation loss, which is not built.

:class:`DistillationRecipe` is the base of the distillation recipes (``consistency``,
``progressive``): parameters ``{"student", "teacher"[, "target"]}`` with the teacher (and an
EMA target) as state collections, the optimizer on the student only (:func:`student_only`),
and ``attach_teacher(teacher_recipe, teacher_params, config_hash)``, which the run floor
(:mod:`jaxgen.run.distill_teacher`) calls with the teacher's recipe when it builds the
recipe and again with its parameters before training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen import diffusion
from jaxgen import flow_matching as fm
from jaxgen import sde as sde_lib
from jaxgen.config import ConfigError
from jaxgen.core.parameterization import broadcast_to_event
from jaxgen.recipes.base import Recipe

__all__ = [
    "TEACHER_FAMILIES",
    "Denoiser",
    "DistillationRecipe",
    "TeacherModel",
    "student_only",
    "teacher_model",
]

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]
"""``denoiser(x_scaled (B, *event), sigma (B,)) -> x0_hat (B, *event)`` in the EDM frame."""

TEACHER_FAMILIES: tuple[str, ...] = ("ddpm", "score_sde", "flow_matching", "progressive")


@dataclasses.dataclass(frozen=True)
class TeacherModel:
    """A model family's network seen in the EDM frame (module doc).

    Attributes:
      family: the teacher run's family.
      network_params: the network's parameters inside the run's parameter dict (the identity,
        or ``params["student"]`` for a distilled run).
      make_denoiser: ``make_denoiser(network_params, clip=False) -> D(x~, s)``; ``clip``
        True clips ``x0_hat`` to ``[-1, 1]`` (the teacher's ``clip_denoised``),
        ``"straight_through"`` clips the value but passes the gradient unchanged (students:
        a plain clip's gradient would vanish outside [-1, 1]).
      init_network: fresh network parameters from a key (shapes of a student).
      sigma_min, sigma_max: the levels the teacher was trained on.
      time_of_sigma: ``s -> `` the network's time input (int ``t`` for DDPM, float ``t``
        otherwise).
      grid: ``grid(num_steps) -> (num_steps + 1,)`` decreasing DDIM levels ending at 0.
      table: DDPM's increasing table ``s_t`` (None for continuous-time teachers).
      clip: whether the teacher's own sampler clips ``x0_hat`` (DDPM's ``clip_denoised``).
      data_shape: the event shape the network models.
    """

    family: str
    network_params: Callable[[Any], Any]
    make_denoiser: Callable[..., Denoiser]
    init_network: Callable[[jax.Array], Any]
    sigma_min: float
    sigma_max: float
    time_of_sigma: Callable[[jax.Array], jax.Array]
    grid: Callable[[int], np.ndarray]
    table: np.ndarray | None = None
    clip: bool = False
    data_shape: tuple[int, ...] = ()

    def denoiser(self, run_params: Any, *, clip: bool | None = None) -> Denoiser:
        """``D(x~, s)`` of a run's parameters (``clip`` None: the teacher's own setting)."""
        return self.make_denoiser(
            self.network_params(run_params), clip=self.clip if clip is None else clip
        )

    def snap(self, levels: Any) -> np.ndarray:
        """``levels`` moved to the nearest (in ``log s``) table entry (DDPM); unchanged for a
        continuous-time teacher. ``ConfigError`` if two levels land on one entry."""
        levels = np.asarray(levels, np.float64)
        if self.table is None:
            return levels
        index = np.argmin(np.abs(np.log(self.table)[None, :] - np.log(levels)[:, None]), axis=1)
        if len(np.unique(index)) != len(index):
            raise ConfigError(
                f"{len(levels)} levels do not fit the teacher's {len(self.table)} discrete "
                f"steps distinctly (two share a step); use fewer levels"
            )
        return self.table[index]


def _refuse_conditional(recipe: Any) -> None:
    if getattr(recipe, "classes", 0):
        raise ConfigError(
            f"the teacher ({recipe.family!r}, model.unet.num_classes="
            f"{recipe.config.model.unet.num_classes}) is class-conditional; distilling a "
            "class-conditional teacher is not supported (train an unconditional teacher)"
        )


def _maybe_clip(x0: jax.Array, clip: bool | str) -> jax.Array:
    """``x0`` as it is (False), clipped to [-1, 1] (True), or clipped in value with the
    identity as its gradient (``"straight_through"``: ``x0 + sg(clip(x0) - x0)``)."""
    if clip == "straight_through":
        return x0 + jax.lax.stop_gradient(jnp.clip(x0, -1.0, 1.0) - x0)
    return jnp.clip(x0, -1.0, 1.0) if clip else x0


def _ddpm(recipe: Any) -> TeacherModel:
    m = recipe.config.model
    schedule = recipe.schedule
    abar = np.asarray(schedule.alphas_cumprod, np.float64)
    table = np.sqrt(1.0 - abar) / np.sqrt(abar)
    log_table = jnp.asarray(np.log(table), jnp.float32)
    num_t = len(table)

    def time_of_sigma(sigma: jax.Array) -> jax.Array:
        """The DDPM step whose level is nearest ``sigma`` in ``log s`` (int32 ``(B,)``)."""
        log_s = jnp.log(jnp.asarray(sigma, jnp.float32))
        upper = jnp.clip(jnp.searchsorted(log_table, log_s), 1, num_t - 1)
        nearer_lower = log_s - log_table[upper - 1] < log_table[upper] - log_s
        return jnp.where(nearer_lower, upper - 1, upper).astype(jnp.int32)

    def make_denoiser(net_params: Any, *, clip: bool | str = False) -> Denoiser:
        model = recipe.model_fn(net_params)

        def denoise(x_scaled: jax.Array, sigma: jax.Array) -> jax.Array:
            t = time_of_sigma(sigma)
            x_t = broadcast_to_event(schedule.sqrt_alphas_cumprod[t], x_scaled) * x_scaled
            pred = model(x_t, t)
            x0 = diffusion.to_x0(schedule, x_t, t, pred, parameterization=m.parameterization)
            return _maybe_clip(x0, clip).astype(x_scaled.dtype)

        return denoise

    def grid(num_steps: int) -> np.ndarray:
        steps = diffusion.ddim_timesteps(num_t, num_steps)
        return np.concatenate([table[steps][::-1], [0.0]])

    return TeacherModel(
        family="ddpm",
        network_params=lambda p: p,
        make_denoiser=make_denoiser,
        init_network=recipe.init_params,
        sigma_min=float(table[0]),
        sigma_max=float(table[-1]),
        time_of_sigma=time_of_sigma,
        grid=grid,
        table=table,
        clip=bool(m.clip_denoised),
        data_shape=tuple(recipe.data_shape),
    )


def _continuous(
    recipe: Any,
    *,
    sde: Any,
    t_min: float,
    t_max: float,
    x0_network: Callable[[Any], Callable[[jax.Array, jax.Array], jax.Array]],
) -> TeacherModel:
    """A continuous-time teacher whose ``x0_network(params)(x_t, t)`` predicts ``x_0``."""
    with jax.ensure_compile_time_eval():
        ends = np.asarray(sde.sigma_ratio(jnp.asarray([t_min, t_max], jnp.float32)), np.float64)

    def time_of_sigma(sigma: jax.Array) -> jax.Array:
        return sde.t_from_sigma_ratio(jnp.asarray(sigma, jnp.float32))

    def make_denoiser(net_params: Any, *, clip: bool | str = False) -> Denoiser:
        x0_fn = x0_network(net_params)

        def denoise(x_scaled: jax.Array, sigma: jax.Array) -> jax.Array:
            t = time_of_sigma(sigma)
            x_t = broadcast_to_event(sde.alpha(t), x_scaled) * x_scaled
            return _maybe_clip(x0_fn(x_t, t), clip).astype(x_scaled.dtype)

        return denoise

    def grid(num_steps: int) -> np.ndarray:
        with jax.ensure_compile_time_eval():
            t = jnp.linspace(t_max, t_min, num_steps, dtype=jnp.float32)
            levels = np.asarray(sde.sigma_ratio(t), np.float64)
        return np.concatenate([levels, [0.0]])

    return TeacherModel(
        family=recipe.family,
        network_params=lambda p: p,
        make_denoiser=make_denoiser,
        init_network=recipe.init_params,
        sigma_min=float(ends[0]),
        sigma_max=float(ends[1]),
        time_of_sigma=time_of_sigma,
        grid=grid,
        data_shape=tuple(recipe.data_shape),
    )


def _score_sde(recipe: Any) -> TeacherModel:
    m = recipe.config.model
    t_min = recipe.sde.t_min if m.sample_t_min is None else m.sample_t_min

    def x0_network(net_params: Any):
        return sde_lib.network_to_denoiser(
            recipe.network(net_params),
            recipe.sde,
            parameterization=m.parameterization,
            sigma_data=m.sigma_data,
            noise_input=recipe.noise_input,
        )

    return _continuous(
        recipe, sde=recipe.sde, t_min=float(t_min), t_max=recipe.sde.T, x0_network=x0_network
    )


def _flow_matching(recipe: Any) -> TeacherModel:
    m = recipe.config.model
    if m.source != "gaussian" or m.objective != "flow_matching" or not recipe.images:
        raise ConfigError(
            "a flow-matching teacher must be an image flow from a Gaussian source trained "
            f"with objective 'flow_matching' (its source {m.source!r}, objective "
            f"{m.objective!r}, data shape {recipe.data_shape})"
        )
    path_sde = fm.PathSDE(recipe.path)

    def x0_network(net_params: Any):
        return fm.convert_model(
            recipe.network(net_params), recipe.path, source=m.parameterization, target="x0"
        )

    return _continuous(
        recipe,
        sde=path_sde,
        t_min=float(path_sde.t_min),
        t_max=float(path_sde.T),
        x0_network=x0_network,
    )


def teacher_model(recipe: Any) -> TeacherModel:
    """The :class:`TeacherModel` of a trained run's recipe (module doc); ``ConfigError`` for
    another family, a class-conditional network or a flow that is not a Gaussian-source
    flow."""
    family = recipe.family
    if family not in TEACHER_FAMILIES:
        raise ConfigError(
            f"a {family!r} run cannot be a distillation teacher (allowed families: "
            f"{', '.join(TEACHER_FAMILIES)})"
        )
    if family == "progressive":
        return recipe.distilled_model()
    _refuse_conditional(recipe)
    if family == "ddpm":
        return _ddpm(recipe)
    if family == "score_sde":
        return _score_sde(recipe)
    return _flow_matching(recipe)


def student_only(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` on ``params["student"]`` and a zero update on every other top-level entry (the
    teacher and target state collections: no optimizer state is kept for them)."""
    return optax.multi_transform(
        {"train": tx, "frozen": optax.set_to_zero()},
        lambda params: {k: "train" if k == "student" else "frozen" for k in params},
    )


class DistillationRecipe(Recipe):
    """Base of the recipes whose student learns from a teacher run (``model.teacher_workdir``).

    The run floor attaches the teacher's recipe when it builds the recipe (enough to restore
    and sample a trained student) and the teacher's parameters before training
    (:meth:`attach_teacher`). Parameters are ``{"student": ..., "teacher": ...}``
    (plus ``"target"`` for an EMA target): the teacher is a state collection, so checkpoints
    hold it and a resumed run continues exactly; the loss sees it through ``stop_gradient``
    and the optimizer only moves the student (:func:`student_only`).
    """

    state_collections = ("teacher", "target")
    sample_options = ("num_steps",)

    def setup(self) -> None:
        self.teacher: TeacherModel | None = None
        self.teacher_params: Any = None
        self.teacher_hash: str | None = None
        self.teacher_error: str | None = None  # why no teacher is attached (run floor)
        if len(self.data_shape) != 3:
            raise ConfigError(
                f"{self.family} needs (H, W, C) images, the dataset has shape {self.data_shape}"
            )
        self.setup_distillation()

    def setup_distillation(self) -> None:
        """Check the family's config (``self.teacher`` is not attached yet)."""

    @property
    def teacher_workdir(self) -> str | None:
        """The teacher run named by the config (None: no teacher)."""
        return self.config.model.teacher_workdir

    def attach_teacher(self, teacher_recipe: Recipe, teacher_params: Any, config_hash: str) -> None:
        """Give the recipe its teacher: the teacher run's recipe, its (EMA) parameters (None
        when only shapes are needed, e.g. to restore a checkpoint that holds them) and its
        config hash. ``ConfigError`` for a family that cannot teach or another data shape."""
        model = teacher_model(teacher_recipe)
        if tuple(model.data_shape) != tuple(self.data_shape):
            raise ConfigError(
                f"model.teacher_workdir={self.teacher_workdir!r} models data of shape "
                f"{tuple(model.data_shape)}, this run's data {self.config.data.name!r} has "
                f"{tuple(self.data_shape)}"
            )
        self.teacher = model
        self.teacher_params = (
            None if teacher_params is None else model.network_params(teacher_params)
        )
        self.teacher_hash = config_hash
        self.teacher_attached()

    def teacher_attached(self) -> None:
        """Hook run after :meth:`attach_teacher` (levels that depend on the teacher)."""

    def require_teacher(self) -> TeacherModel:
        """The attached teacher, or a ``ConfigError`` saying how to attach it."""
        if self.teacher is None and self.teacher_error is not None:
            raise ConfigError(self.teacher_error)
        if self.teacher is None:
            raise ConfigError(
                f"the {self.family!r} recipe of model.teacher_workdir={self.teacher_workdir!r} "
                "has no teacher attached; build it through jaxgen.run (build_recipe), which "
                "loads the teacher run"
            )
        return self.teacher

    def teacher_network_init(self, key: jax.Array) -> Any:
        """The teacher's parameters (a fresh network of its shapes when none were given)."""
        teacher = self.require_teacher()
        if self.teacher_params is None:
            return teacher.init_network(key)
        return self.teacher_params

    def make_optimizer(self, num_steps: int) -> optax.GradientTransformation:
        """``config.optim``'s optimizer on the student only (:func:`student_only`)."""
        return student_only(super().make_optimizer(num_steps))
