"""Closed-form oracles of the distillation tests, in the EDM frame ``x~ = x_0 + s eps``.

* Gaussian data ``N(mu, v)`` (per coordinate): denoiser ``D = mu + v / (v + s^2) (x~ - mu)``,
  probability-flow solution ``x~(s) = mu + (x~(s0) - mu) sqrt((v + s^2) / (v + s0^2))`` and so
  the exact consistency function ``f*(x~, s) = mu + (x~ - mu) sqrt((v + s_min^2) / (v + s^2))``.
* A 1-D Gaussian mixture ``sum_k w_k N(mu_k, v_k)``: ``p_s = sum_k w_k N(mu_k, v_k + s^2)`` and
  ``D = E[x_0 | x~] = sum_k r_k(x~) (mu_k + v_k / (v_k + s^2) (x~ - mu_k))`` with the posterior
  responsibilities ``r_k``; its probability-flow map has no closed form, so the reference is a
  fine Heun solve with this exact denoiser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen.distillation import probability_flow_step


def gaussian_denoiser(mu: float, v: float):
    def denoiser(x, sigma):
        s2 = jnp.reshape(sigma, sigma.shape + (1,) * (x.ndim - 1)) ** 2
        return mu + v / (v + s2) * (x - mu)

    return denoiser


def gaussian_flow(x, s_from, s_to, mu: float, v: float):
    """The exact PF-ODE map of ``N(mu, v)`` data from level ``s_from`` to ``s_to`` (scalars)."""
    return mu + (x - mu) * jnp.sqrt((v + s_to**2) / (v + s_from**2))


def gaussian_consistency(mu: float, v: float, sigma_min: float):
    def f(x, sigma):
        s = jnp.reshape(sigma, sigma.shape + (1,) * (x.ndim - 1))
        return mu + (x - mu) * jnp.sqrt((v + sigma_min**2) / (v + s**2))

    return f


class Mixture1D:
    """``sum_k w_k N(mu_k, v_k)`` in 1-D (events of shape (1,))."""

    def __init__(self, weights, means, variances):
        self.w = jnp.asarray(weights)
        self.mu = jnp.asarray(means)
        self.v = jnp.asarray(variances)

    def sample(self, key, n):
        kc, kz = jax.random.split(key)
        k = jax.random.categorical(kc, jnp.log(self.w), shape=(n,))
        z = jax.random.normal(kz, (n,))
        return (self.mu[k] + jnp.sqrt(self.v[k]) * z)[:, None]

    def denoiser(self, x, sigma):
        """Exact ``E[x_0 | x~]`` for ``x (B, 1)``, ``sigma (B,)``."""
        s2 = sigma[:, None] ** 2  # (B, 1) against components (K,)
        var = self.v[None, :] + s2
        logp = jnp.log(self.w)[None, :] - 0.5 * (x - self.mu[None, :]) ** 2 / var
        logp = logp - 0.5 * jnp.log(var)
        r = jax.nn.softmax(logp, axis=1)
        post = self.mu[None, :] + self.v[None, :] / var * (x - self.mu[None, :])
        return jnp.sum(r * post, axis=1, keepdims=True)

    def flow(self, x, s_from, s_to: float, *, steps: int = 256):
        """Fine Heun solve of the PF-ODE from ``s_from`` (traced ok) down to ``s_to`` (Karras
        spacing, rho = 7)."""
        i = jnp.arange(steps + 1) / steps
        lo, hi = s_to ** (1 / 7), s_from ** (1 / 7)
        grid = (hi + i * (lo - hi)) ** 7
        batch = x.shape[0]

        def step(x, pair):
            a, b = pair
            x, _ = probability_flow_step(
                self.denoiser, x, jnp.full((batch,), a), jnp.full((batch,), b)
            )
            return x, None

        x, _ = jax.lax.scan(step, x, (grid[:-1], grid[1:]))
        return x
