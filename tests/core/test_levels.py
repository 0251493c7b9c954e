"""Oracles for ``jaxgen.core.levels``: images in [-1, 1] <-> integer levels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import images_to_levels, levels_to_images


@pytest.mark.parametrize("num_levels", [2, 3, 17, 256])
def test_round_trip_every_level(num_levels):
    k = jnp.arange(num_levels)
    x = levels_to_images(k, num_levels=num_levels)
    assert x.dtype == jnp.float32 and x.shape == (num_levels,)
    np.testing.assert_allclose(x, 2.0 * np.arange(num_levels) / (num_levels - 1) - 1.0, atol=2e-7)
    assert float(x[0]) == -1.0 and float(x[-1]) == 1.0
    back = images_to_levels(x, num_levels=num_levels)
    assert back.dtype == jnp.int32
    np.testing.assert_array_equal(back, np.arange(num_levels))


def test_hand_values():
    np.testing.assert_array_equal(levels_to_images(jnp.array([0, 1, 2]), num_levels=3), [-1, 0, 1])
    # Digits: 17 levels 0..16 at spacing 1/8; level 8 is 0, level 12 is 0.5.
    np.testing.assert_array_equal(
        levels_to_images(jnp.array([0, 8, 12, 16]), num_levels=17), [-1.0, 0.0, 0.5, 1.0]
    )
    x = levels_to_images(np.array([[0, 255]], np.uint8), num_levels=256)  # uint8 pixels
    assert x.shape == (1, 2) and x.dtype == jnp.float32
    np.testing.assert_array_equal(x, [[-1.0, 1.0]])


def test_dtype_x64(x64):
    x = levels_to_images(jnp.arange(5), num_levels=5, dtype=jnp.float64)
    assert x.dtype == jnp.float64
    np.testing.assert_allclose(x, [-1.0, -0.5, 0.0, 0.5, 1.0], rtol=0, atol=1e-15)


def test_rounds_to_nearest_level():
    # Within half a bin (1/16 on the digits grid) of a level, an image maps to that level.
    k = np.array([0, 3, 8, 15, 16])
    centre = 2.0 * k / 16 - 1.0
    for offset in (-0.06, -0.01, 0.0, 0.01, 0.06):
        x = np.clip(centre + offset, -1.0, 1.0)
        np.testing.assert_array_equal(images_to_levels(jnp.asarray(x), num_levels=17), k)
    # Past half a bin it is the next level.
    np.testing.assert_array_equal(images_to_levels(jnp.array([-1.0 + 0.07]), num_levels=17), [1])


def test_images_shape_and_dtype_kept():
    x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3), minval=-1.0, maxval=1.0)
    k = images_to_levels(x, num_levels=256)
    assert k.shape == x.shape and k.dtype == jnp.int32
    assert int(k.min()) >= 0 and int(k.max()) <= 255
    y = levels_to_images(k, num_levels=256)
    assert float(jnp.max(jnp.abs(y - x))) <= 1.0 / 255 + 1e-6  # at most half a bin (2/255)/2


def test_traced_values_are_clipped_not_checked():
    # Under jit the values cannot be checked; out-of-range images clip to the end levels.
    f = jax.jit(lambda x: images_to_levels(x, num_levels=17))
    np.testing.assert_array_equal(f(jnp.array([-1.5, 0.0, 1.5])), [0, 8, 16])
    g = jax.jit(lambda k: levels_to_images(k, num_levels=17))
    np.testing.assert_array_equal(g(jnp.array([0, 16])), [-1.0, 1.0])


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: images_to_levels(jnp.array([0.0, 1.5]), num_levels=17),
            r"images must lie in \[-1.0, 1.0\]",
        ),
        (lambda: images_to_levels(jnp.array([-1.2]), num_levels=17), r"got values in \[-1.2"),
        (
            lambda: images_to_levels(jnp.array([0.0, jnp.nan]), num_levels=17),
            "images must be finite",
        ),
        (
            lambda: images_to_levels(jnp.array([0, 1]), num_levels=17),
            "images must be floats .*int32",
        ),
        (
            lambda: images_to_levels(jnp.zeros(2), num_levels=1),
            "num_levels must be an integer >= 2, got 1",
        ),
        (
            lambda: levels_to_images(jnp.array([0, 17]), num_levels=17),
            r"levels must lie in \[0, 16\]",
        ),
        (
            lambda: levels_to_images(jnp.array([-1, 3]), num_levels=17),
            r"levels must lie in \[0, 16\]",
        ),
        (
            lambda: levels_to_images(jnp.array([0.5]), num_levels=17),
            "levels must be whole numbers 0..16",
        ),
        (
            lambda: levels_to_images(jnp.array([0]), num_levels=None),
            "num_levels must be an integer >= 2",
        ),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
