"""pix2pix's super-resolution degradation and scores, and the 2-D density picture, by hand."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.gan.pix2pix import enlarge_nearest, low_resolution, psnr, super_resolution_condition
from jaxgen.images import density_picture


def test_low_resolution_is_the_block_mean_and_nearest_repeats_it():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    small = np.asarray(low_resolution(jnp.asarray(x), 2))
    by_hand = np.empty((2, 2, 2, 3), np.float32)
    for i in range(2):
        for j in range(2):
            by_hand[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))
    np.testing.assert_allclose(small, by_hand)
    assert not np.allclose(small, x[:, ::2, ::2])  # negative control: subsampling differs
    big = np.asarray(enlarge_nearest(jnp.asarray(small), 2))
    np.testing.assert_array_equal(big[:, 2 * 1 + 1, 2 * 0], small[:, 1, 0])
    np.testing.assert_array_equal(big[:, ::2, ::2], small)
    np.testing.assert_array_equal(big[:, 1::2, 1::2], small)
    with pytest.raises(ValueError, match="divisible"):
        low_resolution(jnp.zeros((1, 5, 4, 1)), 2)
    np.testing.assert_array_equal(super_resolution_condition(jnp.asarray(x), 2), big)


def test_psnr_against_the_definition_for_images_with_peak_to_peak_two():
    truth = jnp.zeros((2, 4, 4, 1))
    estimate = truth.at[0].set(0.1).at[1].set(0.5)
    got = np.asarray(psnr(estimate, truth))
    np.testing.assert_allclose(got, 10 * np.log10(4.0 / np.array([0.01, 0.25])), rtol=1e-5)
    assert not np.allclose(got, 10 * np.log10(1.0 / np.array([0.01, 0.25])))  # peak 1


def test_density_picture_places_points_like_a_scatter_plot():
    points = np.array([[2.5, 2.5]] * 9 + [[-2.5, -2.5]])  # 9 top-right, 1 bottom-left
    picture = density_picture(points, extent=3.0, bins=6)
    assert picture.shape == (6, 6, 1) and picture.dtype == np.uint8
    assert picture[0, 5, 0] == 0  # the densest cell is black, top right
    assert 0 < picture[5, 0, 0] < 255  # one point: grey, bottom left (log scale)
    assert int(np.sum(picture < 255)) == 2  # every other cell is white
    np.testing.assert_equal(picture[5, 0, 0], round(255 * (1 - np.log1p(1) / np.log1p(9))))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        density_picture(np.zeros((3, 3)))
