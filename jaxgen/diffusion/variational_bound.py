"""The DDPM reverse process and its variational bound on the negative log likelihood.

The reverse process (Ho et al. 2020, eqs. 1 and 11) is
``p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)`` with the mean
``mu_theta = mu_tilde_t(x_t, x0_theta(x_t, t))`` (eq. 7 evaluated at the model's estimate of
``x_0``, equivalent to eq. 11 for an eps model) and a fixed variance (Sec. 3.2):
``sigma_t^2 = beta_t`` (``model_variance="beta"``) or ``sigma_t^2 = beta_tilde_t``
(``model_variance="posterior"``).

The variational bound (eq. 5), in nats per example::

    L = L_T + sum_{t=2}^{T} L_{t-1} + L_0,
    L_T     = KL(q(x_T | x_0) || N(0, I)),                                   "prior"
    L_{t-1} = E_{q(x_t | x_0)} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),  "diffusion"
    L_0     = E_{q(x_1 | x_0)} [-log p(x_0 | x_1)],                           "decoder"

with ``E[L] >= -log p(x_0)`` averaged over data, i.e. ``E_data[L]`` is at least the data's
entropy (differential entropy for the continuous decoder, discrete entropy for the
discretised decoder of eq. 13).

Timesteps are 0-based: index ``0`` is the paper's ``t = 1``, the decoder step.

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Nichol, Dhariwal. Improved Denoising Diffusion Probabilistic Models. ICML 2021.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from jaxgen.core.units import bits_per_dim
from jaxgen.core.validation import check_choice, check_num_levels, check_on_grid
from jaxgen.diffusion.ddpm_loss import ModelFn
from jaxgen.diffusion.forward import check_timesteps, expand_to, q_posterior, q_sample
from jaxgen.diffusion.parameterization import check_parameterization, to_x0
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = [
    "MODEL_VARIANCES",
    "bits_per_dim",
    "discretized_gaussian_log_likelihood",
    "normal_kl",
    "p_mean_variance",
    "variational_bound",
    "variational_bound_estimate",
]

MODEL_VARIANCES: tuple[str, ...] = ("beta", "posterior")

_LOG_2PI = math.log(2.0 * math.pi)


def normal_kl(
    mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array, logvar2: jax.Array
) -> jax.Array:
    """Elementwise ``KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))`` in nats.

    ``KL = 0.5 (logvar2 - logvar1 + exp(logvar1 - logvar2)
    + (mean1 - mean2)^2 exp(-logvar2) - 1)``. Arguments broadcast (same rank).
    """
    return 0.5 * (
        logvar2
        - logvar1
        + jnp.exp(logvar1 - logvar2)
        + jnp.square(mean1 - mean2) * jnp.exp(-logvar2)
        - 1.0
    )


def discretized_gaussian_log_likelihood(
    x: jax.Array,
    *,
    mean: jax.Array,
    log_scale: jax.Array,
    num_levels: int = 256,
) -> jax.Array:
    """Elementwise log probability of discretised data under a discretised Gaussian.

    Generalises Ho et al. (2020), Sec. 3.3, eq. 13, from 256 to ``L = num_levels`` levels
    evenly spaced on ``[-1, 1]`` (spacing ``2 / (L - 1)``, bin half-width
    ``delta = 1 / (L - 1)``)::

        P(x) = Phi((x + delta - mean) / scale) - Phi((x - delta - mean) / scale),

    with the lowest bin extended to ``-inf`` (``P = Phi((x + delta - mean) / scale)``) and
    the highest to ``+inf`` (``P = 1 - Phi((x - delta - mean) / scale)``), so the
    probabilities of the ``L`` levels sum to one.

    Numerics: the interior bin is ``log Phi(b) + log(-expm1(log Phi(a) - log Phi(b)))`` with
    ``a < b`` reflected to the lower tail (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``), using
    ``log_ndtr``, which stays accurate far in the tails. For bins much narrower than the
    scale (width ``w = 2 delta / scale`` with ``w (1 + |z|) < (24 eps)^(1/3)``, ``eps`` the
    float resolution) the midpoint rule ``log N(z) + log w`` is used instead; both then err
    by about ``eps^(2/3)``. Every branch is finite, so gradients are finite.

    Args:
      x: data on the ``num_levels`` grid in ``[-1, 1]`` (concrete data off the grid raise
        ``ValueError``; traced data are not checked).
      mean: Gaussian means, same shape as ``x``.
      log_scale: log standard deviations, broadcastable against ``x`` (same rank or scalar).
      num_levels: number of levels ``L >= 2`` (256 for 8-bit images).

    Returns:
      ``log P(x)`` elementwise, with ``x``'s shape.
    """
    num_levels = check_num_levels(num_levels)
    x = jnp.asarray(x)
    check_on_grid(x, num_levels, "x (data of the discretized Gaussian decoder)")
    mean = jnp.asarray(mean)
    if mean.shape != x.shape:
        raise ValueError(f"mean must have x's shape {x.shape}, got {mean.shape}.")
    delta = 1.0 / (num_levels - 1)
    inv_scale = jnp.exp(-jnp.asarray(log_scale))
    centered = x - mean
    upper = (centered + delta) * inv_scale
    lower = (centered - delta) * inv_scale
    log_cdf_upper = log_ndtr(upper)  # lowest bin: P(X <= x + delta)
    log_sf_lower = log_ndtr(-lower)  # highest bin: P(X > x - delta)

    # Interior bin, evaluated in the lower tail where log_ndtr keeps its accuracy.
    reflect = centered > 0
    hi = jnp.where(reflect, -lower, upper)
    lo = jnp.where(reflect, -upper, lower)
    log_hi = log_ndtr(hi)
    diff = jnp.minimum(log_ndtr(lo) - log_hi, -jnp.finfo(log_hi.dtype).tiny)
    log_interior = log_hi + jnp.log(-jnp.expm1(diff))

    # Midpoint rule for bins much narrower than the scale.
    z = centered * inv_scale
    width = 2.0 * delta * inv_scale
    log_midpoint = -0.5 * jnp.square(z) - 0.5 * _LOG_2PI + jnp.log(width)
    threshold = (24.0 * float(jnp.finfo(log_hi.dtype).eps)) ** (1.0 / 3.0)
    narrow = width * (1.0 + jnp.abs(z)) < threshold
    log_interior = jnp.where(narrow, log_midpoint, log_interior)

    return jnp.where(
        x < -1.0 + delta,
        log_cdf_upper,
        jnp.where(x > 1.0 - delta, log_sf_lower, log_interior),
    )


def _model_log_variance(
    schedule: DiffusionSchedule, t: jax.Array, x: jax.Array, model_variance: str
) -> jax.Array:
    check_choice("model_variance", model_variance, MODEL_VARIANCES)
    if model_variance == "posterior":
        log_var = schedule.posterior_log_variance_clipped
    else:
        # sigma_t^2 = beta_t, except at t = 1 where beta_tilde_2 is used (the reference code's
        # "fixedlarge"): the decoder's variance then equals the clipped posterior variance.
        log_var = jnp.log(jnp.concatenate([schedule.posterior_variance[1:2], schedule.betas[1:]]))
    return expand_to(log_var[t], jnp.ndim(x))


def p_mean_variance(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    xt: jax.Array,
    t: jax.Array,
    *,
    parameterization: str = "eps",
    model_variance: str = "beta",
    clip_denoised: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Mean and variance of the reverse step ``p(x_{t-1} | x_t)`` (Ho et al. Sec. 3.2).

    ``x0_pred = to_x0(model_fn(x_t, t))`` (clipped to ``[-1, 1]`` if ``clip_denoised``),
    ``mean = coef1_t x0_pred + coef2_t x_t`` (eq. 7 at ``x0_pred``; equals eq. 11 for an
    eps model without clipping) and ``variance = sigma_t^2`` with

    * ``model_variance="beta"``: ``sigma_t^2 = beta_t`` for ``t >= 2``; at ``t = 1``
      (index 0) ``beta_tilde_2`` is used, the clipped posterior variance, as in the
      reference implementations. At ``t = 1`` the mean is ``x0_pred`` itself, and the
      variance is the decoder's (eq. 13) variance;
    * ``model_variance="posterior"``: ``sigma_t^2 = beta_tilde_t``, clipped at ``t = 1`` to
      ``beta_tilde_2`` (so both choices share the decoder variance).

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction``.
      schedule: the diffusion schedule.
      xt: noisy data of shape ``(B, *event)``.
      t: int ``(B,)`` 0-based timestep indices.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
      model_variance: ``"beta"`` or ``"posterior"``.
      clip_denoised: clip ``x0_pred`` to ``[-1, 1]``.

    Returns:
      ``(mean, variance, log_variance, x0_pred)``; ``mean`` and ``x0_pred`` have ``xt``'s
      shape, the variances ``(B, 1, ..., 1)``.
    """
    check_parameterization(parameterization)
    check_timesteps(t, xt)
    log_variance = _model_log_variance(schedule, t, xt, model_variance)
    pred = model_fn(xt, t)
    if jnp.shape(pred) != jnp.shape(xt):
        raise ValueError(
            f"model_fn output has shape {jnp.shape(pred)}, expected x's shape {jnp.shape(xt)}."
        )
    x0_pred = to_x0(schedule, xt, t, pred, parameterization=parameterization)
    if clip_denoised:
        x0_pred = jnp.clip(x0_pred, -1.0, 1.0)
    mean, _, _ = q_posterior(schedule, x0_pred, xt, t)
    return mean, jnp.exp(log_variance), log_variance, x0_pred


def _event_sum(values: jax.Array) -> jax.Array:
    return jnp.sum(values, axis=tuple(range(1, values.ndim)))


def _prior_kl(schedule: DiffusionSchedule, x0: jax.Array) -> jax.Array:
    """``L_T = KL(q(x_T | x_0) || N(0, I))`` summed over event dims, shape ``(B,)``."""
    mean = schedule.sqrt_alphas_cumprod[-1] * x0
    log_var = jnp.log1p(-schedule.alphas_cumprod[-1])
    return _event_sum(normal_kl(mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var)))


def _terms_at(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    t: jax.Array,
    noise: jax.Array,
    *,
    parameterization: str,
    model_variance: str,
    num_levels: int | None,
    clip_denoised: bool,
) -> tuple[jax.Array, jax.Array]:
    """Single-sample ``KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t))`` and ``-log p(x_0|x_t)``.

    Both ``(B,)``, summed over event dims, with ``x_t`` from ``noise``. The KL is ``L_{t-1}``
    for ``t >= 2``; the decoder NLL is ``L_0`` at ``t = 1`` (index 0).
    """
    xt = q_sample(schedule, x0, t, noise)
    true_mean, _, true_log_var = q_posterior(schedule, x0, xt, t)
    mean, _, log_var, _ = p_mean_variance(
        model_fn,
        schedule,
        xt,
        t,
        parameterization=parameterization,
        model_variance=model_variance,
        clip_denoised=clip_denoised,
    )
    kl = _event_sum(normal_kl(true_mean, true_log_var, mean, log_var))
    if num_levels is None:
        nll = 0.5 * (_LOG_2PI + log_var + jnp.square(x0 - mean) * jnp.exp(-log_var))
    else:
        nll = -discretized_gaussian_log_likelihood(
            x0, mean=mean, log_scale=0.5 * log_var, num_levels=num_levels
        )
    return kl, _event_sum(nll)


def _check_bound_inputs(
    x0: jax.Array, parameterization: str, model_variance: str, num_levels: int | None
) -> jax.Array:
    check_parameterization(parameterization)
    check_choice("model_variance", model_variance, MODEL_VARIANCES)
    check_num_levels(num_levels, allow_none=True)
    x0 = jnp.asarray(x0)
    if x0.ndim < 1 or not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(
            f"x0 must be a float array of shape (B, *event), got {x0.dtype}{x0.shape}."
        )
    return x0


def variational_bound(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    key: jax.Array,
    *,
    parameterization: str = "eps",
    model_variance: str = "beta",
    num_levels: int | None = 256,
    clip_denoised: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The full variational bound ``L = L_T + sum_{t=2}^T L_{t-1} + L_0`` (Ho et al. eq. 5).

    Every one of the ``T`` terms is evaluated (``lax.scan`` over ``t``), each with its own
    single sample ``x_t ~ q(x_t | x_0)``, so the result is an unbiased estimate of the bound
    for each example; its mean over data upper-bounds the data entropy.

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction``.
      schedule: the diffusion schedule.
      x0: float data of shape ``(B, *event)``.
      key: a ``jax.random.key``.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
      model_variance: ``"beta"`` or ``"posterior"`` (see :func:`p_mean_variance`).
      num_levels: ``None`` for a continuous Gaussian decoder ``-log N(x_0; mu, sigma_1^2)``
        (a bound on a density), or the number of data levels in ``[-1, 1]`` for the
        discretised decoder of eq. 13 (a bound on a probability mass).
      clip_denoised: clip the model's ``x_0`` estimates to ``[-1, 1]``.

    Returns:
      ``(nats, terms)``: ``nats`` of shape ``(B,)``; ``terms`` has ``"prior"`` (``L_T``),
      ``"diffusion"`` (``sum_{t>=2} L_{t-1}``) and ``"decoder"`` (``L_0``), each ``(B,)``.
    """
    x0 = _check_bound_inputs(x0, parameterization, model_variance, num_levels)
    num_t = schedule.num_timesteps
    batch = x0.shape[0]

    def step(carry, inputs):
        diffusion, decoder = carry
        index, step_key = inputs
        t = jnp.full((batch,), index, dtype=jnp.int32)
        noise = jax.random.normal(step_key, x0.shape, dtype=x0.dtype)
        kl, nll = _terms_at(
            model_fn,
            schedule,
            x0,
            t,
            noise,
            parameterization=parameterization,
            model_variance=model_variance,
            num_levels=num_levels,
            clip_denoised=clip_denoised,
        )
        diffusion = diffusion + jnp.where(index > 0, kl, jnp.zeros_like(kl))
        decoder = decoder + jnp.where(index == 0, nll, jnp.zeros_like(nll))
        return (diffusion, decoder), None

    zeros = jnp.zeros((batch,), dtype=x0.dtype)
    inputs = (jnp.arange(num_t, dtype=jnp.int32), jax.random.split(key, num_t))
    (diffusion, decoder), _ = jax.lax.scan(step, (zeros, zeros), inputs)
    prior = _prior_kl(schedule, x0)
    nats = prior + diffusion + decoder
    return nats, {"prior": prior, "diffusion": diffusion, "decoder": decoder}


def variational_bound_estimate(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    x0: jax.Array,
    key: jax.Array,
    *,
    parameterization: str = "eps",
    model_variance: str = "beta",
    num_levels: int | None = 256,
    clip_denoised: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Unbiased one-timestep estimate of the bound of eq. 5: ``L_T + T * L_{t-1}``.

    With ``t ~ U{1..T}`` per example and ``L_0`` (the decoder) used at ``t = 1``,
    ``E_t[T L_{t-1}] = sum_t L_{t-1}``, so the expectation equals
    :func:`variational_bound`'s. One model call instead of ``T``.

    Args:
      As :func:`variational_bound`.

    Returns:
      ``(nats, terms)``: ``nats`` of shape ``(B,)``; ``terms`` has ``"prior"`` (``L_T``),
      ``"t"`` (the sampled 0-based index) and ``"term"`` (the single-step term,
      unscaled), each ``(B,)``.
    """
    x0 = _check_bound_inputs(x0, parameterization, model_variance, num_levels)
    num_t = schedule.num_timesteps
    key_t, key_noise = jax.random.split(key)
    t = jax.random.randint(key_t, (x0.shape[0],), 0, num_t, dtype=jnp.int32)
    noise = jax.random.normal(key_noise, x0.shape, dtype=x0.dtype)
    kl, nll = _terms_at(
        model_fn,
        schedule,
        x0,
        t,
        noise,
        parameterization=parameterization,
        model_variance=model_variance,
        num_levels=num_levels,
        clip_denoised=clip_denoised,
    )
    term = jnp.where(t == 0, nll, kl)
    prior = _prior_kl(schedule, x0)
    return prior + num_t * term, {"prior": prior, "t": t, "term": term}
