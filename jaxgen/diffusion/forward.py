"""The DDPM forward (noising) process and its posterior.

With the notation of :mod:`jaxgen.diffusion.schedules` (Ho et al. 2020):

* eq. 4:  ``q(x_t | x_0) = N(x_t; sqrt(abar_t) x_0, (1 - abar_t) I)``, sampled by
  reparameterisation as ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)``;
* eqs. 6-7: ``q(x_{t-1} | x_t, x_0) = N(mu_tilde_t(x_t, x_0), beta_tilde_t I)`` with
  ``mu_tilde_t = coef1_t x_0 + coef2_t x_t``.

Arrays ``x`` have shape ``(B, *event)`` and timesteps ``t`` are int arrays of shape ``(B,)``
holding 0-based indices (``t = 0`` is the paper's ``t = 1``). Per-example coefficients are
reshaped to ``(B, 1, ..., 1)`` explicitly, so the code is valid under
``jax_numpy_rank_promotion="raise"``; returned variances/standard deviations have that
broadcastable shape.

Out-of-range timesteps. Concrete ``t`` outside ``[0, T - 1]`` raise ``ValueError`` naming the
values and the range (:func:`check_timestep_values`). Under ``jit``/``vmap``/``grad`` the
values are not known, so they cannot be checked; there every gather clips ``t`` to
``[0, T - 1]`` explicitly (:func:`clip_timesteps`), so a traced out-of-range ``t`` gives the
coefficients of the nearest valid step, never NaN and never a wrapped-around index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_index_range
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = ["expand_to", "extract", "q_mean_std", "q_posterior", "q_sample"]


def expand_to(values: jax.Array, ndim: int) -> jax.Array:
    """Reshapes a per-example ``(B,)`` array to ``(B, 1, ..., 1)`` with ``ndim`` dims."""
    values = jnp.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"expected a per-example array of shape (B,), got {values.shape}.")
    return jnp.reshape(values, values.shape + (1,) * (ndim - 1))


def check_timesteps(t: jax.Array, x: jax.Array, *, name: str = "t") -> None:
    """Raises ``ValueError`` unless ``t`` is an integer array of shape ``(x.shape[0],)``."""
    t_shape = jnp.shape(t)
    x_shape = jnp.shape(x)
    if len(x_shape) < 1:
        raise ValueError(f"x must have shape (B, *event), got a scalar of shape {x_shape}.")
    if t_shape != (x_shape[0],):
        raise ValueError(
            f"{name} must have shape (B,) = ({x_shape[0]},) to match x of shape {x_shape}, "
            f"got {name}.shape = {t_shape}."
        )
    if not jnp.issubdtype(jnp.result_type(t), jnp.integer):
        raise ValueError(
            f"{name} must hold integer timestep indices in [0, T), got dtype {jnp.result_type(t)}."
        )


def check_timestep_values(t: jax.Array, num_timesteps: int, *, name: str = "t") -> None:
    """``ValueError`` unless every value of a concrete ``t`` is a step index in
    ``[0, T - 1]`` (skipped under ``jit``, where :func:`clip_timesteps` applies)."""
    check_index_range(t, int(num_timesteps), name)


def clip_timesteps(t: jax.Array, num_timesteps: int) -> jax.Array:
    """``t`` clipped to ``[0, T - 1]``: the documented behaviour for traced out-of-range
    steps (negative steps are clipped to 0, not wrapped around)."""
    return jnp.clip(t, 0, int(num_timesteps) - 1)


def extract(coefficients: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
    """Gathers ``coefficients[t]`` and reshapes it to broadcast against ``x``.

    Args:
      coefficients: a ``(T,)`` schedule field.
      t: int ``(B,)`` 0-based timestep indices in ``[0, T - 1]`` (concrete values outside
        raise ``ValueError``; traced ones are clipped, see the module doc).
      x: array of shape ``(B, *event)``.

    Returns:
      Array of shape ``(B, 1, ..., 1)`` with ``x.ndim`` dims.
    """
    check_timesteps(t, x)
    size = jnp.shape(coefficients)[0]
    check_timestep_values(t, size)
    return expand_to(coefficients[clip_timesteps(t, size)], jnp.ndim(x))


def q_mean_std(
    schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of ``q(x_t | x_0)`` (Ho et al. eq. 4).

    ``mean = sqrt(abar_t) x_0`` and ``std = sqrt(1 - abar_t)``.

    Args:
      schedule: the diffusion schedule.
      x0: data of shape ``(B, *event)``.
      t: int ``(B,)`` 0-based timestep indices.

    Returns:
      ``(mean, std)``: ``mean`` has ``x0``'s shape, ``std`` has shape ``(B, 1, ..., 1)``.
    """
    mean = extract(schedule.sqrt_alphas_cumprod, t, x0) * x0
    std = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0)
    return mean, std


def q_sample(
    schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array
) -> jax.Array:
    """Samples ``x_t ~ q(x_t | x_0)`` (Ho et al. eq. 4) by reparameterisation.

    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` with ``noise ~ N(0, I)``.

    Args:
      schedule: the diffusion schedule.
      x0: data of shape ``(B, *event)``.
      t: int ``(B,)`` 0-based timestep indices.
      noise: standard normal noise of ``x0``'s shape.

    Returns:
      ``x_t`` with ``x0``'s shape.
    """
    if jnp.shape(noise) != jnp.shape(x0):
        raise ValueError(
            f"noise must have the shape of x0 {jnp.shape(x0)}, got {jnp.shape(noise)}."
        )
    mean, std = q_mean_std(schedule, x0, t)
    return mean + std * noise


def q_posterior(
    schedule: DiffusionSchedule, x0: jax.Array, xt: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The forward-process posterior ``q(x_{t-1} | x_t, x_0)`` (Ho et al. eqs. 6-7).

    ``mean = coef1_t x_0 + coef2_t x_t``, ``variance = beta_tilde_t``; ``log_variance`` is
    the clipped log variance (at ``t = 0``, where ``beta_tilde = 0``, it is
    ``log beta_tilde`` of the next step, as in the reference code).

    Args:
      schedule: the diffusion schedule.
      x0: data (or a prediction of it) of shape ``(B, *event)``.
      xt: noisy data of the same shape.
      t: int ``(B,)`` 0-based timestep indices.

    Returns:
      ``(mean, variance, log_variance)``; ``mean`` has ``x0``'s shape, the others
      ``(B, 1, ..., 1)``.
    """
    if jnp.shape(xt) != jnp.shape(x0):
        raise ValueError(
            f"x0 and xt must have the same shape, got {jnp.shape(x0)} and {jnp.shape(xt)}."
        )
    mean = (
        extract(schedule.posterior_mean_coef1, t, x0) * x0
        + extract(schedule.posterior_mean_coef2, t, x0) * xt
    )
    variance = extract(schedule.posterior_variance, t, x0)
    log_variance = extract(schedule.posterior_log_variance_clipped, t, x0)
    return mean, variance, log_variance
