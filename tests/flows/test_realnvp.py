"""RealNVP (``jaxgen.nets.flow_nets.RealNVP``) as a whole bijection, against jacfwd.

A tiny network on 4x4x1 images (16 coordinates; two scales: checkerboard couplings, squeeze,
channel couplings, factor out, checkerboard couplings) with random parameters everywhere
(the zero-initialised outputs included, so no coupling is the identity), in x64:

* ``inverse(forward(x)) == x`` (1e-10);
* ``log_det == slogdet(jacfwd(forward))`` of the whole flow, logit included (1e-8), and
  ``log_prob == log N(z) + log_det``; negative control: leaving out the logit's
  log-determinant is off by > 1 nat, and the couplings' share is > 0.1 nat;
* as built (zero-initialised conditioner outputs) every coupling is the identity: the flow
  is the logit alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.flows import logit_forward, standard_normal_log_prob
from jaxgen.nets.flow_nets import RealNVP
from tests.flows.flow_params import random_params
from tests.flows.jacobians import per_example_log_abs_det

SHAPE = (4, 4, 1)


def _realnvp(rngs, **kwargs):
    return RealNVP(
        SHAPE,
        num_scales=2,
        num_couplings=1,
        hidden_channels=4,
        num_res_blocks=1,
        rngs=rngs,
        **kwargs,
    )


def _images(seed, n=2):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.02, 0.98, size=(n, *SHAPE)))


def test_realnvp_round_trip_and_log_det(x64):
    graphdef, params = random_params(_realnvp, 0)
    x = _images(1)

    @jax.jit
    def run(params, x):
        flow = nnx.merge(graphdef, params)
        z, log_det = flow.forward(x)
        ref = per_example_log_abs_det(lambda v: flow.forward(v)[0], x)
        return z, log_det, flow.inverse(z), ref, flow.log_prob(x)

    z, log_det, x_back, ref, log_prob = run(params, x)
    round_trip = float(jnp.max(jnp.abs(x_back - x)))
    err = float(jnp.max(jnp.abs(log_det - ref)))
    print(
        f"RealNVP: z {z.shape}, round trip {round_trip:.1e}, |log_det - slogdet| {err:.1e}, "
        f"log_det {np.round(np.asarray(log_det), 3)}"
    )
    assert z.shape == (2, 16)
    assert round_trip < 1e-10 and err < 1e-8
    np.testing.assert_allclose(log_prob, standard_normal_log_prob(z) + log_det, rtol=1e-12)
    # Negative control: the flow without the logit's log-determinant.
    logit_ld = logit_forward(x, alpha=0.05)[1]
    assert float(jnp.min(jnp.abs(log_det - logit_ld - ref))) > 1.0
    # ... and the couplings do act (the flow is not the logit alone).
    assert float(jnp.min(jnp.abs(log_det - logit_ld))) > 0.1


def test_realnvp_starts_at_the_identity():
    """As built (eager init of a tiny net), every coupling's conditioner output is zero."""
    flow = RealNVP(
        (2, 2, 1),
        num_scales=1,
        num_couplings=1,
        hidden_channels=2,
        num_res_blocks=0,
        rngs=nnx.Rngs(0),
    )
    x = _images(2, 3)[:, :2, :2, :].astype(jnp.float32)
    z, log_det = flow.forward(x)
    h, logit_ld = logit_forward(x, alpha=0.05)
    np.testing.assert_allclose(z, h.reshape(3, -1), rtol=1e-6)
    np.testing.assert_allclose(log_det, logit_ld, rtol=1e-6)
    with pytest.raises(ValueError, match="expects images \\(B, \\*\\(2, 2, 1\\)\\)"):
        flow.forward(jnp.ones((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="divisible by 4"):
        RealNVP((6, 6, 1), num_scales=3, rngs=nnx.Rngs(0))
