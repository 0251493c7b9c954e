"""Gaussian mixtures with full covariances: a closed-form oracle for diffusion models.

A mixture ``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` in ``D`` dimensions stays a mixture
under the Gaussian noising used by every diffusion model, ``x = alpha x_0 + sigma eps``
with ``x_0 ~ p`` and ``eps ~ N(0, I)``::

    q_{alpha, sigma}(x) = sum_k w_k N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I).

Its score is exact: with responsibilities ``r_k(x) = w_k N_k(x) / q(x)``,
``grad log q(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k)``, ``C_k = alpha^2 Sigma_k +
sigma^2 I``. So are the optimal denoisers (Tweedie):
``E[eps | x] = -sigma grad log q(x)`` and ``E[x_0 | x] = (x + sigma^2 grad log q(x)) / alpha``.

``(alpha, sigma)`` is general: DDPM / VP processes use ``alpha = sqrt(abar_t)``,
``sigma = sqrt(1 - abar_t)`` (:func:`ddpm_eps_oracle`); variance-exploding processes use
``alpha = 1``. :meth:`GaussianMixture.noised_log_prob` and
:meth:`GaussianMixture.noised_score` accept per-example ``(B,)`` ``alpha, sigma`` and share
one eigendecomposition ``Sigma_k = U_k diag(lambda_k) U_k^T`` (then
``C_k = U_k diag(alpha^2 lambda_k + sigma^2) U_k^T``), so no per-example factorisation is
needed. With the components as classes, the class oracles of guidance are exact too:
:meth:`GaussianMixture.component_log_posterior` (the noisy classifier ``log q(k | x)``),
:meth:`GaussianMixture.noised_component_score` (``grad log q(x | k)``) and
:meth:`GaussianMixture.component` (class ``k``'s distribution). Covariances must be
symmetric positive definite (positive semi-definite suffices when ``sigma > 0``); weights must
be positive and sum to one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GaussianMixture", "ddpm_eps_oracle"]

_LOG_2PI = math.log(2.0 * math.pi)


class DiscreteSchedule(Protocol):
    """What :func:`ddpm_eps_oracle` reads of a DDPM schedule (e.g. a
    :class:`jaxgen.diffusion.DiffusionSchedule`; named structurally so that this floor does
    not import the diffusion family)."""

    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array


def _per_example(value: jax.Array | float, batch: int, name: str) -> jax.Array:
    value = jnp.asarray(value)
    if value.ndim == 0:
        return jnp.broadcast_to(value, (batch,))
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {value.shape}.")
    return value


class GaussianMixture(NamedTuple):
    """``p(x) = sum_k weights[k] N(x; means[k], covariances[k])`` in ``D`` dimensions.

    Attributes:
      weights: ``(K,)`` positive, summing to one.
      means: ``(K, D)``.
      covariances: ``(K, D, D)`` symmetric positive definite.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array

    @classmethod
    def isotropic(
        cls, weights: jax.Array, means: jax.Array, stds: jax.Array | float
    ) -> GaussianMixture:
        """A mixture with covariances ``stds[k]^2 I``; ``stds`` scalar or ``(K,)``."""
        means = jnp.asarray(means)
        num_k, dim = means.shape
        stds = jnp.broadcast_to(jnp.asarray(stds, dtype=means.dtype), (num_k,))
        eye = jnp.eye(dim, dtype=means.dtype)
        covariances = jnp.square(stds)[:, None, None] * eye[None]
        return cls(jnp.asarray(weights, dtype=means.dtype), means, covariances)

    @property
    def dim(self) -> int:
        """``D``, the event dimension."""
        return int(self.means.shape[-1])

    @property
    def num_components(self) -> int:
        """``K``, the number of components."""
        return int(self.means.shape[0])

    def _check_x(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {x.shape}.")
        return x

    def _component_terms(
        self, x: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Per-component log densities of the noised mixture and what the score needs.

        Returns ``(log_joint (B, K), whitened (B, K, D), variances (B, K, D), U (K, D, D))``
        where ``log_joint = log w_k + log N(x; alpha mu_k, C_k)``, ``whitened = U_k^T (x -
        alpha mu_k)`` and ``variances`` are the eigenvalues of ``C_k``.
        """
        x = self._check_x(x)
        batch = x.shape[0]
        alpha = _per_example(alpha, batch, "alpha").astype(x.dtype)
        sigma = _per_example(sigma, batch, "sigma").astype(x.dtype)
        lam, u = jnp.linalg.eigh(self.covariances)  # (K, D), (K, D, D); Sigma = U diag U^T
        lam = jnp.maximum(lam, 0.0)
        variances = jnp.square(alpha)[:, None, None] * lam[None] + jnp.square(sigma)[:, None, None]
        diff = x[:, None, :] - alpha[:, None, None] * self.means[None]  # (B, K, D)
        whitened = jnp.einsum("kdj,bkd->bkj", u, diff)
        maha = jnp.sum(jnp.square(whitened) / variances, axis=-1)
        log_det = jnp.sum(jnp.log(variances), axis=-1)
        log_normal = -0.5 * (maha + log_det + self.dim * _LOG_2PI)
        log_joint = jnp.log(self.weights)[None] + log_normal
        return log_joint, whitened, variances, u

    def noised_log_prob(
        self, x: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """``log q(x)`` for ``x = alpha x_0 + sigma eps``; ``alpha, sigma`` scalar or (B,).

        Args:
          x: ``(B, D)``.
          alpha: signal scale, scalar or ``(B,)``.
          sigma: noise scale, scalar or ``(B,)``.

        Returns:
          ``(B,)`` log densities.
        """
        log_joint, _, _, _ = self._component_terms(x, alpha, sigma)
        return jax.nn.logsumexp(log_joint, axis=-1)

    def noised_score(
        self, x: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """Closed-form ``grad_x log q(x)``: ``-sum_k r_k(x) C_k^{-1} (x - alpha mu_k)``.

        Args:
          x: ``(B, D)``.
          alpha: signal scale, scalar or ``(B,)``.
          sigma: noise scale, scalar or ``(B,)``.

        Returns:
          ``(B, D)`` scores.
        """
        log_joint, whitened, variances, u = self._component_terms(x, alpha, sigma)
        resp = jax.nn.softmax(log_joint, axis=-1)  # (B, K)
        component_scores = -jnp.einsum("kdj,bkj->bkd", u, whitened / variances)
        return jnp.einsum("bk,bkd->bd", resp, component_scores)

    def component_log_posterior(
        self, x: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """``log q(k | x)``, the exact noisy classifier of the components.

        ``q(k | x) = w_k N(x; alpha mu_k, C_k) / sum_j w_j N(x; alpha mu_j, C_j)`` with
        ``C_k = alpha^2 Sigma_k + sigma^2 I`` (Bayes' rule on the noised mixture): the
        ``p_t(c | x_t)`` of classifier guidance when the classes are the components.

        Args:
          x: ``(B, D)``.
          alpha: signal scale, scalar or ``(B,)``.
          sigma: noise scale, scalar or ``(B,)``.

        Returns:
          ``(B, K)`` log posteriors (each row's ``exp`` sums to one).
        """
        log_joint, _, _, _ = self._component_terms(x, alpha, sigma)
        return jax.nn.log_softmax(log_joint, axis=-1)

    def noised_component_score(
        self,
        x: jax.Array,
        alpha: jax.Array | float,
        sigma: jax.Array | float,
        labels: jax.Array,
    ) -> jax.Array:
        """``grad_x log q(x | k)`` at ``k = labels[b]``: ``-C_k^{-1} (x - alpha mu_k)``.

        The exact conditional score of the noised class ``k`` (the component
        ``N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``), so that
        ``grad log q(x | k) = grad log q(x) + grad log q(k | x)``.

        Args:
          x: ``(B, D)``.
          alpha: signal scale, scalar or ``(B,)``.
          sigma: noise scale, scalar or ``(B,)``.
          labels: int ``(B,)`` component indices in ``[0, K)``.

        Returns:
          ``(B, D)`` scores.
        """
        x = self._check_x(x)
        labels = jnp.asarray(labels)
        if labels.shape != (x.shape[0],) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"labels must be an int array of shape ({x.shape[0]},), got "
                f"{labels.dtype}{labels.shape}."
            )
        if not isinstance(labels, jax.core.Tracer) and labels.size:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_components:
                raise ValueError(
                    f"labels must lie in [0, {self.num_components - 1}], got values in "
                    f"[{low}, {high}]."
                )
        _, whitened, variances, u = self._component_terms(x, alpha, sigma)
        index = labels[:, None, None]
        w = jnp.take_along_axis(whitened, index, axis=1)[:, 0]  # (B, D)
        v = jnp.take_along_axis(variances, index, axis=1)[:, 0]
        return -jnp.einsum("bdj,bj->bd", u[labels], w / v)

    def component(self, k: int) -> GaussianMixture:
        """The one-component mixture ``N(mu_k, Sigma_k)`` of class ``k`` (weight one)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"k must be an int component index, got {k!r}.")
        if not 0 <= k < self.num_components:
            raise ValueError(f"k must lie in [0, {self.num_components - 1}], got {k}.")
        return GaussianMixture(
            jnp.ones((1,), dtype=self.weights.dtype),
            self.means[k : k + 1],
            self.covariances[k : k + 1],
        )

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x)`` of shape ``(B,)`` for ``x`` of shape ``(B, D)``."""
        return self.noised_log_prob(x, 1.0, 0.0)

    def score(self, x: jax.Array) -> jax.Array:
        """Closed-form ``grad_x log p(x)`` of shape ``(B, D)`` (not via autodiff)."""
        return self.noised_score(x, 1.0, 0.0)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` exact samples, shape ``(n, D)``: a component ``k ~ w``, then
        ``mu_k + U_k diag(sqrt(lambda_k)) z`` with ``z ~ N(0, I)``."""
        return _sample(self, key, int(n))

    def noised(self, alpha: jax.Array | float, sigma: jax.Array | float) -> GaussianMixture:
        """The law of ``alpha x_0 + sigma eps``: means ``alpha mu_k``, covariances
        ``alpha^2 Sigma_k + sigma^2 I``, same weights (scalar ``alpha, sigma``)."""
        alpha = jnp.asarray(alpha, dtype=self.means.dtype)
        sigma = jnp.asarray(sigma, dtype=self.means.dtype)
        eye = jnp.eye(self.dim, dtype=self.means.dtype)
        return GaussianMixture(
            self.weights,
            alpha * self.means,
            jnp.square(alpha) * self.covariances + jnp.square(sigma) * eye[None],
        )

    def moments(self) -> tuple[jax.Array, jax.Array]:
        """Mixture mean ``sum_k w_k mu_k`` (D,) and covariance
        ``sum_k w_k (Sigma_k + mu_k mu_k^T) - mean mean^T`` (D, D)."""
        mean = jnp.einsum("k,kd->d", self.weights, self.means)
        second = jnp.einsum(
            "k,kij->ij",
            self.weights,
            self.covariances + jnp.einsum("ki,kj->kij", self.means, self.means),
        )
        return mean, second - jnp.outer(mean, mean)


@functools.partial(jax.jit, static_argnums=2)
def _sample(mixture: GaussianMixture, key: jax.Array, n: int) -> jax.Array:
    key_k, key_z = jax.random.split(key)
    comp = jax.random.categorical(key_k, jnp.log(mixture.weights), shape=(n,))
    lam, u = jnp.linalg.eigh(mixture.covariances)
    scale = u * jnp.sqrt(jnp.maximum(lam, 0.0))[:, None, :]  # U diag(sqrt(lambda))
    z = jax.random.normal(key_z, (n, mixture.dim), dtype=mixture.means.dtype)
    return mixture.means[comp] + jnp.einsum("nij,nj->ni", scale[comp], z)


def ddpm_eps_oracle(
    mixture: GaussianMixture, schedule: DiscreteSchedule
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The exact (Bayes-optimal) DDPM noise predictor for data drawn from ``mixture``.

    ``eps*(x, t) = E[eps | x_t = x] = -sqrt(1 - abar_t) grad log q_t(x)``, where ``q_t`` is
    ``mixture.noised(sqrt(abar_t), sqrt(1 - abar_t))`` (Ho et al. 2020, eq. 4; Tweedie's
    formula). It minimises ``L_simple`` (eq. 14) at every ``t``.

    Args:
      mixture: the data distribution.
      schedule: a :class:`jaxgen.diffusion.DiffusionSchedule` (anything with
        ``sqrt_alphas_cumprod`` and ``sqrt_one_minus_alphas_cumprod`` ``(T,)`` arrays).

    Returns:
      ``eps_fn(x, t)`` with ``x`` of shape ``(B, D)`` and ``t`` int ``(B,)`` 0-based,
      returning ``(B, D)``: a model callable for ``parameterization="eps"``.
    """

    def eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if jnp.shape(t) != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {jnp.shape(t)}.")
        alpha = schedule.sqrt_alphas_cumprod[t]
        sigma = schedule.sqrt_one_minus_alphas_cumprod[t]
        score = mixture.noised_score(x, alpha, sigma)
        return (-sigma[:, None] * score).astype(x.dtype)

    return eps_fn
