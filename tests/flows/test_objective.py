"""The flows' pure objective and sampler (``jaxgen.flows.objective``, ``jaxgen.flows.sampling``).

* ``flow_nll`` of an elementwise affine bijection ``z = (x - m) / s`` is the exact Gaussian
  negative log-density ``-sum log N(x; m, s^2)`` (scipy, x64, 1e-12), with the terms
  ``base_log_prob + log_det = -nll``; negative control: the opposite log-determinant sign;
* on discrete images it is ``-(log p(y) - D log L)`` with ``y = (k + u) / L`` the
  dequantization of the same key (1e-12) and ``bits_per_dim = nll / (D ln 2)``;
* with a RealNVP (random parameters) it equals ``-(log N(z) + slogdet(jacfwd) - D log L)``
  (1e-8);
* ``sample``: one inverse pass (``nfe == 1``); a batch of 16 equals the first 16 rows of a
  batch of 64 for the same key (exactly, for the 2-D RealNVP and for Glow), and a slice of
  per-example keys gives the same rows as the whole draw; temperature 0 is the inverse of
  the latent origin; bad sizes and temperatures raise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import norm

from jaxgen import core, flows
from jaxgen.nets.flow_nets import Glow, RealNVP, RealNVP2D
from tests.flows.flow_params import random_params
from tests.flows.jacobians import per_example_log_abs_det

L = 17


def _affine(mean, scale):
    mean, scale = jnp.asarray(mean), jnp.asarray(scale)

    def forward(x):
        z = (x - mean[None]) / scale[None]
        log_det = jnp.full(x.shape[:1], -jnp.sum(jnp.log(scale)))
        return z, log_det

    return forward


def test_flow_nll_of_an_affine_map_is_the_gaussian_density(x64):
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(size=(3,)), rng.uniform(1.5, 3.0, size=(3,))
    x = rng.normal(size=(5, 3))
    nll, terms = flows.flow_nll(_affine(mean, scale), jnp.asarray(x), None, num_levels=None)
    exact = -norm.logpdf(x, mean, scale).sum(axis=1)
    np.testing.assert_allclose(nll, exact, rtol=1e-12)
    assert set(terms) == {"base_log_prob", "log_det"}
    np.testing.assert_allclose(terms["base_log_prob"] + terms["log_det"], -nll, rtol=1e-12)
    np.testing.assert_allclose(
        flows.flow_log_prob(_affine(mean, scale), jnp.asarray(x)), -exact, rtol=1e-12
    )
    # Negative control: the opposite sign of the log-determinant is another density.
    wrong = terms["base_log_prob"] - terms["log_det"]
    assert np.min(np.abs(-wrong - exact)) > 0.1


def test_flow_nll_of_discrete_images_is_the_dequantized_bound(x64):
    rng = np.random.default_rng(1)
    levels = rng.integers(0, L, size=(4, 2, 2, 1))
    images = core.levels_to_images(jnp.asarray(levels), num_levels=L, dtype=jnp.float64)
    mean, scale = 0.4, 0.3
    forward = _affine(jnp.full((2, 2, 1), mean), jnp.full((2, 2, 1), scale))
    key = jax.random.key(2)
    nll, terms = flows.flow_nll(forward, images, key, num_levels=L)
    y = flows.uniform_dequantize(jnp.asarray(levels), key, num_levels=L, dtype=jnp.float64)
    log_p = norm.logpdf(np.asarray(y), mean, scale).reshape(4, -1).sum(axis=1)
    expected = -(log_p - 4 * math.log(L))
    np.testing.assert_allclose(nll, expected, rtol=1e-12)
    np.testing.assert_allclose(terms["bits_per_dim"], expected / (4 * math.log(2)), rtol=1e-12)
    # Negative control: another dequantization draw is another number.
    other, _ = flows.flow_nll(forward, images, jax.random.key(3), num_levels=L)
    assert np.min(np.abs(np.asarray(other) - expected)) > 1e-3
    with pytest.raises(ValueError, match="needs a key"):
        flows.flow_nll(forward, images, None, num_levels=L)
    with pytest.raises(ValueError, match="num_levels must be an integer >= 2"):
        flows.flow_nll(forward, images, key, num_levels=1)


def test_flow_nll_of_realnvp_matches_slogdet_of_jacfwd(x64):
    def factory(rngs):
        return RealNVP(
            (4, 4, 1), num_scales=2, num_couplings=1, hidden_channels=4, num_res_blocks=1, rngs=rngs
        )

    graphdef, params = random_params(factory, 0)
    levels = np.random.default_rng(2).integers(0, L, size=(2, 4, 4, 1))
    images = core.levels_to_images(jnp.asarray(levels), num_levels=L, dtype=jnp.float64)
    key = jax.random.key(4)

    @jax.jit
    def run(params, images):
        flow = nnx.merge(graphdef, params)
        nll, _ = flows.flow_nll(flow.forward, images, key, num_levels=L)
        y = flows.uniform_dequantize(
            core.images_to_levels(images, num_levels=L), key, num_levels=L, dtype=images.dtype
        )
        z, _ = flow.forward(y)
        ref = per_example_log_abs_det(lambda v: flow.forward(v)[0], y)
        return nll, flows.standard_normal_log_prob(z) + ref - 16 * math.log(L)

    nll, bound = run(params, images)
    err = float(jnp.max(jnp.abs(nll + bound)))
    print(f"RealNVP flow_nll vs slogdet(jacfwd): {err:.1e}")
    assert err < 1e-8


def _first_rows_agree(inverse_fn, latent_dim):
    key = jax.random.key(7)
    draw = jax.jit(
        lambda k, n: flows.sample(inverse_fn, k, (n, latent_dim), temperature=0.8),
        static_argnums=1,
    )
    small, big = draw(key, 16), draw(key, 64)
    assert small.nfe == 1 and big.nfe == 1
    assert small.samples.shape[0] == 16 and big.samples.shape[0] == 64
    np.testing.assert_array_equal(np.asarray(small.samples), np.asarray(big.samples)[:16])
    # A slice of per-example keys draws the same rows as the whole batch.
    keys = core.example_keys(key, 64)[16:32]
    middle = jax.jit(lambda k: flows.sample(inverse_fn, k, (16, latent_dim), temperature=0.8))
    np.testing.assert_array_equal(np.asarray(middle(keys).samples), np.asarray(big.samples)[16:32])
    # Negative control: another key draws other samples.
    other = draw(jax.random.key(8), 16)
    assert np.min(np.abs(np.asarray(other.samples) - np.asarray(small.samples))) > 0


def test_sample_depends_only_on_the_seed_and_the_index():
    graphdef, params = random_params(
        lambda rngs: RealNVP2D(2, num_couplings=2, hidden=(8,), rngs=rngs), 1, dtype=np.float32
    )
    _first_rows_agree(nnx.merge(graphdef, params).inverse, 2)
    graphdef, params = random_params(
        lambda rngs: Glow(
            (4, 4, 1), num_levels=2, num_steps=1, hidden_channels=4, learn_prior=True, rngs=rngs
        ),
        2,
        dtype=np.float32,
        gain=0.3,
    )
    _first_rows_agree(nnx.merge(graphdef, params).inverse_standardized, 16)


def test_sample_temperature_zero_and_bad_arguments():
    graphdef, params = random_params(
        lambda rngs: RealNVP2D(2, num_couplings=2, hidden=(8,), rngs=rngs), 3, dtype=np.float32
    )
    flow = nnx.merge(graphdef, params)
    out = flows.sample(flow.inverse, jax.random.key(0), (3, 2), temperature=0.0)
    np.testing.assert_allclose(out.samples, flow.inverse(jnp.zeros((3, 2))), rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        flows.sample(flow.inverse, jax.random.key(0), (3, 2), temperature=-1.0)
    with pytest.raises(ValueError, match="shape"):
        flows.sample(flow.inverse, jax.random.key(0), (0, 2))
    with pytest.raises(ValueError, match="per-example keys"):
        flows.sample(flow.inverse, core.example_keys(jax.random.key(0), 4), (3, 2))
