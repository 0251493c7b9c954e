"""Coupling layers (NICE, RealNVP, Glow) and their binary masks, as pure functions.

A coupling layer splits its input with a binary mask ``b`` (1: kept, 0: transformed) and
changes the transformed part by an elementwise map whose parameters are computed from the
kept part only, so the Jacobian is triangular (up to a permutation of the coordinates) and
the inverse needs the conditioner network only in the forward direction.

**Affine coupling** (Dinh, Sohl-Dickstein, Bengio 2017, RealNVP, sec. 3.2-3.4, in the
masked form of sec. 3.4)::

    (t, r) = conditioner_fn(b * x)             # shift and raw log-scale, each shaped like x
    s      = (1 - b) * scale_fn(r)             # the log-scale; 0 on the kept coordinates
    y      = b * x + (1 - b) * (x * exp(s) + t)
    log |det dy/dx| = sum(s)                   # the diagonal of a triangular Jacobian (3.3)

and the inverse (sec. 3.3) ``x = b * y + (1 - b) * (y - t) * exp(-s)`` with ``(t, r)``
recomputed from ``b * y = b * x``. ``log_det`` is per example, summed over every axis but
the first. Outputs of the conditioner at kept coordinates are ignored.

The raw log-scale ``r`` is stabilised by ``scale_fn``:

* ``"tanh"``: ``s = c * tanh(r)`` (RealNVP; the official implementation multiplies a tanh by
  a learned scale ``c``): ``|s| <= |c|``, and a conditioner whose last layer is zero starts
  the layer at the identity. ``c`` (``scale_factor``) broadcasts against the trailing axes
  of ``x`` (per channel: shape ``(C,)``); ``None`` means ``c = 1``.
* ``"sigmoid"``: ``s = log sigmoid(r + 2)`` (Glow, Kingma and Dhariwal 2018, sec. 3.3 and
  their code): the scale ``exp(s)`` lies in ``(0, 1)`` and is ``sigmoid(2) = 0.88`` at
  ``r = 0``. Glow writes the layer as ``(x + t) * exp(s)``; we keep RealNVP's
  ``x * exp(s) + t`` for every ``scale_fn`` (the same family of maps: ``t`` is any function
  of the kept part, so it can absorb the factor ``exp(s)``).
* ``"exp"``: ``s = r`` unbounded, the plain RealNVP coupling (can overflow early in training).

**Additive coupling** (Dinh, Krueger, Bengio 2015, NICE, sec. 3.2):
``y = x + (1 - b) * t(b * x)`` with ``conditioner_fn(b * x) -> t`` (a single array);
volume preserving, ``log_det = 0``.

**Masks** (RealNVP sec. 3.4). ``checkerboard_mask(h, w, parity=p)`` is 1 where
``(i + j) % 2 == p`` (shape ``(H, W, 1)``, broadcast over channels);
``channel_mask(c, parity=0)`` is 1 on the first ``c // 2`` channels (parity 1: the
complement), shape ``(C,)``; on flat data ``(B, D)`` it masks features. Alternating the
parity between layers lets every coordinate be transformed.

References:
  Dinh, Krueger, Bengio. NICE: Non-linear Independent Components Estimation. ICLR 2015
  workshop.
  Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
  Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions. NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SCALE_FNS",
    "additive_coupling_forward",
    "additive_coupling_inverse",
    "affine_coupling_forward",
    "affine_coupling_inverse",
    "channel_mask",
    "checkerboard_mask",
    "coupling_log_scale",
]

SCALE_FNS: tuple[str, ...] = ("tanh", "sigmoid", "exp")

AffineConditioner = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
AdditiveConditioner = Callable[[jax.Array], jax.Array]


def checkerboard_mask(h: int, w: int, *, parity: int = 0) -> np.ndarray:
    """``(H, W, 1)`` float32 mask, 1 where ``(i + j) % 2 == parity`` (RealNVP sec. 3.4)."""
    _check_parity(parity)
    if int(h) != h or int(w) != w or h < 1 or w < 1 or h * w < 2:
        raise ValueError(
            f"checkerboard_mask needs integers h, w >= 1 with h * w >= 2, got {h}, {w}"
        )
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ((i + j) % 2 == parity).astype(np.float32)[..., None]


def channel_mask(c: int, *, parity: int = 0) -> np.ndarray:
    """``(C,)`` float32 mask, 1 on the first ``c // 2`` channels (parity 1: the rest)."""
    _check_parity(parity)
    if int(c) != c or c < 2:
        raise ValueError(f"channel_mask needs c >= 2 channels, got {c}")
    first = (np.arange(c) < c // 2).astype(np.float32)
    return first if parity == 0 else 1.0 - first


def coupling_log_scale(
    raw: jax.Array, *, scale_fn: str = "tanh", scale_factor: jax.Array | None = None
) -> jax.Array:
    """The stabilised log-scale ``s`` from the conditioner's raw output (see module doc)."""
    if scale_fn not in SCALE_FNS:
        raise ValueError(f"unknown scale_fn {scale_fn!r}; expected one of {SCALE_FNS}")
    if scale_factor is not None and scale_fn != "tanh":
        raise ValueError(f"scale_factor is only used with scale_fn='tanh', got {scale_fn!r}")
    if scale_fn == "tanh":
        s = jnp.tanh(raw)
        if scale_factor is not None:
            s = s * _pad_rank(jnp.asarray(scale_factor, s.dtype), s.ndim, "scale_factor", s.shape)
        return s
    if scale_fn == "sigmoid":
        return jax.nn.log_sigmoid(raw + 2.0)
    return raw


def affine_coupling_forward(
    x: jax.Array,
    mask: jax.Array,
    conditioner_fn: AffineConditioner,
    *,
    scale_fn: str = "tanh",
    scale_factor: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(y, log_det (B,))`` of the masked affine coupling (RealNVP sec. 3.4)."""
    x = _check_input(x, "affine_coupling_forward")
    b = _broadcast_mask(mask, x)
    shift, log_s = _affine_params(conditioner_fn, b * x, b, x, scale_fn, scale_factor)
    y = b * x + (1.0 - b) * (x * jnp.exp(log_s) + shift)
    return y, _sum_event(log_s)


def affine_coupling_inverse(
    y: jax.Array,
    mask: jax.Array,
    conditioner_fn: AffineConditioner,
    *,
    scale_fn: str = "tanh",
    scale_factor: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(x, log_det (B,))`` of the inverse, ``log_det = -`` the forward's at ``x``."""
    y = _check_input(y, "affine_coupling_inverse")
    b = _broadcast_mask(mask, y)
    shift, log_s = _affine_params(conditioner_fn, b * y, b, y, scale_fn, scale_factor)
    x = b * y + (1.0 - b) * (y - shift) * jnp.exp(-log_s)
    return x, -_sum_event(log_s)


def additive_coupling_forward(
    x: jax.Array, mask: jax.Array, conditioner_fn: AdditiveConditioner
) -> tuple[jax.Array, jax.Array]:
    """``(y, zeros (B,))``: ``y = x + (1 - b) * t(b * x)`` (NICE)."""
    x = _check_input(x, "additive_coupling_forward")
    b = _broadcast_mask(mask, x)
    shift = _check_output(conditioner_fn(b * x), x, "shift")
    return x + (1.0 - b) * shift, jnp.zeros(x.shape[:1], x.dtype)


def additive_coupling_inverse(
    y: jax.Array, mask: jax.Array, conditioner_fn: AdditiveConditioner
) -> tuple[jax.Array, jax.Array]:
    """``(x, zeros (B,))``: ``x = y - (1 - b) * t(b * y)``."""
    y = _check_input(y, "additive_coupling_inverse")
    b = _broadcast_mask(mask, y)
    shift = _check_output(conditioner_fn(b * y), y, "shift")
    return y - (1.0 - b) * shift, jnp.zeros(y.shape[:1], y.dtype)


# ----------------------------------------------------------------------------- helpers


def _affine_params(conditioner_fn, masked, b, like, scale_fn, scale_factor):
    out = conditioner_fn(masked)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError("an affine conditioner_fn must return (shift, raw_log_scale)")
    # A conditioner computing in bf16 (mixed precision) returns bf16: the coupling itself, its
    # log-scale and its log-determinant, stay in the data's precision (at least float32).
    wide = jnp.promote_types(like.dtype, jnp.float32)
    shift = _check_output(out[0], like, "shift").astype(wide)
    raw = _check_output(out[1], like, "raw_log_scale").astype(wide)
    log_s = (1.0 - b) * coupling_log_scale(raw, scale_fn=scale_fn, scale_factor=scale_factor)
    return shift, log_s


def _check_parity(parity: int) -> None:
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}")


def _check_input(x: jax.Array, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} expects a float array (B, ...), got {x.dtype} {x.shape}")
    return x


def _check_output(value: jax.Array, like: jax.Array, what: str) -> jax.Array:
    value = jnp.asarray(value)
    if value.shape != like.shape:
        raise ValueError(
            f"the conditioner's {what} must have the input's shape {like.shape}, got {value.shape}"
        )
    return value.astype(like.dtype)


def _pad_rank(a: jax.Array, ndim: int, name: str, shape: tuple[int, ...]) -> jax.Array:
    """``a`` with leading size-1 axes up to ``ndim`` (explicit, as rank promotion raises)."""
    if a.ndim > ndim - 1:
        raise ValueError(f"{name} of shape {a.shape} has too many axes for inputs {shape}")
    padded = a.reshape((1,) * (ndim - a.ndim) + a.shape)
    try:
        fits = np.broadcast_shapes(padded.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to {shape}")
    return padded


def _broadcast_mask(mask: jax.Array, x: jax.Array) -> jax.Array:
    if not isinstance(mask, jax.core.Tracer):
        values = np.asarray(mask)
        if not np.all((values == 0) | (values == 1)):
            raise ValueError("mask must hold only 0 and 1")
    return _pad_rank(jnp.asarray(mask, x.dtype), x.ndim, "mask", x.shape)


def _sum_event(values: jax.Array) -> jax.Array:
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)
