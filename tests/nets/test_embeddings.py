"""Tests for the sinusoidal timestep embedding."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nets import sinusoidal_embedding


def _reference(t, dim, max_period):
    half = dim // 2
    i = np.arange(half, dtype=np.float64)
    args = np.asarray(t, np.float64)[:, None] * np.exp(-np.log(max_period) * i / half)[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2:
        emb = np.concatenate([emb, np.zeros((len(t), 1))], axis=1)
    return emb


@pytest.mark.parametrize("dim", [2, 7, 128])
@pytest.mark.parametrize("max_period", [10000.0, 50.0])
def test_matches_formula_float64(x64, dim, max_period):
    t = np.array([0.0, 0.5, 1.0, 17.25, 999.0])
    emb = sinusoidal_embedding(jnp.asarray(t), dim, max_period=max_period)
    assert emb.dtype == jnp.float64
    assert emb.shape == (5, dim)
    np.testing.assert_allclose(np.asarray(emb), _reference(t, dim, max_period), rtol=0, atol=1e-12)


def test_facts(x64):
    t = jnp.arange(4.0)
    emb = np.asarray(sinusoidal_embedding(t, 9))
    half = 4
    # t = 0 embeds as sin = 0, cos = 1.
    np.testing.assert_array_equal(emb[0, :half], 0.0)
    np.testing.assert_array_equal(emb[0, half : 2 * half], 1.0)
    # The first frequency is 1, so the first pair is (sin t, cos t).
    np.testing.assert_allclose(emb[:, 0], np.sin(np.arange(4.0)), atol=1e-15)
    np.testing.assert_allclose(emb[:, half], np.cos(np.arange(4.0)), atol=1e-15)
    # Every (sin, cos) pair lies on the unit circle; the odd-dim padding is zero.
    np.testing.assert_allclose(emb[:, :half] ** 2 + emb[:, half : 2 * half] ** 2, 1.0, atol=1e-14)
    np.testing.assert_array_equal(emb[:, -1], 0.0)


def test_integer_and_float32_timesteps():
    emb_int = sinusoidal_embedding(jnp.array([0, 3, 999]), 16)
    emb_f32 = sinusoidal_embedding(jnp.array([0.0, 3.0, 999.0], jnp.float32), 16)
    assert emb_int.dtype == jnp.float32 and emb_f32.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(emb_int), np.asarray(emb_f32))


@pytest.mark.parametrize(
    "t, dim, match",
    [
        (jnp.zeros((2, 1)), 8, r"shape \(B,\), got shape \(2, 1\)"),
        (jnp.zeros(()), 8, r"shape \(B,\), got shape \(\)"),
        (jnp.zeros(3), 1, "dim >= 2"),
    ],
)
def test_errors(t, dim, match):
    with pytest.raises(ValueError, match=match):
        sinusoidal_embedding(t, dim)
