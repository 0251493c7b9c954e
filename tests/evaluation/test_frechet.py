"""Frechet distance against closed forms, scipy's sqrtm, and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from jaxgen.evaluation.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
)


def _random_spd(rng: np.random.Generator, dim: int, *, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((dim, rank or dim))
    return a @ a.T / (rank or dim) + (0.0 if rank else 0.1) * np.eye(dim)


def _scipy_fd(m1, c1, m2, c2) -> float:
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * np.real(covmean)))


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(m1, np.diag(a), m2, np.diag(b))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_commuting_covariances_closed_form():
    # Same eigenvectors, different eigenvalues: FD = ||dm||^2 + sum (sqrt(a) - sqrt(b))^2.
    rng = np.random.default_rng(1)
    q = scipy.stats.special_ortho_group.rvs(5, random_state=2)
    a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    m = rng.standard_normal(5)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 4.0
    got = frechet_distance(m, (q * a) @ q.T, m + np.array([2.0, 0, 0, 0, 0]), (q * b) @ q.T)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("dim", [2, 7, 32])
def test_agrees_with_scipy_sqrtm(x64, dim):
    rng = np.random.default_rng(dim)
    for _ in range(3):
        m1, m2 = rng.standard_normal(dim), rng.standard_normal(dim)
        c1, c2 = _random_spd(rng, dim), _random_spd(rng, dim)
        np.testing.assert_allclose(
            frechet_distance(m1, c1, m2, c2), _scipy_fd(m1, c1, m2, c2), rtol=1e-9, atol=1e-10
        )


def test_singular_covariances_are_finite_and_match_scipy():
    # Rank-deficient covariances (fewer samples than features, dead ReLU units).
    rng = np.random.default_rng(3)
    c1, c2 = _random_spd(rng, 16, rank=5), _random_spd(rng, 16, rank=9)
    m = np.zeros(16)
    got = frechet_distance(m, c1, m, c2)
    assert np.isfinite(got) and got > 0
    np.testing.assert_allclose(got, _scipy_fd(m, c1, m, c2), rtol=1e-6)


def test_symmetric_and_zero_on_identical():
    rng = np.random.default_rng(4)
    m1, m2 = rng.standard_normal(10), rng.standard_normal(10)
    c1, c2 = _random_spd(rng, 10), _random_spd(rng, 10)
    np.testing.assert_allclose(
        frechet_distance(m1, c1, m2, c2), frechet_distance(m2, c2, m1, c1), rtol=1e-10
    )
    assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(m1, c1, m2, c2) > 0


def test_invariant_under_joint_rotation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 8)) * rng.uniform(0.5, 2.0, 8)
    y = rng.standard_normal((400, 8)) @ _random_spd(rng, 8) + 0.3
    q = scipy.stats.special_ortho_group.rvs(8, random_state=6)
    np.testing.assert_allclose(
        frechet_distance_from_features(x @ q, y @ q),
        frechet_distance_from_features(x, y),
        rtol=1e-10,
    )


def test_gaussian_statistics_matches_numpy():
    x = np.random.default_rng(7).standard_normal((50, 4)).astype(np.float32)
    mean, cov = gaussian_statistics(x)
    assert mean.dtype == cov.dtype == np.float64
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


def test_empirical_fd_converges():
    rng = np.random.default_rng(8)
    dim = 4
    m1, m2 = np.zeros(dim), np.full(dim, 0.5)
    c1, c2 = _random_spd(rng, dim), _random_spd(rng, dim)
    l1, l2 = np.linalg.cholesky(c1), np.linalg.cholesky(c2)

    def draw(n, m, chol):
        return m + rng.standard_normal((n, dim)) @ chol.T

    same = [frechet_distance_from_features(draw(n, m1, l1), draw(n, m1, l1)) for n in (500, 50_000)]
    assert same[1] < same[0] / 10  # the finite-sample bias shrinks like 1/n
    assert same[1] < 2e-3
    analytic = frechet_distance(m1, c1, m2, c2)
    empirical = frechet_distance_from_features(draw(50_000, m1, l1), draw(50_000, m2, l2))
    np.testing.assert_allclose(empirical, analytic, rtol=0.02)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        gaussian_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_statistics(np.zeros((1, 3)))
