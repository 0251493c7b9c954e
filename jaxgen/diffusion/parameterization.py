"""Conversions between the three DDPM model parameterisations: eps, x0 and v.

With ``a = sqrt(abar_t)``, ``s = sqrt(1 - abar_t)`` (so ``a^2 + s^2 = 1``) and
``x_t = a x_0 + s eps`` (Ho et al. 2020, eq. 4):

* eps -> x0:  ``x_0 = (x_t - s eps) / a``   (Ho et al. eq. 15, rearranged);
* x0 -> eps:  ``eps = (x_t - a x_0) / s``;
* v (Salimans & Ho 2022, Sec. 4 / App. D): ``v = a eps - s x_0``, whence
  ``x_0 = a x_t - s v`` and ``eps = s x_t + a v``.

A model callable predicts one of :data:`PREDICTIONS`; :func:`to_eps` and :func:`to_x0`
turn any of them into eps or x0. All functions take ``xt`` (or ``x0``) of shape
``(B, *event)`` and int ``t`` of shape ``(B,)`` (0-based).

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022.
"""

from __future__ import annotations

import jax

from jaxgen.diffusion.forward import extract
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = [
    "PREDICTIONS",
    "check_prediction",
    "eps_from_v",
    "eps_from_x0",
    "prediction_target",
    "to_eps",
    "to_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]

PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v")


def check_prediction(prediction: str) -> None:
    """Raises ``ValueError`` unless ``prediction`` is one of :data:`PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}.")


def _a_s(schedule: DiffusionSchedule, t: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return (
        extract(schedule.sqrt_alphas_cumprod, t, x),
        extract(schedule.sqrt_one_minus_alphas_cumprod, t, x),
    )


def x0_from_eps(
    schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """``x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
    a, s = _a_s(schedule, t, xt)
    return (xt - s * eps) / a


def eps_from_x0(
    schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, x0: jax.Array
) -> jax.Array:
    """``eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)``."""
    a, s = _a_s(schedule, t, xt)
    return (xt - a * x0) / s


def v_from_x0_eps(
    schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022)."""
    a, s = _a_s(schedule, t, x0)
    return a * eps - s * x0


def x0_from_v(schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """``x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v``."""
    a, s = _a_s(schedule, t, xt)
    return a * xt - s * v


def eps_from_v(schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """``eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v``."""
    a, s = _a_s(schedule, t, xt)
    return s * xt + a * v


def to_eps(
    schedule: DiffusionSchedule,
    xt: jax.Array,
    t: jax.Array,
    pred: jax.Array,
    *,
    prediction: str,
) -> jax.Array:
    """Converts a model output ``pred`` of kind ``prediction`` into a noise prediction eps."""
    check_prediction(prediction)
    if prediction == "eps":
        return pred
    if prediction == "x0":
        return eps_from_x0(schedule, xt, t, pred)
    return eps_from_v(schedule, xt, t, pred)


def to_x0(
    schedule: DiffusionSchedule,
    xt: jax.Array,
    t: jax.Array,
    pred: jax.Array,
    *,
    prediction: str,
) -> jax.Array:
    """Converts a model output ``pred`` of kind ``prediction`` into a data prediction x0."""
    check_prediction(prediction)
    if prediction == "eps":
        return x0_from_eps(schedule, xt, t, pred)
    if prediction == "x0":
        return pred
    return x0_from_v(schedule, xt, t, pred)


def prediction_target(
    schedule: DiffusionSchedule,
    x0: jax.Array,
    t: jax.Array,
    eps: jax.Array,
    *,
    prediction: str,
) -> jax.Array:
    """The regression target of a ``prediction`` model for ``x_t = a x_0 + s eps``.

    ``eps`` for ``"eps"``, ``x_0`` for ``"x0"`` and ``v = a eps - s x_0`` for ``"v"``.
    """
    check_prediction(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return v_from_x0_eps(schedule, x0, t, eps)
