"""Classifier guidance (Dhariwal and Nichol 2021) as a transform of a model callable.

A noise-aware classifier ``log_prob_fn(x, t, condition) = log p_phi(c | x_t)`` (``(B,)``)
tilts the model's distribution towards class ``c``: Bayes' rule on the noised marginals,

    grad log p_t(x | c) = grad log p_t(x) + grad log p_t(c | x),

so the guided score ``grad log p_t(x) + s grad log p_phi(c | x_t)`` samples
``p_t(x) p_phi(c | x)^s`` (up to normalisation), exactly the class's distribution at
``s = 1`` when ``p_phi`` is the exact noisy classifier. Written in the other
parameterizations of the path ``x_t = alpha x_0 + sigma eps`` (score ``= -eps / sigma``,
Tweedie ``x_0 = (x + sigma^2 score) / alpha``), a score shift ``delta = s grad`` is

    eps' = eps - sigma delta               (Dhariwal and Nichol, Alg. 2),
    x0'  = x0 + sigma^2 / alpha delta,
    v'   = v - sigma (alpha^2 + sigma^2) / alpha delta.

For DDPM's ancestral sampler, Alg. 1 shifts the *mean* of each reverse step instead,
``mu' = mu + s Sigma_t grad log p_phi(c | x_t)``: :func:`ancestral_mean_shift_guidance`.

Reference:
  Dhariwal, Nichol. Diffusion Models Beat GANs on Image Synthesis. NeurIPS 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.parameterization import broadcast_to_event, check_parameterization, convert
from jaxgen.core.validation import check_choice
from jaxgen.guidance.classifier_free import GuidedFn, check_finite
from jaxgen.guidance.paths import path_coefficients, path_derivatives

__all__ = [
    "MEAN_SHIFT_VARIANCES",
    "LogProbFn",
    "ancestral_mean_shift_guidance",
    "classifier_gradient",
    "classifier_guidance",
]

LogProbFn = Callable[[jax.Array, jax.Array, Any], jax.Array]
"""``log_prob_fn(x, t, condition) -> (B,)``: ``log p_phi(c | x_t)`` per example."""

MEAN_SHIFT_VARIANCES: tuple[str, ...] = ("beta", "beta_tilde", "posterior")


def classifier_gradient(
    log_prob_fn: LogProbFn, x: jax.Array, t: jax.Array, condition: Any
) -> jax.Array:
    """``grad_x log p_phi(c | x_t)`` of each example, shape of ``x``.

    Computed as the gradient of ``sum_b log p_phi(c_b | x_b)``, which is each example's own
    gradient because example ``b``'s log-probability depends only on ``x_b``.
    """
    x = jnp.asarray(x)

    def total(x):
        log_p = log_prob_fn(x, t, condition)
        if jnp.shape(log_p) != (x.shape[0],):
            raise ValueError(
                f"log_prob_fn must return one log-probability per example, shape "
                f"({x.shape[0]},), got {jnp.shape(log_p)}"
            )
        return jnp.sum(log_p)

    return jax.grad(total)(x).astype(x.dtype)


def classifier_guidance(
    model: Callable[[jax.Array, jax.Array], jax.Array],
    log_prob_fn: LogProbFn,
    condition: Any,
    *,
    scale: Any,
    parameterization: str = "score",
    path: Any = None,
) -> GuidedFn:
    """The model's score shifted by ``scale * grad_x log p_phi(c | x_t)``, in its own
    parameterization (Dhariwal and Nichol 2021, Sec. 4, Alg. 2; see the module docstring).

    The shift is carried to ``parameterization`` by the exact linear map of
    :func:`jaxgen.core.parameterization.convert` (a score change ``delta`` at fixed ``x`` is
    ``convert(delta, 0, ...)``), so the prediction itself is not round-tripped.

    Args:
      model: ``model(x, t) -> prediction`` (unconditional, or a conditional model closed
        over its condition).
      log_prob_fn: ``log_prob_fn(x, t, condition) -> (B,)`` log-probabilities.
      condition: what ``log_prob_fn`` conditions on (e.g. int labels ``(B,)``).
      scale: ``s`` (scalar or ``(B,)``; may be traced). ``s = 0`` is the model itself.
      parameterization: ``"score"``, ``"eps"``, ``"x0"`` or ``"v"`` (``"velocity"`` needs
        the path's derivatives and is refused).
      path: DDPM schedule, SDE or ``t -> (alpha, sigma)``; required unless
        ``parameterization="score"``.

    Returns:
      ``guided(x, t)`` of the model's parameterization.
    """
    check_finite(scale, "guidance scale")
    if scale is None:
        raise ValueError("classifier_guidance needs a scale, got None")
    check_parameterization(parameterization)
    derivatives = path_derivatives(path) if path is not None else None
    if parameterization == "velocity" and derivatives is None:
        raise ValueError(
            "classifier guidance of a 'velocity' model needs the path's derivatives (a path "
            "with alpha_dot(t) and sigma_dot(t), e.g. a jaxgen.flow_matching path); or convert "
            "the model to 'score', 'eps', 'x0' or 'v' first"
        )
    if parameterization != "score" and path is None:
        raise ValueError(
            f"classifier guidance of a {parameterization!r} model needs path= (a DDPM "
            "schedule, an SDE or t -> (alpha, sigma)) to convert the score shift; got None"
        )
    coefficients = path_coefficients(path) if path is not None else None

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        pred = model(x, t)
        delta = broadcast_to_event(scale, x) * classifier_gradient(log_prob_fn, x, t, condition)
        if parameterization == "score":
            return (pred + delta).astype(pred.dtype)
        alpha, sigma = coefficients(t)
        rates = {}
        if derivatives is not None:
            rates["alpha_dot"], rates["sigma_dot"] = derivatives(t)
        shift = convert(
            delta,
            jnp.zeros_like(x),
            alpha,
            sigma,
            source="score",
            target=parameterization,
            **rates,
        )
        return (pred + shift).astype(pred.dtype)

    return guided


def ancestral_mean_shift_guidance(
    eps_model: Callable[[jax.Array, jax.Array], jax.Array],
    log_prob_fn: LogProbFn,
    condition: Any,
    *,
    scale: Any,
    schedule: Any,
    model_variance: str = "beta",
) -> GuidedFn:
    """An eps model whose DDPM ancestral step mean is ``mu + s Sigma_t grad log p_phi(c|x_t)``
    (Dhariwal and Nichol 2021, Alg. 1).

    The ancestral mean of an eps model is
    ``mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)`` (Ho et al. 2020, eq. 11),
    linear in ``eps``, so the eps

        eps' = eps - s Sigma_t sqrt(alpha_t) sqrt(1 - abar_t) / beta_t grad

    moves it by exactly ``s Sigma_t grad``, with ``Sigma_t = beta_t`` (``"beta"``) or
    ``beta_tilde_t`` (``"beta_tilde"``, alias ``"posterior"``), the variance the sampler
    uses. Exact when the sampler does not clip its ``x_0`` estimate
    (``ancestral_sample(..., parameterization="eps", clip_denoised=False)``).

    Args:
      eps_model: ``eps_model(x, t) -> eps``, int 0-based ``t`` ``(B,)``.
      log_prob_fn: ``log_prob_fn(x, t, condition) -> (B,)``.
      condition: what ``log_prob_fn`` conditions on.
      scale: ``s`` (scalar or ``(B,)``; may be traced).
      schedule: the DDPM schedule (:class:`jaxgen.diffusion.DiffusionSchedule`).
      model_variance: ``"beta"``, ``"beta_tilde"`` or ``"posterior"`` (= ``"beta_tilde"``).

    Returns:
      ``guided(x, t)``, an eps model for the ancestral sampler.
    """
    check_finite(scale, "guidance scale")
    if scale is None:
        raise ValueError("ancestral_mean_shift_guidance needs a scale, got None")
    check_choice("model_variance", model_variance, MEAN_SHIFT_VARIANCES)
    for field in ("betas", "alphas", "sqrt_one_minus_alphas_cumprod", "posterior_variance"):
        if not hasattr(schedule, field):
            raise ValueError(f"schedule must be a DDPM schedule with {field!r}, got {schedule!r}")
    variance = schedule.betas if model_variance == "beta" else schedule.posterior_variance
    factor = variance * jnp.sqrt(schedule.alphas) * schedule.sqrt_one_minus_alphas_cumprod
    factor = factor / schedule.betas

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        eps = eps_model(x, t)
        grad = classifier_gradient(log_prob_fn, x, t, condition)
        coef = broadcast_to_event(factor[t], x) * broadcast_to_event(scale, x)
        return (eps - coef * grad).astype(eps.dtype)

    return guided
