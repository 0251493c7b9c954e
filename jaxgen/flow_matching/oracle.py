"""The exact marginal velocity of Gaussian-mixture data on a Gaussian path: the oracle model
of the flow-matching tests and benchmarks.

For ``x_data ~ sum_k w_k N(mu_k, Sigma_k)`` (a :class:`jaxgen.distributions.GaussianMixture`,
read through its ``weights``, ``means``, ``covariances``) and ``x_source ~ N(0, I)``, the
path ``x_t = alpha x_data + sigma x_source`` (data at ``t = 0``) has ``x_t | k ~ N(alpha
mu_k, C_k)``, ``C_k = alpha^2 Sigma_k + sigma^2 I``, and (Gaussian conditioning)

    E[x_data | x_t, k] = mu_k + alpha Sigma_k C_k^{-1} (x_t - alpha mu_k),
    E[x_data | x_t] = sum_k r_k(x_t) E[x_data | x_t, k],   r_k = w_k N_k(x_t) / p_t(x_t),

finite at both ends (``alpha = 0``: the prior mean; ``sigma = 0``: ``x_t / alpha``). Then
``E[x_source | x_t] = (x_t - alpha E[x_data | x_t]) / sigma`` (``= -sigma grad log p_t``, which
tends to 0, the source's mean, as ``sigma -> 0``: at ``sigma = 0`` the state carries no
information about the source) and the marginal velocity (Lipman et al. 2023 eq. 8 in our
clock) is ``u*(x, t) = alpha' E[x_data | x_t] + sigma' E[x_source | x_t]``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["mixture_denoiser", "mixture_velocity_fn"]


def mixture_denoiser(mixture, x: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """``E[x_data | x_t = x]`` for per-example ``alpha, sigma (B,)`` (module doc)."""
    means, covs = mixture.means.astype(x.dtype), mixture.covariances.astype(x.dtype)
    dim = means.shape[-1]
    a = alpha[:, None, None, None]
    eye = jnp.eye(dim, dtype=x.dtype)[None, None]
    c = jnp.square(a) * covs[None] + jnp.square(sigma)[:, None, None, None] * eye
    diff = x[:, None, :] - alpha[:, None, None] * means[None]  # (B, K, D)
    chol = jnp.linalg.cholesky(c)  # (B, K, D, D)
    white = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    log_joint = jnp.log(mixture.weights.astype(x.dtype))[None] - 0.5 * (
        jnp.sum(jnp.square(white), -1) + log_det
    )
    resp = jax.nn.softmax(log_joint, axis=-1)  # (B, K)
    solved = jax.scipy.linalg.cho_solve((chol, True), diff[..., None])[..., 0]  # C^-1 diff
    cond = means[None] + alpha[:, None, None] * jnp.einsum("kij,bkj->bki", covs, solved)
    return jnp.einsum("bk,bkd->bd", resp, cond)


def mixture_velocity_fn(mixture, path) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``u*(x, t) = alpha' E[x_data|x_t] + sigma' E[x_source|x_t]`` exactly (module doc), for
    ``x (B, D)`` and float ``t (B,)``; ``path`` any :class:`GaussianPath`."""

    def velocity(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma, alpha_dot, sigma_dot = (c.astype(x.dtype) for c in path.coefficients(t))
        x0 = mixture_denoiser(mixture, x, alpha, sigma)
        safe = jnp.where(sigma > 0, sigma, 1.0)
        eps = jnp.where((sigma > 0)[:, None], (x - alpha[:, None] * x0) / safe[:, None], 0.0)
        return alpha_dot[:, None] * x0 + sigma_dot[:, None] * eps

    return velocity
