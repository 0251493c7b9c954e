"""Samplers of the velocity ODE ``dx/dt = u(x, t)``, from the source at ``t = 1`` to the data
at ``t = 0`` (the library's convention; Lipman et al.'s clock is ``t' = 1 - t`` and their
velocity ``-u``).

Each sampler is ``fn(velocity_fn, key, shape, *, source=None, num_steps, t_min=0, t_max=1)
-> SamplerOutput``. ``velocity_fn(x, t)`` takes ``x (B, *event)`` and float ``t (B,)``. The
start ``x(t_max)`` is ``source`` when given (any source distribution, e.g. data-to-data
transport) and otherwise ``N(0, I)`` drawn per example by
:func:`jaxgen.core.sampling.initial_and_step_keys`: example ``i`` from ``fold_in(key, i)``
alone, the same start as the score-SDE samplers for the same key. The fixed-step methods
take ``num_steps`` steps ``h = (t_min - t_max) / N < 0`` on the uniform grid
``t_n = t_max + n h``:

* Euler (order 1, 1 evaluation per step): ``x' = x + h u(x, t)``;
* midpoint (order 2, 2 per step): ``x' = x + h u(x + h/2 u(x, t), t + h/2)``;
* Heun (order 2, 2 per step; the explicit trapezoid of EDM's Alg. 1):
  ``x~ = x + h u(x, t)``, ``x' = x + h (u(x, t) + u(x~, t + h)) / 2``;
* RK4 (order 4, 4 per step): the classical Runge-Kutta method (Kutta 1901).

``nfe`` is ``N``, ``2N``, ``2N`` and ``4N`` (static ints). :func:`adaptive_sample` solves
each example on its own with an adaptive ``diffrax`` Runge-Kutta pair (Tsit5 by default)
and a PID controller (:func:`jaxgen.core.ode_likelihood.solve_per_example`); its ``nfe`` is
the largest per-example count ``1 + (s - 1) n`` in the batch (an int array). :func:`flow_solve`
maps a state between any two times with the fixed-step methods (encoding, reflow).

References:
  Lipman et al. Flow Matching for Generative Modeling. ICLR 2023.
  Karras et al. Elucidating the Design Space of Diffusion-Based Generative Models. 2022.
  Tsitouras. Runge-Kutta pairs of order 5(4). 2011.  Kidger. diffrax. 2021.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxgen.core import ode_likelihood
from jaxgen.core.sampling import SamplerOutput, initial_and_step_keys
from jaxgen.core.validation import (
    check_choice,
    check_finite_number,
    check_positive_int,
    check_sample_shape,
    is_concrete,
)

__all__ = [
    "FIXED_STEP_METHODS",
    "adaptive_sample",
    "euler_sample",
    "flow_solve",
    "heun_sample",
    "midpoint_sample",
    "rk4_sample",
    "start_state",
]

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]
FIXED_STEP_METHODS: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
"""Method -> velocity evaluations per step."""


def start_state(key: jax.Array | None, shape: Sequence[int], source: jax.Array | None) -> jax.Array:
    """``x(t_max)``: ``source`` (checked to have ``shape``) or per-example ``N(0, I)`` noise."""
    shape = check_sample_shape(shape)
    if source is not None:
        source = jnp.asarray(source)
        if source.shape != shape:
            raise ValueError(f"source must have shape {shape}, got {source.shape}.")
        return source
    if key is None:
        raise ValueError("a PRNG key is needed to draw the Gaussian source (source=None).")
    x, _ = initial_and_step_keys(key, shape, 1, jnp.result_type(float))
    return x


def _check_times(t_start, t_end, names: tuple[str, str] = ("t_start", "t_end")) -> None:
    check_finite_number(t_start, names[0], low=0.0, high=1.0)
    check_finite_number(t_end, names[1], low=0.0, high=1.0)
    if is_concrete(t_start) and is_concrete(t_end) and float(t_start) == float(t_end):
        raise ValueError(f"{names[0]} and {names[1]} must differ, got both {float(t_start)!r}.")


def _step(velocity_fn: VelocityFn, method: str, x: jax.Array, t: jax.Array, h: jax.Array):
    batch = x.shape[0]

    def u(y, s):
        return velocity_fn(y, jnp.full((batch,), s, x.dtype)).astype(x.dtype)

    if method == "euler":
        return x + h * u(x, t)
    if method == "midpoint":
        return x + h * u(x + 0.5 * h * u(x, t), t + 0.5 * h)
    if method == "heun":
        k1 = u(x, t)
        k2 = u(x + h * k1, t + h)
        return x + 0.5 * h * (k1 + k2)
    k1 = u(x, t)
    k2 = u(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = u(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = u(x + h * k3, t + h)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def flow_solve(
    velocity_fn: VelocityFn,
    x: jax.Array,
    *,
    t_start: float,
    t_end: float,
    num_steps: int,
    method: str = "rk4",
) -> SamplerOutput:
    """``x(t_end)`` from ``x(t_start) = x`` by ``num_steps`` fixed steps of ``method`` (module
    doc) on the uniform grid; either direction (``t_start > t_end`` samples, ``<`` encodes).
    ``nfe`` = ``num_steps`` times 1, 2, 2 or 4."""
    check_choice("method", method, tuple(FIXED_STEP_METHODS))
    num_steps = check_positive_int(num_steps, "num_steps")
    _check_times(t_start, t_end)
    x = jnp.asarray(x)
    times = jnp.linspace(t_start, t_end, num_steps + 1, dtype=x.dtype)

    def body(y, pair):
        t, t_next = pair
        return _step(velocity_fn, method, y, t, t_next - t), None

    x, _ = jax.lax.scan(body, x, (times[:-1], times[1:]))
    return SamplerOutput(x, FIXED_STEP_METHODS[method] * num_steps)


def _fixed(method, velocity_fn, key, shape, source, num_steps, t_min, t_max) -> SamplerOutput:
    _check_times(t_max, t_min, ("t_max", "t_min"))
    x = start_state(key, shape, source)
    return flow_solve(
        velocity_fn, x, t_start=t_max, t_end=t_min, num_steps=num_steps, method=method
    )


def euler_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    num_steps: int = 20,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> SamplerOutput:
    """Euler on ``dx/dt = u`` from ``t_max`` (source) to ``t_min`` (data):
    ``x_{n+1} = x_n + h u(x_n, t_n)``, ``h = (t_min - t_max) / N``; order 1, ``nfe = N``.
    ``num_steps = 1`` is one-step generation ``x = x_source - u(x_source, 1)``."""
    return _fixed("euler", velocity_fn, key, shape, source, num_steps, t_min, t_max)


def midpoint_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    num_steps: int = 10,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> SamplerOutput:
    """Explicit midpoint: ``x_{n+1} = x_n + h u(x_n + (h/2) u(x_n, t_n), t_n + h/2)``;
    order 2, ``nfe = 2N`` (see :func:`euler_sample` for the grid)."""
    return _fixed("midpoint", velocity_fn, key, shape, source, num_steps, t_min, t_max)


def heun_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    num_steps: int = 10,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> SamplerOutput:
    """Heun (explicit trapezoid): ``x~ = x_n + h u(x_n, t_n)``, ``x_{n+1} = x_n + h (u(x_n,
    t_n) + u(x~, t_{n+1})) / 2``; order 2, ``nfe = 2N``."""
    return _fixed("heun", velocity_fn, key, shape, source, num_steps, t_min, t_max)


def rk4_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    num_steps: int = 5,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> SamplerOutput:
    """Classical RK4: ``x_{n+1} = x_n + h (k1 + 2 k2 + 2 k3 + k4) / 6`` with ``k1 = u(x, t)``,
    ``k2 = u(x + h k1 / 2, t + h/2)``, ``k3 = u(x + h k2 / 2, t + h/2)``, ``k4 = u(x + h k3,
    t + h)``; order 4, ``nfe = 4N``."""
    return _fixed("rk4", velocity_fn, key, shape, source, num_steps, t_min, t_max)


def adaptive_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> SamplerOutput:
    """Adaptive Runge-Kutta (``solver`` of :data:`jaxgen.core.ode_likelihood.ODE_SOLVERS`, PID
    step control with ``rtol``, ``atol``) on ``dx/dt = u`` from ``t_max`` to ``t_min``, one
    solve per example (its result independent of the batch). ``nfe`` = the batch's largest
    ``1 + (s - 1) n`` (``n`` attempted steps), an int32 array; an example that runs out of
    ``max_steps`` is NaN."""
    ode_likelihood.check_ode_options("exact", 1, solver, rtol, atol, max_steps)
    _check_times(t_max, t_min, ("t_max", "t_min"))
    x = start_state(key, shape, source)
    dtype = x.dtype

    def solve_one(x1):
        def field(t, y, args):
            t_b = jnp.reshape(t, (1,)).astype(dtype)
            return velocity_fn(y[None], t_b)[0].astype(dtype)

        y, nfe, _, ok = ode_likelihood.solve_per_example(
            field, x1, t_max, t_min, rtol=rtol, atol=atol, solver=solver, max_steps=max_steps
        )
        return jnp.where(ok, y, jnp.nan).astype(dtype), nfe

    out, nfe = jax.vmap(solve_one)(x)
    return SamplerOutput(out, jnp.max(nfe))
