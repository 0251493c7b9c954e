"""jaxgen.core.resize: nearest upsampling is the right inverse of area downsampling, smooth
upsampling keeps constants, the level count of downsampled digits, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.core.resize import downsample_mean, downsampled_num_levels, upsample


def test_nearest_upsample_is_the_right_inverse_of_downsample_mean():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 3, 5, 2)).astype(np.float32)
    eps = np.finfo(np.float32).eps * np.max(np.abs(y))
    for f in (1, 2, 3):
        big = np.asarray(upsample(y, f, "nearest"))
        assert big.shape == (3, 3 * f, 5 * f, 2)
        assert np.array_equal(big, np.kron(y, np.ones((1, f, f, 1), np.float32)))
        # The mean of f^2 copies of a value is that value up to the rounding of the sum
        # (bit for bit only where XLA happens to sum in a power-of-two tree).
        back = np.asarray(downsample_mean(big, f))
        assert np.max(np.abs(back - y)) <= f * f * eps, f
    # Not a left inverse: a non-constant block is replaced by its mean.
    x = rng.normal(size=(1, 4, 4, 1)).astype(np.float32)
    assert np.max(np.abs(np.asarray(upsample(downsample_mean(x, 2), 2)) - x)) > 0.1
    # Bilinear upsampling is not a right inverse of the box mean (the check can fail).
    smooth = np.asarray(downsample_mean(upsample(y, 2, "bilinear"), 2))
    assert np.max(np.abs(smooth - y)) > 0.05


def test_downsample_mean_is_the_block_mean():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    expected = np.array([[2.5, 4.5], [10.5, 12.5]], np.float32).reshape(1, 2, 2, 1)
    assert np.array_equal(np.asarray(downsample_mean(x, 2)), expected)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_smooth_upsampling_of_a_constant_is_constant(method):
    y = np.full((2, 3, 3, 1), 0.7, np.float32)
    y[1] = -1.25
    big = np.asarray(upsample(y, 2, method))
    assert big.shape == (2, 6, 6, 1)
    assert np.max(np.abs(big[0] - 0.7)) < 1e-6 and np.max(np.abs(big[1] + 1.25)) < 1e-6
    # A ramp is not constant after upsampling (the check sees the values).
    ramp = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    assert np.ptp(np.asarray(upsample(ramp, 2, method))) > 1.0


def test_downsampled_num_levels_on_digits():
    """scikit-learn's 8x8 digits take 17 grey levels 0..16; scaled to [0, 1] (step 1/16)
    and 2x2 mean-pooled, their values lie on the grid of step 1/64 and take exactly
    (17 - 1) 2^2 + 1 = 65 distinct values; 4x4 pooling stays on the grid of step 1/256."""
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    assert len(np.unique(images)) == 17
    for f, grid in ((2, 64), (4, 256)):
        pooled = np.asarray(downsample_mean(images, f)).astype(np.float64) * grid
        steps = np.rint(pooled)
        assert np.max(np.abs(pooled - steps)) < 1e-4, f  # on the grid
        count = len(np.unique(steps))
        levels = downsampled_num_levels(17, f)
        assert levels == grid + 1 and count <= levels, (f, count, levels)
        if f == 2:
            assert count == levels  # every level is attained: the formula is tight
    # A wrong formula (L f^2 levels) would over-count.
    assert downsampled_num_levels(17, 2) != 17 * 4
    assert downsampled_num_levels(None, 2) is None
    assert downsampled_num_levels(256, 1) == 256


@pytest.mark.parametrize("factor", [0, -2, 2.0, True, "2"])
def test_bad_factor_raises_naming_it(factor):
    x = np.zeros((1, 4, 4, 1), np.float32)
    for fn in (downsample_mean, upsample):
        with pytest.raises(ValueError, match=f"factor.*{factor!r}"):
            fn(x, factor)
    with pytest.raises(ValueError, match="factor"):
        downsampled_num_levels(17, factor)


def test_bad_shapes_and_method_raise():
    with pytest.raises(ValueError, match=r"\(5, 6\).*3"):
        downsample_mean(np.zeros((1, 5, 6, 1), np.float32), 3)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        downsample_mean(np.zeros((4, 4), np.float32), 2)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        upsample(np.zeros((2, 4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="'area'"):
        upsample(np.zeros((1, 2, 2, 1), np.float32), 2, "area")
