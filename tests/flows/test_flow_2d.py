"""The 2-D RealNVP (``jaxgen.nets.flow_nets.RealNVP2D``) is a normalized density.

* With random parameters (the zero-initialised outputs included; log_det varying by > 0.5
  nat over the grid) the density integrates to one: ``sum exp(log_prob) * cell area``
  over a 400 x 400 midpoint grid on ``[-8, 8]^2`` is 1 within 1e-3; negative control:
  dropping the log-determinant gives an integral far from 1.
* Round trip (x64, 1e-10) and ``log_det == slogdet(jacfwd)`` (1e-8); negative control:
  the opposite sign.
* Temperature: ``forward(jaxgen.flows.sample(inverse, key, (n, 2), temperature=T))``
  recovers the drawn per-example latent ``T * normal(fold_in(key, i), (2,))`` (1e-4,
  float32) and has standard deviation ``T`` within Monte
  Carlo error (z-score < 4; negative control: the ``T = 1`` samples fail the ``T = 0.5``
  test).
* As built, every coupling is the identity: ``forward(x) == (x, 0)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen import core, flows
from jaxgen.flows import standard_normal_log_prob
from jaxgen.nets.flow_nets import RealNVP2D
from tests.flows.flow_params import random_params
from tests.flows.jacobians import per_example_log_abs_det


def _flow(rngs):
    return RealNVP2D(2, num_couplings=4, hidden=(16,), activation="tanh", rngs=rngs)


def test_density_integrates_to_one(x64):
    # Kernels at 0.7 of the unit-variance scale keep the mass inside the box (at gain 1 up
    # to 3e-3 of it lies outside [-8, 8]^2) while the log_det still varies by > 1 nat.
    graphdef, params = random_params(_flow, 0, gain=0.7)
    n, half_width = 400, 8.0
    centres = -half_width + (np.arange(n) + 0.5) * (2 * half_width / n)
    grid = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)
    area = (2 * half_width / n) ** 2

    @jax.jit
    def densities(params, x):
        flow = nnx.merge(graphdef, params)
        z, log_det = flow.forward(x)
        return flow.log_prob(x), standard_normal_log_prob(z), log_det

    log_p, base, log_det = densities(params, jnp.asarray(grid))
    total = float(jnp.sum(jnp.exp(log_p)) * area)
    without = float(jnp.sum(jnp.exp(base)) * area)
    spread = float(jnp.max(log_det) - jnp.min(log_det))
    print(f"integral {total:.6f}; without log_det {without:.4f}; log_det spread {spread:.2f}")
    assert abs(total - 1.0) < 1e-3
    assert abs(without - 1.0) > 0.05  # Negative control.
    assert spread > 0.5  # the flow is far from volume preserving


def test_round_trip_and_log_det(x64):
    graphdef, params = random_params(_flow, 1)
    flow = nnx.merge(graphdef, params)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 2)))
    z, log_det = flow.forward(x)
    round_trip = float(jnp.max(jnp.abs(flow.inverse(z) - x)))
    ref = per_example_log_abs_det(lambda v: flow.forward(v)[0], x)
    err = float(jnp.max(jnp.abs(log_det - ref)))
    print(f"round trip {round_trip:.1e}; |log_det - slogdet| {err:.1e}")
    assert round_trip < 1e-10 and err < 1e-8
    assert float(jnp.min(jnp.abs(-log_det - ref))) > 0.1  # Negative control: the sign.


def test_temperature():
    graphdef, params = random_params(_flow, 3, dtype=np.float32)
    n = 4000

    @jax.jit
    def encode_samples(params, key, temperature):
        flow = nnx.merge(graphdef, params)
        samples = flows.sample(flow.inverse, key, (n, 2), temperature=temperature).samples
        return flow.forward(samples)[0]

    def z_score(z, t):
        values = np.asarray(z, np.float64).ravel()
        return (math.sqrt(np.mean(values**2)) - t) / (t / math.sqrt(2 * values.size))

    z = encode_samples(params, jax.random.key(0), 0.5)
    drawn = 0.5 * core.sampling.normal(core.example_keys(jax.random.key(0), n), (2,), jnp.float32)
    recovery = float(jnp.max(jnp.abs(z - drawn)))
    assert recovery < 1e-4, recovery
    score = z_score(z, 0.5)
    print(f"T=0.5: recovery {recovery:.1e}, std {float(jnp.std(z)):.4f}, z-score {score:.2f}")
    assert abs(score) < 4
    assert abs(z_score(encode_samples(params, jax.random.key(1), 1.0), 0.5)) > 20


def test_identity_at_init_and_errors():
    flow = RealNVP2D(2, num_couplings=2, hidden=4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 2)), jnp.float32)
    z, log_det = flow.forward(x)
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(log_det, np.zeros(3))
    with pytest.raises(ValueError, match="shape \\(B, 2\\)"):
        flow.forward(jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        RealNVP2D(1, rngs=nnx.Rngs(0))
