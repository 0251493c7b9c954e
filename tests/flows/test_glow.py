"""Glow (``jaxgen.nets.flow_nets.Glow``) as a whole bijection, against jacfwd.

A tiny network on 4x4x1 images (16 coordinates; two levels of squeeze, ActNorm, LU 1x1
convolution and affine coupling, with a split between) with random parameters everywhere
and the learned prior, in x64:

* ``inverse(forward(x)) == x`` (1e-10);
* ``log_det == slogdet(jacfwd(forward))`` (1e-8); the map to the standardized latent ``eps``
  has log-determinant ``log_det - sum log_s`` (jacfwd, 1e-8) and
  ``log_prob == log N(eps) + that``; negative controls: leaving out the 1x1 convolutions'
  ``H W sum(log_s)`` is off by > 0.5 nat, and the learned prior differs from N(0, I) on ``z``;
* ``inverse_standardized(forward_standardized(x)) == x`` (1e-10);
* temperature: samples ``jaxgen.flows.sample(glow.inverse_standardized, ...)`` at ``T = 0.6``
  encode to standardized latents with standard deviation ``T`` within Monte Carlo error
  (negative control: ``T = 1`` samples fail the same test), and the encoded latents are
  the drawn per-example noise ``T eps`` (1e-3, float32).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgen import core, flows
from jaxgen.flows import standard_normal_log_prob
from jaxgen.nets.flow_nets import Glow
from tests.flows.flow_params import random_params
from tests.flows.jacobians import per_example_log_abs_det

SHAPE = (4, 4, 1)


def _glow(rngs, **kwargs):
    return Glow(SHAPE, num_levels=2, num_steps=1, hidden_channels=4, rngs=rngs, **kwargs)


def _images(seed, n=2):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.02, 0.98, size=(n, *SHAPE)))


def test_glow_round_trip_and_log_det(x64):
    graphdef, params = random_params(lambda rngs: _glow(rngs, learn_prior=True), 3)
    x = _images(4)

    @jax.jit
    def run(params, x):
        flow = nnx.merge(graphdef, params)
        z, log_det = flow.forward(x)
        eps, eps_log_det = flow.forward_standardized(x)
        ref = per_example_log_abs_det(lambda v: flow.forward(v)[0], x)
        ref_eps = per_example_log_abs_det(lambda v: flow.forward_standardized(v)[0], x)
        x_std = flow.inverse_standardized(eps)
        out = z, log_det, eps, eps_log_det, flow.inverse(z), ref, ref_eps, flow.log_prob(x)
        return out, x_std

    (z, log_det, eps, eps_log_det, x_back, ref, ref_eps, log_prob), x_std = run(params, x)
    round_trip = float(jnp.max(jnp.abs(x_back - x)))
    assert float(jnp.max(jnp.abs(x_std - x))) < 1e-10
    err = float(jnp.max(jnp.abs(log_det - ref)))
    err_eps = float(jnp.max(jnp.abs(eps_log_det - ref_eps)))
    print(
        f"Glow: round trip {round_trip:.1e}, "
        f"|log_det - slogdet| {err:.1e}, standardized {err_eps:.1e}"
    )
    assert z.shape == (2, 16)
    assert round_trip < 1e-10 and err < 1e-8 and err_eps < 1e-8
    np.testing.assert_allclose(log_prob, standard_normal_log_prob(eps) + eps_log_det, rtol=1e-12)
    # Negative control: the log-determinant without the 1x1 convolutions' H W sum(log_s).
    conv_ld = sum(
        (4 if level == 0 else 1) * float(np.sum(step["lu_log_s"]))
        for level, steps in params["levels"].items()
        for step in steps.values()
    )
    assert abs(conv_ld) > 0.5
    assert float(jnp.min(jnp.abs(log_det - conv_ld - ref))) > 0.5
    # The learned prior is not N(0, I): log N(z) + log_det is another density.
    plain = standard_normal_log_prob(z) + log_det
    assert float(jnp.min(jnp.abs(plain - log_prob))) > 0.1


def test_glow_temperature():
    # Small conditioner outputs: the sigmoid scales then stay away from 0, whose inverse
    # (a division by the scale) would overflow in float32 for some samples.
    graphdef, params = random_params(
        lambda rngs: _glow(rngs, learn_prior=True), 5, dtype=np.float32, gain=0.3
    )
    n, temperature = 256, 0.6

    @jax.jit
    def encode_samples(params, key, temperature):
        flow = nnx.merge(graphdef, params)
        out = flows.sample(flow.inverse_standardized, key, (n, 16), temperature=temperature)
        assert out.nfe == 1
        return flow.forward_standardized(out.samples)[0]

    def z_score(eps, t):
        values = np.asarray(eps, np.float64).ravel()
        std = math.sqrt(np.mean(values**2))  # the mean is known to be 0
        return (std - t) / (t / math.sqrt(2 * values.size))

    eps = encode_samples(params, jax.random.key(0), temperature)
    assert bool(jnp.all(jnp.isfinite(eps)))
    drawn = temperature * core.sampling.normal(core.example_keys(jax.random.key(0), n), (16,))
    recovery = float(jnp.max(jnp.abs(eps - drawn)))
    assert recovery < 1e-3, recovery
    z = z_score(eps, temperature)
    print(f"std of encoded samples at T={temperature}: z-score {z:.2f}")
    assert abs(z) < 4
    # Negative control: the same samples are far from T = 1, and T = 1 samples are not at T.
    assert abs(z_score(eps, 1.0)) > 20
    assert abs(z_score(encode_samples(params, jax.random.key(1), 1.0), temperature)) > 20
