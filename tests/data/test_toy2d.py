"""2-D toy distributions: modes, documented stds, supports and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.data import TOY2D_NAMES, mixture_modes, sample_toy2d

N = 20_000


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_shape_dtype_and_determinism(name):
    a = sample_toy2d(name, 500, seed=3)
    assert a.shape == (500, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, sample_toy2d(name, 500, seed=3))
    assert not np.array_equal(a, sample_toy2d(name, 500, seed=4))
    assert sample_toy2d(name, 0, seed=0).shape == (0, 2)


def test_mode_tables():
    ring = mixture_modes("ring")
    assert ring.centres.shape == (8, 2) and ring.std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring.centres, axis=1), 2.0, rtol=1e-6)
    angles = np.sort(np.mod(np.arctan2(ring.centres[:, 1], ring.centres[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-6)
    grid = mixture_modes("grid")
    assert grid.centres.shape == (25, 2) and grid.std == 0.05
    assert {tuple(c) for c in grid.centres.tolist()} == {
        (x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)
    }
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        mixture_modes("moons")


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mixture_samples_sit_on_their_modes_with_documented_std(name):
    centres, std = mixture_modes(name)
    x = sample_toy2d(name, N, seed=0).astype(np.float64)
    dist = np.linalg.norm(x[:, None, :] - centres[None].astype(np.float64), axis=-1)
    nearest = dist.argmin(axis=1)
    resid = x - centres[nearest]
    # every sample within 6 std of its mode (2-D Gaussian: P(r > 6 sd) ~ 1.5e-8)
    assert dist.min(axis=1).max() < 6 * std
    # std estimate from 2N coordinates; its standard error is about std / sqrt(4N)
    est = np.sqrt(np.mean(resid**2))
    assert abs(est - std) < 5 * std / np.sqrt(4 * N), (est, std)
    np.testing.assert_allclose(resid.mean(axis=0), 0.0, atol=5 * std / np.sqrt(N))
    # every mode is used, with the equal weights of the mixture
    k = centres.shape[0]
    counts = np.bincount(nearest, minlength=k)
    p = 1 / k
    assert counts.min() > 0
    assert np.all(np.abs(counts - N * p) < 5 * np.sqrt(N * p * (1 - p))), counts


def _arc_distance(p, centre, radius, lo, hi):
    d = p - centre
    ang = np.mod(np.arctan2(d[:, 1], d[:, 0]), 2 * np.pi)
    inside = (ang >= lo) & (ang <= hi)
    ends = [centre + radius * np.array([np.cos(a), np.sin(a)]) for a in (lo, hi)]
    to_ends = np.minimum(*(np.linalg.norm(p - e, axis=1) for e in ends))
    return np.where(inside, np.abs(np.linalg.norm(d, axis=1) - radius), to_ends)


def test_moons_lie_on_two_arcs_with_documented_noise():
    x = sample_toy2d("moons", N, seed=0).astype(np.float64)
    upper = _arc_distance(x, np.array([-1.0, -0.2]), 2.0, 0.0, np.pi)
    lower = _arc_distance(x, np.array([1.0, 0.8]), 2.0, np.pi, 2 * np.pi)
    d = np.minimum(upper, lower)
    # distance to the curve is about the normal component of the N(0, 0.2^2) noise
    assert abs(np.sqrt(np.mean(d**2)) - 0.2) < 0.02
    assert d.max() < 6 * 0.2
    assert abs(np.mean(upper < lower) - 0.5) < 0.02
    assert x[:, 0].min() > -3 - 6 * 0.2 and x[:, 0].max() < 3 + 6 * 0.2
    assert x[:, 1].min() > -1.2 - 6 * 0.2 and x[:, 1].max() < 1.8 + 6 * 0.2


def test_swiss_roll_follows_the_spiral():
    x = sample_toy2d("swiss_roll", N, seed=0).astype(np.float64) * 5  # undo the /5
    r = np.linalg.norm(x, axis=1)
    a = np.arctan2(x[:, 1], x[:, 0])
    # the noise-free point has radius t and angle t (mod 2 pi): the radial residual to
    # the nearest turn is the radial part of the N(0, 1) noise
    k = np.round((r - a) / (2 * np.pi))
    resid = r - (a + 2 * np.pi * k)
    assert abs(np.sqrt(np.mean(resid**2)) - 1.0) < 0.1
    # t ~ U[1.5 pi, 4.5 pi]: mean radius 3 pi (plus a small noise bias)
    assert abs(r.mean() - 3 * np.pi) < 0.15
    assert r.min() > 1.5 * np.pi - 6 and r.max() < 4.5 * np.pi + 6


def test_checkerboard_fills_the_black_squares_uniformly():
    x = sample_toy2d("checkerboard", N, seed=0)
    assert x.min() >= -4 and x.max() < 4
    cells = np.floor(x / 2).astype(int)  # square indices in {-2, ..., 1}
    assert np.all((cells.sum(axis=1) % 2) == 0)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert counts.size == 8
    p = 1 / 8
    assert np.all(np.abs(counts - N * p) < 5 * np.sqrt(N * p * (1 - p))), counts


def test_unknown_name_lists_names():
    with pytest.raises(ValueError, match="swiss_roll"):
        sample_toy2d("spiral", 10, seed=0)
