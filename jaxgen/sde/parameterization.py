"""What a score network predicts, and pure conversions between the choices.

With ``x_t = alpha x_0 + sigma eps`` (any SDE in :mod:`jaxgen.sde.sdes`) a network may
predict, at no loss of generality (each determines the others given ``x_t, alpha, sigma``):

* ``"score"``: ``s = grad log p_t(x_t)``, whose DSM target is ``-eps / sigma``;
* ``"eps"``: the noise ``eps = -sigma s`` (Ho et al. 2020);
* ``"x0"``: the denoised data ``x_0 = (x_t + sigma^2 s) / alpha`` (Tweedie);
* ``"v"``: ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022), so that
  ``x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)`` and
  ``eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)``;
* ``"edm"``: Karras et al. (2022) preconditioning in the scaled frame ``x~ = x_t / alpha``
  with noise level ``s~ = sigma / alpha``: the raw network ``F`` sees ``c_in x~`` and
  ``c_noise = log(s~) / 4`` and the denoiser is
  ``D = c_skip x~ + c_out F`` with ``c_skip = sd^2 / (s~^2 + sd^2)``,
  ``c_out = s~ sd / sqrt(s~^2 + sd^2)``, ``c_in = 1 / sqrt(s~^2 + sd^2)`` and
  ``sd = sigma_data`` (Table 1). ``D`` estimates ``x_0``.

:func:`to_x0_eps` maps a prediction to ``(x_0, eps)``; :func:`from_x0_eps` maps back;
:func:`convert` goes between any two of the first four (these three are
:mod:`jaxgen.core.parameterization`'s, re-exported, keyword ``parameterization=``).
``alpha`` and ``sigma`` are per example ``(B,)``. :func:`network_to_score` wraps a raw
network callable ``net(x, t)`` as the ``score_fn(x, t)`` that samplers and the likelihood
take, for any parameterization (EDM's input scaling included), and
:func:`network_to_denoiser` as ``x0_fn(x, t)``.

References:
  Song et al. Score-Based Generative Modeling through SDEs. ICLR 2021.
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import parameterization as core_param
from jaxgen.core.parameterization import convert, from_x0_eps, to_x0_eps
from jaxgen.core.validation import check_finite_number, is_concrete
from jaxgen.sde.sdes import SDE, ScoreFn, _bcast

__all__ = [
    "PARAMETERIZATIONS",
    "convert",
    "edm_coefficients",
    "from_x0_eps",
    "network_to_denoiser",
    "network_to_score",
    "score_to_x0",
    "to_x0_eps",
]

PARAMETERIZATIONS: tuple[str, ...] = ("score", "eps", "x0", "v", "edm")
"""What a score network may predict: the core's plain predictions and EDM's preconditioning."""

NetworkFn = Callable[[jax.Array, jax.Array], jax.Array]


def check_parameterization(name: str) -> str:
    """``name`` if it is one of :data:`PARAMETERIZATIONS`, else ``ValueError``."""
    return core_param.check_parameterization(name, allowed=PARAMETERIZATIONS)


def score_to_x0(score: jax.Array, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """Tweedie: ``E[x_0 | x_t] = (x_t + sigma^2 grad log p_t(x_t)) / alpha`` (the core's
    score -> x0 conversion)."""
    return to_x0_eps(score, x, alpha, sigma, parameterization="score")[0]


def edm_coefficients(
    sigma_ratio: jax.Array, sigma_data: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` at noise level ``sigma_ratio = sigma/alpha``
    (``sigma_data > 0``; concrete ``sigma_ratio`` must be ``> 0``, ``ValueError`` otherwise)."""
    check_finite_number(sigma_data, "sigma_data", low=0.0, low_open=True)
    if (
        is_concrete(sigma_ratio)
        and np.size(sigma_ratio)
        and not np.all(np.asarray(sigma_ratio) > 0)
    ):
        raise ValueError(f"sigma_ratio must be > 0, got values down to {np.min(sigma_ratio)!r}.")
    var = jnp.square(sigma_ratio) + sigma_data**2
    c_skip = sigma_data**2 / var
    c_out = sigma_ratio * sigma_data / jnp.sqrt(var)
    c_in = 1.0 / jnp.sqrt(var)
    c_noise = 0.25 * jnp.log(sigma_ratio)
    return c_skip, c_out, c_in, c_noise


def network_to_denoiser(
    net: NetworkFn,
    sde: SDE,
    *,
    parameterization: str,
    sigma_data: float = 0.5,
    noise_input: Callable[[jax.Array], jax.Array] | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``x0_fn(x, t)``: the denoiser implied by a raw network ``net(x_in, c)``.

    For ``"edm"`` the network receives ``(c_in x / alpha, c_noise)``; otherwise it receives
    ``(x, noise_input(t))`` (``noise_input`` defaults to the identity, i.e. ``t`` itself)
    and its output is read as the named prediction.
    """
    check_parameterization(parameterization)
    check_finite_number(sigma_data, "sigma_data", low=0.0, low_open=True)
    noise_input = noise_input or (lambda t: t)

    def x0_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = sde.alpha(t), sde.sigma(t)
        if parameterization == "edm":
            ratio = sigma / alpha
            c_skip, c_out, c_in, c_noise = edm_coefficients(ratio, sigma_data)
            scaled = x / _bcast(alpha, x)
            out = net(_bcast(c_in, x) * scaled, c_noise)
            return _bcast(c_skip, x) * scaled + _bcast(c_out, x) * out
        out = net(x, noise_input(t))
        return to_x0_eps(out, x, alpha, sigma, parameterization=parameterization)[0]

    return x0_fn


def network_to_score(
    net: NetworkFn,
    sde: SDE,
    *,
    parameterization: str,
    sigma_data: float = 0.5,
    noise_input: Callable[[jax.Array], jax.Array] | None = None,
) -> ScoreFn:
    """``score_fn(x, t)``: the score implied by a raw network ``net`` (see
    :func:`network_to_denoiser` for what it receives). A ``"score"`` network's output is
    returned as is; the others go through ``s = (alpha x_0 - x_t) / sigma^2``."""
    check_parameterization(parameterization)
    noise_input = noise_input or (lambda t: t)
    if parameterization == "score":
        return lambda x, t: net(x, noise_input(t))
    if parameterization == "eps":

        def eps_score(x: jax.Array, t: jax.Array) -> jax.Array:
            return -net(x, noise_input(t)) / _bcast(sde.sigma(t), x)

        return eps_score
    x0_fn = network_to_denoiser(
        net, sde, parameterization=parameterization, sigma_data=sigma_data, noise_input=noise_input
    )

    def score(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = sde.alpha(t), sde.sigma(t)
        return (_bcast(alpha, x) * x0_fn(x, t) - x) / _bcast(jnp.square(sigma), x)

    return score
