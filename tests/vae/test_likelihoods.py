"""Decoder likelihoods (``jaxgen.vae.likelihoods``) against closed-form references.

* Discretized logistic: the ``L`` bin probabilities sum to one for every (location, scale);
  each log-probability equals a brute-force CDF difference (NumPy float64) and, far in the
  tails where the probability underflows, an mpmath reference, in float32 too.
* Bernoulli: equals the negative binary cross-entropy written out by hand, and stays finite
  for huge logits.
* Gaussians: equal ``jax.scipy.stats.norm.logpdf`` summed over the event.
* Means and samples: sample frequencies / moments match the densities (z-scores).
Every check has a negative control that fails it.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from jaxgen.vae.likelihoods import (
    LIKELIHOODS,
    decoder_mean,
    decoder_sample,
    log_likelihood,
    num_decoder_params,
)
from tests.diffusion.stats import bonferroni_z, max_abs_z_mean_var


def _grid(num_levels):
    return np.arange(num_levels) * 2.0 / (num_levels - 1) - 1.0


def _brute_force_probs(x, loc, log_scale, num_levels, *, open_edges=True):
    """NumPy float64 CDF differences ``F(x + h) - F(x - h)``; edge bins open when asked."""
    half = 1.0 / (num_levels - 1)
    s = np.exp(log_scale)
    upper = expit((x + half - loc) / s)
    lower = expit((x - half - loc) / s)
    if open_edges:
        upper = np.where(x > 1.0 - half, 1.0, upper)
        lower = np.where(x < -1.0 + half, 0.0, lower)
    return upper - lower


def _dlog(x, loc, log_scale, num_levels, min_log_scale=-7.0):
    """Per-element log-probabilities through the public API: one element per example."""
    x, loc, log_scale = (jnp.reshape(jnp.asarray(a), (-1, 1)) for a in (x, loc, log_scale))
    out = jnp.concatenate([loc, log_scale], axis=1)
    return log_likelihood(
        "discretized_logistic", out, x, num_levels=num_levels, min_log_scale=min_log_scale
    )


def _pairs():
    locs, log_scales = np.meshgrid(np.linspace(-1.5, 1.5, 7), [-6.0, -3.0, -1.0, 0.0, 1.5])
    return locs.ravel(), log_scales.ravel()


@pytest.mark.parametrize("num_levels", [2, 5, 256])
def test_discretized_logistic_sums_to_one_and_matches_brute_force(x64, num_levels):
    locs, log_scales = _pairs()
    num = locs.size
    x = np.repeat(_grid(num_levels), num)  # level-major: (L * N,)
    loc, log_scale = np.tile(locs, num_levels), np.tile(log_scales, num_levels)
    log_p = np.asarray(_dlog(x, loc, log_scale, num_levels)).reshape(num_levels, num)
    total = logsumexp(log_p, axis=0)  # log of the sum over the L levels, per (loc, scale)
    err_sum = float(np.max(np.abs(total)))
    assert err_sum < 1e-10, err_sum

    ref = _brute_force_probs(x, loc, log_scale, num_levels).reshape(num_levels, num)
    ok = ref > 1e-6  # float64 cancellation in the brute force is < 1e-16 / ref there
    err = float(np.max(np.abs(log_p[ok] - np.log(ref[ok]))))
    print(f"L={num_levels}: |log sum_k P_k| <= {err_sum:.1e}; |log P - brute force| <= {err:.1e}")
    assert err < 1e-9, err
    # Negative control: closed edge bins (no extension to -inf / +inf) lose mass.
    closed = _brute_force_probs(x, loc, log_scale, num_levels, open_edges=False)
    lost = float(np.max(1.0 - closed.reshape(num_levels, num).sum(0)))
    assert lost > 1e-3, lost


def _mp_log_prob(x, loc, log_scale, num_levels):
    """mpmath (50 digits, unbounded exponent) log P of one element; in the right tail the
    difference is taken of survival functions, 1 - F(u) = F(-u), so nothing cancels."""
    with mpmath.workdps(50):
        half = mpmath.mpf(1) / (num_levels - 1)
        s = mpmath.exp(mpmath.mpf(log_scale))
        x, loc = mpmath.mpf(x), mpmath.mpf(loc)

        def cdf(u):
            return 1 / (1 + mpmath.exp(-u))

        a = (x + half - loc) / s
        b = (x - half - loc) / s
        if x < -1 + half:
            prob = cdf(a)
        elif x > 1 - half:
            prob = cdf(-b)
        elif b > 0:
            prob = cdf(-b) - cdf(-a)
        else:
            prob = cdf(a) - cdf(b)
        return float(mpmath.log(prob))


def test_discretized_logistic_tiny_probabilities():
    """Bins far in the tails (P down to e^-700) are finite and match mpmath in float32; the
    PixelCNN++ direct difference ``sigmoid(a) - sigmoid(b)`` is not (negative control), and
    its midpoint-density fallback is only approximate."""
    num_levels = 256
    grid = _grid(num_levels)
    cases = [  # (x, loc, log_scale): interior and edge bins, both tails
        (grid[250], -1.0, -5.0),
        (grid[5], 1.0, -5.0),
        (grid[128], -0.5, -6.5),
        (grid[200], 0.9, -7.0),
        (grid[0], 0.9, -6.0),
        (grid[-1], -0.9, -6.0),
        (grid[130], 0.0, -1.0),  # moderate, for scale
    ]
    x, loc, log_scale = (np.array(c, np.float32) for c in zip(*cases, strict=True))
    got = np.asarray(_dlog(x, loc, log_scale, num_levels))
    ref = np.array([_mp_log_prob(*c, num_levels) for c in cases])
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    rel = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    print(f"tiny-probability log P: reference {np.round(ref, 2)}; max rel error {rel.max():.1e}")
    assert rel.max() < 2e-6, rel
    assert ref.min() < -700.0  # far below float32's smallest number, e^-103

    grads = jax.grad(lambda a: jnp.sum(_dlog(jnp.asarray(x), a, jnp.asarray(log_scale), 256)))(
        jnp.asarray(loc)
    )
    assert np.all(np.isfinite(np.asarray(grads)))

    # Negative control: the direct difference of sigmoids, floored like PixelCNN++.
    half = np.float32(1.0 / (num_levels - 1))
    s = np.exp(log_scale)
    direct = expit((x + half - loc) / s).astype(np.float32) - expit((x - half - loc) / s)
    naive = np.log(np.maximum(direct.astype(np.float32), np.float32(1e-12)))
    interior = (x > -1 + half) & (x < 1 - half)
    assert np.max(np.abs(naive - ref)[interior]) > 100.0
    # PixelCNN++'s midpoint fallback log pdf(x) + log(2h): finite, close only up to the
    # curvature of the density over the bin (reported, not ours).
    u = (x - loc) / s
    midpoint = u - log_scale - 2.0 * np.logaddexp(0.0, u) + np.log(2.0 * half)
    mid_err = np.abs(midpoint - ref)[interior]
    print(f"PixelCNN++ midpoint fallback error on interior tail bins: {np.round(mid_err, 3)}")
    assert np.all(np.isfinite(midpoint))


def test_discretized_logistic_layout_and_scale_clip(x64):
    """Event axes (B, H, W, C): the first C outputs are the locations, the next C the log
    scales, all summed per example; the log scale is clipped below at min_log_scale."""
    num_levels = 16
    rng = np.random.default_rng(0)
    x = _grid(num_levels)[rng.integers(0, num_levels, size=(2, 3, 4, 3))]
    loc = rng.uniform(-1.2, 1.2, size=x.shape)
    log_scale = rng.uniform(-1.0, 0.5, size=x.shape)  # P >~ 1e-4: brute force is exact
    out = jnp.asarray(np.concatenate([loc, log_scale], axis=-1))
    got = log_likelihood("discretized_logistic", out, jnp.asarray(x), num_levels=num_levels)
    ref = np.log(_brute_force_probs(x, loc, log_scale, num_levels)).reshape(2, -1).sum(1)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    # Negative control: the swapped layout [log_scale, loc] is a different density.
    swapped = jnp.asarray(np.concatenate([log_scale, loc], axis=-1))
    other = log_likelihood("discretized_logistic", swapped, jnp.asarray(x), num_levels=num_levels)
    assert float(jnp.max(jnp.abs(other - ref))) > 1.0

    xs, locs = np.array([0.2, -0.6]), np.array([0.32, -0.45])  # locations outside the bins
    clipped = _dlog(xs, locs, np.array([-20.0, -9.0]), 11, min_log_scale=-7.0)
    at_floor = _dlog(xs, locs, np.array([-7.0, -7.0]), 11, min_log_scale=-7.0)
    np.testing.assert_allclose(clipped, at_floor, rtol=1e-14)
    unclipped = _dlog(xs, locs, np.array([-20.0, -9.0]), 11, min_log_scale=-30.0)
    assert float(jnp.max(jnp.abs(unclipped - at_floor))) > 1.0


def test_bernoulli_is_negative_binary_cross_entropy(x64):
    rng = np.random.default_rng(1)
    logits = 3.0 * rng.normal(size=(6, 10))
    x = rng.integers(0, 2, size=(6, 10)).astype(np.float64)
    got = np.asarray(log_likelihood("bernoulli", jnp.asarray(logits), jnp.asarray(x)))
    p = expit(logits)
    ref = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=1)
    err = float(np.max(np.abs(got - ref)))
    assert err < 1e-12, err
    assert float(np.max(np.abs(got - np.sum((1 - x) * np.log(p) + x * np.log1p(-p), 1)))) > 1.0

    # Huge logits in float32: finite and exact (-|l| when wrong, ~0 when right), where the
    # textbook formula gives -inf / nan (negative control).
    big = jnp.array([[200.0, -200.0, 200.0, -200.0]], jnp.float32)
    bits = jnp.array([[1.0, 0.0, 0.0, 1.0]], jnp.float32)
    value = log_likelihood("bernoulli", big, bits)
    np.testing.assert_allclose(value, [-400.0], rtol=1e-6)
    grad = jax.grad(lambda lg: log_likelihood("bernoulli", lg, bits)[0])(big)
    np.testing.assert_allclose(grad, [[0.0, 0.0, -1.0, 1.0]], atol=1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        p32 = expit(np.asarray(big)).astype(np.float32)
        textbook = np.sum(bits * np.log(p32) + (1 - bits) * np.log(1 - p32))
    assert not np.isfinite(textbook)


def test_gaussians_match_norm_logpdf(x64):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 2, 3))
    mean = rng.normal(size=x.shape)
    log_std = rng.uniform(-2.0, 1.0, size=x.shape)
    norm = jax.scipy.stats.norm.logpdf
    fixed = log_likelihood("gaussian_fixed", jnp.asarray(mean), jnp.asarray(x), fixed_std=0.3)
    ref_fixed = jnp.sum(norm(x, mean, 0.3), axis=(1, 2))
    out = jnp.asarray(np.concatenate([mean, log_std], axis=-1))
    learned = log_likelihood("gaussian", out, jnp.asarray(x))
    ref_learned = jnp.sum(norm(x, mean, np.exp(log_std)), axis=(1, 2))
    err = max(
        float(jnp.max(jnp.abs(fixed - ref_fixed))), float(jnp.max(jnp.abs(learned - ref_learned)))
    )
    assert err < 1e-12, err
    # Negative control: the default fixed_std = 1 is a different density.
    default = log_likelihood("gaussian_fixed", jnp.asarray(mean), jnp.asarray(x))
    assert float(jnp.max(jnp.abs(default - ref_fixed))) > 1.0
    # min_log_scale clips the learned log std from below.
    tiny = jnp.asarray(np.concatenate([mean, np.full(x.shape, -12.0)], axis=-1))
    clipped = log_likelihood("gaussian", tiny, jnp.asarray(x), min_log_scale=-3.0)
    ref_clip = jnp.sum(norm(x, mean, math.exp(-3.0)), axis=(1, 2))
    np.testing.assert_allclose(clipped, ref_clip, rtol=1e-12)
    default_clip = log_likelihood("gaussian", tiny, jnp.asarray(x))  # min_log_scale = -7
    assert float(jnp.max(jnp.abs(default_clip - ref_clip))) > 1.0


def test_decoder_mean():
    logits = jnp.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(decoder_mean("bernoulli", logits), expit(np.asarray(logits)))
    out = jnp.array([[0.5, -1.5, 2.0, -3.0, 0.1, 0.2]])
    np.testing.assert_array_equal(decoder_mean("gaussian", out), out[:, :3])
    np.testing.assert_array_equal(decoder_mean("gaussian_fixed", out), out)
    np.testing.assert_array_equal(
        decoder_mean("discretized_logistic", out, num_levels=256), [[0.5, -1.0, 1.0]]
    )


def test_decoder_samples_follow_the_densities():
    """Gaussian moments, Bernoulli frequencies and discretized-logistic level frequencies
    (against exp(log_likelihood) of every level) by z-scores, each with a negative control."""
    n = 4000
    keys = jax.random.split(jax.random.key(3), 4)
    z_max = bonferroni_z(2 * 3 + 2 * 3 + 4 + 3 * 5)

    mean, log_std = jnp.array([0.3, -1.0, 2.0]), jnp.array([-1.0, 0.0, 0.5])
    out = jnp.broadcast_to(jnp.concatenate([mean, log_std]), (n, 1, 6))
    draws = np.asarray(decoder_sample("gaussian", out, keys[0]))[:, 0]
    assert draws.shape == (n, 3)
    assert max_abs_z_mean_var(draws, mean, np.exp(2 * log_std)) < z_max
    assert max_abs_z_mean_var(draws, mean, 1.0) > z_max  # negative control: unit variance
    fixed = decoder_sample("gaussian_fixed", out[..., :3], keys[1], fixed_std=0.2)
    assert max_abs_z_mean_var(np.asarray(fixed)[:, 0], mean, 0.04) < z_max
    assert max_abs_z_mean_var(np.asarray(fixed)[:, 0], mean, 1.0) > z_max

    logits = jnp.array([-2.0, -0.3, 0.0, 2.5])
    bits = np.asarray(decoder_sample("bernoulli", jnp.broadcast_to(logits, (n, 4)), keys[2]))
    assert set(np.unique(bits)) <= {0.0, 1.0}
    p = expit(np.asarray(logits))
    z_bits = (bits.mean(0) - p) / np.sqrt(p * (1 - p) / n)
    assert np.max(np.abs(z_bits)) < z_max
    z_bad = (bits.mean(0) - expit(-np.asarray(logits))) / np.sqrt(p * (1 - p) / n)
    assert np.max(np.abs(z_bad)) > z_max

    num_levels = 5
    grid = _grid(num_levels)
    params = np.array([[0.1, -1.0], [-0.9, -2.0], [0.95, -0.5]])  # (loc, log_scale) per channel
    out = jnp.broadcast_to(jnp.asarray(params.T.ravel(), jnp.float32), (n, 6))
    draws = np.asarray(decoder_sample("discretized_logistic", out, keys[3], num_levels=5))
    assert np.all(np.min(np.abs(draws[..., None] - grid), axis=-1) < 1e-6)  # on the grid

    def level_probs(loc_shift):
        shifted = params + np.array([loc_shift, 0.0])
        x = np.repeat(grid, 3).reshape(-1, 1)
        locs, scales = np.tile(shifted[:, 0], 5), np.tile(shifted[:, 1], 5)
        return np.exp(np.asarray(_dlog(x, locs, scales, 5))).reshape(5, 3)

    counts = (draws[None, :, :] == grid[:, None, None].astype(np.float32)).mean(1)  # (L, C)
    probs = level_probs(0.0)
    z_levels = (counts - probs) / np.sqrt(probs * (1 - probs) / n)
    print(f"discretized logistic level frequencies: max |z| {np.max(np.abs(z_levels)):.2f}")
    assert np.max(np.abs(z_levels)) < z_max
    wrong = level_probs(0.25)  # negative control: locations off by half a bin
    assert np.max(np.abs((counts - wrong) / np.sqrt(wrong * (1 - wrong) / n))) > z_max


def test_num_params_jit_and_errors():
    assert LIKELIHOODS == ("bernoulli", "gaussian_fixed", "gaussian", "discretized_logistic")
    assert [num_decoder_params(n) for n in LIKELIHOODS] == [1, 1, 2, 2]
    fn = jax.jit(functools.partial(log_likelihood, "discretized_logistic", num_levels=256))
    x, out = jnp.zeros((3, 4, 2)), jnp.zeros((3, 4, 4))
    assert fn(out, x).shape == (3,)

    with pytest.raises(
        ValueError, match=r"likelihood must be one of \('bernoulli'.*'gaussian'.*got 'poisson'"
    ):
        log_likelihood("poisson", out, x)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        num_decoder_params("laplace")
    with pytest.raises(ValueError, match=r"must have shape \(3, 4, 4\).*got \(3, 4, 2\)"):
        log_likelihood("gaussian", jnp.zeros((3, 4, 2)), x)
    with pytest.raises(ValueError, match=r"must have shape \(3, 4, 2\)"):
        log_likelihood("bernoulli", out, x)
    with pytest.raises(ValueError, match="needs num_levels"):
        log_likelihood("discretized_logistic", out, x)
    with pytest.raises(ValueError, match="num_levels must be an integer >= 2"):
        log_likelihood("discretized_logistic", out, x, num_levels=1)
    with pytest.raises(ValueError, match="needs num_levels"):
        decoder_sample("discretized_logistic", out, jax.random.key(0))
    with pytest.raises(ValueError, match=r"x must have shape \(B, ..., C\)"):
        log_likelihood("bernoulli", jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="fixed_std must be positive"):
        log_likelihood("gaussian_fixed", x, x, fixed_std=0.0)
    with pytest.raises(ValueError, match="multiple of 2"):
        decoder_mean("gaussian", jnp.zeros((3, 5)))
