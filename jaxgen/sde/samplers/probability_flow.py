"""Sampling by the probability-flow ODE (Song et al. 2021, eq. 13), fixed-step or adaptive.

Every SDE ``dx = f dt + g dw`` has a deterministic flow with the same marginals ``p_t``:

    dx/dt = v(x, t) = f(x, t) - g(t)^2 s(x, t) / 2,                              (eq. 13)

with ``s ~ grad_x log p_t``. Integrating it from ``x_T ~ p_T`` at ``t = T`` down to
``t_min`` gives samples of ``p_{t_min}``; integrating it upwards encodes data into latents
(Sec. 4.3). :func:`probability_flow_solve` maps a state between any two times, and
:func:`probability_flow_sample` starts from the prior. Methods:

* ``"euler"``: ``x_{i+1} = x_i + h_i v(x_i, t_i)``, global order 1, 1 evaluation per step;
* ``"heun"``: the explicit trapezoidal rule (Heun 1900; EDM's Alg. 1 uses it),
  ``x~ = x_i + h_i v(x_i, t_i)``, ``x_{i+1} = x_i + h_i (v(x_i, t_i) + v(x~, t_{i+1})) / 2``,
  global order 2, 2 evaluations on *every* step (the end time ``t_min > 0`` is regular, so
  unlike EDM the last step needs no Euler fallback);

both on ``num_steps`` steps of the grid uniform in ``t`` (``h_i = t_{i+1} - t_i``), so
``nfe = num_steps`` or ``2 num_steps``; and

* ``"adaptive"``: an embedded Runge-Kutta pair, Tsit5 (Tsitouras 2011) or Dopri5 (Dormand &
  Prince 1980, the "RK45" of Song et al.'s likelihood and sampling experiments), with a PID
  step-size controller (``rtol``, ``atol``) via :func:`diffrax.diffeqsolve`.
  :func:`probability_flow_sample` solves each example on its own (``jax.vmap`` of
  per-example solves, each with its own step sizes), so a sample depends only on its own
  ``x_T``, not on the batch it is drawn in; :func:`probability_flow_solve` does that with
  ``per_example=True`` and otherwise makes one joint solve for the whole batch (shared
  steps; the error norm is diffrax's RMS over all elements).

**NFE of the adaptive solve.** diffrax counts steps, not evaluations, so ``nfe`` is derived
from its algorithm (diffrax 0.7). Both pairs have ``s = 7`` stages and the FSAL property
(the last stage of an accepted step is the first of the next). The first trial step is
``dt0 = (t1 - t0) / 100``, passed explicitly, so no evaluations go to choosing it. (With
``dt0=None``, diffrax 0.7.2 would run Hairer's initial-step heuristic only for a bare
``ODETerm``, but its integrator hands the controller a direction-wrapped term, so it falls
back to a constant 0.01 at no cost; passing ``dt0`` keeps the count below true if that is
ever fixed.) The count is

    nfe = (s - 1) n + a_1,

where ``n`` = ``sol.stats["num_steps"]`` counts every attempted step (accepted and
rejected), and ``a_1 >= 1`` is the number of attempts made before the first step is
accepted: those attempts evaluate the first stage themselves (``s`` evaluations), since
there is no previous stage to reuse, while every later attempt reuses it, even after a
rejection (the step restarts from the same point). ``a_1`` is counted by a thin wrapper
around diffrax's PID controller and read back from the final controller state. A test
checks the formula against a direct count of vector-field calls (``jax.debug.callback``).
With per-example solves the formula holds for each example (``nfe`` of
:func:`probability_flow_solve` is then ``(B,)``); the sampler reports the largest count in
the batch, the work of its slowest example (under ``vmap`` the batch runs until that
example is done, finished examples idling, so the batch's actual work is at least this).

With ``denoise=True``, sampling ends with Tweedie's ``x_0 = (x + sigma^2 s) / alpha`` at
``t_min`` (one more evaluation). Under ``jax.jit``, ``shape``, ``method``, ``num_steps``,
``solver``, ``max_steps`` and ``denoise`` must be static; times and tolerances may be traced.
``nfe`` is a static int for the fixed-step methods and an int32 array for ``"adaptive"``.

References:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through
  Stochastic Differential Equations. ICLR 2021 (eq. 13, Sec. 4.3, App. D).
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022 (Alg. 1: Heun's method).
  Tsitouras. Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying
  assumption. Computers & Mathematics with Applications, 2011.
  Kidger. On Neural Differential Equations (diffrax). PhD thesis, 2021.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_sample_shape, check_time_range
from jaxgen.sde.samplers.euler_maruyama import (
    check_num_steps,
    prior_and_step_keys,
    resolve_t_min,
    tweedie_denoise,
)
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = [
    "ADAPTIVE_SOLVERS",
    "METHODS",
    "probability_flow_sample",
    "probability_flow_solve",
]

METHODS: tuple[str, ...] = ("euler", "heun", "adaptive")
ADAPTIVE_SOLVERS: tuple[str, ...] = ("tsit5", "dopri5")
_NUM_STAGES = {"tsit5": 7, "dopri5": 7}  # both first-same-as-last
_FIRST_STEP_FRACTION = 0.01  # dt0 = (t1 - t0) / 100


def _fixed_step_solve(vector_field, x, t0, t1, *, method, num_steps):
    times = jnp.linspace(t0, t1, num_steps + 1).astype(x.dtype)
    batch = x.shape[0]

    def step(x, ts):
        t, t_next = ts
        h = t_next - t
        t_b = jnp.full((batch,), t, dtype=x.dtype)
        v = vector_field(x, t_b)
        x_euler = (x + h * v).astype(x.dtype)
        if method == "euler":
            return x_euler, None
        v_next = vector_field(x_euler, jnp.full((batch,), t_next, dtype=x.dtype))
        return (x + 0.5 * h * (v + v_next)).astype(x.dtype), None

    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:]))
    return x


@functools.cache
def _first_attempts_controller():
    """A diffrax adaptive controller that delegates to an inner one and counts the step
    attempts made before the first accepted step (built lazily: diffrax is imported only
    when the adaptive method is used)."""
    import diffrax

    class FirstAttemptsController(diffrax.AbstractAdaptiveStepSizeController):
        inner: diffrax.AbstractAdaptiveStepSizeController

        @property
        def rtol(self):
            return self.inner.rtol

        @property
        def atol(self):
            return self.inner.atol

        @property
        def norm(self):
            return self.inner.norm

        def wrap(self, direction):
            return FirstAttemptsController(self.inner.wrap(direction))

        def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
            tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
            return tnext, (state, jnp.array(False), jnp.array(0, dtype=jnp.int32))

        def adapt_step_size(
            self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
        ):
            state, accepted_any, first_attempts = controller_state
            keep, next_t0, next_t1, jump, state, result = self.inner.adapt_step_size(
                t0, t1, y0, y1_candidate, args, y_error, error_order, state
            )
            first_attempts = first_attempts + jnp.where(accepted_any, 0, 1).astype(jnp.int32)
            accepted_any = accepted_any | keep
            return keep, next_t0, next_t1, jump, (state, accepted_any, first_attempts), result

    return FirstAttemptsController


def _squeeze_first(solution):
    out, nfe = solution
    return out[0], nfe


def _adaptive_solve(vector_field, x, *, t0, t1, solver, rtol, atol, max_steps):
    import diffrax

    batch = x.shape[0]

    def term_fn(t, y, args):
        del args
        return vector_field(y, jnp.full((batch,), t, dtype=y.dtype)).astype(y.dtype)

    solver_obj = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}[solver]()
    controller = _first_attempts_controller()(diffrax.PIDController(rtol=rtol, atol=atol))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(term_fn),
        solver_obj,
        t0=t0,
        t1=t1,
        dt0=_FIRST_STEP_FRACTION * (jnp.asarray(t1) - jnp.asarray(t0)),
        y0=x,
        stepsize_controller=controller,
        saveat=diffrax.SaveAt(t1=True, controller_state=True),
        max_steps=max_steps,
    )
    first_attempts = sol.controller_state[2]
    attempts = jnp.asarray(sol.stats["num_steps"], dtype=jnp.int32)
    nfe = (_NUM_STAGES[solver] - 1) * attempts + first_attempts
    return sol.ys[-1].astype(x.dtype), nfe


def _check_options(method, num_steps, solver, max_steps):
    check_choice("method", method, METHODS)
    check_choice("solver", solver, ADAPTIVE_SOLVERS)
    if method == "adaptive":
        check_num_steps(max_steps, "max_steps")
    else:
        check_num_steps(num_steps)


def probability_flow_solve(
    score_fn: ScoreFn,
    sde: SDE,
    x: jax.Array,
    *,
    t0: float | jax.Array,
    t1: float | jax.Array,
    method: str = "heun",
    num_steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
    per_example: bool = False,
) -> SamplerOutput:
    """Integrates the probability-flow ODE (eq. 13) from ``x`` at time ``t0`` to ``t1``
    (either direction: ``t0 > t1`` generates, ``t0 < t1`` encodes).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE.
      x: the state at ``t0``, ``(B, *event)``.
      t0: start time (scalar) in ``(0, T]``; concrete times outside (also for ``t1``)
        raise ``ValueError``, traced ones are not checked.
      t1: end time (scalar).
      method: ``"euler"``, ``"heun"`` (``num_steps`` uniform steps) or ``"adaptive"``.
      num_steps: static number of steps of the fixed-step methods.
      rtol: relative tolerance of the adaptive method.
      atol: absolute tolerance of the adaptive method.
      solver: ``"tsit5"`` or ``"dopri5"`` (adaptive).
      max_steps: static cap on adaptive step attempts (diffrax raises beyond it).
      per_example: static; adaptive only: solve each example on its own (``jax.vmap`` of
        one solve per example, with its own step-size control) instead of one joint solve
        for the batch, so an example's result does not depend on the rest of its batch.

    Returns:
      :class:`SamplerOutput` with the state at ``t1`` (like ``x``) and ``nfe``: a static int
      (``num_steps`` or ``2 num_steps``) or, for ``"adaptive"``, an int32 array (module
      docstring): a scalar for the joint solve, the per-example counts ``(B,)`` with
      ``per_example=True``.
    """
    _check_options(method, num_steps, solver, max_steps)
    check_time_range(t0, float(sde.T), "t0")
    check_time_range(t1, float(sde.T), "t1")
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}.")
    vector_field = sde.probability_flow(score_fn)
    if method == "adaptive":
        solve = functools.partial(
            _adaptive_solve,
            vector_field,
            t0=t0,
            t1=t1,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
        )
        if per_example:
            out, nfe = jax.vmap(lambda x1: _squeeze_first(solve(x1[None])))(x)
        else:
            out, nfe = solve(x)
        return SamplerOutput(samples=out, nfe=nfe)
    out = _fixed_step_solve(vector_field, x, t0, t1, method=method, num_steps=num_steps)
    return SamplerOutput(samples=out, nfe=num_steps * (2 if method == "heun" else 1))


def probability_flow_sample(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    method: str = "heun",
    num_steps: int = 100,
    t_min: float | jax.Array | None = None,
    denoise: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
) -> SamplerOutput:
    """Samples by integrating the probability-flow ODE from ``x_T ~ p_T`` at ``T`` to
    ``t_min`` (see module docstring).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE.
      key: one ``jax.random.key`` or ``(B,)`` per-example keys; only ``x_T`` is random,
        drawn per example as every sampler here does
        (:func:`jaxgen.sde.samplers.euler_maruyama.prior_and_step_keys`), so it is the
        ``x_T`` of the other samplers for the same key.
      shape: static sample shape ``(B, *event)``.
      method: ``"euler"``, ``"heun"`` or ``"adaptive"``.
      num_steps: static number of steps of the fixed-step methods (unused by adaptive).
      t_min: end time; ``None`` means ``sde.t_min``.
      denoise: end with Tweedie's denoiser at ``t_min`` (one more evaluation).
      rtol: relative tolerance (adaptive).
      atol: absolute tolerance (adaptive).
      solver: ``"tsit5"`` or ``"dopri5"`` (adaptive).
      max_steps: static cap on adaptive step attempts.

    Returns:
      :class:`SamplerOutput`; ``nfe`` = ``num_steps`` (euler) or ``2 num_steps`` (heun), a
      static int, or for ``"adaptive"`` an int32 scalar array, the largest per-example
      count, plus ``denoise``.
    """
    shape = check_sample_shape(shape)
    _check_options(method, num_steps, solver, max_steps)
    x_T, _ = prior_and_step_keys(sde, key, shape, 1)  # the other samplers' x_T
    t_end = resolve_t_min(sde, t_min)
    out = probability_flow_solve(
        score_fn,
        sde,
        x_T,
        t0=sde.T,
        t1=t_end,
        method=method,
        num_steps=num_steps,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
        per_example=True,
    )
    x, nfe = out.samples, out.nfe
    if method == "adaptive":
        nfe = jnp.max(nfe)  # the slowest example's count (see the module docstring)
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, t_end.astype(x.dtype))
        nfe = nfe + 1
    return SamplerOutput(samples=x, nfe=nfe)
