"""Coupling layers (``jaxgen.flows.coupling``) against brute-force Jacobians.

* Affine (tanh / sigmoid / exp log-scales) and additive couplings, checkerboard masks on
  images and feature masks on flat data: ``inverse(forward(x)) == x`` (x64, 1e-10) and
  ``log_det == slogdet(jacfwd(forward))`` (1e-8); the inverse's log_det is minus the
  forward's. Negative controls: the opposite sign is off by ``2 |log_det|``, and a
  coupling with the complementary mask is a different map.
* The Jacobian is triangular up to the mask's permutation: the kept outputs' rows are exact
  identity rows, and each transformed output depends on no other transformed input; the
  transformed rows do depend on the kept inputs (so the check can fail).
* The stabilised log-scales equal their closed forms; masks equal their definitions.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from jaxgen.flows import coupling
from jaxgen.flows.coupling import (
    SCALE_FNS,
    additive_coupling_forward,
    additive_coupling_inverse,
    affine_coupling_forward,
    affine_coupling_inverse,
    channel_mask,
    checkerboard_mask,
    coupling_log_scale,
)
from tests.flows.jacobians import per_example_jacobians

IMAGE_SHAPE = (2, 3, 2)  # (H, W, C): 12 coordinates per example
FLAT_SHAPE = (5,)


def _dense_conditioner(event_shape, seed, *, affine=True):
    """A random smooth map of the whole masked input to (shift, raw log-scale)."""
    n = math.prod(event_shape)
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(size=(n, n)) / math.sqrt(n) for _ in range(2))
    c = rng.normal(size=(n,))

    def shift_of(xm):
        flat = xm.reshape(xm.shape[0], n)
        return (jnp.tanh(flat @ a) + c[None, :]).reshape(xm.shape)

    def fn(xm):
        flat = xm.reshape(xm.shape[0], n)
        return shift_of(xm), (1.5 * jnp.sin(flat @ b + 0.3)).reshape(xm.shape)

    return fn if affine else shift_of


def _case(kind):
    if kind == "checkerboard":
        return IMAGE_SHAPE, checkerboard_mask(*IMAGE_SHAPE[:2], parity=1)
    return FLAT_SHAPE, channel_mask(FLAT_SHAPE[0], parity=0)


@pytest.mark.parametrize("scale_fn", SCALE_FNS)
@pytest.mark.parametrize("kind", ["checkerboard", "channel"])
def test_affine_coupling_inverse_and_log_det(x64, scale_fn, kind):
    shape, mask = _case(kind)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, *shape)))
    cond = _dense_conditioner(shape, 1)
    factor = jnp.asarray(np.linspace(0.5, 1.5, shape[-1])) if scale_fn == "tanh" else None
    opts = {"scale_fn": scale_fn, "scale_factor": factor}

    y, log_det = affine_coupling_forward(x, mask, cond, **opts)
    x_back, log_det_inv = affine_coupling_inverse(y, mask, cond, **opts)
    round_trip = float(jnp.max(jnp.abs(x_back - x)))
    assert round_trip < 1e-10, round_trip
    np.testing.assert_allclose(log_det_inv, -log_det, atol=1e-12)

    jac = per_example_jacobians(lambda v: affine_coupling_forward(v, mask, cond, **opts)[0], x)
    ref = jnp.linalg.slogdet(jac)[1]
    err = float(jnp.max(jnp.abs(log_det - ref)))
    print(
        f"{kind}/{scale_fn}: round trip {round_trip:.1e}, |log_det - slogdet| {err:.1e}, "
        f"log_det {np.round(np.asarray(log_det), 3)}"
    )
    assert err < 1e-8, err
    # The inverse's log_det against its own Jacobian at y.
    jac_inv = per_example_jacobians(lambda v: affine_coupling_inverse(v, mask, cond, **opts)[0], y)
    assert float(jnp.max(jnp.abs(log_det_inv - jnp.linalg.slogdet(jac_inv)[1]))) < 1e-8

    # Negative controls: the wrong sign, and the complementary mask.
    assert float(jnp.min(jnp.abs(-log_det - ref))) > 0.1
    other = affine_coupling_forward(x, 1.0 - mask, cond, **opts)[0]
    assert float(jnp.max(jnp.abs(other - y))) > 0.1

    # Triangular up to the mask's permutation.
    kept = np.broadcast_to(mask, shape).reshape(-1).astype(bool)
    eye = np.eye(kept.size)
    np.testing.assert_array_equal(
        np.asarray(jac)[:, kept, :], np.broadcast_to(eye[kept], (3,) + eye[kept].shape)
    )
    moved = ~kept
    block = np.asarray(jac)[:, moved][:, :, moved]
    off_diagonal = block * (1.0 - np.eye(moved.sum()))
    assert np.max(np.abs(off_diagonal)) == 0.0
    # ... while the transformed rows depend on the kept inputs (the check is not vacuous).
    assert np.min(np.max(np.abs(np.asarray(jac)[:, moved][:, :, kept]), axis=(1, 2))) > 1e-2


@pytest.mark.parametrize("kind", ["checkerboard", "channel"])
def test_additive_coupling_is_volume_preserving(x64, kind):
    shape, mask = _case(kind)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, *shape)))
    shift = _dense_conditioner(shape, 3, affine=False)
    y, log_det = additive_coupling_forward(x, mask, shift)
    x_back, log_det_inv = additive_coupling_inverse(y, mask, shift)
    assert float(jnp.max(jnp.abs(x_back - x))) < 1e-12
    np.testing.assert_array_equal(log_det, np.zeros(3))
    np.testing.assert_array_equal(log_det_inv, np.zeros(3))
    jac = per_example_jacobians(lambda v: additive_coupling_forward(v, mask, shift)[0], x)
    ref = jnp.linalg.slogdet(jac)[1]
    assert float(jnp.max(jnp.abs(ref))) < 1e-10
    # Negative control: the map is not the identity, and the affine coupling with the same
    # shift and a non-zero log-scale is not volume preserving.
    assert float(jnp.max(jnp.abs(y - x))) > 0.1
    affine = affine_coupling_forward(
        x, mask, lambda v: (shift(v), jnp.ones_like(v)), scale_fn="exp"
    )[1]
    assert float(jnp.min(jnp.abs(affine))) > 1.0


def test_log_scale_closed_forms(x64):
    raw = np.linspace(-4.0, 4.0, 9).reshape(3, 3)
    factor = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        coupling_log_scale(jnp.asarray(raw), scale_fn="tanh", scale_factor=jnp.asarray(factor)),
        np.tanh(raw) * factor[None, :],
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        coupling_log_scale(jnp.asarray(raw), scale_fn="sigmoid"),
        np.log(expit(raw + 2.0)),
        rtol=1e-13,
    )
    np.testing.assert_array_equal(coupling_log_scale(jnp.asarray(raw), scale_fn="exp"), raw)
    # Zero raw output: the tanh layer is the identity, Glow's starts at scale sigmoid(2).
    zeros = jnp.zeros((1, 3))
    np.testing.assert_array_equal(coupling_log_scale(zeros, scale_fn="tanh"), np.zeros((1, 3)))
    np.testing.assert_allclose(
        coupling_log_scale(zeros, scale_fn="sigmoid"), np.full((1, 3), np.log(expit(2.0)))
    )
    # Negative control: without the +2 offset the sigmoid scale would start at 1/2.
    assert abs(np.log(expit(2.0)) - np.log(0.5)) > 0.5


def test_masks_match_their_definitions():
    m0 = checkerboard_mask(3, 4, parity=0)
    assert m0.shape == (3, 4, 1)
    for i in range(3):
        for j in range(4):
            assert m0[i, j, 0] == float((i + j) % 2 == 0)
    np.testing.assert_array_equal(m0 + checkerboard_mask(3, 4, parity=1), np.ones((3, 4, 1)))
    np.testing.assert_array_equal(channel_mask(4), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(channel_mask(5, parity=1), [0.0, 0.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="parity"):
        checkerboard_mask(2, 2, parity=2)
    with pytest.raises(ValueError, match="c >= 2"):
        channel_mask(1)
    with pytest.raises(ValueError, match="h \\* w >= 2"):
        checkerboard_mask(1, 1)


def test_bad_inputs_raise_clear_errors():
    x = jnp.ones((2, *FLAT_SHAPE))
    mask = channel_mask(FLAT_SHAPE[0])
    cond = _dense_conditioner(FLAT_SHAPE, 0)
    with pytest.raises(ValueError, match="expected one of \\('tanh', 'sigmoid', 'exp'\\)"):
        affine_coupling_forward(x, mask, cond, scale_fn="softplus")
    with pytest.raises(ValueError, match="only used with scale_fn='tanh'"):
        affine_coupling_forward(x, mask, cond, scale_fn="exp", scale_factor=jnp.ones(5))
    with pytest.raises(ValueError, match="input's shape"):
        affine_coupling_forward(x, mask, lambda v: (v[:, :2], v))
    with pytest.raises(ValueError, match="\\(shift, raw_log_scale\\)"):
        affine_coupling_forward(x, mask, lambda v: v)
    with pytest.raises(ValueError, match="only 0 and 1"):
        affine_coupling_forward(x, 0.5 * mask, cond)
    with pytest.raises(ValueError, match="does not broadcast"):
        affine_coupling_forward(x, channel_mask(4), cond)
    with pytest.raises(ValueError, match="float array"):
        additive_coupling_forward(jnp.ones((2, 5), jnp.int32), mask, lambda v: v)
    assert "SCALE_FNS" in coupling.__all__
