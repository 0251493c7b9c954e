"""Squeeze / unsqueeze (``jaxgen.flows.squeezing``) against the index formula by hand.

``out[b, i, j, (2 di + dj) C + c] == x[b, 2 i + di, 2 j + dj, c]`` element by element (a
loop in NumPy); unsqueeze inverts it exactly; the Jacobian is a permutation matrix (log
|det| = 0). Negative control: a plain reshape to the same shape is a different map.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import squeeze, unsqueeze
from tests.flows.jacobians import per_example_jacobians


def test_squeeze_matches_space_to_depth_by_hand():
    b, h, w, c = 2, 4, 6, 3
    x = np.arange(b * h * w * c, dtype=np.float32).reshape(b, h, w, c)
    out = np.asarray(squeeze(jnp.asarray(x)))
    assert out.shape == (b, h // 2, w // 2, 4 * c)
    ref = np.empty_like(out)
    for n in range(b):
        for i in range(h // 2):
            for j in range(w // 2):
                for di in range(2):
                    for dj in range(2):
                        for k in range(c):
                            ref[n, i, j, (2 * di + dj) * c + k] = x[n, 2 * i + di, 2 * j + dj, k]
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.asarray(unsqueeze(jnp.asarray(out))), x)
    # Negative control: a plain reshape has the right shape and the wrong order.
    assert not np.array_equal(x.reshape(out.shape), ref)


def test_squeeze_is_a_permutation(x64):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 4, 1)))
    jac = np.asarray(per_example_jacobians(squeeze, x))
    for j in jac:  # one 1 per row and per column, zeros elsewhere
        assert set(np.unique(j)) == {0.0, 1.0}
        np.testing.assert_array_equal(j.sum(0), np.ones(8))
        np.testing.assert_array_equal(j.sum(1), np.ones(8))
        assert abs(np.linalg.slogdet(j)[1]) == 0.0
    assert not np.array_equal(jac[0], np.eye(8))  # it does move coordinates


def test_squeeze_rejects_bad_shapes():
    with pytest.raises(ValueError, match="even H and W"):
        squeeze(jnp.ones((1, 3, 4, 1)))
    with pytest.raises(ValueError, match="\\(B, H, W, 4C\\)"):
        unsqueeze(jnp.ones((1, 2, 2, 3)))
