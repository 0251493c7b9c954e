"""Couplings of source and data samples for flow matching: which ``x_source`` is paired with
which ``x_data`` in a minibatch (Tong et al. 2024; Pooladian et al. 2023).

Every coupling takes ``x_source (B, *event)`` and ``x_data (B, *event)`` and returns a pair
``(x_source', x_data')`` of the same shapes to feed :func:`~jaxgen.flow_matching.loss.
flow_matching_loss` (``x_source=x_source'`` and ``x_data=x_data'``):

* :func:`independent_coupling`: the pairs as drawn, ``pi = p_source x p_data``;
* :func:`ot_coupling` with ``method="exact"``: the minibatch optimal assignment
  ``min_perm sum_i ||x_source_i - x_data_perm(i)||^2`` (the exact OT plan between two
  empirical measures of ``B`` equally weighted points is a permutation, Birkhoff), solved on
  the host by ``scipy.optimize.linear_sum_assignment`` through ``jax.pure_callback``;
* :func:`ot_coupling` with ``method="sinkhorn"``: the entropic plan ``P = argmin <P, C> -
  eps H(P)`` with uniform marginals, by log-domain Sinkhorn iterations (Cuturi 2013)
  ``f <- -eps logsumexp((g - C) / eps) + eps log(1/B)`` (rows) and likewise ``g`` (columns),
  in pure JAX (jittable); each source point ``i`` is then paired with a data point ``j ~
  P[i, :] / P[i, :].sum()`` (so the source marginal is kept exactly). ``eps`` is relative
  to the mean cost (``epsilon * mean(C)``);
* :func:`paired_coupling`: pairs given by the user (e.g. an image and its inverse, or reflow
  pairs), checked for equal counts and shapes.

:func:`transport_cost` gives the per-pair squared distance ``||x_data - x_source||^2``; the OT
coupling minimises its batch mean.

References:
  Tong et al. Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
  Transport. TMLR 2024.
  Pooladian et al. Multisample Flow Matching: Straightening Flows with Minibatch Couplings.
  ICML 2023.
  Cuturi. Sinkhorn Distances: Lightspeed Computation of Optimal Transport. NeurIPS 2013.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_choice, check_finite_number, check_positive_int

__all__ = [
    "OT_METHODS",
    "independent_coupling",
    "ot_coupling",
    "paired_coupling",
    "sinkhorn_plan",
    "squared_distances",
    "transport_cost",
]

OT_METHODS: tuple[str, ...] = ("exact", "sinkhorn")


def _check(x_source: jax.Array, x_data: jax.Array, what: str) -> tuple[jax.Array, jax.Array]:
    x_source, x_data = jnp.asarray(x_source), jnp.asarray(x_data)
    if x_source.ndim < 2 or x_data.ndim < 2:
        raise ValueError(
            f"{what}: source and data must have shape (B, *event), got {x_source.shape} and "
            f"{x_data.shape}."
        )
    if x_source.shape[0] != x_data.shape[0]:
        raise ValueError(
            f"{what}: the source and data batches must have equal counts, got "
            f"{x_source.shape[0]} source and {x_data.shape[0]} data examples."
        )
    if x_source.shape != x_data.shape:
        raise ValueError(
            f"{what}: source and data must have the same shape, got {x_source.shape} and "
            f"{x_data.shape}."
        )
    return x_source, x_data


def squared_distances(x_source: jax.Array, x_data: jax.Array) -> jax.Array:
    """``C_ij = ||x_source_i - x_data_j||^2``, ``(B, B)``."""
    a = x_source.reshape(x_source.shape[0], -1)
    b = x_data.reshape(x_data.shape[0], -1)
    cost = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(cost, 0.0)


def transport_cost(x_source: jax.Array, x_data: jax.Array) -> jax.Array:
    """``||x_data_i - x_source_i||^2`` per pair, ``(B,)``."""
    diff = (jnp.asarray(x_data) - jnp.asarray(x_source)).reshape(jnp.shape(x_data)[0], -1)
    return jnp.sum(jnp.square(diff), axis=-1)


def independent_coupling(x_source: jax.Array, x_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The independent coupling ``p_source x p_data``: the pairs as drawn (equal counts)."""
    return _check(x_source, x_data, "independent_coupling")


def paired_coupling(x_source: jax.Array, x_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pairs given by the user, ``(x_source_i, x_data_i)``; unequal counts or shapes refused."""
    return _check(x_source, x_data, "paired_coupling")


def _assignment(cost: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment  # scipy comes with scikit-learn

    _, cols = linear_sum_assignment(np.asarray(cost, np.float64))
    return cols.astype(np.int32)


def sinkhorn_plan(cost: jax.Array, *, epsilon: float = 0.05, num_iters: int = 200) -> jax.Array:
    """The entropic OT plan ``P (B, B)`` between uniform marginals for ``cost`` (module doc),
    ``P_ij = exp((f_i + g_j - C_ij) / eps')`` with ``eps' = epsilon mean(C)``, by
    ``num_iters`` log-domain Sinkhorn iterations (rows sum to ``1/B`` exactly after the last
    row update)."""
    check_finite_number(epsilon, "epsilon", low=0.0, low_open=True)
    num_iters = check_positive_int(num_iters, "num_iters")
    n, m = cost.shape
    eps = epsilon * jnp.maximum(jnp.mean(cost), jnp.finfo(cost.dtype).tiny)
    log_a, log_b = -math.log(n), -math.log(m)

    def body(_, fg):
        f, g = fg
        g = eps * (log_b - jax.nn.logsumexp((f[:, None] - cost) / eps, axis=0))
        f = eps * (log_a - jax.nn.logsumexp((g[None, :] - cost) / eps, axis=1))
        return f, g

    f0 = jnp.zeros((n,), cost.dtype)
    f, g = jax.lax.fori_loop(0, num_iters, body, (f0, jnp.zeros((m,), cost.dtype)))
    return jnp.exp((f[:, None] + g[None, :] - cost) / eps)


def ot_coupling(
    x_source: jax.Array,
    x_data: jax.Array,
    *,
    method: str = "exact",
    key: jax.Array | None = None,
    epsilon: float = 0.05,
    num_iters: int = 200,
) -> tuple[jax.Array, jax.Array]:
    """Minibatch optimal-transport coupling for the squared Euclidean cost (module doc).

    Args:
      x_source, x_data: ``(B, *event)`` each, equal counts.
      method: ``"exact"`` (a permutation of the data, host assignment solver) or
        ``"sinkhorn"`` (entropic, pure JAX; needs ``key``).
      key: PRNG key for drawing pairs from the Sinkhorn plan.
      epsilon, num_iters: Sinkhorn's relative entropic regularisation and iterations.

    Returns:
      ``(x_source, x_data')``: the source unchanged and the data reordered (exact) or drawn
      from the plan's rows (Sinkhorn).
    """
    x_source, x_data = _check(x_source, x_data, "ot_coupling")
    check_choice("method", method, OT_METHODS)
    cost = squared_distances(x_source, x_data)
    if method == "exact":
        spec = jax.ShapeDtypeStruct((x_source.shape[0],), jnp.int32)
        cols = jax.pure_callback(_assignment, spec, cost, vmap_method="sequential")
        return x_source, x_data[cols]
    if key is None:
        raise ValueError("ot_coupling(method='sinkhorn') needs a PRNG key to draw pairs, got None.")
    plan = sinkhorn_plan(cost, epsilon=epsilon, num_iters=num_iters)
    logits = jnp.log(jnp.maximum(plan, jnp.finfo(plan.dtype).tiny))
    cols = jax.random.categorical(key, logits, axis=-1)
    return x_source, x_data[cols]
