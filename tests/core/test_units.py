"""Oracles for ``jaxgen.core.units``: hand values of bits/dim and dequantization offsets on
both grids, and the dequantization bound checked against a discretized Gaussian whose
level probabilities are integrals of its density over the bins."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxgen.core import units
from jaxgen.core.units import bits_per_dim, dequantization_offset, discrete_nll


def test_bits_per_dim_hand_values(x64):
    # A uniform distribution over 256 levels per dimension is 8 bits/dim; 2 levels, 1 bit.
    d = 3 * 32 * 32
    nll = jnp.array([0.0, d * math.log(256.0), d * math.log(2.0)])
    np.testing.assert_allclose(bits_per_dim(nll, d), [0.0, 8.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(bits_per_dim(10.0, 1), 10.0 / math.log(2.0), rtol=1e-15)
    assert float(bits_per_dim(64 * math.log(2.0), np.int64(64))) == pytest.approx(1.0, 1e-15)
    # The sign convention: a negative log-likelihood in, positive bits out.
    assert float(bits_per_dim(5.0, 4)) > 0


@pytest.mark.parametrize("num_dims", [0, -3, True, 2.0])
def test_bits_per_dim_errors(num_dims):
    with pytest.raises(ValueError, match=rf"num_dims must be an integer >= 1, got {num_dims!r}"):
        bits_per_dim(1.0, num_dims)


def test_bin_width_hand_values():
    assert units.GRIDS == ("centered", "unit")
    assert units.bin_width(17) == 2.0 / 16 == 0.125  # digits: levels -1, -7/8, ..., 1
    assert units.bin_width(256) == 2.0 / 255
    assert units.bin_width(2) == 2.0  # binary data at -1 and 1
    assert units.bin_width(256, grid="unit") == 1.0 / 256
    assert units.bin_width(17, grid="unit") == 1.0 / 17


def test_dequantization_offset_hand_values():
    # Digits: 64 dims of 17 levels; centered w = 1/8, so D log w = -64 * 3 log 2.
    assert dequantization_offset(17, 64) == pytest.approx(-192 * math.log(2.0), rel=1e-15)
    assert dequantization_offset(17, 64, grid="centered") == dequantization_offset(17, 64)
    assert dequantization_offset(17, 64, grid="unit") == pytest.approx(-64 * math.log(17.0))
    # CIFAR-10: 8 bits on [0, 1] (flows' y = (k + u) / 256) is -D log 256 = -8 D log 2.
    d = 3072
    unit = dequantization_offset(256, d, grid="unit")
    assert unit == pytest.approx(-8 * d * math.log(2.0), rel=1e-15)
    centered = dequantization_offset(256, d)
    assert centered == pytest.approx(d * (math.log(2.0) - math.log(255.0)), rel=1e-15)
    # The two grids differ by D log(2 L / (L - 1)): the centered grid is that much wider.
    assert centered - unit == pytest.approx(d * math.log(2 * 256 / 255), rel=1e-12)
    # In bits/dim the unit-grid offset is exactly -8.
    assert unit / (d * math.log(2.0)) == pytest.approx(-8.0, rel=1e-15)
    # Binary data on the centered grid: bins of width 2, a positive offset.
    assert dequantization_offset(2, 5) == pytest.approx(5 * math.log(2.0))
    # Continuous data: no offset.
    assert dequantization_offset(None, 64) == 0.0
    assert dequantization_offset(None, 64, grid="unit") == 0.0


def test_discrete_nll_hand_values(x64):
    nll = jnp.array([10.0, -3.0])
    # L = 3 centered: w = 1, no correction.
    np.testing.assert_allclose(discrete_nll(nll, num_dims=2, num_levels=3), nll, rtol=0)
    # L = 5 centered: w = 1/2, the bound adds D log 2 nats.
    np.testing.assert_allclose(
        discrete_nll(nll, num_dims=2, num_levels=5), nll + 2 * math.log(2.0), rtol=1e-15
    )
    np.testing.assert_allclose(
        discrete_nll(nll, num_dims=3, num_levels=4, grid="unit"), nll + 3 * math.log(4.0)
    )
    np.testing.assert_array_equal(discrete_nll(nll, num_dims=7, num_levels=None), nll)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dequantization_offset(1, 4), "num_levels must be None or an integer >= 2, got 1"),
        (lambda: dequantization_offset(2.5, 4), "num_levels must be None or an integer >= 2"),
        (lambda: dequantization_offset(256, 0), "num_dims must be an integer >= 1, got 0"),
        (lambda: units.bin_width(None), "num_levels must be an integer >= 2 .*got None"),
        (
            lambda: dequantization_offset(256, 4, grid="uniform"),
            r"grid must be one of \('centered', 'unit'\), got 'uniform'",
        ),
        (
            lambda: discrete_nll(1.0, num_dims=4, num_levels=256, grid="centred"),
            r"got 'centred'; did you mean 'centered'",
        ),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _grid(num_levels, grid):
    """Centres and the width of the bins of every level (module doc of ``units``)."""
    k = np.arange(num_levels)
    if grid == "centered":
        return 2.0 * k / (num_levels - 1) - 1.0, 2.0 / (num_levels - 1)
    return (k + 0.5) / num_levels, 1.0 / num_levels


@pytest.mark.parametrize("grid", ["centered", "unit"])
@pytest.mark.parametrize("num_levels, scale", [(17, 0.3), (256, 0.2), (5, 0.15)])
def test_dequantized_bound_on_a_discretized_gaussian(x64, grid, num_levels, scale):
    """A density p = N(m, s^2) per dimension; the data's level k has probability
    P(k) = integral of p over bin k. The dequantized bound (Theis et al. 2016)
    -log P(k) <= E_u[-log p(c_k + u w)] - log w, u ~ U(-1/2, 1/2), holds for every level
    (Jensen), through ``discrete_nll``, and is tight when the bins are narrow."""
    centres, w = _grid(num_levels, grid)
    m = 0.5 * (centres[0] + centres[-1]) + 0.1 * scale
    s = scale * (centres[-1] - centres[0])
    cdf = special.ndtr
    prob = cdf((centres + w / 2 - m) / s) - cdf((centres - w / 2 - m) / s)
    keep = prob > 1e-12  # levels the density reaches (log P is finite)
    exact = -np.log(prob[keep])
    # E over a uniform point in the bin of -log p: closed form, since E[(y - m)^2] =
    # (c - m)^2 + w^2 / 12 for y uniform on [c - w/2, c + w/2].
    expected_nll = 0.5 * math.log(2 * math.pi * s**2) + ((centres[keep] - m) ** 2 + w**2 / 12) / (
        2 * s**2
    )
    bound = np.asarray(
        discrete_nll(jnp.asarray(expected_nll), num_dims=1, num_levels=num_levels, grid=grid)
    )
    gap = bound - exact
    assert np.all(gap >= -1e-12), gap.min()
    # Tight where the density is nearly linear over a bin: the gap is O((w / s)^2).
    central = np.abs(centres[keep] - m) < s
    assert np.max(gap[central]) < 0.05 * (w / s) ** 2 + 1e-12
    # Negative control: with the offset's sign flipped the "bound" is below -log P(k).
    wrong = expected_nll + dequantization_offset(num_levels, 1, grid=grid)
    if w < 1:
        assert np.all(wrong < exact)

    # D = 3 dimensions at once (independent, levels picked among the reachable ones): the
    # offset is D log w, so the joint bound is the sum of the per-dimension bounds.
    rows = np.random.default_rng(0).integers(0, keep.sum(), size=(4, 3))
    joint = discrete_nll(
        jnp.asarray(expected_nll[rows].sum(axis=1)), num_dims=3, num_levels=num_levels, grid=grid
    )
    np.testing.assert_allclose(joint, bound[rows].sum(axis=1), rtol=1e-12)
    assert np.all(np.asarray(joint) >= exact[rows].sum(axis=1) - 1e-12)
