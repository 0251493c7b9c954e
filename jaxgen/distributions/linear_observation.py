"""Gaussian data seen through a linear map: the closed-form oracle of super-resolution.

The prior is ``x ~ N(m, S)`` in ``R^D`` (full covariance ``S``) and the observation is

    z = c A x + r e,    e ~ N(0, I_M),

with ``A`` an ``(M, D)`` matrix (e.g. area downsampling, :func:`downsample_matrix`), a scalar
gain ``c`` and a noise std ``r >= 0``. ``(x, z)`` is jointly Gaussian::

    [x]      [ m     ]   [ S        c S A^T             ]
    [z] ~ N( [ c A m ] , [ c A S    c^2 A S A^T + r^2 I ] ),

so (Bayes for jointly Gaussian vectors, e.g. Bishop 2006, eqs. 2.81-2.82):

* the observation marginal is ``z ~ N(c A m, G)``, ``G = c^2 A S A^T + r^2 I_M``;
* the posterior is ``p(x | z) = N(m + K (z - c A m), S - K c A S)`` with the gain
  ``K = c S A^T G^{-1}`` (:meth:`LinearObservation.posterior`).

``G`` is factored by Cholesky, so it must be positive definite: ``r > 0``, or ``A`` of full
row rank and ``c != 0`` (then ``A S A^T`` is positive definite since ``S`` is); with
``c = r = 0`` it is zero and the results are NaN. **The case r = 0** (``y = A x`` exactly,
the issue's "the low-resolution image is a linear function of the high-resolution one")
needs no pseudo-inverse: ``G = c^2 A S A^T`` is still invertible (Cholesky of ``A S A^T``),
the posterior mean satisfies ``c A mu = z`` exactly, and the posterior covariance ``S_post
= S - S A^T (A S A^T)^{-1} A S`` has rank ``D - M``: ``S_post A^T = 0``, its null space is
the row space of ``A`` (the block means ``A x = z / c`` are known exactly), so the posterior
is degenerate there. Such a covariance has no Cholesky factor; sampling uses the symmetric
square root from ``eigh`` (eigenvalues clipped at 0), and the noised posterior below is
regular only for ``sigma > 0`` (a sampler driven by its score stops at some ``t_min > 0``;
its final denoising step ``E[x | x_t, z]`` lands on ``A x = z / c`` exactly).

**Noised posterior** (the exact conditional "network" of a diffusion model). On a Gaussian
path ``x_t = alpha x + sigma eps`` (any VP / VE / flow-matching path),

    p(x_t | z) = N(alpha mu_post(z), C_t),   C_t = alpha^2 S_post + sigma^2 I,

with the score ``grad log p(x_t | z) = -C_t^{-1} (x_t - alpha mu_post(z))``, the noise
prediction ``E[eps | x_t, z] = -sigma * score`` and the denoiser (Tweedie)
``E[x | x_t, z] = (x_t + sigma^2 score) / alpha``. One eigendecomposition ``S_post = U
diag(l) U^T`` serves every per-example ``(alpha, sigma)``: ``C_t = U diag(alpha^2 l +
sigma^2) U^T``.

**Conditioning augmentation** (Ho et al. 2022): ``z_s = cos(pi s / 2) z + sin(pi s / 2) e'``
is again of this form (:meth:`LinearObservation.augmented`).

Everything is a pure JAX function of the model's arrays (a ``NamedTuple`` pytree), so it
jits and vmaps (e.g. over per-example augmentation levels).

References:
  Bishop. Pattern Recognition and Machine Learning, sec. 2.3.1-2.3.3. Springer, 2006.
  Saharia et al. Image Super-Resolution via Iterative Refinement (SR3). IEEE TPAMI 2022.
  Ho et al. Cascaded Diffusion Models for High Fidelity Image Generation. JMLR 2022.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from jaxgen.core.resize import downsample_mean
from jaxgen.core.sampling import as_example_keys, normal
from jaxgen.core.validation import is_concrete

__all__ = ["LinearObservation", "downsample_matrix"]


def downsample_matrix(image_shape: Sequence[int], factor: int) -> jax.Array:
    """The ``(M, D)`` matrix ``A`` of :func:`jaxgen.core.resize.downsample_mean` on images of
    ``image_shape = (H, W, C)``: ``A @ x.ravel() == downsample_mean(x[None], factor).ravel()``
    for every ``x`` (row-major flattening of HWC), ``D = H W C``, ``M = D / factor^2``.

    Built exactly by applying ``downsample_mean`` to the ``D`` standard basis images (it is
    linear), so each row holds ``1 / factor^2`` on the pixels of one block."""
    shape = tuple(int(n) for n in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes, got {image_shape!r}")
    dim = math.prod(shape)
    basis = jnp.eye(dim, dtype=jnp.result_type(float)).reshape((dim, *shape))
    return downsample_mean(basis, factor).reshape(dim, -1).T


def _flat(x: jax.Array, dim: int, name: str) -> jax.Array:
    """``(B, ...)`` -> ``(B, dim)``, checking the trailing size."""
    x = jnp.asarray(x)
    if x.ndim < 2 or math.prod(x.shape[1:]) != dim:
        raise ValueError(f"{name} must be batched (B, ...) with {dim} values each, got {x.shape}")
    return x.reshape(x.shape[0], dim)


def _per_example(value: jax.Array | float, batch: int, name: str, dtype) -> jax.Array:
    value = jnp.asarray(value, dtype)
    if value.ndim == 0:
        return jnp.broadcast_to(value, (batch,))
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {value.shape}")
    return value


def _psd_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric square root ``U diag(sqrt(max(l, 0))) U^T`` of a PSD matrix (singular ok)."""
    lam, u = jnp.linalg.eigh(0.5 * (cov + cov.T))
    return (u * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]) @ u.T


class LinearObservation(NamedTuple):
    """``x ~ N(mean, covariance)``, ``z = scale * matrix @ x + noise_std * e`` (a pytree).

    Attributes:
      mean: ``m``, ``(D,)``.
      covariance: ``S``, ``(D, D)`` symmetric positive definite.
      matrix: ``A``, ``(M, D)``.
      scale: ``c``, a scalar.
      noise_std: ``r >= 0``, a scalar.

    Build with :meth:`create` (checks shapes and values). Batched arguments are ``(B, ...)``
    with ``D`` (for ``x``) or ``M`` (for ``z``) values per example, in any shape (images
    are flattened row-major, matching :func:`downsample_matrix`). The noised-posterior
    predictions keep ``x``'s shape; posteriors and draws are flat, ``(B, D)`` / ``(B, M)``.
    """

    mean: jax.Array
    covariance: jax.Array
    matrix: jax.Array
    scale: jax.Array
    noise_std: jax.Array

    @classmethod
    def create(
        cls,
        mean: jax.Array,
        covariance: jax.Array,
        matrix: jax.Array,
        *,
        scale: float | jax.Array = 1.0,
        noise_std: float | jax.Array = 0.0,
    ) -> LinearObservation:
        """The model with checked shapes (``ValueError`` naming the value): ``mean (D,)``,
        ``covariance (D, D)``, ``matrix (M, D)``, scalar ``scale`` and ``noise_std >= 0``
        (``noise_std = 0``: noiseless ``z = c A x``, see the module doc)."""
        mean = jnp.asarray(mean)
        dtype = jnp.result_type(mean.dtype, float)
        mean = mean.astype(dtype)
        covariance = jnp.asarray(covariance, dtype)
        matrix = jnp.asarray(matrix, dtype)
        if mean.ndim != 1:
            raise ValueError(f"mean must be a vector (D,), got shape {mean.shape}")
        dim = mean.shape[0]
        if covariance.shape != (dim, dim):
            raise ValueError(f"covariance must have shape ({dim}, {dim}), got {covariance.shape}")
        if matrix.ndim != 2 or matrix.shape[1] != dim:
            raise ValueError(f"matrix must have shape (M, {dim}), got {matrix.shape}")
        scale = jnp.asarray(scale, dtype)
        noise_std = jnp.asarray(noise_std, dtype)
        if scale.ndim or noise_std.ndim:
            raise ValueError(
                f"scale and noise_std must be scalars, got shapes {scale.shape}, {noise_std.shape}"
            )
        if is_concrete(noise_std) and not bool(noise_std >= 0.0):
            raise ValueError(f"noise_std must be >= 0, got {float(noise_std)}")
        return cls(mean, covariance, matrix, scale, noise_std)

    @property
    def dim(self) -> int:
        """``D``, the size of ``x``."""
        return int(self.mean.shape[0])

    @property
    def observation_dim(self) -> int:
        """``M``, the size of ``z``."""
        return int(self.matrix.shape[0])

    def augmented(self, level: jax.Array | float) -> LinearObservation:
        """The model of ``z_s = cos(pi s / 2) z + sin(pi s / 2) e'``, ``e' ~ N(0, I_M)``
        independent of everything (Gaussian conditioning augmentation at level ``s``).

        Derivation: substituting ``z = c A x + r e``,
        ``z_s = (cos c) A x + cos r e + sin e'``; the last two terms are independent centred
        Gaussians, so their sum is ``r_s e''`` with ``r_s^2 = cos^2 r^2 + sin^2``. Hence
        ``z_s`` follows this model with ``c_s = cos(pi s / 2) c`` and ``r_s =
        sqrt(cos^2(pi s / 2) r^2 + sin^2(pi s / 2))``: ``p(x | z_s)`` is again
        :meth:`posterior`. ``s = 0`` returns the same numbers bit for bit (selected, not
        recomputed); ``s = 1`` gives ``c_s = 0`` up to rounding, ``r_s = 1`` (``z_s`` is pure
        noise and the posterior is the prior). ``level``: a scalar (vmap for per-example
        levels); traced values are fine."""
        level = jnp.asarray(level, self.mean.dtype)
        if level.ndim:
            raise ValueError(f"level must be a scalar (vmap over examples), got {level.shape}")
        cos, sin = jnp.cos(0.5 * math.pi * level), jnp.sin(0.5 * math.pi * level)
        scale = jnp.where(level == 0, self.scale, cos * self.scale)
        noise = jnp.sqrt(jnp.square(cos * self.noise_std) + jnp.square(sin))
        noise_std = jnp.where(level == 0, self.noise_std, noise)
        return self._replace(scale=scale, noise_std=noise_std)

    def observation_marginal(self) -> tuple[jax.Array, jax.Array]:
        """``p(z) = N(c A m, c^2 A S A^T + r^2 I_M)``: ``(mean (M,), covariance (M, M))``."""
        a = self.matrix
        cov = jnp.square(self.scale) * (a @ self.covariance @ a.T)
        cov = cov + jnp.square(self.noise_std) * jnp.eye(self.observation_dim, dtype=cov.dtype)
        return self.scale * (a @ self.mean), 0.5 * (cov + cov.T)

    def gain(self) -> jax.Array:
        """``K = c S A^T G^{-1}`` ``(D, M)``, ``G = c^2 A S A^T + r^2 I`` (Cholesky solve)."""
        _, g = self.observation_marginal()
        cross = self.scale * (self.covariance @ self.matrix.T)  # Cov(x, z), (D, M)
        return jsl.cho_solve(jsl.cho_factor(g, lower=True), cross.T).T

    def posterior_covariance(self) -> jax.Array:
        """``S - K c A S`` ``(D, D)`` (the same for every ``z``; rank ``D - M`` when
        ``r = 0``)."""
        k = self.gain()
        cov = self.covariance - k @ (self.scale * (self.matrix @ self.covariance))
        return 0.5 * (cov + cov.T)

    def posterior_mean(self, z: jax.Array) -> jax.Array:
        """``m + K (z - c A m)`` for batched ``z`` ``(B, ...)``: ``(B, D)``."""
        z = _flat(z, self.observation_dim, "z")
        residual = z - (self.scale * (self.matrix @ self.mean))[None, :]
        return self.mean[None, :] + residual @ self.gain().T

    def posterior(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Exact ``p(x | z) = N(mean, cov)``: ``mean (B, D)``, ``cov (D, D)``."""
        return self.posterior_mean(z), self.posterior_covariance()

    def sample_prior(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` draws of ``x ~ N(m, S)``, ``(num, D)``; ``key``: one key (example ``i``
        uses ``fold_in(key, i)``) or ``(num,)`` per-example keys."""
        e = normal(as_example_keys(key, num), (self.dim,), self.mean.dtype)
        return self.mean[None, :] + e @ _psd_sqrt(self.covariance)

    def sample_observation(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` draws of ``z`` from its marginal, ``(num, M)`` (keys as
        :meth:`sample_prior`)."""
        mean, cov = self.observation_marginal()
        e = normal(as_example_keys(key, num), (self.observation_dim,), self.mean.dtype)
        return mean[None, :] + e @ _psd_sqrt(cov)

    def sample_posterior(self, key: jax.Array, z: jax.Array) -> jax.Array:
        """One draw of ``x ~ p(x | z_b)`` per example ``b`` of ``z (B, ...)``: ``(B, D)``
        (keys as :meth:`sample_prior`, one per example; the symmetric square root of the
        posterior covariance, so ``r = 0`` works)."""
        mean, cov = self.posterior(z)
        e = normal(as_example_keys(key, mean.shape[0]), (self.dim,), mean.dtype)
        return mean + e @ _psd_sqrt(cov)

    def sample_joint(self, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        """``num`` draws of ``(x, z)``: ``x`` from the prior, ``z = c A x + r e``
        (per-example keys split in two)."""
        keys = jax.vmap(jax.random.split)(as_example_keys(key, num))
        x = self.sample_prior(keys[:, 0], num)
        e = normal(keys[:, 1], (self.observation_dim,), x.dtype)
        return x, self.scale * (x @ self.matrix.T) + self.noise_std * e

    def noised_score(
        self, x: jax.Array, z: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """``grad_{x_t} log p(x_t | z) = -C_t^{-1} (x_t - alpha mu_post(z))`` with
        ``C_t = alpha^2 S_post + sigma^2 I`` (module doc), for ``x_t = alpha x + sigma eps``.

        Args:
          x: ``x_t``, ``(B, ...)`` with ``D`` values each.
          z: the observations, ``(B, ...)`` with ``M`` values each.
          alpha: signal scale, scalar or ``(B,)``.
          sigma: noise scale, scalar or ``(B,)``; must be ``> 0`` when ``r = 0``.

        Returns:
          Scores of ``x``'s shape.
        """
        xf = _flat(x, self.dim, "x")
        batch = xf.shape[0]
        alpha = _per_example(alpha, batch, "alpha", xf.dtype)
        sigma = _per_example(sigma, batch, "sigma", xf.dtype)
        z = _flat(z, self.observation_dim, "z")
        if z.shape[0] != batch:
            raise ValueError(f"x and z must have the same batch, got {batch} and {z.shape[0]}")
        mean, cov = self.posterior(z)
        lam, u = jnp.linalg.eigh(cov)
        variances = jnp.square(alpha)[:, None] * jnp.maximum(lam, 0.0)[None, :]
        variances = variances + jnp.square(sigma)[:, None]
        whitened = (xf - alpha[:, None] * mean) @ u
        return (-(whitened / variances) @ u.T).astype(xf.dtype).reshape(jnp.shape(x))

    def noised_eps(
        self, x: jax.Array, z: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """The optimal noise prediction ``E[eps | x_t, z] = -sigma grad log p(x_t | z)``."""
        score = self.noised_score(x, z, alpha, sigma)
        sigma = _per_example(sigma, score.shape[0], "sigma", score.dtype)
        return -sigma.reshape((-1,) + (1,) * (score.ndim - 1)) * score

    def noised_x0(
        self, x: jax.Array, z: jax.Array, alpha: jax.Array | float, sigma: jax.Array | float
    ) -> jax.Array:
        """The optimal denoiser ``E[x | x_t, z] = (x_t + sigma^2 grad log p(x_t | z)) /
        alpha`` (Tweedie; ``alpha > 0``)."""
        score = self.noised_score(x, z, alpha, sigma)
        shape = (-1,) + (1,) * (score.ndim - 1)
        alpha = _per_example(alpha, score.shape[0], "alpha", score.dtype).reshape(shape)
        sigma = _per_example(sigma, score.shape[0], "sigma", score.dtype).reshape(shape)
        return (jnp.asarray(x, score.dtype) + jnp.square(sigma) * score) / alpha
