"""Probabilistic PCA: a linear-Gaussian latent-variable model with exact evidence and posterior.

Tipping and Bishop (1999) model ``D``-dimensional data with ``d`` latents::

    z ~ N(0, I_d),    x | z ~ N(W z + b, s^2 I_D),

``W`` (D, d), ``b`` (D,), ``s = noise_std > 0``. Everything a VAE approximates is closed form:

* evidence: ``p(x) = N(x; b, C)``, ``C = W W^T + s^2 I_D``, evaluated with a Cholesky factor
  ``C = L L^T``: ``log p(x) = -1/2 (|L^-1 (x - b)|^2 + 2 sum log L_ii + D log 2 pi)``;
* posterior (Bayes' rule for jointly Gaussian ``(z, x)``): with ``M = W^T W + s^2 I_d``
  (d, d), ``p(z | x) = N(M^-1 W^T (x - b), s^2 M^-1)`` (Tipping and Bishop 1999);
  it equals the joint-Gaussian conditional ``W^T C^-1 (x - b)``, ``I - W^T C^-1 W`` by the
  Woodbury identity;
* the KL from a diagonal Gaussian ``q = N(m, diag(v))`` to the posterior
  ``N(mu, S)``: ``KL(q || p(z | x)) = 1/2 [tr(S^-1 diag(v)) + (mu - m)^T S^-1 (mu - m) - d
  + log det S - sum log v]`` (:meth:`ProbabilisticPCA.posterior_kl`), which is the exact
  gap ``log p(x) - ELBO(q)`` of a VAE whose decoder is this model.

With orthogonal columns (``W = Q diag(c)``, ``Q^T Q = I``), ``M = diag(c^2 + s^2)`` is diagonal,
so the posterior covariance is diagonal and a :class:`jaxgen.vae.gaussian.DiagonalGaussian`
encoder can represent the posterior exactly (ELBO = ``log p(x)``). Otherwise the best
diagonal ``q`` (mean ``mu``, variances ``1 / (S^-1)_jj``) has the strictly positive gap
``1/2 [sum_j log (S^-1)_jj - log det S^-1]`` (Hadamard's inequality).

Reference:
  Tipping and Bishop. Probabilistic Principal Component Analysis. Journal of the Royal
  Statistical Society B, 61(3), 1999.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

__all__ = ["ProbabilisticPCA"]

_LOG_2PI = math.log(2.0 * math.pi)


class ProbabilisticPCA(NamedTuple):
    """``z ~ N(0, I_d)``, ``x = weight @ z + bias + noise_std * eps`` (a pytree).

    Attributes:
      weight: ``W``, (D, d).
      bias: ``b``, (D,).
      noise_std: ``s > 0``, a scalar.
    """

    weight: jax.Array
    bias: jax.Array
    noise_std: jax.Array

    @classmethod
    def random(
        cls,
        key: jax.Array,
        data_dim: int,
        latent_dim: int,
        *,
        noise_std: float,
        orthogonal_columns: bool,
    ) -> ProbabilisticPCA:
        """A random model in the default float dtype.

        ``orthogonal_columns=True``: ``W = Q diag(c)`` with orthonormal ``Q`` (a QR factor of
        a Gaussian matrix) and column scales ``c ~ U[0.5, 2]`` (needs ``latent_dim <=
        data_dim``); the exact posterior covariance is then diagonal. Otherwise ``W`` has
        i.i.d. ``N(0, 1)`` entries (correlated posterior). ``b ~ N(0, I)``.
        """
        if int(data_dim) != data_dim or int(latent_dim) != latent_dim:
            raise ValueError(f"dims must be integers, got {data_dim}, {latent_dim}.")
        if data_dim < 1 or latent_dim < 1:
            raise ValueError(
                f"dims must be >= 1, got data_dim={data_dim}, latent_dim={latent_dim}."
            )
        if not float(noise_std) > 0.0:
            raise ValueError(f"noise_std must be positive, got {noise_std}.")
        if orthogonal_columns and latent_dim > data_dim:
            raise ValueError(
                f"orthogonal columns need latent_dim <= data_dim, got {latent_dim} > {data_dim}."
            )
        dtype = jnp.result_type(float)
        key_w, key_c, key_b = jax.random.split(key, 3)
        weight = jax.random.normal(key_w, (data_dim, latent_dim), dtype)
        if orthogonal_columns:
            q, _ = jnp.linalg.qr(weight)
            scales = jax.random.uniform(key_c, (latent_dim,), dtype, 0.5, 2.0)
            weight = q * scales[None, :]
        bias = jax.random.normal(key_b, (data_dim,), dtype)
        return cls(weight, bias, jnp.asarray(noise_std, dtype))

    @property
    def data_dim(self) -> int:
        """``D``."""
        return int(self.weight.shape[0])

    @property
    def latent_dim(self) -> int:
        """``d``."""
        return int(self.weight.shape[1])

    def _check_x(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (B, {self.data_dim}), got {x.shape}.")
        return x

    def covariance(self) -> jax.Array:
        """The marginal covariance ``C = W W^T + s^2 I_D``, (D, D)."""
        eye = jnp.eye(self.data_dim, dtype=self.weight.dtype)
        return self.weight @ self.weight.T + jnp.square(self.noise_std) * eye

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Exact ``log p(x) = log N(x; b, C)``, (B,)."""
        x = self._check_x(x)
        chol = jnp.linalg.cholesky(self.covariance())
        white = jsl.solve_triangular(chol, (x - self.bias[None, :]).T, lower=True)  # (D, B)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        return -0.5 * (jnp.sum(jnp.square(white), axis=0) + log_det + self.data_dim * _LOG_2PI)

    def posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Exact ``p(z | x) = N(mean, cov)``: ``mean`` (B, d), ``cov`` (d, d) (shared by all x)."""
        x = self._check_x(x)
        var = jnp.square(self.noise_std)
        m = self.weight.T @ self.weight + var * jnp.eye(self.latent_dim, dtype=self.weight.dtype)
        factor = jsl.cho_factor(m, lower=True)
        mean = jsl.cho_solve(factor, self.weight.T @ (x - self.bias[None, :]).T).T
        cov = var * jsl.cho_solve(factor, jnp.eye(self.latent_dim, dtype=m.dtype))
        return mean, 0.5 * (cov + cov.T)

    def posterior_kl(self, x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
        """``KL(N(mean, diag(exp(2 log_std))) || p(z | x))``, (B,): the ELBO gap of ``q``.

        ``mean`` and ``log_std`` are (B, d) (``log_std`` may also be (d,))."""
        post_mean, post_cov = self.posterior(x)
        mean = jnp.asarray(mean)
        if mean.shape != post_mean.shape:
            raise ValueError(f"mean must have shape {post_mean.shape}, got {mean.shape}.")
        log_std = jnp.broadcast_to(jnp.asarray(log_std), mean.shape)
        chol = jnp.linalg.cholesky(post_cov)
        precision = jsl.cho_solve((chol, True), jnp.eye(self.latent_dim, dtype=chol.dtype))
        var = jnp.exp(2.0 * log_std)
        diff = post_mean - mean
        trace = var @ jnp.diagonal(precision)
        maha = jnp.sum((diff @ precision) * diff, axis=1)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        return 0.5 * (trace + maha - self.latent_dim + log_det - 2.0 * jnp.sum(log_std, axis=1))

    def sample(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` draws of ``x``, (num, D)."""
        key_z, key_e = jax.random.split(key)
        dtype = self.weight.dtype
        z = jax.random.normal(key_z, (num, self.latent_dim), dtype)
        eps = jax.random.normal(key_e, (num, self.data_dim), dtype)
        return z @ self.weight.T + self.bias[None, :] + self.noise_std * eps
