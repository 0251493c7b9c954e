"""The flow likelihood of the exact velocity is the mixture's exact log-density (2-D, exact
divergence, tight tolerances), within 0.01 bits/dim; bits/dim dequantises like the SDE's."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import flow_matching as fm
from tests.flow_matching.oracle import BROAD, MIXTURE


def test_likelihood_is_the_exact_log_density(x64):
    path = fm.CosinePath()
    x = MIXTURE.sample(jax.random.key(3), 6).astype(jnp.float64)
    u = fm.mixture_velocity_fn(MIXTURE, path)
    log_p, terms = jax.jit(
        lambda y: fm.log_likelihood(u, y, None, divergence="exact", rtol=1e-7, atol=1e-7)
    )(x)
    exact = MIXTURE.log_prob(x)
    err_bpd = np.abs(np.asarray(log_p - exact)) / (2 * math.log(2.0))
    assert np.all(np.asarray(terms["success"]))
    assert err_bpd.max() < 0.01, err_bpd
    assert np.all(np.asarray(terms["nfe"]) == 1 + 6 * np.asarray(terms["num_steps"]))
    # negative control: another mixture's log-density is far off in bits/dim
    other = np.abs(np.asarray(log_p - BROAD.log_prob(x))) / (2 * math.log(2.0))
    assert other.min() > 0.01


def test_bits_per_dim_dequantises_and_converts(x64):
    """The linear flow dx/dt = (1 + t) x maps N(0, I) at t = 1 to N(0, e^{-3} I) at 0."""

    def u(y, t):
        return (1.0 + t)[:, None] * y

    key = jax.random.key(0)
    # levels 120..129 of 256 in [-1, 1]
    x = 2.0 * (120 + jnp.arange(10, dtype=jnp.float64).reshape(5, 2)) / 255.0 - 1.0
    bpd, terms = fm.bits_per_dim(
        u, x, key, num_levels=256, divergence="exact", rtol=1e-8, atol=1e-8
    )
    key_deq, _ = jax.random.split(key)
    y = x + (2.0 / 255.0) * (jax.random.uniform(key_deq, x.shape, x.dtype) - 0.5)
    std = math.exp(-1.5)
    log_p = -0.5 * jnp.sum((y / std) ** 2, -1) - 2 * (0.5 * math.log(2 * math.pi) + math.log(std))
    offset = 2 * math.log(2.0 / 255.0)
    np.testing.assert_allclose(terms["log_p"], log_p, rtol=1e-6)
    np.testing.assert_allclose(bpd, -(log_p + offset) / (2 * math.log(2.0)), rtol=1e-6)
    np.testing.assert_allclose(terms["offset"], offset)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        fm.bits_per_dim(u, x.at[0, 0].set(2.0), key, num_levels=256, divergence="exact")
    with pytest.raises(ValueError, match="t_min < t_max"):
        fm.log_likelihood(u, x, None, divergence="exact", t_min=0.5, t_max=0.5)
