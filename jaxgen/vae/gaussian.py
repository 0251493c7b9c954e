"""Diagonal Gaussian distributions over batched latents, the currency of every VAE loss.

A :class:`DiagonalGaussian` holds ``mean`` and ``log_std`` of shape ``(B, *event)``; all
densities and KLs are summed over the event axes and returned per example, shape (B,).

* Reparameterized sample (Kingma and Welling 2014, eq. 10): ``z = mean + exp(log_std) * eps``,
  ``eps ~ N(0, I)``, so gradients flow to ``mean`` and ``log_std``.
* Log density: ``log N(z; m, s^2) = -1/2 sum_j [ ((z_j - m_j)/s_j)^2 + 2 log s_j + log 2 pi ]``.
* Analytic KL between diagonal Gaussians (Kingma and Welling 2014, appendix B, for the
  standard-normal prior):
  ``KL(q || p) = sum_j [ log s_p/s_q + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2 ]``.
* Monte Carlo KL for any posterior with ``sample`` and ``log_prob``:
  ``KL ~= 1/S sum_s [log q(z_s) - log p(z_s)]``, ``z_s ~ q``.
* Precision-weighted merge (Sonderby et al. 2016, Ladder VAE eqs. 18-19): the normalized
  product of two Gaussian densities, ``s^-2 = s_a^-2 + s_b^-2``,
  ``m = s^2 (m_a s_a^-2 + m_b s_b^-2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_positive_int

LOG_2PI = math.log(2.0 * math.pi)


def sum_event(values: jax.Array) -> jax.Array:
    """Sum over every axis but the first (the batch): (B, *event) -> (B,)."""
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


class DiagonalGaussian(NamedTuple):
    """``N(mean, diag(exp(log_std)^2))`` per example; a pytree (it is a NamedTuple)."""

    mean: jax.Array
    log_std: jax.Array

    @property
    def std(self) -> jax.Array:
        return jnp.exp(self.log_std)

    def sample(self, key: jax.Array) -> jax.Array:
        """One reparameterized sample, shape of ``mean``."""
        eps = jax.random.normal(key, jnp.shape(self.mean), jnp.result_type(self.mean))
        return self.mean + jnp.exp(self.log_std) * eps

    def log_prob_per_dim(self, z: jax.Array) -> jax.Array:
        """Elementwise log density, shape of ``z``."""
        u = (z - self.mean) * jnp.exp(-self.log_std)
        return -0.5 * (u * u + LOG_2PI) - self.log_std

    def log_prob(self, z: jax.Array) -> jax.Array:
        """``log q(z)`` summed over the event axes, (B,)."""
        return sum_event(self.log_prob_per_dim(z))

    def entropy(self) -> jax.Array:
        """Differential entropy, (B,)."""
        return sum_event(jnp.broadcast_to(self.log_std + 0.5 * (1.0 + LOG_2PI), self.mean.shape))

    def kl_per_dim(self, other: DiagonalGaussian | None = None) -> jax.Array:
        """Analytic ``KL(self || other)`` per latent dimension (``other`` = N(0, I) if None)."""
        if other is None:
            other = DiagonalGaussian(jnp.zeros_like(self.mean), jnp.zeros_like(self.log_std))
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return 0.5 * (var_ratio + mean_term - 1.0) - (self.log_std - other.log_std)

    def kl(self, other: DiagonalGaussian | None = None) -> jax.Array:
        """Analytic ``KL(self || other)`` summed over the event axes, (B,)."""
        return sum_event(self.kl_per_dim(other))


def standard_normal_like(z: jax.Array) -> DiagonalGaussian:
    """The prior ``N(0, I)`` with the shape of ``z``."""
    return DiagonalGaussian(jnp.zeros_like(z), jnp.zeros_like(z))


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over the event axes, (B,)."""
    return sum_event(-0.5 * (z * z + LOG_2PI))


def kl_monte_carlo(
    posterior: DiagonalGaussian,
    prior_log_prob: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    *,
    num_samples: int = 1,
) -> jax.Array:
    """Unbiased Monte Carlo ``KL(q || p)`` per example, (B,): the mean of
    ``log q(z) - log p(z)`` over ``num_samples`` reparameterized draws ``z ~ q``.

    ``posterior`` may be any object with ``sample(key)`` and ``log_prob(z)`` (B,);
    ``prior_log_prob(z)`` returns (B,)."""
    num_samples = check_positive_int(num_samples, "num_samples")

    def one(k):
        z = posterior.sample(k)
        return posterior.log_prob(z) - prior_log_prob(z)

    return jnp.mean(jax.vmap(one)(jax.random.split(key, num_samples)), axis=0)


def precision_weighted_merge(a: DiagonalGaussian, b: DiagonalGaussian) -> DiagonalGaussian:
    """The normalized product ``N(a) * N(b)`` (Ladder VAE eqs. 18-19); stable in log space."""
    # s^-2 = s_a^-2 + s_b^-2  ->  log s = -1/2 logaddexp(-2 log s_a, -2 log s_b)
    log_std = -0.5 * jnp.logaddexp(-2.0 * a.log_std, -2.0 * b.log_std)
    w_a = jnp.exp(2.0 * (log_std - a.log_std))
    w_b = jnp.exp(2.0 * (log_std - b.log_std))
    return DiagonalGaussian(w_a * a.mean + w_b * b.mean, log_std)
