"""The EDM sampler (Karras et al. 2022): Heun's method on the probability-flow ODE in the
scaled frame, deterministic (Alg. 1) or with stochastic churn (Alg. 2).

For a kernel ``N(alpha x_0, sigma^2 I)`` write ``x~ = x / alpha`` and ``s~ = sigma / alpha``
(:meth:`SDE.sigma_ratio`; EDM's sigma). Then ``x~ = x_0 + s~ eps`` and the probability-flow
ODE of any of VP, sub-VP and VE becomes EDM's (eq. 4 with ``s(t) = 1`` and ``sigma(t) = t``,
and eq. 3, ``grad log p(x~; s~) = (D(x~; s~) - x~) / s~^2``)::

    dx~ / ds~ = (x~ - D(x~; s~)) / s~,

where ``D(x~; s~) = x0(alpha x~, t)`` is the data prediction at ``t = t(s~)``
(:meth:`SDE.t_from_sigma_ratio`): ``x0(x, t) = (x + sigma^2 s(x, t)) / alpha``
(:func:`jaxgen.sde.score_to_x0`). The noise levels are EDM eq. 5 with ``rho = 7``,

    s~_i = (s~_max^(1/rho) + i / (N - 1) (s~_min^(1/rho) - s~_max^(1/rho)))^rho,
    i = 0..N-1,   s~_N = 0,

with ``s~_max = s~(T)`` and ``s~_min = s~(t_min)`` (``N = 1``: ``s~_0 = s~_max``). Alg. 1:
from ``x~_0 = x_T / alpha(T)`` (``x_T ~`` the SDE's prior), for ``i = 0..N-1``::

    d_i = (x~_i - D(x~_i; s~_i)) / s~_i,       x~_{i+1} = x~_i + (s~_{i+1} - s~_i) d_i,
    if s~_{i+1} != 0:  d'_i = (x~_{i+1} - D(x~_{i+1}; s~_{i+1})) / s~_{i+1},
                       x~_{i+1} = x~_i + (s~_{i+1} - s~_i) (d_i + d'_i) / 2.

The last step, from ``s~_min`` to ``0``, is a single Euler step, which is exactly the
denoiser: ``x~_N = D(x~_{N-1}; s~_min)`` (so no separate final denoise is needed). At
``s~ = 0`` the scaled frame is the data frame (``x~ = x_0``), so ``x~_N`` is returned as is.
Model calls: ``nfe = 2 N - 1``.

Alg. 2 adds, before each step, ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` if
``S_tmin <= s~_i <= S_tmax`` (else 0), ``s^_i = (1 + gamma_i) s~_i`` and
``x^_i = x~_i + sqrt(s^_i^2 - s~_i^2) eps_i`` with ``eps_i ~ N(0, S_noise^2 I)``, then
takes the step above from ``(x^_i, s^_i)``. ``s^_i`` may exceed ``s~(T)`` on the first
steps; its time ``t(s^_i) > T`` is still exact for these closed-form SDEs.

Reference:
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022 (eqs. 4-5, Algs. 1-2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_sample_shape
from jaxgen.sde.parameterization import score_to_x0
from jaxgen.sde.samplers.euler_maruyama import example_normal, prior_and_step_keys
from jaxgen.sde.samplers.time_steps import check_num_steps, karras_sigma_ratios, resolve_t_min
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = ["edm_sample", "edm_sigma_ratios"]

_MAX_GAMMA = math.sqrt(2.0) - 1.0


def edm_sigma_ratios(
    sde: SDE, num_steps: int, *, rho: float = 7.0, t_min: float | None = None
) -> jax.Array:
    """EDM's ``num_steps + 1`` noise levels ``s~_0 = s~(T) > ... > s~_{N-1} = s~(t_min) >
    s~_N = 0`` (eq. 5, module docstring)."""
    num_steps = check_num_steps(num_steps)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}.")
    t_min = resolve_t_min(sde, t_min)
    dtype = jnp.result_type(float)
    s_max = sde.sigma_ratio(jnp.asarray(sde.T, dtype))
    s_min = sde.sigma_ratio(jnp.asarray(t_min, dtype))
    if num_steps == 1:
        levels = s_max[None]
    else:
        levels = karras_sigma_ratios(s_max, s_min, num_steps, rho)
    return jnp.concatenate([levels, jnp.zeros((1,), dtype)])


def edm_sample(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    num_steps: int = 18,
    rho: float = 7.0,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    t_min: float | None = None,
) -> SamplerOutput:
    """Samples with EDM's Heun sampler (Alg. 1; Alg. 2 when ``churn > 0``).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE (VP, sub-VP or VE).
      key: one PRNG key or ``(B,)`` per-example keys, split per example by
        :func:`jaxgen.sde.samplers.euler_maruyama.prior_and_step_keys`: ``x_T`` (the same as
        every other sampler here for the same key) and one churn key per step.
      shape: static ``(B, *event)``.
      num_steps: ``N >= 1`` noise levels before ``s~ = 0`` (static).
      rho: the exponent of EDM eq. 5.
      churn: ``S_churn >= 0``; 0 gives the deterministic Alg. 1.
      s_tmin, s_tmax: churn only where ``S_tmin <= s~_i <= S_tmax``.
      s_noise: ``S_noise``, the std multiplier of the churn noise.
      t_min: the time of the last nonzero level (``None``: ``sde.t_min``).

    Returns:
      :class:`SamplerOutput` with ``nfe = 2 num_steps - 1``.
    """
    shape = check_sample_shape(shape)
    num_steps = check_num_steps(num_steps)
    stochastic = not (isinstance(churn, (int, float)) and churn == 0)
    if isinstance(churn, (int, float)) and churn < 0:
        raise ValueError(f"churn must be >= 0, got {churn!r}.")
    if isinstance(s_noise, (int, float)) and s_noise < 0:
        raise ValueError(f"s_noise must be >= 0, got {s_noise!r}.")
    dtype = jnp.result_type(float)
    batch = shape[0]
    levels = edm_sigma_ratios(sde, num_steps, rho=rho, t_min=t_min).astype(dtype)
    t_min = resolve_t_min(sde, t_min)
    times = sde.t_from_sigma_ratio(levels[:-1]).at[0].set(sde.T)  # exact endpoints
    if num_steps > 1:
        times = times.at[-1].set(t_min)
    gammas = jnp.where(
        (levels[:-1] >= s_tmin) & (levels[:-1] <= s_tmax),
        jnp.minimum(churn / num_steps, _MAX_GAMMA),
        0.0,
    ).astype(dtype)

    def denoise(x_scaled: jax.Array, t: jax.Array) -> jax.Array:
        tb = jnp.full((batch,), t, dtype)
        alpha, sigma = sde.alpha(tb), sde.sigma(tb)
        x = jnp.reshape(alpha, (batch,) + (1,) * (len(shape) - 1)) * x_scaled
        return score_to_x0(score_fn(x, tb), x, alpha, sigma)

    def churned(x, level, t, gamma, step_key):
        """Alg. 2 lines 4-6: ``(x^, s^, t(s^))``; the identity when deterministic."""
        if not stochastic:
            return x, level, t
        level_hat = level * (1.0 + gamma)
        noise = s_noise * example_normal(step_key, x)
        # sqrt(s^^2 - s~^2) written so that it cannot go negative by rounding.
        x_hat = x + level * jnp.sqrt(gamma * (2.0 + gamma)) * noise
        t_hat = jnp.where(gamma > 0, sde.t_from_sigma_ratio(level_hat), t)
        return x_hat, level_hat, t_hat

    def heun_step(x, per_step):
        level, level_next, t, t_next, gamma, step_key = per_step
        x_hat, level_hat, t_hat = churned(x, level, t, gamma, step_key)
        d = (x_hat - denoise(x_hat, t_hat)) / level_hat
        x_euler = x_hat + (level_next - level_hat) * d
        d_next = (x_euler - denoise(x_euler, t_next)) / level_next
        return x_hat + (level_next - level_hat) * 0.5 * (d + d_next), None

    x_prior, step_keys = prior_and_step_keys(sde, key, shape, num_steps)
    x = x_prior / sde.alpha(jnp.asarray(sde.T, dtype))
    if num_steps > 1:
        per_step = (levels[:-2], levels[1:-1], times[:-1], times[1:], gammas[:-1], step_keys[:-1])
        x, _ = jax.lax.scan(heun_step, x, per_step)
    # Last step, to s~ = 0: one Euler step, i.e. x~ <- D(x^; s^) (Alg. 1 line 7 skipped).
    x_hat, _, t_hat = churned(x, levels[-2], times[-1], gammas[-1], step_keys[-1])
    return SamplerOutput(denoise(x_hat, t_hat), 2 * num_steps - 1)
