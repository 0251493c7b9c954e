"""Rectified flow (Liu, Gong, Liu 2023): reflow pairs, the straightness of a flow, and
one-step distillation.

**Convention: data at t = 0, source at t = 1**, linear path ``x_t = (1 - t) x_data +
t x_source`` with velocity ``u = x_source - x_data`` (Liu et al. write ``X_t = t X_1 + (1 -
t) X_0`` with ``X_0`` the source, ``X_1`` the data and ``v = X_1 - X_0 = -u``; their
``t`` is our ``1 - t``).

* **Reflow** (Liu et al. Sec. 2.2, Alg. 1): simulate the trained flow from source samples
  ``z`` to ``x = Flow(z)`` and retrain on the coupled pairs ``(z, x)`` (:func:`reflow_pairs`,
  then :func:`jaxgen.flow_matching.flow_matching_loss` with ``x_source=z``, ``x_data=x``):
  the ``k+1``-rectified flow. Each reflow lowers the transport cost ``E||x - z||^2`` (Thm.
  3.5) and straightens the flow.
* **Straightness** (Liu et al. eq. 5 in our clock):
  ``S(u) = E int_0^1 ||(x_source - x_data) - u(x_t, t)||^2 dt`` along the flow's own
  trajectory ``x_t`` from ``x_1 = x_source`` to ``x_0 = x_data``; ``S = 0`` iff the
  trajectories are straight lines traversed at constant speed, which one Euler step then
  solves exactly. :func:`straightness` evaluates ``u`` on the ``N + 1`` grid points of a
  fixed-step solve and integrates with the trapezoid rule (``||.||^2`` summed over the
  event).
* **Distillation** to one step (Liu et al. Sec. 2.3): ``L = ||(x_source - x_teacher) -
  f(x_source, 1)||^2 / D`` per example, so that one Euler step ``x_source - f(x_source, 1)``
  reproduces the teacher's sample (:func:`distillation_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_positive_int
from jaxgen.flow_matching.loss import check_pair
from jaxgen.flow_matching.samplers import FIXED_STEP_METHODS, flow_solve, start_state

__all__ = [
    "ReflowPairs",
    "distillation_loss",
    "one_step_sample",
    "reflow_pairs",
    "straightness",
]

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


class ReflowPairs(NamedTuple):
    """Coupled pairs of a flow: ``source`` (at ``t = 1``) and ``data = Flow(source)`` (at
    ``t = 0``), with the ``nfe`` per example spent to make them."""

    source: jax.Array
    data: jax.Array
    nfe: int


def reflow_pairs(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
    num_steps: int = 20,
    method: str = "rk4",
) -> ReflowPairs:
    """``(z, Flow(z))``: source samples ``z`` (given, or ``N(0, I)`` per example from
    ``key``) carried to ``t = 0`` by ``num_steps`` fixed steps of ``method`` (Liu et al. Alg.
    1, the pairs the next rectified flow is trained on)."""
    z = start_state(key, shape, source)
    out = flow_solve(velocity_fn, z, t_start=1.0, t_end=0.0, num_steps=num_steps, method=method)
    return ReflowPairs(z, out.samples, out.nfe)


def straightness(
    velocity_fn: VelocityFn,
    x_source: jax.Array,
    *,
    num_steps: int = 20,
    method: str = "rk4",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``S = int_0^1 ||(x_source - x_data) - u(x_t, t)||^2 dt`` per example (module doc)
    along the trajectory from ``x_source`` at ``t = 1``; trapezoid rule on the ``N + 1``
    points of a ``num_steps``-step ``method`` solve.

    Returns:
      ``(S (B,), terms)`` with ``"x_data"`` (the trajectory's end) and ``"transport_cost"``
      (``||x_data - x_source||^2``).
    """
    check_choice("method", method, tuple(FIXED_STEP_METHODS))
    num_steps = check_positive_int(num_steps, "num_steps")
    x_source = jnp.asarray(x_source)
    batch = x_source.shape[0]
    times = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=x_source.dtype)

    def body(x, pair):
        t, t_next = pair
        u = velocity_fn(x, jnp.full((batch,), t, x.dtype))
        x_next = flow_solve(
            velocity_fn, x, t_start=t, t_end=t_next, num_steps=1, method=method
        ).samples
        return x_next, (x, u)

    x_data, (xs, us) = jax.lax.scan(body, x_source, (times[:-1], times[1:]))
    u_last = velocity_fn(x_data, jnp.zeros((batch,), x_source.dtype))
    us = jnp.concatenate([us, u_last[None]], axis=0)  # (N + 1, B, *event)
    chord = (x_source - x_data)[None]
    err = jnp.sum(jnp.square(chord - us).reshape(num_steps + 1, batch, -1), axis=-1)
    weights = jnp.full((num_steps + 1,), 1.0 / num_steps, x_source.dtype)
    weights = weights.at[0].mul(0.5).at[-1].mul(0.5)
    s = jnp.einsum("n,nb->b", weights, err)
    cost = jnp.sum(jnp.square(x_data - x_source).reshape(batch, -1), axis=-1)
    return s, {"x_data": x_data, "transport_cost": cost}


def distillation_loss(
    student_fn: VelocityFn, x_source: jax.Array, x_teacher: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One-step distillation ``||(x_source - x_teacher) - f(x_source, 1)||^2 / D`` per
    example (Liu et al. Sec. 2.3 in our clock; module doc).

    Returns:
      ``(per_example (B,), terms)`` with ``"mse"`` and ``"one_step"`` (the student's one-step
      sample ``x_source - f(x_source, 1)``).
    """
    x_source, x_teacher = check_pair(x_source, x_teacher)
    batch = x_source.shape[0]
    pred = student_fn(x_source, jnp.ones((batch,), x_source.dtype))
    dim = math.prod(x_source.shape[1:])
    mse = jnp.sum(jnp.square((x_source - x_teacher) - pred).reshape(batch, -1), -1) / dim
    return mse, {"mse": mse, "one_step": x_source - pred}


def one_step_sample(
    velocity_fn: VelocityFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    source: jax.Array | None = None,
) -> SamplerOutput:
    """One Euler step from ``t = 1`` to ``0``: ``x = z - u(z, 1)`` (a distilled model's
    sampler); ``nfe = 1``."""
    z = start_state(key, shape, source)
    return flow_solve(velocity_fn, z, t_start=1.0, t_end=0.0, num_steps=1, method="euler")
