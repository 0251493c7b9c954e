"""Exact log-likelihoods of continuous-time flows, shared by the score-SDE and flow-matching
families: the instantaneous change of variables integrated with ``diffrax``.

**Instantaneous change of variables** (Chen et al. 2018, Thm. 1). Along a solution of an ODE
``dx/dt = v(x, t)`` that carries densities ``p_t``, ``d log p_t(x(t)) / dt = -div_x v``, so
with ``x(t0) = x`` ::

    log p_{t0}(x) = log p_{t1}(x(t1)) + int_{t0}^{t1} div_x v(x(t), t) dt.

:func:`ode_log_likelihood` solves the augmented ODE ``d/dt [x, delta] = [v, div_x v]`` from
``(x, 0)`` at ``t0`` to ``t1`` and returns ``log p_{t1}(x(t1)) + delta(t1)`` with the
caller's ``prior_log_prob`` in place of ``p_{t1}``. The score-SDE family passes its
probability-flow field (Song et al. 2021 eq. 13; data at ``t0 = t_min``, prior at ``T``);
flow matching passes its velocity (data at ``t = 0``, source at ``t = 1``).

**Divergence.** ``"exact"``: ``tr(dv/dx)`` from one linearisation of ``v`` and ``D`` JVPs
along the basis vectors (small ``D``). ``"rademacher"`` / ``"gaussian"``: Hutchinson's
``tr(A) = E[eps^T A eps]`` (Hutchinson 1989; FFJORD, Grathwohl et al. 2019, eq. 7) with
``num_probes`` probes per example drawn once from ``key`` (shape ``(B, num_probes,
*event)``, row ``i`` for example ``i``) and held fixed over the solve, one VJP per probe.

**Per-example solves.** Each example is solved by its own ``diffrax`` solve under
``jax.vmap`` with its own adaptive step sizes, so its result does not depend on the batch.
The explicit Runge-Kutta solvers offered are FSAL and are handed their first FSAL value, so
``n`` attempted steps of an ``s``-stage method cost exactly ``1 + (s - 1) n`` evaluations of
``v`` (``terms["nfe"]``); the first trial step is ``dt0 = 0.01 (t1 - t0)``. The stages run
in a plain ``lax`` loop (``scan_kind="lax"``): fast to compile, not reverse-differentiable.

**Bits per dimension** (:func:`dequantize_data`). For data on ``L`` evenly spaced levels of
``[-1, 1]`` (bin width ``w = 2 / (L - 1)``), uniform dequantisation ``y = x + w (u - 1/2)``
gives ``log P(x) >= E_u[log p(y)] + D log w`` (Theis et al. 2016), so
``bpd = -(log p(y) + D log w) / (D ln 2)`` bounds the discrete model's bits/dim.

References:
  Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations. NeurIPS 2018.
  Grathwohl et al. FFJORD. ICLR 2019.  Hutchinson. 1989.
  Song et al. Score-Based Generative Modeling through SDEs. ICLR 2021.
  Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import units

__all__ = [
    "DIVERGENCES",
    "ODE_SOLVERS",
    "DiscreteDataWarning",
    "check_data",
    "check_ode_options",
    "dequantize_data",
    "ode_log_likelihood",
    "solve_per_example",
]

DIVERGENCES: tuple[str, ...] = ("exact", "rademacher", "gaussian")
ODE_SOLVERS: dict[str, type[diffrax.AbstractRungeKutta]] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}

_MAX_GRID_LEVELS = 256  # the discreteness check looks for grids of 2..256 levels
_GRID_TOL = 1e-3  # |k - round(k)| below this (in units of one level) counts as on the grid
_RANGE_SLACK = 1e-5  # values within this of [-1, 1] count as inside

VectorField = Callable[[jax.Array, jax.Array], jax.Array]


class DiscreteDataWarning(UserWarning):
    """Data look discrete but are scored as continuous (or without dequantisation)."""


def check_data(x: jax.Array) -> jax.Array:
    """``x`` as a float array of shape ``(B, *event)`` with ``B >= 1``, else ``ValueError``."""
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1 or math.prod(x.shape[1:]) < 1:
        raise ValueError(
            f"x must have shape (B, *event) with B >= 1 and a non-empty event, got {x.shape}."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array, got dtype {x.dtype}.")
    return x


def check_ode_options(
    divergence: str, num_probes: int, solver: str, rtol: float, atol: float, max_steps: int
) -> None:
    """``ValueError`` naming the option unless each is one of the allowed values."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; expected one of {DIVERGENCES}.")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be an int >= 1, got {num_probes!r}.")
    if solver not in ODE_SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {tuple(ODE_SOLVERS)}.")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, jax.core.Tracer) and not float(tol) > 0.0:
            raise ValueError(f"{name} must be positive, got {tol!r}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}.")


def _as_time(t):
    # Python floats where possible: diffrax then checks the direction of dt0 at trace time
    # instead of inserting a run-time check (a host callback that would keep the program out
    # of JAX's persistent compilation cache).
    return t if isinstance(t, jax.core.Tracer) else float(t)


def solve_per_example(
    field: Callable, y0, t0: float, t1: float, *, rtol, atol, solver: str, max_steps: int
):
    """One adaptive ``diffrax`` solve of ``dy/dt = field(t, y, None)`` for one example, from
    ``t0`` to ``t1`` (either direction), with the FSAL value handed to the solver.

    Returns ``(y(t1), nfe, num_steps, ok)``: ``nfe = 1 + (s - 1) num_steps`` evaluations of
    ``field`` (``s`` the solver's stages), ``ok`` whether the solve succeeded.
    """
    rk = ODE_SOLVERS[solver](scan_kind="lax")
    num_stages = len(rk.tableau.c) + 1
    t0, t1 = _as_time(t0), _as_time(t1)
    # diffrax promotes the state to the time dtype (float64 under x64): do it here so that the
    # FSAL value handed over has the dtype of the state the solver carries.
    time_dtype = jnp.result_type(float)
    y0 = jax.tree.map(lambda leaf: leaf.astype(jnp.promote_types(leaf.dtype, time_dtype)), y0)
    term = diffrax.ODETerm(field)
    # FSAL bookkeeping made exact: evaluate the field at t0 once and hand it to the solver,
    # so every attempted step (accepted or rejected, the first one included) costs s - 1.
    _, f0_template = rk.init(term, t0, t1, y0, None)
    f0 = field(t0, y0, None)
    if jax.tree.structure(f0) != jax.tree.structure(f0_template):  # pragma: no cover
        raise RuntimeError("unexpected diffrax FSAL solver state; update solve_per_example.")
    sol = diffrax.diffeqsolve(
        term,
        rk,
        t0=t0,
        t1=t1,
        dt0=0.01 * (t1 - t0),
        y0=y0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
        solver_state=(jnp.asarray(False), f0),
    )
    y1 = jax.tree.map(lambda leaf: leaf[0], sol.ys)
    num_steps = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    ok = sol.result == diffrax.RESULTS.successful
    return y1, 1 + (num_stages - 1) * num_steps, num_steps, ok


def _probes(key, x, divergence, num_probes):
    batch, event, dtype = x.shape[0], x.shape[1:], x.dtype
    if divergence == "exact":
        return jnp.zeros((batch, 0) + event, dtype)  # unused; keeps one vmapped signature
    if key is None:
        raise ValueError(f"divergence={divergence!r} needs a PRNG key, got None.")
    shape = (batch, num_probes) + event
    if divergence == "rademacher":
        return jax.random.rademacher(key, shape, dtype=dtype)
    return jax.random.normal(key, shape, dtype=dtype)


def ode_log_likelihood(
    velocity_fn: VectorField,
    x: jax.Array,
    key: jax.Array | None,
    *,
    t0: float,
    t1: float,
    prior_log_prob: Callable[[jax.Array], jax.Array],
    divergence: str = "rademacher",
    num_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``log p_{t0}(x) = log p_{t1}(x(t1)) + int_{t0}^{t1} div v dt`` per example.

    Args:
      velocity_fn: ``v(x, t)``, ``x (B, *event)``, float ``t (B,)``; called with ``B = 1``.
      x: data ``(B, *event)`` at ``t0``, float.
      key: Hutchinson probe key (``None`` allowed for ``divergence="exact"``).
      t0, t1: the data and prior ends of the ODE.
      prior_log_prob: ``log p_{t1}(z)`` per example, ``(B,)``.
      divergence, num_probes, rtol, atol, solver, max_steps: see the module doc; an example
        that runs out of steps gets ``log_p = NaN`` and ``success = False``.

    Returns:
      ``(log_p (B,), terms)`` with ``"prior_log_p"``, ``"delta_log_p"``, ``"nfe"``,
      ``"num_steps"``, ``"success"`` and ``"z"`` (the state at ``t1``).
    """
    x = check_data(x)
    check_ode_options(divergence, num_probes, solver, rtol, atol, max_steps)
    event = x.shape[1:]
    dim = math.prod(event)
    dtype = x.dtype
    probes = _probes(key, x, divergence, num_probes)

    def solve_one(x1: jax.Array, probes1: jax.Array):
        def field(t, state, args):
            y, delta = state
            t_b = jnp.reshape(t, (1,)).astype(dtype)

            def v1(z):
                return velocity_fn(z[None], t_b)[0].astype(z.dtype)

            if divergence == "exact":
                dy, jvp_fn = jax.linearize(v1, y)
                basis = jnp.eye(dim, dtype=y.dtype).reshape((dim,) + event)
                columns = jax.vmap(jvp_fn)(basis).reshape(dim, dim)  # row i = J e_i
                div = jnp.trace(columns)
            else:
                dy, vjp_fn = jax.vjp(v1, y)
                probes_y = probes1.astype(y.dtype)
                (eps_jac,) = jax.vmap(vjp_fn)(probes_y)  # eps^T J, (P, *event)
                quad = jnp.sum((eps_jac * probes_y).reshape(num_probes, dim), axis=-1)
                div = jnp.mean(quad)
            return dy, div.astype(delta.dtype)

        (z, delta), nfe, num_steps, ok = solve_per_example(
            field,
            (x1, jnp.zeros((), dtype)),
            t0,
            t1,
            rtol=rtol,
            atol=atol,
            solver=solver,
            max_steps=max_steps,
        )
        return z, delta, nfe, num_steps, ok

    z, delta, nfe, num_steps, ok = jax.vmap(solve_one)(x, probes)
    prior = prior_log_prob(z).astype(dtype)
    log_p = jnp.where(ok, prior + delta, jnp.nan)
    terms = {
        "prior_log_p": prior,
        "delta_log_p": delta,
        "nfe": nfe,
        "num_steps": num_steps,
        "success": ok,
        "z": z,
    }
    return log_p, terms


# --------------------------------------------------------------------------- dequantisation


def _on_some_grid(x: jax.Array) -> jax.Array:
    """True when every value of ``x`` lies in ``[-1, 1]`` on a grid of ``L <= 256`` evenly
    spaced levels (level ``k`` at ``2k / (L - 1) - 1``), for some ``L``."""
    flat = jnp.reshape(x, (-1,)).astype(jnp.float32)
    inside = jnp.all(jnp.abs(flat) <= 1.0 + _RANGE_SLACK)

    def on_grid(levels):
        k = (flat + 1.0) * (0.5 * (levels - 1.0))
        return jnp.all(jnp.abs(k - jnp.round(k)) <= _GRID_TOL)

    levels = jnp.arange(2, _MAX_GRID_LEVELS + 1, dtype=jnp.float32)
    return inside & jnp.any(jax.lax.map(on_grid, levels))


def _warn_if_discrete(flag) -> None:
    if bool(flag):
        warnings.warn(
            "bits_per_dim: the data all lie on a grid of at most "
            f"{_MAX_GRID_LEVELS} levels in [-1, 1] but num_levels=None scores them as "
            "continuous; the density of discrete points is not a likelihood. Pass num_levels "
            "(e.g. 256 for 8-bit data) to dequantise.",
            DiscreteDataWarning,
            stacklevel=2,
        )


def _raise_if_out_of_range(bad) -> None:
    if bool(bad):
        raise ValueError("bits_per_dim: with num_levels given, x must lie in [-1, 1].")


def dequantize_data(
    x: jax.Array, key: jax.Array | None, *, num_levels: int | None, dequantize: bool
) -> tuple[jax.Array, jax.Array]:
    """``(y, valid)``: ``y = x + w (u - 1/2)``, ``u ~ U[0, 1)^D`` from ``key`` (module doc),
    for data on ``num_levels`` levels of ``[-1, 1]``; ``y = x`` for ``num_levels=None`` or
    ``dequantize=False``. ``valid (B,)`` is False for examples outside ``[-1, 1]``.

    Warns (:class:`DiscreteDataWarning`) for ``dequantize=False`` with ``num_levels`` (at
    trace time) and for continuous scoring of data on a grid (at run time). Values outside
    ``[-1, 1]`` with ``num_levels`` raise ``ValueError`` (concrete) or fail the computation
    under ``jit``.
    """
    if num_levels is None:
        jax.debug.callback(_warn_if_discrete, _on_some_grid(x))
        return x, jnp.ones((x.shape[0],), bool)
    out_of_range = jnp.abs(x.reshape(x.shape[0], -1)) > 1.0 + _RANGE_SLACK
    if not isinstance(x, jax.core.Tracer):
        bad = np.asarray(jnp.any(out_of_range, axis=-1))
        if bad.any():
            raise ValueError(
                "bits_per_dim: with num_levels given, x must lie in [-1, 1] (level k at "
                f"2k/(L-1) - 1); examples {np.flatnonzero(bad)[:10].tolist()} do not."
            )
    else:
        jax.debug.callback(_raise_if_out_of_range, jnp.any(out_of_range))
    valid = ~jnp.any(out_of_range, axis=-1)
    if not dequantize:
        warnings.warn(
            f"bits_per_dim(num_levels={num_levels}, dequantize=False): the density of "
            "discrete points is not a likelihood (it is not a bound on log P(x) and can "
            "be arbitrarily large); use dequantize=True.",
            DiscreteDataWarning,
            stacklevel=3,
        )
        return x, valid
    width = units.bin_width(num_levels, grid="centered")
    u = jax.random.uniform(key, x.shape, dtype=x.dtype)
    return x + width * (u - 0.5), valid
