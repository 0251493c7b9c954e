"""Ancestral sampling of the DDPM reverse process (Ho et al. 2020, Algorithm 2).

Starting from ``x_T ~ N(0, I)``, for ``t = T, ..., 1``::

    x_{t-1} = mu_theta(x_t, t) + sigma_t z,   z ~ N(0, I) if t > 1 else z = 0,

where ``mu_theta`` and ``sigma_t^2`` come from
:func:`jaxgen.diffusion.variational_bound.p_mean_variance` (eq. 11 for an eps model;
``sigma_t^2 = beta_t`` or ``beta_tilde_t``). The loop is one ``jax.lax.scan`` over the
reversed timesteps, so the model is traced once, whatever ``T`` is.

Randomness is per example (:mod:`jaxgen.core.sampling`): example ``b`` draws ``x_T`` and
every step's ``z`` from its own key alone (``initial_and_step_keys``), so a sample depends
only on the seed and its index, not on the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core import sampling
from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_sample_shape
from jaxgen.diffusion.ddpm_loss import ModelFn
from jaxgen.diffusion.parameterization import check_parameterization
from jaxgen.diffusion.schedules import DiffusionSchedule
from jaxgen.diffusion.variational_bound import MODEL_VARIANCES, p_mean_variance

__all__ = ["ancestral_sample"]


def ancestral_sample(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    key: jax.Array,
    shape: Sequence[int],
    *,
    parameterization: str = "eps",
    model_variance: str = "beta",
    clip_denoised: bool = False,
) -> SamplerOutput:
    """Draws samples with Algorithm 2 of Ho et al. (2020).

    ``x_{t-1} = mu_theta(x_t, t) + sigma_t z`` for ``t = T..1``, no noise at the last step.

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction``, ``t`` int32 ``(B,)`` 0-based.
      schedule: the diffusion schedule (``T`` steps).
      key: one ``jax.random.key`` (example ``b`` uses ``fold_in(key, b)``) or ``(B,)``
        per-example keys.
      shape: static sample shape ``(B, *event)``.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
      model_variance: ``"beta"`` (``sigma_t^2 = beta_t``) or ``"posterior"``
        (``sigma_t^2 = beta_tilde_t``).
      clip_denoised: clip each ``x_0`` estimate to ``[-1, 1]``.

    Returns:
      :class:`SamplerOutput` with ``samples`` of shape ``shape`` (the schedule's dtype) and
      ``nfe = T``.
    """
    check_parameterization(parameterization)
    check_choice("model_variance", model_variance, MODEL_VARIANCES)
    shape = check_sample_shape(shape)
    num_t = schedule.num_timesteps
    x_T, step_keys = sampling.initial_and_step_keys(key, shape, num_t, schedule.betas.dtype)

    def step(x, inputs):
        index, step_key = inputs
        t = jnp.full((shape[0],), index, dtype=jnp.int32)
        mean, _, log_var, _ = p_mean_variance(
            model_fn,
            schedule,
            x,
            t,
            parameterization=parameterization,
            model_variance=model_variance,
            clip_denoised=clip_denoised,
        )
        z = sampling.normal(step_key, shape[1:], x.dtype)
        std = jnp.where(index > 0, jnp.exp(0.5 * log_var), jnp.zeros_like(log_var))
        return (mean + std * z).astype(x.dtype), None

    indices = jnp.arange(num_t - 1, -1, -1, dtype=jnp.int32)
    samples, _ = jax.lax.scan(step, x_T, (indices, step_keys))
    return SamplerOutput(samples=samples, nfe=num_t)
