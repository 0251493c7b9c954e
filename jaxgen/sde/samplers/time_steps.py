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

**Step ratios of multistep solvers.** DPM-Solver++ and UniPC step in ``lambda = log(alpha /
sigma)`` with ``h_i = lambda_{i+1} - lambda_i`` and extrapolate a polynomial through the
last ``k`` data predictions over the next step. Its error constants grow with the step
ratio ``q_i = h_i / h_{i-1}`` (the extrapolated Lagrange weights grow like ``q^{k-1}``; for the
variable-step two-step BDF, zero-stability needs ``q < 1 + sqrt(2)``). The uniform-in-t
grid has ``q`` up to 4-5 at its last steps (VP, 20 steps), where DPM-Solver++ 3M measured
worse at 20 than at 10 steps. :func:`multistep_orders` lowers the order of a step of order
``k >= 2`` unless ``q_i <= max_step_ratio`` (and ``q_{i-1} <= max_step_ratio`` for
``k = 3``, whose quadratic spans two earlier steps); :func:`check_grid_stability` raises
instead, for a caller that wants the orders kept. :data:`MAX_STEP_RATIO` = 2 was chosen by
measurement: on a 3-mode 2-D mixture (VP, 3M, ``time_uniform``, 20 steps) bounds 2 and 3
gave the same orders and MMD^2 0.0002 against 0.30 without the rule. Largest ``q`` (VP /
sub-VP; VE's time-uniform and log-SNR grids coincide, ``q = 1``): ``log_snr`` 1;
``karras`` 1.56 / 2.01 at 4 steps, 1.26 / 1.51 at 10; ``time_quadratic`` 2.28 / 2.58 at 4,
1.87 / 1.89 at 10; ``time_uniform`` 3.5-5.7 at 4 to 50 steps.

References:
  Lu, Zhou, Bao, Chen, Li, Zhu. DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
  Model Sampling in Around 10 Steps. NeurIPS 2022 (2022a).
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_choice, check_positive_int
from jaxgen.sde.sdes import SDE

__all__ = [
    "MAX_STEP_RATIO",
    "SPACINGS",
    "check_grid_stability",
    "grid_or_times",
    "karras_sigma_ratios",
    "multistep_orders",
    "multistep_step_ratios",
    "time_steps",
]

SPACINGS: tuple[str, ...] = ("time_uniform", "time_quadratic", "log_snr", "karras")
MAX_STEP_RATIO = 2.0
LOWER_ORDER_FINAL_BELOW = 15


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


def multistep_step_ratios(h: jax.Array) -> jax.Array:
    """``q_i = h_i / h_{i-1}`` for the steps ``h (N,)`` in ``lambda`` (``q_0 = 1``: the
    first step has no predecessor). Traceable."""
    h = jnp.asarray(h)
    return jnp.concatenate([jnp.ones((1,), h.dtype), h[1:] / h[:-1]])


def _base_orders(num_steps: int, order: int, lower_order_final: bool) -> jax.Array:
    i = jnp.arange(num_steps)
    orders = jnp.minimum(order, i + 1)
    if lower_order_final and num_steps < LOWER_ORDER_FINAL_BELOW:
        orders = jnp.minimum(orders, num_steps - i)
    return orders


def _allowed_orders(ratios: jax.Array, max_step_ratio: float) -> jax.Array:
    ok = ratios <= max_step_ratio
    ok_prev = jnp.concatenate([jnp.ones((1,), bool), ok[:-1]])
    return 1 + ok.astype(jnp.int32) * (1 + ok_prev.astype(jnp.int32))


def check_grid_stability(
    h: jax.Array, orders: jax.Array, *, max_step_ratio: float = MAX_STEP_RATIO
) -> None:
    """Raise ``ValueError`` naming the first step ``i`` whose order ``k >= 2`` is used across
    a step-ratio jump ``q_i = h_i / h_{i-1} > max_step_ratio`` (or ``q_{i-1}`` for ``k = 3``;
    module docstring). ``h (N,)`` the steps in ``lambda``, ``orders (N,)`` each step's order.
    Nothing is checked when ``h`` is traced (the grid depends on a traced SDE)."""
    try:
        h_np = np.asarray(h, dtype=np.float64)
        orders_np = np.asarray(orders)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    ratios = np.asarray(multistep_step_ratios(jnp.asarray(h_np)))
    allowed = np.asarray(_allowed_orders(jnp.asarray(ratios), max_step_ratio))
    bad = np.nonzero(orders_np > allowed)[0]
    if bad.size:
        i = int(bad[0])
        q = max(ratios[i], ratios[i - 1] if i > 0 and orders_np[i] >= 3 else 0.0)
        raise ValueError(
            f"step {i} of {len(h_np)} has order {int(orders_np[i])} across a step-size jump "
            f"h_i / h_(i-1) = {q:.3g} in log-SNR; a multistep step of order >= 2 allows at most "
            f"{max_step_ratio:g} (order {int(allowed[i])} is allowed there): use another "
            "spacing, more steps, or let the sampler lower the order (max_step_ratio)."
        )


def multistep_orders(
    h: jax.Array,
    order: int,
    *,
    lower_order_final: bool = True,
    max_step_ratio: float | None = MAX_STEP_RATIO,
) -> jax.Array:
    """Each step's order for a multistep solver on steps ``h (N,)`` in ``lambda`` (traceable):
    ``min(order, i + 1)`` (warm-up); ``<= N - i`` with ``lower_order_final`` when ``N < 15``;
    and, with ``max_step_ratio``, 1 where ``q_i > max_step_ratio`` and at most 2 where
    ``q_{i-1} > max_step_ratio`` (module docstring). With ``max_step_ratio=None`` the orders
    are kept and :func:`check_grid_stability` raises for a grid that violates the default
    bound."""
    num_steps = int(h.shape[0])
    orders = _base_orders(num_steps, order, lower_order_final)
    if max_step_ratio is None:
        check_grid_stability(h, orders)
        return orders.astype(jnp.int32)
    if not max_step_ratio >= 1.0:
        raise ValueError(f"max_step_ratio must be >= 1 or None, got {max_step_ratio!r}.")
    allowed = _allowed_orders(multistep_step_ratios(h), max_step_ratio)
    return jnp.minimum(orders, allowed).astype(jnp.int32)


def grid_or_times(
    sde: SDE,
    num_steps: int,
    *,
    spacing: str,
    t_min: float | None,
    times: jax.Array | None,
) -> jax.Array:
    """:func:`time_steps` of ``spacing``, or the caller's ``times`` checked to have shape
    ``(num_steps + 1,)`` (a traced grid is taken as it is: it must decrease from ``T``)."""
    if times is None:
        return time_steps(sde, num_steps, spacing=spacing, t_min=t_min)
    times = jnp.asarray(times)
    if times.shape != (num_steps + 1,):
        raise ValueError(
            f"times must have shape (num_steps + 1,) = ({num_steps + 1},), got {times.shape}."
        )
    return times
