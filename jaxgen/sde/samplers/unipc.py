"""UniPC (Zhao et al. 2023): a unified predictor-corrector solver of the probability-flow ODE
in log-SNR time with the data prediction, predictor UniP-p and corrector UniC-p, p = 1..3.

Notation as in :mod:`jaxgen.sde.samplers.dpm_solver`: ``lambda = log(alpha / sigma)``, the
data prediction ``x0(x, t) = (x + sigma^2 s(x, t)) / alpha``, a grid ``t_0 = T > ... > t_N``
(:mod:`jaxgen.sde.samplers.time_steps`), ``h_i = lambda_{i+1} - lambda_i > 0``. The exact
solution from ``t_i`` to ``t_{i+1}`` (variation of constants) with the Taylor expansion of
``x0`` in ``u = lambda - lambda_i`` is::

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} [ (1 - e^{-h}) x0_i
              + sum_{k >= 1} h^{k+1} phi_{k+1}(-h) x0_i^{(k)} ],
    phi_{k+1}(z) = int_0^1 e^{(1 - d) z} d^k / k! dd   (phi_1(z) = (e^z - 1) / z).

UniPC replaces the sum by ``B(h) sum_m a_m D_m / r_m`` with ``D_m = x0(s_m) - x0_i`` the
differences to earlier (or, for the corrector, the new) data predictions at ``lambda(s_m) =
lambda_i + r_m h``. Since ``D_m / r_m = sum_k (r_m h)^{k - 1} h / k! x0^{(k)}``, the terms up to
``x0^{(K)}`` match (the paper's Theorem 3.1, written here in the data-prediction sign) iff::

    sum_m a_m r_m^{k - 1} = g_k(h) / B(h),    g_k(h) = k! h phi_{k+1}(-h),   k = 1..K,

the linear system ``R_K(h) a = g_K(h) / B(h)`` of the paper (eq. 8), with ``B(h) = h``
(``variant="bh1"``) or ``B(h) = 1 - e^{-h}`` (``"bh2"``, the data-prediction form of
``e^h - 1``). Solving the system exactly makes ``B`` cancel; ``B`` enters where the paper
fixes the one-difference coefficient at its limit ``a_1 = 1/2`` (``g_1 / B -> 1/2`` as
``h -> 0`` for both variants; an ``O(h)`` relative change, so the order is kept), i.e. the
order-2 predictor and the order-1 corrector. Hence bh1 and bh2 differ only by terms of the
local error's leading order on those steps. On long steps that term is not small: the exact
``g_1(h) = 1/2 - h/6 + ...`` against ``B(h) / 2 = h / 2`` (bh1) or ``(1 - e^{-h}) / 2``
(bh2); at ``h = 1.6``, 0.50 against 0.80 and 0.40. Measured on a 3-mode 2-D mixture
(``tests/sde/test_few_step.py``): UniPC-2 bh1 on the Karras grid got worse from 5 to 10
calls (MMD^2 0.049 -> 0.094, then at the floor from 20), bh2 did not; prefer bh2 at small
budgets (the paper recommends bh1 for unconditional sampling; its steps were shorter).

* **UniP-p** (predictor, order p): ``K = p - 1`` differences to the earlier predictions at
  ``t_{i-1}, ..., t_{i-p+1}`` (``r_m = (lambda_{i-m} - lambda_i) / h_i < 0``)::

      x~_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} [ (1 - e^{-h}) x0_i
                 + B(h) sum_{m < p} a_m D_m / r_m ].

* **UniC-p** (corrector, order p + 1): one model call at the predicted point,
  ``x0_{i+1} = x0(x~_{i+1}, t_{i+1})``, adds the difference ``D_p = x0_{i+1} - x0_i`` at
  ``r_p = 1`` (``K = p`` differences, the same system with the corrector's ``a^c``), and
  recomputes the step from ``x_i`` with them. ``x0_{i+1}`` is *not* re-evaluated at the
  corrected point: it is the next predictor's ``x0_i`` (the paper's reuse), so the corrector
  costs no model call. It is not applied after the last step (whose ``x0_{N}`` would be an
  extra call), as in the paper's Algorithm 2/3.

Each step uses order ``p_i = min(order, i + 1)`` (warm-up: a multistep method lacks history
at the start), at most ``N - i`` with ``lower_order_final`` when ``N < 15`` (the last step
first order, DPM-Solver's rule), and lowered where the step ratio jumps
(:func:`jaxgen.sde.samplers.time_steps.multistep_orders`, the rule shared with
DPM-Solver++). ``nfe = num_steps`` (``+ 1`` with ``denoise``: Tweedie's ``x0(x_N, t_min)``,
the first-order step to ``sigma = 0``).

References:
  Zhao, Bai, Rao, Zhou, Lu. UniPC: A Unified Predictor-Corrector Framework for Fast
  Sampling of Diffusion Models. NeurIPS 2023 (Algs. 2-3, Theorem 3.1, eq. 8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_sample_shape
from jaxgen.sde.parameterization import score_to_x0
from jaxgen.sde.samplers.euler_maruyama import prior_and_step_keys
from jaxgen.sde.samplers.time_steps import (
    MAX_STEP_RATIO,
    SPACINGS,
    check_num_steps,
    grid_or_times,
    multistep_orders,
)
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = ["UNIPC_ORDERS", "UNIPC_VARIANTS", "unipc_coefficients", "unipc_sample"]

UNIPC_ORDERS: tuple[int, ...] = (1, 2, 3)
UNIPC_VARIANTS: tuple[str, ...] = ("bh1", "bh2")
_MAX_DIFFS = 3  # the corrector of order 3 uses 3 differences
_SERIES_BELOW = 0.05


def _g(h: jax.Array) -> jax.Array:
    """``g_k(h) = k! h phi_{k+1}(-h)`` for ``k = 1, 2, 3``, shape ``(3, *h.shape)``.

    Closed forms from ``k! h phi_{k+1}(-h) = k! int_0^h e^{-(h - u)} u^k / k! du / h^k``:
    ``g_1 = (h - 1 + e^{-h}) / h``, ``g_2 = 2 (h^2 / 2 - h + 1 - e^{-h}) / h^2``, ``g_3 = 6
    (h^3 / 6 - h^2 / 2 + h - 1 + e^{-h}) / h^3``; Taylor series ``g_k = k! sum_{j >= 0}
    (-h)^j / (k + 1 + j)!`` below ``h = 0.05`` against cancellation."""
    hs = jnp.where(h < _SERIES_BELOW, 1.0, h)  # keep the unused branch finite
    c1 = (hs + jnp.expm1(-hs)) / hs
    c2 = 2.0 * (0.5 * hs * hs - hs - jnp.expm1(-hs)) / (hs * hs)
    c3 = 6.0 * (hs**3 / 6.0 - 0.5 * hs * hs + hs + jnp.expm1(-hs)) / hs**3

    def series(k: int) -> jax.Array:
        terms = [(-h) ** j / math.factorial(k + 1 + j) for j in range(6)]
        return math.factorial(k) * sum(terms)

    small = h < _SERIES_BELOW
    return jnp.stack([jnp.where(small, series(k), c) for k, c in ((1, c1), (2, c2), (3, c3))])


def _det3(m: jax.Array) -> jax.Array:
    return (
        m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
        - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
        + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0])
    )


def unipc_coefficients(
    r: jax.Array, h: jax.Array, num: jax.Array | int, *, variant: str = "bh2"
) -> jax.Array:
    """``B(h) a`` for the ``num`` differences at ratios ``r (3,)`` (entries past ``num``
    ignored; ``num`` may be traced, 0..3): the solution of ``sum_m a_m r_m^{k-1} = g_k(h) /
    B(h)``, ``k = 1..num`` (module docstring), or ``a_1 = 1/2`` when ``num = 1`` (the
    paper's choice, where the variant's ``B(h)`` enters). Returns ``(3,)`` with zeros past
    ``num``."""
    check_choice("variant", variant, UNIPC_VARIANTS)
    dtype = h.dtype
    b = h if variant == "bh1" else -jnp.expm1(-h)
    g = _g(h)  # (3,)
    idx = jnp.arange(_MAX_DIFFS)
    active = idx < num
    # Vandermonde rows k = 0..2 (powers r^k); identity rows/columns where inactive. Solved
    # by Cramer's rule (3 x 3, unrolled: cheaper to compile than a LAPACK solve).
    r_safe = jnp.where(active, r, 1.0)
    mat = jnp.power(r_safe[None, :], idx[:, None].astype(dtype))
    mask = active[:, None] & active[None, :]
    mat = jnp.where(mask, mat, jnp.eye(_MAX_DIFFS, dtype=dtype))
    rhs = jnp.where(active, g, 0.0)
    det = _det3(mat)
    cols = [_det3(mat.at[:, j].set(rhs)) / det for j in range(_MAX_DIFFS)]
    solved = jnp.stack(cols)  # = B(h) a, exactly: B cancels
    one_diff = jnp.zeros((_MAX_DIFFS,), dtype).at[0].set(0.5 * b)
    return jnp.where(num == 1, one_diff, jnp.where(active, solved, 0.0))


def unipc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    num_steps: int = 10,
    order: int = 2,
    variant: str = "bh2",
    spacing: str = "log_snr",
    t_min: float | None = None,
    times: jax.Array | None = None,
    lower_order_final: bool = True,
    max_step_ratio: float | None = MAX_STEP_RATIO,
    corrector: bool = True,
    denoise: bool = False,
) -> SamplerOutput:
    """Samples with UniPC (UniP-p predictor + UniC-p corrector, data prediction).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE (VP, sub-VP or VE).
      key: one PRNG key or ``(B,)`` per-example keys; only ``x_T`` is random (the same as
        every other sampler here for the same key).
      shape: static ``(B, *event)``.
      num_steps: ``N >= 1`` steps, one model call each (static).
      order: ``p`` in 1, 2, 3 (static): the predictor's order; with the corrector the
        method has order ``p + 1``.
      variant: ``"bh1"`` (``B(h) = h``) or ``"bh2"`` (``B(h) = e^h - 1``, in the data-
        prediction sign ``1 - e^{-h}``).
      spacing: the time grid, one of :data:`jaxgen.sde.samplers.time_steps.SPACINGS`.
      t_min: the last time (``None``: ``sde.t_min``).
      times: an explicit grid ``(num_steps + 1,)`` from ``T`` down to the last time, used
        instead of ``spacing``/``t_min`` (may be traced, e.g. to vmap over grids).
      lower_order_final: the last steps at lower order when ``N < 15`` (module doc).
      max_step_ratio: lower a step's order where the step size in ``lambda`` grows by
        more than this factor (:func:`~jaxgen.sde.samplers.time_steps.multistep_orders`);
        ``None`` keeps the orders and raises ``ValueError`` for such a grid instead.
      corrector: apply UniC (False gives the predictor alone, UniP-p).
      denoise: one extra model call for a final Tweedie step at ``t_min``.

    Returns:
      :class:`SamplerOutput` with ``nfe = num_steps + int(denoise)``.
    """
    shape = check_sample_shape(shape)
    num_steps = check_num_steps(num_steps)
    check_choice("order", order, UNIPC_ORDERS)
    check_choice("variant", variant, UNIPC_VARIANTS)
    check_choice("spacing", spacing, SPACINGS)
    dtype = jnp.result_type(float)
    batch = shape[0]

    ts = grid_or_times(sde, num_steps, spacing=spacing, t_min=t_min, times=times).astype(dtype)
    alphas, sigmas = sde.alpha(ts), sde.sigma(ts)
    lam = 0.5 * sde.log_snr(ts)
    h = lam[1:] - lam[:-1]
    orders = multistep_orders(
        h, order, lower_order_final=lower_order_final, max_step_ratio=max_step_ratio
    )
    # lambda_{i-m} - lambda_i for m = 1, 2 (the two earlier nodes); 1 where there are none.
    back1 = jnp.concatenate([jnp.ones((1,), dtype), -h[:-1]])
    back2 = jnp.concatenate([jnp.ones((2,), dtype), -(h[:-2] + h[1:-1])])[:num_steps]

    def x0_fn(x: jax.Array, t: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
        tb = jnp.full((batch,), t, dtype)
        ab, sb = jnp.full((batch,), alpha, dtype), jnp.full((batch,), sigma, dtype)
        return score_to_x0(score_fn(x, tb), x, ab, sb)

    # Per-step weights w = B(h) a_m / r_m of the differences (vectorised over the steps,
    # outside the loop): predictor slots 0, 1 (earlier nodes); corrector slots 0..p-2 earlier,
    # slot p-1 the new prediction (r = 1).
    r = jnp.stack([back1 / h, back2 / h, jnp.ones_like(h)], axis=1)  # (N, 3)
    r_c = jnp.where(jnp.arange(_MAX_DIFFS)[None] == (orders - 1)[:, None], 1.0, r)
    coefs = jax.vmap(lambda rr, hh, num: unipc_coefficients(rr, hh, num, variant=variant))
    w_p = coefs(r, h, orders - 1) / r
    w_c = coefs(r_c, h, orders) / r_c
    decay = -jnp.expm1(-h)  # 1 - e^{-h}

    def predict(x, m0, m1, m2, per_step):
        _, a_next, s, s_next, dec, wp, _, _ = per_step
        return (s_next / s) * x + a_next * (dec * m0 + wp[0] * (m1 - m0) + wp[1] * (m2 - m0))

    def step(carry, per_step):
        x, m0, m1, m2 = carry  # m0 = x0 at the current node (already evaluated)
        t_next, a_next, s, s_next, dec, _, wc, p = per_step
        x_pred = predict(x, m0, m1, m2, per_step)  # UniP-p
        m_next = x0_fn(x_pred, t_next, a_next, s_next)
        if not corrector:
            return (x_pred, m_next, m0, m1), None
        d_new = m_next - m0  # UniC-p: the new difference in slot p - 1
        d0 = jnp.where(p == 1, d_new, m1 - m0)
        d1 = jnp.where(p == 2, d_new, m2 - m0)
        x_corr = (s_next / s) * x + a_next * (dec * m0 + wc[0] * d0 + wc[1] * d1 + wc[2] * d_new)
        return (x_corr, m_next, m0, m1), None

    x, _ = prior_and_step_keys(sde, key, shape, 1)
    m0 = x0_fn(x, ts[0], alphas[0], sigmas[0])
    zeros = jnp.zeros(shape, dtype)
    per_step = (ts[1:], alphas[1:], sigmas[:-1], sigmas[1:], decay, w_p, w_c, orders)
    # The last step's model call (x0 at t_N) would only feed a corrector that is not applied:
    # run the first N - 1 steps in the scan and the last one as a bare predictor.
    (x, m0, m1, m2), _ = jax.lax.scan(
        step, (x, m0, zeros, zeros), jax.tree.map(lambda a: a[:-1], per_step)
    )
    x = predict(x, m0, m1, m2, jax.tree.map(lambda a: a[-1], per_step))
    if denoise:
        x = x0_fn(x, ts[-1], alphas[-1], sigmas[-1])
    return SamplerOutput(x, num_steps + int(denoise))
