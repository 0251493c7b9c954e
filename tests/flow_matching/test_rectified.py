"""Rectified flow: the straightness measure is 0 for straight flows and positive for the
exact mixture flow; reflow pairs of the exact (1-rectified) flow have a lower transport cost
and a far lower straightness floor than the independent coupling they came from (Liu et al.
Thm. 3.5, Sec. 2.2); the distillation loss is minimised by the teacher's displacement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from tests.flow_matching.oracle import MIXTURE
from tests.flow_matching.test_couplings import conditional_variance


def test_straightness_and_reflow(x64):
    path = fm.LinearPath()
    u = fm.mixture_velocity_fn(MIXTURE, path)
    source = jax.random.normal(jax.random.key(0), (512, 2), jnp.float64)
    # a straight flow (constant velocity) has S = 0; the mixture's exact flow does not
    s_const, _ = fm.straightness(lambda x, t: jnp.ones_like(x), source, num_steps=4)
    np.testing.assert_allclose(s_const, 0.0, atol=1e-12)
    s_exact, terms = jax.jit(lambda z: fm.straightness(u, z, num_steps=10))(source)
    assert float(s_exact.mean()) > 0.1
    pairs = jax.jit(lambda z: fm.reflow_pairs(u, None, z.shape, source=z, num_steps=10))(source)
    np.testing.assert_allclose(pairs.data, terms["x_data"], rtol=1e-10)
    assert pairs.nfe == 40
    data = MIXTURE.sample(jax.random.key(1), 512).astype(jnp.float64)
    cost_pairs = float(fm.transport_cost(pairs.source, pairs.data).mean())
    cost_ind = float(fm.transport_cost(source, data).mean())
    assert cost_pairs < cost_ind
    var_pairs = conditional_variance(pairs.source, pairs.data)
    var_ind = conditional_variance(source, data)
    assert var_pairs < 0.2 * var_ind, (var_pairs, var_ind)


def test_distillation_loss_and_one_step_sampler():
    key1, key2 = jax.random.split(jax.random.key(2))
    z, x = jax.random.normal(key1, (8, 2)), jax.random.normal(key2, (8, 2))
    lookup = {"z": z, "disp": z - x}

    def student(y, t):  # the teacher's displacement, for these z
        return lookup["disp"] + 0.0 * y

    loss, terms = fm.distillation_loss(student, z, x)
    np.testing.assert_allclose(loss, 0.0, atol=1e-12)
    np.testing.assert_allclose(terms["one_step"], x, rtol=1e-6, atol=1e-6)
    c = jnp.array([[0.3, -0.4]])
    loss_c, _ = fm.distillation_loss(lambda y, t: student(y, t) + c, z, x)
    np.testing.assert_allclose(loss_c, 0.125, rtol=1e-5)
    out = fm.one_step_sample(student, None, (8, 2), source=z)
    assert out.nfe == 1
    np.testing.assert_allclose(out.samples, x, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        fm.distillation_loss(student, z, x[:4])
