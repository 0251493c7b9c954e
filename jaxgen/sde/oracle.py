"""Exact scores of Gaussian-mixture data under any SDE: the oracle model for tests and
benchmarks.

If ``x_0 ~ sum_k w_k N(mu_k, Sigma_k)`` then ``p_t`` is the mixture
``sum_k w_k N(alpha(t) mu_k, alpha(t)^2 Sigma_k + sigma(t)^2 I)``, whose score and
log-density are closed-form (:class:`jaxgen.distributions.GaussianMixture`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxgen.distributions import GaussianMixture
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = ["mixture_log_prob_fn", "mixture_score_fn"]


def mixture_score_fn(mixture: GaussianMixture, sde: SDE) -> ScoreFn:
    """``score_fn(x, t) = grad log p_t(x)`` exactly, for ``x (B, D)`` and float ``t (B,)``."""

    def score_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        return mixture.noised_score(x, sde.alpha(t), sde.sigma(t)).astype(x.dtype)

    return score_fn


def mixture_log_prob_fn(
    mixture: GaussianMixture, sde: SDE
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``log_prob(x, t) = log p_t(x)`` exactly, ``(B,)``."""

    def log_prob(x: jax.Array, t: jax.Array) -> jax.Array:
        return mixture.noised_log_prob(x, sde.alpha(t), sde.sigma(t))

    return log_prob
