"""Gaussian-mixture oracles for the guidance tests: the classes are the components.

For ``x_0 ~ sum_k w_k N(mu_k, Sigma_k)`` with class ``k`` = component ``k``, on any path
``x_t = alpha x_0 + sigma eps`` every guidance quantity is closed-form
(:class:`jaxgen.distributions.GaussianMixture`):

* unconditional score ``grad log q_t(x)`` (``noised_score``);
* conditional score ``grad log q_t(x | k)`` (``noised_component_score``);
* exact noisy classifier ``log q_t(k | x)`` (``component_log_posterior``).

Two mixtures: :func:`separated` (means on a circle of radius 3, std 0.5: each class is one
well-separated Gaussian) for exactness and two-sample tests, :func:`overlapping` (radius 1,
std 1.0) where classes overlap, so that class purity has room to rise with the guidance scale.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.distributions import GaussianMixture
from jaxgen.evaluation.two_sample import median_heuristic_bandwidth, mmd_squared
from jaxgen.guidance import NULL_LABEL, path_coefficients

NUM_CLASSES = 3
_ANGLES = np.array([math.pi / 2 + 2 * math.pi * k / NUM_CLASSES for k in range(NUM_CLASSES)])
_CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
WEIGHTS = np.full((NUM_CLASSES,), 1.0 / NUM_CLASSES)


def separated() -> GaussianMixture:
    """Built on demand, so that it takes the dtype of the caller (x64 or not)."""
    return GaussianMixture.isotropic(jnp.asarray(WEIGHTS), jnp.asarray(3.0 * _CIRCLE), 0.5)


def overlapping() -> GaussianMixture:
    return GaussianMixture.isotropic(jnp.asarray(WEIGHTS), jnp.asarray(1.0 * _CIRCLE), 1.0)


def unconditional_score(mixture, path):
    coef = path_coefficients(path)

    def score(x, t):
        alpha, sigma = coef(t)
        return mixture.noised_score(x, alpha, sigma).astype(x.dtype)

    return score


def conditional_score(mixture, path):
    """``model(x, t, labels)``: the class score, or the mixture score where label is null."""
    coef = path_coefficients(path)

    def model(x, t, labels):
        alpha, sigma = coef(t)
        comp = mixture.noised_component_score(x, alpha, sigma, jnp.maximum(labels, 0))
        uncond = mixture.noised_score(x, alpha, sigma)
        return jnp.where((labels == NULL_LABEL)[:, None], uncond, comp).astype(x.dtype)

    return model


def classifier(mixture, path):
    """``log_prob_fn(x, t, labels) = log q_t(labels | x)``, the exact noisy classifier."""
    coef = path_coefficients(path)

    def log_prob_fn(x, t, labels):
        alpha, sigma = coef(t)
        log_post = mixture.component_log_posterior(x, alpha, sigma)
        return jnp.take_along_axis(log_post, labels[:, None], axis=1)[:, 0]

    return log_prob_fn


def score_to(prediction_fn, path, parameterization):
    """A score model ``f(x, t[, c])`` rewritten as a ``parameterization`` model."""
    from jaxgen.core.parameterization import convert

    coef = path_coefficients(path)

    def model(x, t, *condition):
        alpha, sigma = coef(t)
        score = prediction_fn(x, t, *condition)
        return convert(score, x, alpha, sigma, source="score", target=parameterization)

    return model


def purity(mixture, samples, labels) -> float:
    """Fraction of samples whose exact class posterior at t = 0 is largest at their label."""
    log_post = mixture.component_log_posterior(samples, 1.0, 0.0)
    return float(jnp.mean(jnp.argmax(log_post, axis=1) == labels))


def mmd_null(exact_fn, num: int, *, replicates: int = 20, z: float = 5.0, seed: int = 0):
    """Bandwidths and the MMD^2 threshold ``mean + z std`` of the null distribution (two
    independent exact sets of ``num`` samples; see tests/diffusion/mixture_oracle.py for why
    ``z = 5`` is a safe threshold)."""
    ref = exact_fn(jax.random.key(seed), num)
    bandwidths = median_heuristic_bandwidth(ref, ref) * jnp.array([0.25, 0.5, 1.0, 2.0, 4.0])

    @jax.jit
    def one(key):
        k1, k2 = jax.random.split(key)
        return mmd_squared(exact_fn(k1, num), exact_fn(k2, num), bandwidths=bandwidths)

    null = np.asarray(jax.lax.map(one, jax.random.split(jax.random.key(seed + 1), replicates)))
    return ref, bandwidths, float(null.mean() + z * null.std(ddof=1))
