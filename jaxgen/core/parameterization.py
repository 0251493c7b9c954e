"""What a denoising network predicts on a Gaussian path, and exact conversions between the choices.

Every diffusion, score-SDE and (Gaussian-path) flow-matching model here lives on a path

    x_t = alpha(t) x_0 + sigma(t) eps,      x_0 ~ data,  eps ~ N(0, I),

(time runs from data at small ``t`` to noise at large ``t``; DDPM's discrete schedule is
the case ``alpha = sqrt(abar_t)``, ``sigma = sqrt(1 - abar_t)``, a VP SDE has
``alpha^2 + sigma^2 = 1``, a VE SDE ``alpha = 1``). Given ``x_t``, ``alpha`` and ``sigma``
each of the following predictions determines the pair ``(x_0, eps)`` and so all others:

* ``"eps"``: the noise ``eps`` (Ho et al. 2020);
* ``"x0"``: the data, i.e. the **denoiser** ``D(x_t) = E[x_0 | x_t]`` (Karras et al. 2022);
* ``"score"``: ``grad log p_t(x_t) = -eps / sigma`` (Song et al. 2021); Tweedie's formula
  ``E[x_0 | x_t] = (x_t + sigma^2 score) / alpha``;
* ``"v"``: ``v = alpha eps - sigma x_0`` (Salimans and Ho 2022), so that
  ``x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)`` and
  ``eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)``;
* ``"velocity"``: the path's time derivative ``u = dx_t/dt = alpha' x_0 + sigma' eps``
  (flow matching, Lipman et al. 2023), which needs ``alpha' = dalpha/dt`` and
  ``sigma' = dsigma/dt``: with ``det = alpha sigma' - sigma alpha'``,
  ``x_0 = (sigma' x_t - sigma u) / det`` and ``eps = (alpha u - alpha' x_t) / det``.

``alpha``, ``sigma`` (and the derivatives) are per example ``(B,)`` or scalars; they are
broadcast over the event axes.

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Song et al. Score-Based Generative Modeling through SDEs. ICLR 2021.
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022.
  Lipman, Chen, Ben-Hamu, Nickel, Le. Flow Matching for Generative Modeling. ICLR 2023.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice

__all__ = [
    "PARAMETERIZATIONS",
    "broadcast_to_event",
    "check_parameterization",
    "convert",
    "from_x0_eps",
    "prediction_target",
    "to_x0_eps",
]

PARAMETERIZATIONS: tuple[str, ...] = ("eps", "x0", "score", "v", "velocity")


def check_parameterization(parameterization: str, allowed=PARAMETERIZATIONS) -> str:
    """``parameterization`` if it is one of ``allowed``, else a ``ValueError``."""
    return check_choice("parameterization", parameterization, allowed)


def broadcast_to_event(value: jax.Array | float, x: jax.Array) -> jax.Array:
    """A per-example ``(B,)`` value (or a scalar) reshaped to broadcast against ``x``
    of shape ``(B, *event)``."""
    value = jnp.asarray(value)
    if value.ndim == 0:
        return value
    return value.reshape(value.shape + (1,) * (x.ndim - value.ndim))


def _derivatives(parameterization, alpha_dot, sigma_dot):
    if parameterization == "velocity" and (alpha_dot is None or sigma_dot is None):
        raise ValueError(
            "the 'velocity' parameterization needs the path's derivatives alpha_dot and sigma_dot"
        )


def to_x0_eps(
    prediction: jax.Array,
    x: jax.Array,
    alpha: jax.Array,
    sigma: jax.Array,
    *,
    parameterization: str,
    alpha_dot: jax.Array | None = None,
    sigma_dot: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(x_0, eps)`` implied by a ``parameterization`` prediction at ``x_t = x``."""
    check_parameterization(parameterization)
    _derivatives(parameterization, alpha_dot, sigma_dot)
    a, s = broadcast_to_event(alpha, x), broadcast_to_event(sigma, x)
    if parameterization == "eps":
        return (x - s * prediction) / a, prediction
    if parameterization == "x0":
        return prediction, (x - a * prediction) / s
    if parameterization == "score":
        eps = -s * prediction
        return (x - s * eps) / a, eps
    if parameterization == "v":
        norm = jnp.square(a) + jnp.square(s)
        return (a * x - s * prediction) / norm, (s * x + a * prediction) / norm
    da, ds = broadcast_to_event(alpha_dot, x), broadcast_to_event(sigma_dot, x)
    det = a * ds - s * da
    return (ds * x - s * prediction) / det, (a * prediction - da * x) / det


def from_x0_eps(
    x0: jax.Array,
    eps: jax.Array,
    alpha: jax.Array,
    sigma: jax.Array,
    *,
    parameterization: str,
    alpha_dot: jax.Array | None = None,
    sigma_dot: jax.Array | None = None,
) -> jax.Array:
    """The ``parameterization`` prediction of the pair ``(x_0, eps)`` (also the regression
    target of a model of that parameterization for ``x_t = alpha x_0 + sigma eps``)."""
    check_parameterization(parameterization)
    _derivatives(parameterization, alpha_dot, sigma_dot)
    a, s = broadcast_to_event(alpha, x0), broadcast_to_event(sigma, x0)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "score":
        return -eps / s
    if parameterization == "v":
        return a * eps - s * x0
    da, ds = broadcast_to_event(alpha_dot, x0), broadcast_to_event(sigma_dot, x0)
    return da * x0 + ds * eps


prediction_target = from_x0_eps


def convert(
    prediction: jax.Array,
    x: jax.Array,
    alpha: jax.Array,
    sigma: jax.Array,
    *,
    source: str,
    target: str,
    alpha_dot: jax.Array | None = None,
    sigma_dot: jax.Array | None = None,
) -> jax.Array:
    """A ``source`` prediction at ``x_t = x`` converted to the ``target`` one (exact)."""
    if source == target:
        check_parameterization(source)
        return prediction
    kw = dict(alpha_dot=alpha_dot, sigma_dot=sigma_dot)
    x0, eps = to_x0_eps(prediction, x, alpha, sigma, parameterization=source, **kw)
    return from_x0_eps(x0, eps, alpha, sigma, parameterization=target, **kw)
