"""Dequantization, the logit bijector and discrete bits/dim (``jaxgen.flows.preprocessing``).

* Logit: round trip (x64, 1e-10) and ``log_det == slogdet(jacfwd)`` (1e-8); negative
  control: without the ``log(1 - 2 alpha)`` term the log_det is off by ``D log 0.9``.
* Dequantization: every ``y = (k + u) / L`` falls in level ``k``'s bin and its offset in the
  bin is uniform (mean and variance z-scores); with the same key it is exactly the affine
  image of the VAE recipes' ``[-1, 1]`` dequantization (negative control: without the half
  bin shift it is not).
* Bits/dim: the uniform density on ``[0, 1]^D`` scores exactly ``log2 L`` bits/dim (the
  uniform distribution over the ``L`` levels); for a 1-D Gaussian the dequantized bound is
  above the exact discrete bits/dim (Jensen) and close to it on average, where the opposite offset
  would undercut it (negative control); and for a density given in the VAEs' ``[-1, 1]``
  coordinates the flow's unit equals ``DecoderLikelihood.bits_per_dim`` (1e-10).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxgen.flows import (
    bits_per_dim,
    discrete_log_prob_bound,
    images_to_levels,
    levels_to_images,
    logit_forward,
    logit_inverse,
    uniform_dequantize,
    unit_to_levels,
)
from jaxgen.recipes.decoder_likelihood import DecoderLikelihood
from tests.flows.jacobians import per_example_log_abs_det

L = 17  # the digits' grey levels


@pytest.mark.parametrize("alpha", [0.05, 0.0])
def test_logit_inverse_and_log_det(x64, alpha):
    y = jnp.asarray(np.random.default_rng(0).uniform(0.01, 0.99, size=(3, 2, 2, 1)))
    z, log_det = logit_forward(y, alpha=alpha)
    y_back, log_det_inv = logit_inverse(z, alpha=alpha)
    round_trip = float(jnp.max(jnp.abs(y_back - y)))
    assert round_trip < 1e-10, round_trip
    np.testing.assert_allclose(log_det_inv, -log_det, rtol=1e-12)
    ref = per_example_log_abs_det(lambda v: logit_forward(v, alpha=alpha)[0], y)
    err = float(jnp.max(jnp.abs(log_det - ref)))
    print(f"alpha={alpha}: round trip {round_trip:.1e}, |log_det - slogdet| {err:.1e}")
    assert err < 1e-8, err
    p = alpha + (1 - 2 * alpha) * np.asarray(y)
    np.testing.assert_allclose(z, np.log(p / (1 - p)), rtol=1e-12)
    if alpha:  # Negative control: dropping the log(1 - 2 alpha) factor is off by D log 0.9.
        gap = float(jnp.max(jnp.abs((log_det - 4 * math.log1p(-2 * alpha)) - ref)))
        assert gap > 0.4, gap


def test_dequantization_bins_and_uniform_offsets():
    levels = np.random.default_rng(1).integers(0, L, size=(2000, 8))
    y = np.asarray(uniform_dequantize(jnp.asarray(levels), jax.random.key(0), num_levels=L))
    np.testing.assert_array_equal(np.asarray(unit_to_levels(jnp.asarray(y), num_levels=L)), levels)
    offset = (y * L - levels).ravel()  # u in [0, 1)
    assert offset.min() >= -1e-5 and offset.max() < 1.0 + 1e-5

    def z_scores(u):  # of the mean and variance of u against U[0, 1)'s 1/2 and 1/12
        n = u.size
        return (
            (u.mean() - 0.5) / math.sqrt(1 / 12 / n),
            (u.var() - 1 / 12) / math.sqrt((1 / 80 - 1 / 144) / n),
        )

    z_mean, z_var = z_scores(offset)
    print(f"bin offsets: mean z {z_mean:.2f}, variance z {z_var:.2f}")
    assert abs(z_mean) < 4 and abs(z_var) < 4
    # Negative control: non-uniform offsets in the same bins (u^2) fail the same test.
    assert abs(z_scores(offset**2)[0]) > 4


def test_dequantization_is_the_vae_dequantization_in_other_coordinates():
    rng = np.random.default_rng(2)
    levels = rng.integers(0, L, size=(4, 8, 8, 1))
    images = levels_to_images(jnp.asarray(levels), num_levels=L)
    np.testing.assert_array_equal(images_to_levels(images, num_levels=L), levels)
    key = jax.random.key(3)
    vae = DecoderLikelihood("gaussian", num_levels=L)
    x_tilde = vae.train_data(images, key)  # x + w (u - 1/2) in [-1, 1] coordinates
    w = 2.0 / (L - 1)
    y = uniform_dequantize(images_to_levels(images, num_levels=L), key, num_levels=L)
    mapped = (x_tilde + 1.0 + w / 2) / (L * w)
    err = float(jnp.max(jnp.abs(mapped - y)))
    assert err < 1e-6, err
    # Negative control: forgetting the half-bin shift misplaces every point by 1 / (2 L).
    assert float(jnp.min(jnp.abs((x_tilde + 1.0) / (L * w) - y))) > 0.5 / L - 1e-6


def test_bits_per_dim_uniform_is_log2_levels(x64):
    dims = 64
    got = bits_per_dim(jnp.zeros(3), num_dims=dims, num_levels=L)  # log p = 0 on [0, 1]^D
    np.testing.assert_allclose(got, math.log2(L), rtol=1e-14)
    np.testing.assert_allclose(
        discrete_log_prob_bound(jnp.zeros(1), num_dims=dims, num_levels=L), -dims * math.log(L)
    )
    # Continuous data: no offset, and the wrong unit (no offset) is far from log2 17.
    np.testing.assert_array_equal(bits_per_dim(jnp.zeros(1), num_dims=dims, num_levels=None), 0.0)
    with pytest.raises(ValueError, match="num_levels must be an integer >= 2"):
        bits_per_dim(jnp.zeros(1), num_dims=dims, num_levels=1)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(jnp.zeros(1), num_dims=0, num_levels=L)


def test_dequantized_bound_is_below_the_exact_discrete_likelihood(x64):
    """A 1-D Gaussian density on [0, 1]-coordinates: the exact discrete probability of each
    bin (CDF differences; the tails beyond [0, 1] hold < 1e-4) against
    ``E_u[log p((k + u) / L)] - log L`` by quadrature."""
    mu, sigma = 0.45, 0.12
    k = np.arange(L)
    exact_log_p = np.log(norm.cdf((k + 1) / L, mu, sigma) - norm.cdf(k / L, mu, sigma))
    u = (np.arange(2000) + 0.5) / 2000  # midpoint rule over the bin
    mean_log_density = norm.logpdf((k[:, None] + u[None, :]) / L, mu, sigma).mean(axis=1)
    bound = np.asarray(
        discrete_log_prob_bound(jnp.asarray(mean_log_density), num_dims=1, num_levels=L)
    )
    gap = exact_log_p - bound
    expected_gap = float(np.sum(np.exp(exact_log_p) * gap))
    print(
        f"Jensen gap per level: min {gap.min():.2e}, max {gap.max():.2e}; "
        f"expected under the model {expected_gap:.2e} nats"
    )
    assert gap.min() > -1e-9  # a lower bound for every level ...
    assert expected_gap < 0.02  # ... and a tight one on average for a smooth density
    # Negative control: the opposite offset (+ log L) overshoots the exact value.
    assert np.min(mean_log_density + math.log(L) - exact_log_p) > 1.0


def test_flow_bits_per_dim_equal_the_vae_unit(x64):
    """A Gaussian density in the VAEs' [-1, 1] coordinates, scored on the VAEs' dequantized
    data, and the same density moved to [0, 1] coordinates, scored by the flows' helper."""
    rng = np.random.default_rng(4)
    dims = 16
    levels = rng.integers(0, L, size=(5, dims))
    images = levels_to_images(jnp.asarray(levels), num_levels=L, dtype=jnp.float64)
    vae = DecoderLikelihood("gaussian", num_levels=L)
    x_tilde = vae.train_data(images, jax.random.key(5))
    log_q = jnp.sum(norm.logpdf(np.asarray(x_tilde), 0.1, 0.6), axis=1)  # density on [-1, 1]
    w = 2.0 / (L - 1)
    log_p_unit = log_q + dims * math.log(L * w)  # the same density on [0, 1] coordinates
    ours = bits_per_dim(log_p_unit, num_dims=dims, num_levels=L)
    theirs = vae.bits_per_dim(log_q, dims)
    err = float(jnp.max(jnp.abs(ours - theirs)))
    print(f"flow vs VAE bits/dim: {np.round(np.asarray(ours), 4)}; max difference {err:.1e}")
    assert err < 1e-10
    # Negative control: applying the flow's offset to the [-1, 1] density is another unit.
    wrong = bits_per_dim(log_q, num_dims=dims, num_levels=L)
    assert float(jnp.min(jnp.abs(wrong - theirs))) > 0.5


def test_bad_preprocessing_inputs_raise():
    with pytest.raises(ValueError, match="alpha must be in \\[0, 0.5\\)"):
        logit_forward(jnp.full((1, 2), 0.5), alpha=0.5)
    with pytest.raises(ValueError, match="levels must lie in \\[0, 16\\]"):
        uniform_dequantize(jnp.array([[17]]), jax.random.key(0), num_levels=L)
    with pytest.raises(ValueError, match="whole numbers"):
        uniform_dequantize(jnp.array([[1.5]]), jax.random.key(0), num_levels=L)
    with pytest.raises(ValueError, match="images must lie in \\[-1.0, 1.0\\]"):
        images_to_levels(jnp.array([[1.5]]), num_levels=L)
