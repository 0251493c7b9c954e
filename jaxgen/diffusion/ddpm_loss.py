"""The DDPM training loss (Ho et al. 2020, Algorithm 1 and eq. 14).

For ``t ~ U{1..T}``, ``eps ~ N(0, I)`` and ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
(eq. 4), the "simple" objective of eq. 14 is

    L_simple = E_{t, x_0, eps} || eps - eps_theta(x_t, t) ||^2,

here averaged (not summed) over the event dimensions so its scale does not depend on the
data size. A model that predicts ``x_0`` or ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``
(Salimans & Ho 2022) is regressed on that quantity instead, with the same unweighted mean
squared error. Each objective is minimised by the posterior mean of its target given
``x_t`` (e.g. ``eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - abar_t) grad log q_t(x_t)``).

Losses are per example, shape ``(B,)``; the caller reduces.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion.forward import (
    check_timestep_values,
    check_timesteps,
    clip_timesteps,
    q_sample,
)
from jaxgen.diffusion.parameterization import check_parameterization, prediction_target
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = ["ModelFn", "ddpm_loss", "ddpm_loss_at"]

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``model_fn(x, t) -> prediction``: ``x`` of shape ``(B, *event)``, ``t`` int32 ``(B,)``."""


def _event_mean(values: jax.Array) -> jax.Array:
    return jnp.mean(values, axis=tuple(range(1, values.ndim)))


def ddpm_loss_at(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    t: jax.Array,
    noise: jax.Array,
    *,
    parameterization: str = "eps",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The DDPM regression loss at given timesteps and noise (deterministic).

    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (eq. 4) and
    ``loss = mean_event (model_fn(x_t, t) - target)^2`` where ``target`` is ``noise``,
    ``x_0`` or ``v`` for ``parameterization`` ``"eps"``, ``"x0"`` or ``"v"`` (eq. 14 for eps).

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction`` of ``x0``'s shape.
      schedule: the diffusion schedule.
      x0: float data of shape ``(B, *event)``.
      t: int ``(B,)`` 0-based timestep indices in ``[0, T - 1]``. Concrete values outside
        raise ``ValueError`` naming them and the range. Under ``jit`` (traced ``t``) they
        cannot be checked and are clipped to ``[0, T - 1]`` before use (the model, the
        schedule and ``terms["t"]`` all see the clipped step), which is NaN-free.
      noise: standard normal noise of ``x0``'s shape.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
      ``(loss, terms)``: ``loss`` of shape ``(B,)`` and ``terms`` with ``"mse"`` (``(B,)``,
      equal to ``loss``) and ``"t"`` (``(B,)``).
    """
    check_parameterization(parameterization)
    check_timesteps(t, x0)
    check_timestep_values(t, schedule.num_timesteps)
    t = clip_timesteps(t, schedule.num_timesteps)
    xt = q_sample(schedule, x0, t, noise)
    pred = model_fn(xt, t)
    if jnp.shape(pred) != jnp.shape(x0):
        raise ValueError(
            f"model_fn output has shape {jnp.shape(pred)}, expected x0's shape {jnp.shape(x0)}."
        )
    target = prediction_target(schedule, x0, t, noise, parameterization=parameterization)
    mse = _event_mean(jnp.square(pred - target))
    return mse, {"mse": mse, "t": t}


def ddpm_loss(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    key: jax.Array,
    *,
    parameterization: str = "eps",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Monte Carlo DDPM loss (Ho et al. Algorithm 1; ``L_simple`` of eq. 14 for eps).

    Draws ``t ~ U{0..T-1}`` (the paper's ``U{1..T}``) and ``eps ~ N(0, I)`` per example,
    then calls :func:`ddpm_loss_at`.

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction`` of ``x0``'s shape.
      schedule: the diffusion schedule.
      x0: float data of shape ``(B, *event)``.
      key: a ``jax.random.key``.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
      ``(loss, terms)`` as in :func:`ddpm_loss_at`, ``loss`` of shape ``(B,)``.
    """
    check_parameterization(parameterization)
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have shape (B, *event), got {x0.shape}.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be a float array, got dtype {x0.dtype}.")
    key_t, key_noise = jax.random.split(key)
    t = jax.random.randint(key_t, (x0.shape[0],), 0, schedule.num_timesteps, dtype=jnp.int32)
    noise = jax.random.normal(key_noise, x0.shape, dtype=x0.dtype)
    return ddpm_loss_at(model_fn, schedule, x0, t, noise, parameterization=parameterization)
