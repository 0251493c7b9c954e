"""DDPM's parameterizations: the discrete-schedule case of :mod:`jaxgen.core.parameterization`.

DDPM's forward process (Ho et al. 2020, eq. 4) is the Gaussian path
``x_t = alpha_t x_0 + sigma_t eps`` with, at the 0-based step index ``t``,

    alpha_t = sqrt(abar_t),      sigma_t = sqrt(1 - abar_t)      (so alpha^2 + sigma^2 = 1),

read from the schedule (:func:`alpha_sigma`). Every conversion here is the core's
(:func:`jaxgen.core.parameterization.to_x0_eps` / ``from_x0_eps``) at those
``(alpha, sigma)``; nothing is re-derived. For the record, the core's formulas give:

* eps -> x0:  ``x_0 = (x_t - sigma eps) / alpha``   (Ho et al. eq. 15, rearranged);
* x0 -> eps:  ``eps = (x_t - alpha x_0) / sigma``;
* v (Salimans & Ho 2022, Sec. 4 / App. D): ``v = alpha eps - sigma x_0``, whence
  ``x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2) = alpha x_t - sigma v`` and
  ``eps = sigma x_t + alpha v`` on DDPM's variance-preserving path.

A DDPM model callable predicts one of :data:`PARAMETERIZATIONS` (``"eps"``, ``"x0"``,
``"v"``); :func:`to_eps` and :func:`to_x0` turn any of them into eps or x0. All functions
take ``xt`` (or ``x0``) of shape ``(B, *event)`` and int ``t`` of shape ``(B,)`` (0-based).

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022.
"""

from __future__ import annotations

import jax

from jaxgen.core import parameterization as core_param
from jaxgen.diffusion.forward import check_timestep_values, check_timesteps, clip_timesteps
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = [
    "PARAMETERIZATIONS",
    "alpha_sigma",
    "check_parameterization",
    "eps_from_v",
    "eps_from_x0",
    "prediction_target",
    "to_eps",
    "to_x0",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]

PARAMETERIZATIONS: tuple[str, ...] = ("eps", "x0", "v")
"""What a DDPM network may predict (a subset of the core's parameterizations)."""


def check_parameterization(parameterization: str) -> str:
    """``parameterization`` if it is one of :data:`PARAMETERIZATIONS`, else ``ValueError``."""
    return core_param.check_parameterization(parameterization, allowed=PARAMETERIZATIONS)


def alpha_sigma(
    schedule: DiffusionSchedule, t: jax.Array, x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t))``, each ``(B,)``, at the 0-based
    steps ``t`` (checked against ``x`` of shape ``(B, *event)``; concrete ``t`` outside
    ``[0, T - 1]`` raise ``ValueError``, traced ``t`` is clipped to that range)."""
    check_timesteps(t, x)
    check_timestep_values(t, schedule.num_timesteps)
    t = clip_timesteps(t, schedule.num_timesteps)  # traced t: clipped (forward module doc)
    return schedule.sqrt_alphas_cumprod[t], schedule.sqrt_one_minus_alphas_cumprod[t]


def _to_x0_eps(schedule, xt, t, pred, parameterization):
    alpha, sigma = alpha_sigma(schedule, t, xt)
    return core_param.to_x0_eps(pred, xt, alpha, sigma, parameterization=parameterization)


def x0_from_eps(
    schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """``x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
    return _to_x0_eps(schedule, xt, t, eps, "eps")[0]


def eps_from_x0(
    schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, x0: jax.Array
) -> jax.Array:
    """``eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)``."""
    return _to_x0_eps(schedule, xt, t, x0, "x0")[1]


def v_from_x0_eps(
    schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022)."""
    return prediction_target(schedule, x0, t, eps, parameterization="v")


def x0_from_v(schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """``x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v``."""
    return _to_x0_eps(schedule, xt, t, v, "v")[0]


def eps_from_v(schedule: DiffusionSchedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """``eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v``."""
    return _to_x0_eps(schedule, xt, t, v, "v")[1]


def to_eps(
    schedule: DiffusionSchedule,
    xt: jax.Array,
    t: jax.Array,
    pred: jax.Array,
    *,
    parameterization: str,
) -> jax.Array:
    """A model output ``pred`` of kind ``parameterization`` as a noise prediction eps."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return pred
    return _to_x0_eps(schedule, xt, t, pred, parameterization)[1]


def to_x0(
    schedule: DiffusionSchedule,
    xt: jax.Array,
    t: jax.Array,
    pred: jax.Array,
    *,
    parameterization: str,
) -> jax.Array:
    """A model output ``pred`` of kind ``parameterization`` as a data prediction x0."""
    check_parameterization(parameterization)
    if parameterization == "x0":
        return pred
    return _to_x0_eps(schedule, xt, t, pred, parameterization)[0]


def prediction_target(
    schedule: DiffusionSchedule,
    x0: jax.Array,
    t: jax.Array,
    eps: jax.Array,
    *,
    parameterization: str,
) -> jax.Array:
    """The regression target of a ``parameterization`` model for ``x_t = a x_0 + s eps``:
    ``eps`` for ``"eps"``, ``x_0`` for ``"x0"`` and ``v = a eps - s x_0`` for ``"v"``
    (:func:`jaxgen.core.parameterization.from_x0_eps`)."""
    check_parameterization(parameterization)
    alpha, sigma = alpha_sigma(schedule, t, x0)
    return core_param.from_x0_eps(x0, eps, alpha, sigma, parameterization=parameterization)
