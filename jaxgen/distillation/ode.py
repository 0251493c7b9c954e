"""The probability-flow ODE in the EDM frame and its one-step solvers.

For a Gaussian path ``x_t = alpha_t x_0 + sigma_t eps`` write ``x~ = x / alpha`` and the noise
level ``s = sigma / alpha``, so ``x~ = x_0 + s eps``; the probability-flow ODE is

    dx~/ds = (x~ - D(x~, s)) / s,

with ``D(x~, s) = E[x_0 | x~]`` the denoiser (Karras et al. 2022, eq. 3 with ``sigma(t) = t``).
An Euler step in ``s`` is exactly DDIM (Song, Meng, Ermon 2021; Salimans & Ho 2022, App. B):
``x~' = (s'/s) x~ + (1 - s'/s) D(x~, s)``.

A *denoiser* is a callable ``denoiser(x_scaled (B, *event), sigma (B,)) -> x0_hat (B, *event)``.

References:
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022, Alg. 1 (Heun's method, Euler on the last step to s = 0).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_time_range

__all__ = ["SOLVERS", "Denoiser", "expand", "probability_flow_step"]

SOLVERS: tuple[str, ...] = ("euler", "heun")

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]


def expand(sigma: jax.Array, x: jax.Array) -> jax.Array:
    """``sigma (B,)`` reshaped to ``(B, 1, ..., 1)`` to broadcast against ``x (B, *event)``."""
    return jnp.reshape(sigma, sigma.shape + (1,) * (x.ndim - sigma.ndim))


def per_example_sigma(sigma: jax.Array | float, x: jax.Array, name: str) -> jax.Array:
    """``sigma`` as a float ``(B,)`` array for ``x (B, *event)`` (a scalar is broadcast)."""
    sigma = jnp.asarray(sigma, dtype=x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None)
    if sigma.ndim == 0:
        sigma = jnp.broadcast_to(sigma, x.shape[:1])
    if sigma.shape != x.shape[:1]:
        raise ValueError(
            f"{name} must have shape ({x.shape[0]},) (one per example), got {sigma.shape}"
        )
    return sigma


def probability_flow_step(
    denoiser: Denoiser,
    x_scaled: jax.Array,
    sigma_from: jax.Array,
    sigma_to: jax.Array,
    *,
    solver: str = "heun",
) -> tuple[jax.Array, int]:
    """One step of ``dx~/ds = (x~ - D(x~, s)) / s`` from ``sigma_from (B,)`` to ``sigma_to (B,)``.

    Euler: ``x' = x + h d``, ``d = (x - D(x, s)) / s``, ``h = s' - s`` (first order; equal to a
    DDIM step). Heun (EDM Alg. 1, second order): ``x' = x + h (d + d') / 2`` with ``d'`` the
    slope at the Euler point ``(x + h d, s')``; where ``s' = 0`` the correction is skipped
    (the slope is undefined there) and the Euler step, which returns ``D(x, s)``, is kept --
    the denoiser is then evaluated at ``s`` instead of ``0``, and the value is discarded.

    Returns ``(x_next, nfe)``: ``nfe`` is 1 (euler) or 2 (heun), a Python int (the evaluations
    made per example, counted as made even where Heun's correction is skipped).
    """
    check_choice("solver", solver, SOLVERS)
    x = jnp.asarray(x_scaled)
    if x.ndim < 1:
        raise ValueError(f"x_scaled must have shape (B, *event), got {x.shape}")
    s = per_example_sigma(sigma_from, x, "sigma_from")
    s_to = per_example_sigma(sigma_to, x, "sigma_to")
    check_time_range(s, float("inf"), "sigma_from", low=0.0, low_open=True)
    check_time_range(s_to, float("inf"), "sigma_to", low=0.0, low_open=False)
    x0_hat = denoiser(x, s)
    ratio = expand(s_to / s, x)
    x_euler = ratio * x + (1.0 - ratio) * x0_hat  # = x + h d, exactly D where s' = 0
    if solver == "euler":
        return x_euler, 1
    last = s_to == 0
    s_safe = jnp.where(last, s, s_to)
    d_next = (x_euler - denoiser(x_euler, s_safe)) / expand(s_safe, x)
    d = (x - x0_hat) / expand(s, x)
    x_heun = x + expand(s_to - s, x) * (0.5 * (d + d_next))
    return jnp.where(expand(last, x), x_euler, x_heun), 2
