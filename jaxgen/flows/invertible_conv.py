"""Invertible 1x1 convolution (Kingma and Dhariwal 2018, Glow, sec. 3.2).

A 1x1 convolution with a ``C x C`` kernel ``W`` applies the same linear map to the channels
of every position of ``(B, H, W, C)`` (or of flat ``(B, C)``): ``y[..., i] = sum_j W[i, j]
x[..., j]``. Its log-determinant is ``H * W * log |det W|`` and its inverse uses
``W^-1``. It generalises the fixed channel permutations of RealNVP.

**LU parameterization** (sec. 3.2): ``W = P L (U + diag(sign_s * exp(log_s)))`` with ``P`` a
fixed permutation matrix, ``L`` lower triangular with a unit diagonal, ``U`` strictly upper
triangular and ``sign_s`` fixed signs, so ``log |det W| = sum(log_s)`` costs ``O(C)``
instead of ``O(C^3)``. :func:`lu_init` starts from a random orthogonal matrix (the Haar
measure: ``Q`` of the QR decomposition of a standard normal matrix with the signs of
``diag(R)`` folded in, Glow's initialization), factorised ``Q = P L U`` with partial
pivoting; ``s = diag(U)``. Only the entries below the diagonal of ``l``, above the diagonal
of ``u`` and ``log_s`` are free: :func:`lu_weight` masks the rest away. ``p`` and ``sign_s``
are constants: they enter through ``stop_gradient`` and are rounded to the nearest
permutation matrix (row-wise argmax) and sign, so a module may hold them as ordinary
parameters (they get zero gradients, and weight decay or averaging cannot change ``W``).

Both forward and inverse accept either a plain ``(C, C)`` matrix (log-determinant from
``slogdet``, inverse from ``inv``) or the LU parameter dict (log-determinant
``sum(log_s)``, inverse by two triangular solves: ``W^-1 = U'^-1 L^-1 P^T``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu, solve_triangular

__all__ = [
    "LU_KEYS",
    "invertible_conv_forward",
    "invertible_conv_inverse",
    "lu_init",
    "lu_weight",
]

LU_KEYS: tuple[str, ...] = ("p", "l", "u", "log_s", "sign_s")

Weight = jax.Array | Mapping[str, jax.Array]


def lu_init(key: jax.Array, channels: int, *, dtype=jnp.float32) -> dict[str, jax.Array]:
    """LU parameters ``{p, l, u, log_s, sign_s}`` of a random orthogonal ``C x C`` matrix."""
    if isinstance(channels, bool) or int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
    q, r = jnp.linalg.qr(jax.random.normal(key, (channels, channels), dtype))
    q = q * jnp.sign(jnp.diag(r))[None, :]
    perm, lower, upper = lu(q)
    s = jnp.diag(upper)
    return {
        "p": perm,
        "l": jnp.tril(lower, -1),
        "u": jnp.triu(upper, 1),
        "log_s": jnp.log(jnp.abs(s)),
        "sign_s": jnp.sign(s),
    }


def lu_weight(params: Mapping[str, jax.Array]) -> jax.Array:
    """``W = P L (U + diag(sign_s * exp(log_s)))`` from LU parameters (see module doc)."""
    perm, lower, upper, _ = _lu_factors(params)
    return perm @ (lower @ upper)


def invertible_conv_forward(x: jax.Array, weight: Weight) -> tuple[jax.Array, jax.Array]:
    """``(y, log_det (B,))`` with ``y[..., i] = sum_j W[i, j] x[..., j]``."""
    x = _check_input(x, "invertible_conv_forward")
    if isinstance(weight, Mapping):
        w = lu_weight(weight).astype(x.dtype)
        log_abs_det = jnp.sum(_lu_factors(weight)[3])
    else:
        w = _check_matrix(weight, x.shape[-1]).astype(x.dtype)
        log_abs_det = jnp.linalg.slogdet(w)[1]
    _check_channels(w, x, "invertible_conv_forward")
    return jnp.einsum("...j,ij->...i", x, w), _log_det(x, log_abs_det)


def invertible_conv_inverse(y: jax.Array, weight: Weight) -> tuple[jax.Array, jax.Array]:
    """``(x, log_det (B,))`` with ``x = W^-1 y`` per position, ``log_det = -`` forward's."""
    y = _check_input(y, "invertible_conv_inverse")
    if isinstance(weight, Mapping):
        perm, lower, upper, log_s = _lu_factors(weight)
        lower_inv_pt = solve_triangular(lower, perm.T, lower=True, unit_diagonal=True)
        w_inv = solve_triangular(upper, lower_inv_pt, lower=False)
        log_abs_det = jnp.sum(log_s)
    else:
        w = _check_matrix(weight, y.shape[-1])
        w_inv = jnp.linalg.inv(w)
        log_abs_det = jnp.linalg.slogdet(w)[1]
    w_inv = w_inv.astype(y.dtype)
    _check_channels(w_inv, y, "invertible_conv_inverse")
    return jnp.einsum("...j,ij->...i", y, w_inv), -_log_det(y, log_abs_det)


def _lu_factors(params: Mapping[str, jax.Array]):
    """``(P, L with unit diagonal, U + diag(sign_s exp(log_s)), log_s)``."""
    missing = [k for k in LU_KEYS if k not in params]
    if missing:
        raise ValueError(f"LU parameters need the keys {LU_KEYS}; missing {missing}")
    log_s = jnp.asarray(params["log_s"])
    if log_s.ndim != 1:
        raise ValueError(f"log_s must have shape (C,), got {log_s.shape}")
    c = log_s.shape[0]
    for k in ("p", "l", "u"):
        if jnp.shape(params[k]) != (c, c):
            raise ValueError(
                f"LU parameter {k!r} must have shape ({c}, {c}), got {jnp.shape(params[k])}"
            )
    if jnp.shape(params["sign_s"]) != (c,):
        raise ValueError(f"sign_s must have shape ({c},), got {jnp.shape(params['sign_s'])}")
    dtype = log_s.dtype
    perm = jax.lax.stop_gradient(jnp.asarray(params["p"], dtype))
    perm = jax.nn.one_hot(jnp.argmax(perm, axis=-1), c, dtype=dtype)
    sign_s = jnp.sign(jax.lax.stop_gradient(jnp.asarray(params["sign_s"], dtype)))
    lower = jnp.tril(jnp.asarray(params["l"], dtype), -1) + jnp.eye(c, dtype=dtype)
    upper = jnp.triu(jnp.asarray(params["u"], dtype), 1) + jnp.diag(sign_s * jnp.exp(log_s))
    return perm, lower, upper, log_s


def _check_input(x: jax.Array, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} expects a float array (B, ..., C), got {x.dtype} {x.shape}")
    return x


def _check_matrix(w: jax.Array, channels: int) -> jax.Array:
    w = jnp.asarray(w)
    if w.shape != (channels, channels):
        raise ValueError(f"the 1x1 kernel must have shape ({channels}, {channels}), got {w.shape}")
    return w


def _check_channels(w: jax.Array, x: jax.Array, name: str) -> None:
    if w.shape != (x.shape[-1], x.shape[-1]):
        raise ValueError(f"{name}: kernel {w.shape} does not match {x.shape[-1]} channels")


def _log_det(x: jax.Array, log_abs_det: jax.Array) -> jax.Array:
    positions = 1
    for size in x.shape[1:-1]:
        positions *= size
    return jnp.full(x.shape[:1], positions * log_abs_det, x.dtype)
