"""Distances of consistency losses (Song & Dhariwal 2024, Sec. 3.3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.distillation import consistency_metric, pseudo_huber


def test_pseudo_huber_limits_and_formula():
    a = jnp.zeros((3, 4, 4))
    c = 0.00054 * math.sqrt(16)
    direction = jax.random.normal(jax.random.key(0), (3, 4, 4))
    direction = direction / jnp.linalg.norm(direction.reshape(3, -1), axis=1)[:, None, None]
    for scale in (1e-3 * c, 1e3 * c, 0.7):
        b = scale * direction
        d = np.asarray(pseudo_huber(a, b))
        np.testing.assert_allclose(d, math.sqrt(scale**2 + c**2) - c, rtol=1e-4)
    small = np.asarray(pseudo_huber(a, 1e-3 * c * direction))
    np.testing.assert_allclose(small, (1e-3 * c) ** 2 / (2 * c), rtol=1e-3)  # ~ r^2 / (2c)
    large = np.asarray(pseudo_huber(a, 1e3 * c * direction))
    np.testing.assert_allclose(large, 1e3 * c, rtol=2e-3)  # ~ ||a - b||
    assert not np.allclose(small, 1e-3 * c, rtol=0.5)  # negative control: not |a - b| there


def test_named_metrics():
    a = jax.random.normal(jax.random.key(1), (2, 3))
    b = jnp.zeros((2, 3))
    np.testing.assert_allclose(consistency_metric("squared")(a, b), jnp.mean(a**2, axis=1))
    np.testing.assert_allclose(
        consistency_metric("pseudo_huber", huber_c=0.5)(a, b),
        jnp.sqrt(jnp.sum(a**2, axis=1) + 0.25) - 0.5,
        rtol=1e-5,
    )
    feature = consistency_metric("feature", feature_fn=lambda x: 2.0 * x)
    np.testing.assert_allclose(feature(a, b), 4.0 * jnp.mean(a**2, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="feature_fn"):
        consistency_metric("feature")
    with pytest.raises(ValueError, match="metric must be one of"):
        consistency_metric("l1")
