"""Noise schedules of the discrete-time diffusion (DDPM) forward process.

The forward process of Ho et al. (2020), eq. 2, adds Gaussian noise in ``T`` steps::

    q(x_t | x_{t-1}) = N(x_t; sqrt(1 - beta_t) x_{t-1}, beta_t I),      t = 1..T.

With ``alpha_t = 1 - beta_t`` and ``abar_t = prod_{s<=t} alpha_s`` it has the closed form
(eq. 4) ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` and the posterior (eqs. 6-7)::

    q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I),
    mu_tilde_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0
                   + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
    beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t,            with abar_0 = 1.

A :class:`DiffusionSchedule` stores every per-step coefficient as a ``(T,)`` array. Array
index ``i = 0..T-1`` holds the paper's step ``t = i + 1``; the same 0-based index is what
model callables receive.

Schedules are computed in float64 NumPy and stored as ``float32`` arrays, or ``float64``
arrays when ``jax_enable_x64`` is on at construction time.

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Nichol, Dhariwal. Improved Denoising Diffusion Probabilistic Models. ICML 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SCHEDULES",
    "DiffusionSchedule",
    "cosine_schedule",
    "linear_schedule",
    "make_schedule",
    "scaled_linear_schedule",
    "schedule_from_betas",
]


class DiffusionSchedule(NamedTuple):
    """Per-step coefficients of a DDPM forward process; every field has shape ``(T,)``.

    Index ``i`` is the paper's step ``t = i + 1`` (so ``alphas_cumprod_prev[0] = abar_0 = 1``).

    Attributes:
      betas: ``beta_t``.
      alphas: ``alpha_t = 1 - beta_t``.
      alphas_cumprod: ``abar_t = prod_{s<=t} alpha_s``.
      alphas_cumprod_prev: ``abar_{t-1}`` (``1`` at ``t = 1``).
      sqrt_alphas_cumprod: ``sqrt(abar_t)``.
      sqrt_one_minus_alphas_cumprod: ``sqrt(1 - abar_t)``.
      posterior_variance: ``beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t`` (eq. 7);
        zero at ``t = 1``.
      posterior_log_variance_clipped: ``log beta_tilde_t`` with the ``t = 1`` entry (which
        would be ``log 0``) replaced by ``log beta_tilde_2``, as in the reference code.
      posterior_mean_coef1: coefficient of ``x_0`` in ``mu_tilde_t``,
        ``sqrt(abar_{t-1}) beta_t / (1 - abar_t)`` (eq. 7).
      posterior_mean_coef2: coefficient of ``x_t`` in ``mu_tilde_t``,
        ``sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)`` (eq. 7).
    """

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array

    @property
    def num_timesteps(self) -> int:
        """``T``, the number of diffusion steps (static: read from the array shape)."""
        return int(self.betas.shape[0])


def schedule_from_betas(betas: Any) -> DiffusionSchedule:
    """Builds every coefficient of a :class:`DiffusionSchedule` from ``beta_1..beta_T``.

    Implements ``alpha_t = 1 - beta_t``, ``abar_t = prod_{s<=t} alpha_s`` (Ho et al. eq. 4)
    and the posterior coefficients of eqs. 6-7 (see the module docstring), in float64.

    Args:
      betas: concrete array-like of shape ``(T,)`` with ``T >= 2`` and ``0 < beta_t <= 1``.

    Returns:
      The schedule, stored as float32 (float64 when x64 is enabled).

    Raises:
      ValueError: if ``betas`` is not 1-D, has fewer than 2 entries, or leaves ``(0, 1]``.
    """
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1:
        raise ValueError(f"betas must be 1-D of shape (T,), got shape {b.shape}.")
    if b.shape[0] < 2:
        raise ValueError(f"a schedule needs T >= 2 steps, got T = {b.shape[0]}.")
    if not np.all(np.isfinite(b)) or np.any(b <= 0.0) or np.any(b > 1.0):
        raise ValueError(f"betas must lie in (0, 1]; got min {b.min()!r} and max {b.max()!r}.")
    alphas = 1.0 - b
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    one_minus_abar = 1.0 - abar
    posterior_variance = b * (1.0 - abar_prev) / one_minus_abar
    log_var_clipped = np.log(np.concatenate([posterior_variance[1:2], posterior_variance[1:]]))
    coef1 = b * np.sqrt(abar_prev) / one_minus_abar
    coef2 = (1.0 - abar_prev) * np.sqrt(alphas) / one_minus_abar

    dtype = jnp.result_type(float)  # float32, or float64 under x64.

    def store(a: np.ndarray) -> jax.Array:
        return jnp.asarray(a, dtype=dtype)

    return DiffusionSchedule(
        betas=store(b),
        alphas=store(alphas),
        alphas_cumprod=store(abar),
        alphas_cumprod_prev=store(abar_prev),
        sqrt_alphas_cumprod=store(np.sqrt(abar)),
        sqrt_one_minus_alphas_cumprod=store(np.sqrt(one_minus_abar)),
        posterior_variance=store(posterior_variance),
        posterior_log_variance_clipped=store(log_var_clipped),
        posterior_mean_coef1=store(coef1),
        posterior_mean_coef2=store(coef2),
    )


def linear_schedule(
    num_timesteps: int = 1000, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DiffusionSchedule:
    """Linear schedule of Ho et al. (2020, Sec. 4): ``beta_t`` evenly spaced in
    ``[beta_start, beta_end]``, ``t = 1..T``.

    The endpoints are the paper's values (chosen for ``T = 1000``) and are used as given
    for every ``T``: they are *not* rescaled by ``1000 / T``. With a small ``T`` the
    process then does not reach ``abar_T ~ 0``; pass larger endpoints if that matters.

    Args:
      num_timesteps: ``T >= 2``.
      beta_start: ``beta_1``.
      beta_end: ``beta_T``.

    Returns:
      The schedule.
    """
    _check_num_timesteps(num_timesteps)
    return schedule_from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def scaled_linear_schedule(
    num_timesteps: int = 1000, *, beta_start: float = 0.00085, beta_end: float = 0.012
) -> DiffusionSchedule:
    """The "linear" schedule of latent diffusion (Rombach et al. 2022; their code's
    ``make_beta_schedule("linear")``): ``sqrt(beta_t)`` evenly spaced in
    ``[sqrt(beta_start), sqrt(beta_end)]``, i.e. ``beta_t = (sqrt(b_1) + (t - 1) / (T - 1)
    (sqrt(b_T) - sqrt(b_1)))^2``. The paper's unconditional LDMs use ``b_1 = 0.0015``,
    ``b_T = 0.0195`` with ``T = 1000``; the defaults are Stable Diffusion's 0.00085, 0.012.

    Args:
      num_timesteps: ``T >= 2``.
      beta_start: ``beta_1``.
      beta_end: ``beta_T``.

    Returns:
      The schedule.
    """
    _check_num_timesteps(num_timesteps)
    roots = np.linspace(np.sqrt(beta_start), np.sqrt(beta_end), num_timesteps, dtype=np.float64)
    return schedule_from_betas(roots**2)


def cosine_schedule(
    num_timesteps: int = 1000, *, offset: float = 0.008, max_beta: float = 0.999
) -> DiffusionSchedule:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. 17.

    ``abar_t = f(t) / f(0)`` with ``f(t) = cos(((t / T + s) / (1 + s)) * pi / 2)^2`` and
    ``s = offset``; the betas are ``beta_t = min(1 - abar_t / abar_{t-1}, max_beta)``.
    Clipping (which only bites near ``t = T``) prevents the singularity at ``t = T``, so
    the stored ``alphas_cumprod`` equals the formula wherever no beta was clipped.

    Args:
      num_timesteps: ``T >= 2``.
      offset: ``s`` of eq. 17.
      max_beta: upper clip of each ``beta_t``.

    Returns:
      The schedule.
    """
    _check_num_timesteps(num_timesteps)
    if not 0.0 < max_beta <= 1.0:
        raise ValueError(f"max_beta must lie in (0, 1], got {max_beta!r}.")
    steps = np.arange(num_timesteps + 1, dtype=np.float64)
    f = np.cos(((steps / num_timesteps + offset) / (1.0 + offset)) * np.pi / 2.0) ** 2
    abar = f / f[0]
    betas = np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)
    return schedule_from_betas(betas)


SCHEDULES: dict[str, Callable[..., DiffusionSchedule]] = {
    "linear": linear_schedule,
    "scaled_linear": scaled_linear_schedule,
    "cosine": cosine_schedule,
}


def make_schedule(name: str, num_timesteps: int = 1000, **kwargs: Any) -> DiffusionSchedule:
    """Builds a named schedule: ``"linear"`` (Ho et al.), ``"scaled_linear"`` (latent
    diffusion: linear in ``sqrt(beta)``) or ``"cosine"`` (Nichol & Dhariwal).

    Args:
      name: a key of :data:`SCHEDULES`.
      num_timesteps: ``T``.
      **kwargs: keyword options of the named schedule function.

    Raises:
      ValueError: for an unknown name (the message lists the known names).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule name {name!r}; expected one of {sorted(SCHEDULES)}.")
    return SCHEDULES[name](num_timesteps, **kwargs)


def _check_num_timesteps(num_timesteps: int) -> None:
    if not isinstance(num_timesteps, (int, np.integer)) or num_timesteps < 2:
        raise ValueError(f"num_timesteps must be an int >= 2, got {num_timesteps!r}.")
