"""Mode-coverage metrics against exact oracles.

* Exact mixture samples: the squared distance to the own centre over std^2 is chi-squared
  with D degrees of freedom, so the high-quality fraction is binomial with
  p = P(chi2_D <= 9) (1 - exp(-9/2) = 0.98889 in 2-D); it must match within Z binomial
  standard errors. Modes are far apart (>= 13 std), so the nearest centre is the own centre
  with probability 1 - O(1e-20).
* Multinomial counts over K equal modes: 2 N KL(q || uniform) is the G statistic, chi-squared
  with K - 1 degrees of freedom under the null.
* Constructed samples give exact counts, so covered modes and the reverse KL (log(8/3) for
  three balanced modes out of eight) are hand-computed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from jaxgen.data.toy2d import mixture_modes, sample_toy2d
from jaxgen.evaluation.mode_coverage import ModeCoverage, mode_coverage, toy_mode_coverage

N = 2500
Z = 4.0
P_HQ_2D = 1.0 - math.exp(-4.5)


def _z_score(fraction: float, p: float, n: int) -> float:
    return (fraction - p) / math.sqrt(p * (1.0 - p) / n)


@pytest.mark.parametrize("name,seed", [("ring", 0), ("grid", 1)])
def test_exact_mixture_samples_cover_all_modes(name, seed):
    centres, std = mixture_modes(name)
    num_modes = centres.shape[0]
    x = sample_toy2d(name, N, seed=seed)
    result = toy_mode_coverage(name, x)
    assert isinstance(result, ModeCoverage)
    assert result.num_modes == num_modes and result.num_samples == N
    assert result.modes_covered == num_modes
    assert result.counts.sum() == round(result.high_quality_fraction * N)
    # High-quality fraction: binomial around the chi-2 probability.
    z = _z_score(result.high_quality_fraction, P_HQ_2D, N)
    assert abs(z) < Z, (result.high_quality_fraction, P_HQ_2D, z)
    # Reverse KL: the G statistic 2 N_hq KL is chi2_{K-1} when modes are equally likely.
    g = 2.0 * result.counts.sum() * result.reverse_kl
    g_limit = stats.chi2.ppf(1.0 - 1e-4, num_modes - 1)
    assert 0.0 <= g < g_limit, (g, g_limit)

    # Negative control 1: samples 20% too wide; P = 1 - exp(-9 / (2 * 1.44)) = 0.956.
    rng = np.random.default_rng(seed + 10)
    which = rng.integers(0, num_modes, size=N)
    wide = centres[which] + 1.2 * std * rng.standard_normal((N, 2))
    z_wide = _z_score(toy_mode_coverage(name, wide).high_quality_fraction, P_HQ_2D, N)
    assert z_wide < -3 * Z, z_wide
    # Negative control 2: half the samples on mode 0 (others uniform); G is huge.
    skewed = np.where(rng.random(N) < 0.5, 0, which)
    tight = centres[skewed] + std * rng.standard_normal((N, 2))
    skew = toy_mode_coverage(name, tight)
    assert 2.0 * skew.counts.sum() * skew.reverse_kl > 10 * g_limit


def test_high_quality_fraction_in_three_dimensions():
    """D = 3: P(chi2_3 <= 9) = 0.97071 (not the 2-D 0.98889); centres 20 std apart."""
    rng = np.random.default_rng(3)
    std = 0.1
    centres = 2.0 * np.eye(3)
    x = centres[rng.integers(0, 3, size=N)] + std * rng.standard_normal((N, 3))
    result = mode_coverage(x, centres, std)
    p3 = stats.chi2.cdf(9.0, 3)
    assert abs(_z_score(result.high_quality_fraction, p3, N)) < Z
    assert result.modes_covered == 3
    # Negative control: the 2-D probability is rejected.
    assert abs(_z_score(result.high_quality_fraction, P_HQ_2D, N)) > Z


def _ring_points(modes, per_mode, radius_std, seed=0):
    """``per_mode[i]`` points at distance ``radius_std`` std from ring centre ``modes[i]``."""
    centres, std = mixture_modes("ring")
    rng = np.random.default_rng(seed)
    pts = []
    for k, m in zip(modes, per_mode, strict=True):
        angle = rng.uniform(0.0, 2.0 * np.pi, size=m)
        offset = np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius_std * std
        pts.append(centres[k].astype(np.float64) + offset)
    return np.concatenate(pts, axis=0)


def test_three_of_eight_modes_balanced_and_unbalanced():
    balanced = toy_mode_coverage("ring", _ring_points((0, 2, 5), (40, 40, 40), 1.0))
    assert balanced.modes_covered == 3
    np.testing.assert_array_equal(balanced.counts, [40, 0, 40, 0, 0, 40, 0, 0])
    assert balanced.high_quality_fraction == 1.0
    assert abs(balanced.reverse_kl - math.log(8.0 / 3.0)) < 1e-12

    counts = (10, 30, 60)
    unbalanced = toy_mode_coverage("ring", _ring_points((1, 4, 7), counts, 2.0))
    q = np.asarray(counts) / 100.0
    expected = float(np.sum(q * np.log(8.0 * q)))  # KL(q || 1/8), hand formula
    assert abs(unbalanced.reverse_kl - expected) < 1e-12
    np.testing.assert_array_equal(unbalanced.counts, [0, 10, 0, 0, 30, 0, 0, 60])
    # Negative control: imbalance raises the KL above the balanced value by a clear margin.
    assert unbalanced.reverse_kl - math.log(8.0 / 3.0) > 0.05

    everywhere = toy_mode_coverage("ring", _ring_points(range(8), [25] * 8, 0.5))
    assert everywhere.modes_covered == 8 and abs(everywhere.reverse_kl) < 1e-12


def test_samples_beyond_threshold_are_not_high_quality():
    outside = _ring_points(range(8), [10] * 8, 3.5)
    result = toy_mode_coverage("ring", outside)
    assert result.high_quality_fraction == 0.0
    assert result.modes_covered == 0 and result.counts.sum() == 0
    assert math.isnan(result.reverse_kl)
    # Negative controls: the same geometry at 2.9 std is all high quality, and a wider
    # threshold (num_std = 4) accepts the 3.5 std points.
    inside = toy_mode_coverage("ring", _ring_points(range(8), [10] * 8, 2.9))
    assert inside.high_quality_fraction == 1.0 and inside.modes_covered == 8
    wider = toy_mode_coverage("ring", outside, num_std=4.0)
    assert wider.high_quality_fraction == 1.0 and wider.modes_covered == 8


def test_points_exactly_between_two_modes():
    # Ring: the midpoint of adjacent centres is 2 sin(pi / 8) = 0.765 = 38 std from both.
    centres, _ = mixture_modes("ring")
    c = centres.astype(np.float64)
    mids = np.stack([(c[k] + c[(k + 1) % 8]) / 2.0 for k in range(8)])
    result = toy_mode_coverage("ring", mids)
    assert result.high_quality_fraction == 0.0 and result.modes_covered == 0
    # Two modes with a wide threshold: the midpoint (distance 1 <= 3 * 0.5) counts, and a
    # tie goes to the lower index; a nudge to the right moves it to mode 1.
    pair = np.array([[-1.0, 0.0], [1.0, 0.0]])
    tie = mode_coverage(np.zeros((1, 2)), pair, 0.5)
    np.testing.assert_array_equal(tie.counts, [1, 0])
    nudged = mode_coverage(np.array([[1e-9, 0.0]]), pair, 0.5)
    np.testing.assert_array_equal(nudged.counts, [0, 1])
    # Same midpoint with std = 0.3 (threshold 0.9 < 1): not high quality.
    assert mode_coverage(np.zeros((1, 2)), pair, 0.3).high_quality_fraction == 0.0


def test_min_count_semantics():
    x = _ring_points((0, 3), (5, 1), 1.0)
    for min_count, covered in ((1, 2), (2, 1), (5, 1), (6, 0)):
        result = toy_mode_coverage("ring", x, min_count=min_count)
        assert result.modes_covered == covered, (min_count, result.modes_covered)
        np.testing.assert_array_equal(result.counts, [5, 0, 0, 1, 0, 0, 0, 0])
    # Samples below the quality threshold never count towards min_count.
    x_far = np.concatenate([x, _ring_points((3,), (10,), 3.5)])
    assert toy_mode_coverage("ring", x_far, min_count=2).modes_covered == 1


def test_as_dict_and_toy_grid_cross_check():
    # Ring points at angles 0, 90, 180, 270 deg sit on grid centres (+-2, 0), (0, +-2);
    # the diagonal ones are 0.83 from every grid centre (> 3 * 0.05).
    x = _ring_points(range(8), [20] * 8, 1.0)
    result = toy_mode_coverage("grid", x)
    grid_centres, _ = mixture_modes("grid")
    covered = {tuple(grid_centres[k].tolist()) for k in np.flatnonzero(result.counts)}
    assert covered == {(2.0, 0.0), (0.0, 2.0), (-2.0, 0.0), (0.0, -2.0)}
    assert result.high_quality_fraction == 0.5
    d = result.as_dict()
    assert d == {
        "num_modes": 25.0,
        "modes_covered": 4.0,
        "high_quality_fraction": 0.5,
        "reverse_kl": pytest.approx(math.log(25.0 / 4.0), abs=1e-12),
        "num_samples": 160.0,
    }
    assert all(isinstance(v, float) for v in d.values())


@pytest.mark.parametrize(
    "samples,centres,std,kw,match",
    [
        (np.zeros(4), np.zeros((2, 2)), 1.0, {}, r"samples must have shape \(N, D\)"),
        (np.zeros((4, 2)), np.zeros(2), 1.0, {}, r"centres must have shape \(K, D\)"),
        (np.zeros((4, 3)), np.zeros((2, 2)), 1.0, {}, "same D"),
        (np.zeros((0, 2)), np.zeros((2, 2)), 1.0, {}, r"N >= 1"),
        (np.zeros((4, 2)), np.zeros((2, 2)), 0.0, {}, "std must be a finite positive"),
        (np.zeros((4, 2)), np.zeros((2, 2)), -1.0, {}, "std must be a finite positive"),
        (np.zeros((4, 2)), np.zeros((2, 2)), 1.0, {"num_std": 0.0}, "num_std"),
        (np.zeros((4, 2)), np.zeros((2, 2)), 1.0, {"min_count": 0}, "min_count"),
        (np.zeros((4, 2)), np.zeros((2, 2)), 1.0, {"min_count": 1.5}, "min_count"),
        (np.zeros((4, 2)), np.full((2, 2), np.nan), 1.0, {}, "centres must be finite"),
    ],
)
def test_bad_inputs_raise(samples, centres, std, kw, match):
    with pytest.raises(ValueError, match=match):
        mode_coverage(samples, centres, std, **kw)


def test_nan_sample_is_named():
    x = np.zeros((6, 2))
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 of 6 rows .* first is sample 3"):
        mode_coverage(x, np.zeros((2, 2)), 1.0)
    # Negative control: the same array without the bad rows is accepted.
    assert mode_coverage(x[:3], np.zeros((2, 2)), 1.0).num_samples == 3


def test_unknown_toy_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'moons'.*\('ring', 'grid'\)"):
        toy_mode_coverage("moons", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown toy mixture"):
        toy_mode_coverage("spiral", np.zeros((4, 2)))
