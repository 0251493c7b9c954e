"""Invertible 1x1 convolution (``jaxgen.flows.invertible_conv``).

* ``lu_init`` factorises a random orthogonal matrix: ``lu_weight`` rebuilds it (1e-12),
  ``W W^T = I`` and ``sum(log_s) = log |det W| = 0``; ``p`` is a permutation matrix, ``l``
  / ``u`` strictly triangular.
* With perturbed (non-orthogonal) LU parameters and with a plain matrix: round trip (x64,
  1e-10) and ``log_det == slogdet(jacfwd) == H W log |det W|`` (1e-8); negative control:
  dropping the ``H W`` factor.
* ``p`` and ``sign_s`` get zero gradients and shrinking them (weight decay) leaves ``W``
  unchanged; negative control: shrinking ``log_s`` changes ``W``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import (
    invertible_conv_forward,
    invertible_conv_inverse,
    lu_init,
    lu_weight,
)
from tests.flows.jacobians import per_example_log_abs_det

C = 4


def _perturbed(x64_params, seed):
    rng = np.random.default_rng(seed)
    out = dict(x64_params)
    for k in ("l", "u", "log_s"):
        out[k] = out[k] + 0.3 * rng.normal(size=out[k].shape)
    return out


def test_lu_init_is_a_factorised_rotation(x64):
    params = lu_init(jax.random.key(0), C, dtype=jnp.float64)
    w = np.asarray(lu_weight(params))
    np.testing.assert_allclose(w @ w.T, np.eye(C), atol=1e-12)
    assert abs(float(jnp.sum(params["log_s"]))) < 1e-12
    p = np.asarray(params["p"])
    np.testing.assert_array_equal(np.sort(p, axis=1)[:, -1], np.ones(C))
    np.testing.assert_array_equal(p.sum(0), np.ones(C))
    np.testing.assert_array_equal(np.triu(np.asarray(params["l"])), np.zeros((C, C)))
    np.testing.assert_array_equal(np.tril(np.asarray(params["u"])), np.zeros((C, C)))
    np.testing.assert_array_equal(np.abs(np.asarray(params["sign_s"])), np.ones(C))
    # Negative control: another key gives another rotation.
    other = np.asarray(lu_weight(lu_init(jax.random.key(1), C, dtype=jnp.float64)))
    assert np.max(np.abs(other - w)) > 0.1


@pytest.mark.parametrize("form", ["lu", "matrix"])
def test_invertible_conv_inverse_and_log_det(x64, form):
    params = _perturbed(lu_init(jax.random.key(2), C, dtype=jnp.float64), 3)
    weight = params if form == "lu" else lu_weight(params)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 2, 3, C)))
    y, log_det = invertible_conv_forward(x, weight)
    x_back, log_det_inv = invertible_conv_inverse(y, weight)
    round_trip = float(jnp.max(jnp.abs(x_back - x)))
    assert round_trip < 1e-10, round_trip
    np.testing.assert_allclose(log_det_inv, -log_det, atol=1e-12)
    ref = per_example_log_abs_det(lambda v: invertible_conv_forward(v, weight)[0], x)
    err = float(jnp.max(jnp.abs(log_det - ref)))
    expected = 6 * np.linalg.slogdet(np.asarray(lu_weight(params)))[1]
    print(
        f"{form}: round trip {round_trip:.1e}; |log_det - slogdet| {err:.1e}; "
        f"log_det {float(log_det[0]):.4f} (6 log|det W| = {expected:.4f})"
    )
    assert err < 1e-8, err
    np.testing.assert_allclose(log_det, expected, rtol=1e-10)
    assert float(jnp.min(jnp.abs(ref / 6.0 - ref))) > 0.1  # Negative control: no H W.


def test_fixed_parts_cannot_move(x64):
    params = _perturbed(lu_init(jax.random.key(5), C, dtype=jnp.float64), 6)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 1, 1, C)))

    def loss(p):
        y, log_det = invertible_conv_forward(x, p)
        return jnp.sum(y**3) + jnp.sum(log_det)

    grads = jax.grad(loss)(params)
    np.testing.assert_array_equal(grads["p"], np.zeros((C, C)))
    np.testing.assert_array_equal(grads["sign_s"], np.zeros(C))
    assert float(jnp.max(jnp.abs(grads["log_s"]))) > 1e-3  # the free parts do learn
    decayed = {**params, "p": 0.3 * params["p"], "sign_s": 0.3 * params["sign_s"]}
    np.testing.assert_allclose(lu_weight(decayed), lu_weight(params), rtol=1e-15)
    # Negative control: decaying a free parameter does change W.
    moved = {**params, "log_s": 0.3 * params["log_s"]}
    assert float(jnp.max(jnp.abs(lu_weight(moved) - lu_weight(params)))) > 1e-2


def test_bad_weights_raise():
    x = jnp.ones((1, 2, 2, C))
    with pytest.raises(ValueError, match="missing \\['sign_s'\\]"):
        params = lu_init(jax.random.key(0), C)
        invertible_conv_forward(x, {k: v for k, v in params.items() if k != "sign_s"})
    with pytest.raises(ValueError, match="shape \\(4, 4\\)"):
        invertible_conv_forward(x, jnp.eye(3))
    with pytest.raises(ValueError, match="channels must be an integer"):
        lu_init(jax.random.key(0), 0)
