"""Karras levels, iCT's curriculum (Song & Dhariwal 2024, eq. 7) and the pair-index
distributions (eq. 9), against their closed forms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distillation import (
    ict_num_levels,
    karras_level,
    karras_levels,
    lognormal_index_logits,
    sample_level_index,
)

SMIN, SMAX = 0.002, 80.0


def test_karras_levels_closed_form_and_exact_ends():
    levels = np.asarray(karras_levels(6, sigma_min=SMIN, sigma_max=SMAX))
    i = np.arange(6)
    lo, hi = SMIN ** (1 / 7), SMAX ** (1 / 7)
    expected = (lo + i / 5 * (hi - lo)) ** 7
    np.testing.assert_allclose(levels, expected, rtol=1e-5)
    assert levels[0] == np.float32(SMIN) and levels[-1] == np.float32(SMAX)
    assert np.all(np.diff(levels) > 0)


def test_karras_level_with_traced_num_levels_equals_karras_levels():
    @jax.jit
    def traced(n):
        return karras_level(jnp.arange(12), n, sigma_min=SMIN, sigma_max=SMAX)

    for n in (5, 12):
        got = np.asarray(traced(n))[:n]
        want = np.asarray(karras_levels(n, sigma_min=SMIN, sigma_max=SMAX))
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got[0] == want[0] and got[-1] == want[-1]


def test_ict_curriculum_matches_the_paper():
    # K = 400k (iCT's CIFAR-10 run): K' = floor(400000 / 8) = 50000, N doubles 11 -> 1281
    steps = [0, 49_999, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 350_000, 399_999]
    want = [11, 11, 21, 41, 81, 161, 321, 641, 1281, 1281]
    assert [int(ict_num_levels(k, 400_000)) for k in steps] == want
    traced = jax.jit(lambda k: ict_num_levels(k, 400_000))(jnp.asarray(steps))
    assert traced.tolist() == want


def test_lognormal_index_probabilities_match_the_erf_formula():
    levels = karras_levels(11, sigma_min=SMIN, sigma_max=SMAX)
    probs = np.exp(np.asarray(lognormal_index_logits(levels), np.float64))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    lv = np.asarray(levels, np.float64)
    erf = np.vectorize(math.erf)
    mass = erf((np.log(lv[1:]) + 1.1) / (math.sqrt(2) * 2.0)) - erf(
        (np.log(lv[:-1]) + 1.1) / (math.sqrt(2) * 2.0)
    )
    np.testing.assert_allclose(probs, mass / mass.sum(), rtol=1e-4, atol=1e-7)
    # a buffer of 16 levels of which 11 are valid gives the same distribution
    buffer = karras_level(jnp.arange(16), 11, sigma_min=SMIN, sigma_max=SMAX)
    masked = np.exp(np.asarray(lognormal_index_logits(buffer, num_valid=11)))
    np.testing.assert_allclose(masked[:10], probs, rtol=1e-5)
    assert np.all(masked[10:] == 0)


def test_sampled_indices_follow_the_distribution():
    n = 8000
    logits = lognormal_index_logits(karras_levels(11, sigma_min=SMIN, sigma_max=SMAX))
    idx = sample_level_index(
        jax.random.key(0),
        jnp.asarray(11),
        batch_size=n,
        distribution="lognormal",
        max_levels=16,
        sigma_min=SMIN,
        sigma_max=SMAX,
    )
    freq = np.bincount(np.asarray(idx), minlength=10) / n
    p = np.exp(np.asarray(logits))
    assert freq.shape == (10,)  # never an index past N - 2
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3), (freq, p)
    uni = sample_level_index(jax.random.key(1), 5, batch_size=n)
    assert set(np.unique(uni).tolist()) == {0, 1, 2, 3}


def test_index_keys_are_per_example():
    keys = jax.random.split(jax.random.key(3), 8)
    a = sample_level_index(keys, 50)
    b = sample_level_index(keys[:4], 50)
    np.testing.assert_array_equal(a[:4], b)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: karras_levels(1, sigma_min=SMIN, sigma_max=SMAX), "num_levels"),
        (lambda: karras_levels(4, sigma_min=2.0, sigma_max=1.0), "sigma_min must be <"),
        (lambda: ict_num_levels(0, 100, initial=20, final=10), "final"),
        (lambda: sample_level_index(jax.random.key(0), 5), "batch_size"),
        (
            lambda: sample_level_index(
                jax.random.key(0), 5, batch_size=2, distribution="lognormal"
            ),
            "sigma_min",
        ),
        (
            lambda: sample_level_index(jax.random.key(0), 5, batch_size=2, distribution="x"),
            "one of",
        ),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
