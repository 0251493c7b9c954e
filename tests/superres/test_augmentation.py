"""Conditioning augmentation: exact identity at level 0 (per example, both kinds), the
moments of the Gaussian augmentation, per-example keys, the blur's conservation laws, and
bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.sampling import example_keys
from jaxgen.superres import (
    augment_condition,
    blur_condition,
    gaussian_augmentation_coefficients,
    noise_condition,
    uniform_levels,
)

B = 8  # the augmentations below run on (8, 8, 8, 1): one compilation per kind
_augment = jax.jit(augment_condition, static_argnames="kind")


def _condition() -> np.ndarray:
    y = np.random.default_rng(0).normal(size=(B, 8, 8, 1)).astype(np.float32)
    y[:, 0, 0, 0] = -0.0  # y + 0 * e would turn -0.0 into +0.0: level 0 must select y
    y[:, 1, 1, 0] = 3e38
    return y


def _bits(a) -> np.ndarray:
    return np.asarray(a).view(np.uint32)


@pytest.mark.parametrize(
    ("kind", "levels"),
    [
        ("gaussian", [0.0, 0.3, 0.0, 0.7, 0.0, 1.0, 1e-3, 0.0]),
        ("blur", [0.0, 0.8, 0.0, 1.5, 0.0, 0.5, 1e-1, 0.0]),
    ],
)
def test_level_zero_is_the_identity_bit_for_bit(kind, levels):
    """Mixed per-example levels in one batch: exactly the level-0 examples are unchanged."""
    y = _condition()
    keys = example_keys(jax.random.key(0), B)
    out = _bits(_augment(jnp.asarray(y), jnp.asarray(levels), keys, kind=kind))
    for i, level in enumerate(levels):
        assert np.array_equal(out[i], _bits(y[i])) == (level == 0.0), (i, level)
    all_zero = _augment(jnp.asarray(y), jnp.zeros((B,)), keys, kind=kind)
    assert np.array_equal(_bits(all_zero), _bits(y))
    scalar_zero = augment_condition(jnp.asarray(y), 0.0, keys, kind=kind)
    assert np.array_equal(_bits(scalar_zero), _bits(y))
    none = augment_condition(jnp.asarray(y), jnp.asarray(levels), keys, kind="none")
    assert np.array_equal(_bits(none), _bits(y))


@pytest.mark.parametrize("level", [0.3, 0.7])
def test_gaussian_augmentation_keeps_unit_variance_and_correlation_cos(level):
    """y ~ N(0, I), n = 65536 values: var(z) = cos^2 + sin^2 = 1 and corr(z, y) = cos(pi s/2).
    Standard errors: sqrt(2 / n) = 0.0055 for the variance, (1 - rho^2) / sqrt(n) <= 0.004
    for the correlation, 1 / sqrt(n) = 0.004 for the mean; tolerances are 5 of them."""
    y = jax.random.normal(jax.random.key(1), (1024, 8, 8, 1))
    z = np.asarray(noise_condition(y, level, jax.random.key(2)), np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    n = y.size
    corr = np.corrcoef(z, y)[0, 1]
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n), z.var()
    assert abs(corr - math.cos(math.pi * level / 2)) < 0.02, corr
    # The test resolves the level: 0.05 more is rejected.
    assert abs(corr - math.cos(math.pi * (level + 0.05) / 2)) > 0.02
    alpha, sigma = gaussian_augmentation_coefficients(jnp.asarray([0.0, level, 1.0]))
    assert np.allclose(np.asarray(alpha) ** 2 + np.asarray(sigma) ** 2, 1.0)
    assert float(alpha[0]) == 1.0 and float(sigma[0]) == 0.0 and abs(float(alpha[2])) < 1e-7


def test_augmented_example_depends_only_on_its_key():
    y = jnp.asarray(_condition())
    key = jax.random.key(3)
    keys = example_keys(key, B)
    levels = jnp.linspace(0.1, 0.8, B)
    batch = np.asarray(augment_condition(y, levels, keys))
    # One key: example i uses fold_in(key, i). (Compiled, the rounding may differ.)
    assert np.array_equal(np.asarray(augment_condition(y, levels, key)), batch)
    jitted = np.asarray(_augment(y, levels, key, kind="gaussian"))
    assert np.allclose(jitted, batch, rtol=1e-6, atol=1e-6)
    for i in (0, 5):
        alone = augment_condition(y[i : i + 1], levels[i : i + 1], keys[i : i + 1])
        assert np.array_equal(np.asarray(alone)[0], batch[i]), i
    same = np.asarray(_augment(jnp.broadcast_to(y[:1], y.shape), levels, keys, kind="gaussian"))
    assert not np.allclose(same[3], same[4], atol=0.1)  # one condition, different noise


def test_blur_keeps_constants_conserves_mass_away_from_edges_and_is_gaussian():
    """Constant images stay constant (edge padding). An image supported two pixels (the
    kernel radius) or more from the edges keeps its sum; a delta becomes the outer product
    of the normalised taps exp(-d^2 / (2 s^2)), |d| <= 2. Mass at the edge is not conserved
    (edge padding replicates it): the check can fail."""
    img = np.zeros((B, 8, 8, 1), np.float32)
    img[0], img[1] = 0.4, -2.0  # constants
    img[2, 2:6, 2:6, 0] = np.random.default_rng(1).uniform(size=(4, 4))  # interior support
    img[3, 4, 3, 0] = 1.0  # a delta
    img[4, 0, 0, 0] = 1.0  # a delta in the corner
    levels = np.array([0.5, 2.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0], np.float32)
    out = np.asarray(_augment(jnp.asarray(img), jnp.asarray(levels), None, kind="blur"))
    assert np.max(np.abs(out[:2] - img[:2])) < 1e-6
    assert abs(out[2].sum() - img[2].sum()) < 1e-5 * img[2].sum()
    assert np.max(np.abs(out[2] - img[2])) > 0.05
    taps = np.exp(-0.5 * (np.arange(-2, 3) / levels[3]) ** 2)
    taps /= taps.sum()
    expected = np.zeros((8, 8))
    expected[2:7, 1:6] = np.outer(taps, taps)
    assert np.max(np.abs(out[3, ..., 0] - expected)) < 1e-6
    assert out[4].sum() > 1.05


def test_uniform_levels():
    key = jax.random.key(4)
    levels = np.asarray(uniform_levels(key, 1000, 0.6))
    assert levels.shape == (1000,) and levels.min() >= 0.0 and levels.max() < 0.6
    assert abs(levels.mean() - 0.3) < 5 * 0.6 / math.sqrt(12 * 1000)
    assert np.array_equal(np.asarray(uniform_levels(key, B, 0.6)), levels[:B])
    assert not np.any(np.asarray(uniform_levels(key, 1000, 0.0)))


def test_bad_input_raises():
    y = jnp.zeros((2, 4, 4, 1))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="'noise'"):
        augment_condition(y, 0.1, key, kind="noise")
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        augment_condition(y, jnp.zeros((3,)), key, kind="gaussian")
    with pytest.raises(ValueError, match=r"\(2,\).*\(2, 1\)"):
        augment_condition(y, jnp.zeros((2, 1)), kind="blur")
    with pytest.raises(ValueError, match="keys"):
        augment_condition(y, 0.1, kind="gaussian")
    with pytest.raises(ValueError, match=r"\(2, 16\)"):
        blur_condition(y.reshape(2, 16), 0.5)
    with pytest.raises(ValueError, match="int32"):
        noise_condition(jnp.zeros((2, 4, 4, 1), jnp.int32), 0.1, key)
    with pytest.raises(ValueError, match=r"\(16,\)"):
        noise_condition(jnp.zeros((16,)), 0.1, key)
