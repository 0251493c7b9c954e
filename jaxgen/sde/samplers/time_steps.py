"""Time-step grids ``T = t_0 > t_1 > ... > t_N = t_min`` for the few-step ODE solvers.

Every grid has ``N + 1`` points from ``T`` down to ``t_min`` (both endpoints exact) and is
strictly decreasing. With ``u_i = i / N`` (``i = 0..N``):

* ``"time_uniform"``: ``t_i = T + u_i (t_min - T)``;
* ``"time_quadratic"``: ``t_i = (sqrt(T) + u_i (sqrt(t_min) - sqrt(T)))^2`` (denser near
  the data; Song, Meng, Ermon 2021 Sec. D.2; Lu et al. 2022a Sec. 3.4);
* ``"log_snr"``: uniform in the log signal-to-noise ratio ``lambda(t) = log(alpha^2 /
  sigma^2)``, ``lambda_i = lambda(T) + u_i (lambda(t_min) - lambda(T))``, mapped back with
  ``t_i = t(lambda_i)`` (the "logSNR" grid DPM-Solver recommends, Lu et al. 2022a
  Sec. 3.4; uniform in DPM-Solver's ``log(alpha / sigma) = lambda / 2`` too);
* ``"karras"``: EDM eq. 5 in the noise level ``s~ = sigma / alpha`` of the scaled frame
  ``x / alpha``, ``s~_i = (s~_max^(1/rho) + u_i (s~_min^(1/rho) - s~_max^(1/rho)))^rho``
  with ``s~_max = s~(T)``, ``s~_min = s~(t_min)`` and ``rho = 7`` by default, mapped back
  with ``t_i = t(s~_i)``. (EDM's own schedule has ``N`` such levels plus a last one at
  ``s~ = 0``; :mod:`jaxgen.sde.samplers.edm` appends that itself.)

``lambda(t)`` and ``s~(t) = exp(-lambda / 2)`` are monotone with closed-form inverses for
VP, sub-VP and VE (:mod:`jaxgen.sde.sdes`), so every grid is exact up to rounding.

References:
  Lu, Zhou, Bao, Chen, Li, Zhu. DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
  Model Sampling in Around 10 Steps. NeurIPS 2022 (2022a).
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_positive_int
from jaxgen.sde.sdes import SDE

__all__ = ["SPACINGS", "karras_sigma_ratios", "time_steps"]

SPACINGS: tuple[str, ...] = ("time_uniform", "time_quadratic", "log_snr", "karras")


def check_num_steps(num_steps: int, *, minimum: int = 1, name: str = "num_steps") -> int:
    """``num_steps`` as a Python int ``>= minimum`` (it fixes shapes, so it must be static;
    :func:`jaxgen.core.validation.check_positive_int`)."""
    return check_positive_int(num_steps, name, minimum=minimum)


def resolve_t_min(sde: SDE, t_min: float | None) -> float | jax.Array:
    """``t_min`` (default ``sde.t_min``), checked to lie in ``(0, T)`` when it is concrete."""
    t_min = sde.t_min if t_min is None else t_min
    try:
        value = float(t_min)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return t_min  # traced: cannot be checked here
    if not 0.0 < value < sde.T:
        raise ValueError(f"t_min must lie in (0, T = {sde.T}), got {value}.")
    return t_min


def karras_sigma_ratios(sigma_max: jax.Array, sigma_min: jax.Array, num: int, rho: float):
    """``num >= 2`` levels of EDM eq. 5 from ``sigma_max`` down to ``sigma_min``:
    ``(s_max^(1/rho) + i / (num - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho``."""
    u = jnp.linspace(0.0, 1.0, num)
    lo, hi = jnp.power(sigma_min, 1.0 / rho), jnp.power(sigma_max, 1.0 / rho)
    return jnp.power(hi + u * (lo - hi), rho)


def time_steps(
    sde: SDE,
    num_steps: int,
    *,
    spacing: str = "log_snr",
    t_min: float | None = None,
    rho: float = 7.0,
) -> jax.Array:
    """The ``num_steps + 1`` times ``T = t_0 > ... > t_N = t_min`` of a ``spacing`` grid.

    Args:
      sde: the forward SDE (its ``log_snr``/``sigma_ratio`` and inverses give the grids).
      num_steps: ``N >= 1``, a static Python int.
      spacing: one of :data:`SPACINGS` (see the module docstring).
      t_min: the last time; ``None`` uses ``sde.t_min``. Must lie in ``(0, T)``.
      rho: the exponent of the ``"karras"`` grid (EDM eq. 5); ignored otherwise.

    Returns:
      Float array of shape ``(num_steps + 1,)``, strictly decreasing, with exact endpoints.
    """
    check_choice("spacing", spacing, SPACINGS)
    num_steps = check_num_steps(num_steps)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}.")
    t_min = resolve_t_min(sde, t_min)
    dtype = jnp.result_type(float)
    big_t = jnp.asarray(sde.T, dtype)
    small_t = jnp.asarray(t_min, dtype)
    u = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=dtype)
    if spacing == "time_uniform":
        grid = big_t + u * (small_t - big_t)
    elif spacing == "time_quadratic":
        hi, lo = jnp.sqrt(big_t), jnp.sqrt(small_t)
        grid = jnp.square(hi + u * (lo - hi))
    elif spacing == "log_snr":
        lam_hi, lam_lo = sde.log_snr(big_t), sde.log_snr(small_t)
        grid = sde.t_from_log_snr(lam_hi + u * (lam_lo - lam_hi))
    else:
        ratios = karras_sigma_ratios(
            sde.sigma_ratio(big_t), sde.sigma_ratio(small_t), num_steps + 1, rho
        )
        grid = sde.t_from_sigma_ratio(ratios)
    # Pin the endpoints (the inverse maps round-trip only to rounding).
    return grid.at[0].set(big_t).at[-1].set(small_t)
