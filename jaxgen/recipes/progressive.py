"""Progressive distillation (Salimans & Ho 2022) as a recipe: a deterministic DDIM sampler of
``teacher_steps`` steps halved, round after round, down to ``final_steps``, in one run.

In the EDM frame (:mod:`jaxgen.distillation`) DDIM is Euler in the noise level ``s``: one step
``s -> s'`` maps ``x~`` to ``(s'/s) x~ + (1 - s'/s) D(x~, s)``. The teacher run (``ddpm``,
``score_sde``, ``flow_matching`` or another ``progressive`` run; ``model.teacher_workdir``)
is seen through its adapter (:mod:`jaxgen.recipes.teacher_denoiser`) and the student has its
network and parameterisation and starts as the teacher.

**Levels.** The base grid ``L`` is the teacher family's own DDIM grid of ``teacher_steps``
steps (``teacher_steps + 1`` decreasing levels ending at 0): for a DDPM teacher the levels of
DDIM's uniform timesteps (:func:`jaxgen.diffusion.ddim_timesteps`), so every level is an
integer step of the teacher; for score SDEs and flows ``teacher_steps`` times uniform in
``t``; for a progressive teacher exactly the grid it was distilled for (``teacher_steps``
must equal its ``final_steps``). Round ``r = 0 .. R-1`` (``R = log2(teacher_steps /
final_steps)``) distils the ``teacher_steps / 2^r``-step sampler on ``L[::2^r]`` into a
student of half the steps on ``L[::2^(r+1)]``: per example ``i ~ U{0..N_r - 1}`` (``N_r =
teacher_steps / 2^(r+1)``), ``x~ = x_0 + s_{2i} z`` and the loss (Alg. 2 in the EDM frame)

    w(s) ||D_student(x~, s_{2i}) - D*||^2 / d,   w = max(1 / s^2, 1)  ("truncated_snr"),

with ``D*`` the denoiser output whose single DDIM step lands on the teacher's two steps
``s_{2i} -> s_{2i+1} -> s_{2i+2}`` (:func:`jaxgen.distillation.progressive_distillation_target`).

**One run.** Round ``r`` is steps ``[r K, (r + 1) K)`` with ``K = steps_per_round``
(``train.num_steps = R K``). The teacher's parameters are the ``"teacher"`` state collection:
at step ``r K`` (``r >= 1``) it becomes the student (``jnp.where`` on the traced step, so one
compiled step serves every round, and a resumed run continues exactly). The learning-rate
schedule of ``optim`` runs over the whole run (use ``optim.decay="constant"``).

Sampling: :func:`jaxgen.distillation.ddim_sample_levels` on ``L[::2^R]``, exactly
``final_steps`` evaluations; any other ``num_steps`` is refused. ``evaluate`` reports nothing
(no likelihood; ``jaxgen eval`` scores the samples).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import core
from jaxgen import distillation as dist
from jaxgen.config import ConfigError
from jaxgen.core.parameterization import broadcast_to_event
from jaxgen.recipes.base import check_choice
from jaxgen.recipes.teacher_denoiser import DistillationRecipe, TeacherModel

__all__ = ["WEIGHTINGS", "ProgressiveConfig", "ProgressiveRecipe"]

WEIGHTINGS: tuple[str, ...] = ("truncated_snr", "snr", "uniform")


@dataclasses.dataclass(frozen=True)
class ProgressiveConfig:
    """Progressive distillation of a teacher run (module doc).

    Attributes:
      teacher_workdir: the finished teacher run (required).
      teacher_steps: DDIM steps of the first teacher (a power-of-two multiple of
        ``final_steps``; for a progressive teacher, its ``final_steps``).
      final_steps: the steps the distilled student samples with.
      steps_per_round: optimizer steps per halving; ``train.num_steps`` must be
        ``log2(teacher_steps / final_steps) * steps_per_round``.
      weighting: ``truncated_snr`` (``max(SNR, 1)``, Salimans & Ho's choice), ``snr``
        (``1 / s^2``) or ``uniform``.
      clip_denoised: the student's ``D`` clipped to [-1, 1] (in training with the identity
        as its gradient, straight-through, and in sampling), as DDPM's own DDIM sampler
        clips: an eps-predicting student's ``x0`` at ``s ~ 150`` amplifies its error 150
        times (Salimans & Ho 2022, Sec. 4, on the eps parameterisation).
    """

    teacher_workdir: str | None = None
    teacher_steps: int = 1024
    final_steps: int = 1
    steps_per_round: int = 1000
    weighting: str = "truncated_snr"
    clip_denoised: bool = True


def _weight(weighting: str, sigma: jax.Array) -> jax.Array:
    snr = 1.0 / jnp.square(sigma)
    if weighting == "truncated_snr":
        return jnp.maximum(snr, 1.0)
    if weighting == "snr":
        return snr
    return jnp.ones_like(sigma)


class ProgressiveRecipe(DistillationRecipe):
    """The teacher's network distilled to ``final_steps`` DDIM steps by halving rounds."""

    family = "progressive"
    config_class = ProgressiveConfig

    def setup_distillation(self) -> None:
        m: ProgressiveConfig = self.config.model
        if m.teacher_workdir is None:
            raise ConfigError("progressive distillation needs model.teacher_workdir (its teacher)")
        check_choice("model.weighting", m.weighting, WEIGHTINGS)
        for name in ("teacher_steps", "final_steps", "steps_per_round"):
            value = getattr(m, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be an integer >= 1, got {value!r}")
        ratio = m.teacher_steps // m.final_steps
        if m.teacher_steps % m.final_steps or ratio < 2 or ratio & (ratio - 1):
            raise ConfigError(
                f"model.teacher_steps={m.teacher_steps} must be final_steps={m.final_steps} "
                "times a power of two >= 2 (each round halves the steps)"
            )
        self.rounds = int(math.log2(ratio))
        total = self.rounds * m.steps_per_round
        if self.config.train.num_steps != total:
            raise ConfigError(
                f"train.num_steps={self.config.train.num_steps} must be rounds x "
                f"model.steps_per_round = {self.rounds} x {m.steps_per_round} = {total} "
                f"({m.teacher_steps} -> {m.final_steps} steps)"
            )
        self.base_levels: np.ndarray | None = None

    def teacher_attached(self) -> None:
        m: ProgressiveConfig = self.config.model
        levels = np.asarray(self.require_teacher().grid(m.teacher_steps), np.float64)
        if levels.shape != (m.teacher_steps + 1,) or np.any(np.diff(levels) >= 0):
            raise ConfigError(
                f"the teacher's {m.teacher_steps}-step grid is not {m.teacher_steps + 1} "
                f"decreasing levels: {levels}"
            )
        self.base_levels = levels

    @property
    def sample_levels(self) -> np.ndarray:
        """The student's final grid ``L[::2^R]`` (``final_steps + 1`` levels)."""
        self.require_teacher()
        return self.base_levels[:: 2**self.rounds]

    def distilled_model(self) -> TeacherModel:
        """This run's student seen as a teacher (for a further progressive run): the root
        teacher's adapter on ``params["student"]`` (clipped as it samples), with only its
        distilled grid."""
        base = self.require_teacher()
        final = self.config.model.final_steps
        levels = self.sample_levels

        def grid(num_steps: int) -> np.ndarray:
            if num_steps != final:
                raise ConfigError(
                    f"the progressive teacher {self.config.name!r} was distilled for {final} "
                    f"steps; model.teacher_steps must be {final}, got {num_steps}"
                )
            return levels

        return dataclasses.replace(
            base,
            family=self.family,
            network_params=lambda params: params["student"],
            grid=grid,
            clip=bool(self.config.model.clip_denoised),
        )

    # ------------------------------------------------------------------ engine hooks

    def init_params(self, key: jax.Array, init_batch: Mapping[str, jax.Array] | None = None) -> Any:
        """``{"student": teacher copy, "teacher": teacher}``."""
        del init_batch
        teacher = self.teacher_network_init(key)
        return {"student": jax.tree.map(jnp.copy, teacher), "teacher": teacher}

    def round_at(self, step: jax.Array) -> jax.Array:
        """The round ``min(step // steps_per_round, R - 1)`` of a (traced) step."""
        per = self.config.model.steps_per_round
        return jnp.minimum(jnp.asarray(step, jnp.int32) // per, self.rounds - 1)

    def student_steps_at(self, step: jax.Array) -> jax.Array:
        """The student's DDIM steps ``teacher_steps / 2^(r + 1)`` at ``step`` (traced)."""
        return self.config.model.teacher_steps // jnp.left_shift(1, self.round_at(step) + 1)

    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        per_example, terms, _ = self.training_loss(params, batch, key, jnp.zeros((), jnp.int32))
        return per_example, terms

    def training_loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
        """The round's loss (module doc); at a round boundary the teacher becomes the
        student first (returned as the ``"teacher"`` state update)."""
        m: ProgressiveConfig = self.config.model
        teacher_model = self.require_teacher()
        x0 = batch[self.data_key]
        step = jnp.asarray(step, jnp.int32)
        swap = (
            (step > 0) & (step % m.steps_per_round == 0) & (step < self.rounds * m.steps_per_round)
        )
        teacher_params = jax.tree.map(
            lambda s, t: jnp.where(swap, jax.lax.stop_gradient(s), t),
            params["student"],
            params["teacher"],
        )
        stride = jnp.left_shift(1, self.round_at(step))
        num_student = self.student_steps_at(step)
        keys = core.as_example_keys(key, x0.shape[0])
        pairs = jax.vmap(jax.random.split)(keys)
        index = jax.vmap(lambda k: jax.random.randint(k, (), 0, num_student))(pairs[:, 0])
        z = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(pairs[:, 1])
        levels = jnp.asarray(self.base_levels, x0.dtype)
        s, s_mid, s_next = (levels[(2 * index + j) * stride] for j in range(3))
        x = x0 + broadcast_to_event(s, x0) * z
        target = dist.progressive_distillation_target(
            teacher_model.make_denoiser(teacher_params, clip=teacher_model.clip),
            x,
            s,
            s_mid,
            s_next,
        )
        clip = "straight_through" if m.clip_denoised else False
        student = teacher_model.make_denoiser(params["student"], clip=clip)
        error = jnp.square(student(x, s) - jax.lax.stop_gradient(target))
        mse = jnp.mean(error.reshape(error.shape[0], -1), axis=1)
        per_example = _weight(m.weighting, s) * mse
        terms = {
            "mse": mse,
            "sigma": s,
            "student_steps": jnp.full(x0.shape[:1], num_student, jnp.float32),
        }
        return per_example, terms, {"teacher": teacher_params}

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
        """DDIM on the distilled grid (``final_steps`` evaluations), clipped to [-1, 1];
        ``num_steps`` other than ``final_steps`` is refused. Example ``i`` is example
        ``first_index + i`` of the draw (its own key)."""
        del condition
        self.check_sample_options(options)
        final = self.config.model.final_steps
        steps = options.get("num_steps")
        if steps is not None and steps != final:
            raise ConfigError(
                f"this progressively distilled model was trained for {final} steps; got "
                f"num_steps={steps}"
            )
        teacher = self.require_teacher()
        keys = core.example_keys(key, num_samples, start=first_index)
        out = dist.ddim_sample_levels(
            teacher.make_denoiser(params["student"], clip=self.config.model.clip_denoised),
            keys,
            (num_samples, *self.data_shape),
            sigmas=self.sample_levels,
        )
        return core.SamplerOutput(jnp.clip(out.samples, -1.0, 1.0), out.nfe)

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Nothing: a distilled sampler defines no likelihood (no bits/dim); ``jaxgen eval``
        scores its samples (digit FD on the digits)."""
        return {}
