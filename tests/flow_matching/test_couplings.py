"""Couplings: the exact minibatch OT assignment is optimal (brute force on 6 points) and
cheaper than the independent coupling; its straight-line interpolants barely cross, so the
velocity they define is nearly deterministic given x_t (the flow-matching loss's floor, the
conditional variance E||(x_source - x_data) - E[x_source - x_data | x_t]||^2, estimated by
leave-one-out kernel regression, is far below the independent coupling's); Sinkhorn's plan
has the right marginals and approaches the exact cost; bad pairings are refused."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from tests.flow_matching.oracle import MIXTURE


def conditional_variance(x_source, x_data, t=0.5, bandwidth=0.05):
    """Leave-one-out Nadaraya-Watson estimate of E||w - E[w | x_t]||^2, w = x_source - x_data,
    on the linear path at time t (the minimum of the flow-matching loss times D)."""
    x_t = (1 - t) * x_data + t * x_source
    w = x_source - x_data
    d2 = jnp.sum((x_t[:, None] - x_t[None]) ** 2, -1)
    k = jnp.exp(-0.5 * d2 / bandwidth**2) * (1 - jnp.eye(x_t.shape[0]))
    fit = (k @ w) / jnp.maximum(k.sum(1, keepdims=True), 1e-30)
    return float(jnp.mean(jnp.sum((w - fit) ** 2, -1)))


def test_exact_ot_is_optimal_and_straighter_than_independent():
    k1, k2 = jax.random.split(jax.random.key(0))
    small_source, small_data = jax.random.normal(k1, (6, 2)), MIXTURE.sample(k2, 6)
    _, paired = fm.ot_coupling(small_source, small_data)
    cost = np.asarray(fm.couplings.squared_distances(small_source, small_data), np.float64)
    best = min(cost[np.arange(6), list(p)].sum() for p in itertools.permutations(range(6)))
    np.testing.assert_allclose(float(fm.transport_cost(small_source, paired).sum()), best, 1e-5)

    source, data = jax.random.normal(k1, (512, 2)), MIXTURE.sample(k2, 512)
    ot_source, ot_data = jax.jit(fm.ot_coupling)(source, data)
    np.testing.assert_array_equal(ot_source, source)
    assert sorted(map(tuple, np.asarray(ot_data))) == sorted(map(tuple, np.asarray(data)))
    cost_ind = float(fm.transport_cost(source, data).mean())
    cost_ot = float(fm.transport_cost(ot_source, ot_data).mean())
    assert cost_ot < 0.5 * cost_ind, (cost_ot, cost_ind)
    var_ind = conditional_variance(*fm.independent_coupling(source, data))
    var_ot = conditional_variance(ot_source, ot_data)
    assert var_ot < 0.2 * var_ind, (var_ot, var_ind)


def test_sinkhorn_plan_and_coupling():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    source, data = jax.random.normal(k1, (128, 2)), MIXTURE.sample(k2, 128)
    cost = fm.couplings.squared_distances(source, data)
    plan = fm.sinkhorn_plan(cost, epsilon=0.01, num_iters=500)
    np.testing.assert_allclose(plan.sum(1), 1 / 128, rtol=1e-4)
    np.testing.assert_allclose(plan.sum(0), 1 / 128, rtol=2e-2)
    _, exact_data = fm.ot_coupling(source, data)
    exact = float(fm.transport_cost(source, exact_data).mean())
    entropic = float(jnp.sum(plan * cost))
    independent = float(fm.transport_cost(source, data).mean())
    assert exact <= entropic < exact + 0.1 * (independent - exact), (exact, entropic)
    _, drawn = fm.ot_coupling(source, data, method="sinkhorn", key=k3, epsilon=0.01)
    assert float(fm.transport_cost(source, drawn).mean()) < 0.5 * independent


def test_couplings_refuse_bad_pairs():
    a, b = jnp.zeros((4, 2)), jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="paired_coupling: .*equal counts, got 4 source and 5"):
        fm.paired_coupling(a, b)
    with pytest.raises(ValueError, match="ot_coupling: .*equal counts"):
        fm.ot_coupling(a, b)
    with pytest.raises(ValueError, match=r"same shape, got \(4, 2\) and \(4, 3\)"):
        fm.independent_coupling(a, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fm.ot_coupling(a, a, method="sinkhorn")
    with pytest.raises(ValueError, match="method must be one of"):
        fm.ot_coupling(a, a, method="hungarian")
    fm.paired_coupling(a, a)  # equal counts pass (control)
