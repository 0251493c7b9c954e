"""From discrete pixels to a flow's continuous input, and back to bits/dim.

**Levels.** jaxgen stores an image with ``L`` grey levels as floats in ``[-1, 1]``: level
``k = 0..L-1`` is ``x = 2 k / (L - 1) - 1`` (``jaxgen.data.digits``: ``L = 17``).
:func:`images_to_levels` recovers ``k`` and :func:`levels_to_images` maps back.

**Uniform dequantization** (Theis, van den Oord, Bethge 2016, sec. 3.1; Ho et al. 2019,
Flow++, sec. 3.1). A flow is a density, so it is fitted to ``y = (k + u) / L`` with
``u ~ U[0, 1)^D``: the level-``k`` bin ``[k / L, (k + 1) / L)`` of width ``1 / L`` in
``[0, 1]``. A density ``p`` on ``[0, 1]^D`` defines the discrete model
``P(k) = int_bin(k) p(y) dy = E_u[p((k + u) / L)] / L^D`` and, by Jensen's inequality::

    log P(k) >= E_u[log p((k + u) / L)] - D log L,

so one dequantization draw gives an unbiased estimate of a lower bound on the discrete
log-likelihood (:func:`discrete_log_prob_bound`), and
``bits/dim = -(log p(y) - D log L) / (D ln 2)`` (:func:`bits_per_dim`) is an upper bound on
the discrete model's bits/dim in expectation.

*Same unit as the rest of jaxgen.* The VAEs' Gaussian decoders
(``jaxgen.recipes.decoder_likelihood``) dequantize in the ``[-1, 1]`` coordinates,
``x~ = x + w (u - 1/2)`` with the bin width ``w = 2 / (L - 1)``, and add ``D log w``
(``jaxgen.core.dequantization_offset``, ``grid="centered"``). With the same ``u``,
``y = (x~ + 1 + w / 2) / (L w) = (k + u) / L`` exactly, an affine change of coordinates
with ``log |dy/dx~| = -D log(L w)``, so for the same model ``log p~(x~) + D log w =
log p(y) - D log(L w) + D log w = log p(y) - D log L``: both bound the same
``log P(k)`` and report the same discrete bits/dim (the tests check it). For the digits,
``-D log L = -64 log 17``; a model uniform over the 17 levels scores ``log2 17 = 4.09``
bits/dim. The levels, the offset (``jaxgen.core.dequantization_offset(L, D, grid="unit")
= -D log L``) and the nats -> bits/dim conversion are :mod:`jaxgen.core`'s; this module
re-exports the level maps and keeps the flow-facing signatures.

**Logit** (Dinh et al. 2017, RealNVP, sec. 4.1): a bijection from ``(0, 1)`` to the real
line, away from the boundary by ``alpha`` (RealNVP: ``alpha = 0.05``)::

    p = alpha + (1 - 2 alpha) y,      z = logit(p) = log p - log(1 - p),
    log |det dz/dy| = sum [log(1 - 2 alpha) - log p - log(1 - p)]
                    = sum [log(1 - 2 alpha) + softplus(z) + softplus(-z)],

and its inverse ``y = (sigmoid(z) - alpha) / (1 - 2 alpha)`` with the opposite
log-determinant. It is part of the model: the density of ``y`` includes its log-determinant.

References:
  Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
  Ho, Chen, Srinivas, Duan, Abbeel. Flow++: Improving Flow-Based Generative Models with
  Variational Dequantization and Architecture Design. ICML 2019.
  Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import units
from jaxgen.core.levels import images_to_levels, levels_to_images
from jaxgen.core.validation import check_num_levels, check_positive_int, check_range, is_concrete

__all__ = [
    "bits_per_dim",
    "discrete_log_prob_bound",
    "images_to_levels",
    "levels_to_images",
    "logit_forward",
    "logit_inverse",
    "uniform_dequantize",
    "unit_to_levels",
]


def uniform_dequantize(
    x_levels: jax.Array, key: jax.Array, *, num_levels: int, dtype=jnp.float32
) -> jax.Array:
    """``(k + u) / L`` in ``[0, 1)`` with ``u ~ U[0, 1)`` drawn as
    ``jax.random.uniform(key, k.shape, dtype)`` (the draw the VAE recipes use)."""
    num_levels = check_num_levels(num_levels)
    levels = _check_levels(x_levels, num_levels)
    u = jax.random.uniform(key, levels.shape, dtype)
    return (levels.astype(dtype) + u) / num_levels


def unit_to_levels(y: jax.Array, *, num_levels: int) -> jax.Array:
    """The level whose bin holds ``y``: ``clip(floor(L y), 0, L - 1)`` (int32); values
    outside ``[0, 1]`` (a flow's samples may leave it) go to the edge levels."""
    num_levels = check_num_levels(num_levels)
    y = jnp.asarray(y)
    return jnp.clip(jnp.floor(y * num_levels), 0, num_levels - 1).astype(jnp.int32)


def logit_forward(y: jax.Array, *, alpha: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """``(logit(alpha + (1 - 2 alpha) y), log_det (B,))`` for ``y`` in ``[0, 1]`` (concrete
    ``y`` outside raise ``ValueError``; traced ``y`` is not checked)."""
    y = _check_float(y, "logit_forward")
    _check_alpha(alpha)
    check_range(y, 0.0, 1.0, "y (the input of logit_forward)")
    p = alpha + (1.0 - 2.0 * alpha) * y
    z = jnp.log(p) - jnp.log1p(-p)
    per_element = math.log1p(-2.0 * alpha) - jnp.log(p) - jnp.log1p(-p)
    return z, _sum_event(per_element)


def logit_inverse(z: jax.Array, *, alpha: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """``((sigmoid(z) - alpha) / (1 - 2 alpha), log_det (B,))``, the inverse of
    :func:`logit_forward` with the opposite log-determinant."""
    z = _check_float(z, "logit_inverse")
    _check_alpha(alpha)
    y = (jax.nn.sigmoid(z) - alpha) / (1.0 - 2.0 * alpha)
    per_element = math.log1p(-2.0 * alpha) + jax.nn.softplus(z) + jax.nn.softplus(-z)
    return y, -_sum_event(per_element)


def discrete_log_prob_bound(
    log_prob_continuous: jax.Array, *, num_dims: int, num_levels: int | None
) -> jax.Array:
    """``log p(y) - D log L`` (nats): a lower bound on ``log P(k)`` in expectation over the
    dequantization (module doc), for ``log p`` the density of ``y = (k + u) / L`` on
    ``[0, 1]^D``. ``num_levels=None``: continuous data, returned unchanged.

    The offset is ``jaxgen.core.dequantization_offset(L, D, grid="unit") = D log(1 / L)``."""
    num_dims = check_positive_int(num_dims, "num_dims")
    if num_levels is not None:
        check_num_levels(num_levels)
    offset = units.dequantization_offset(num_levels, num_dims, grid="unit")
    return jnp.asarray(log_prob_continuous) + offset


def bits_per_dim(
    log_prob_continuous: jax.Array, *, num_dims: int, num_levels: int | None
) -> jax.Array:
    """``-(log p(y) - D log L) / (D ln 2)``: discrete bits/dim of a density fitted to
    ``y = (k + u) / L`` on ``[0, 1]^D`` (``num_levels=None``: continuous, no offset);
    :func:`jaxgen.core.bits_per_dim` of the negated bound."""
    bound = discrete_log_prob_bound(log_prob_continuous, num_dims=num_dims, num_levels=num_levels)
    return units.bits_per_dim(-bound, num_dims)


# ----------------------------------------------------------------------------- checks


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")


def _check_float(x: jax.Array, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} expects a float array (B, ...), got {x.dtype} {x.shape}")
    return x


def _check_levels(levels: jax.Array, num_levels: int) -> jax.Array:
    """Concrete levels must be whole numbers in ``0 .. L - 1`` (unchecked under ``jit``)."""
    levels = jnp.asarray(levels)
    if is_concrete(levels) and levels.size:
        values = np.asarray(levels)
        if np.any(values != np.round(values)):
            raise ValueError(f"levels must be whole numbers 0..{num_levels - 1}")
        check_range(values, 0, num_levels - 1, "levels")
    return levels


def _sum_event(values: jax.Array) -> jax.Array:
    if values.ndim < 2:
        raise ValueError(f"expected a batch (B, ...) of at least 2 axes, got {values.shape}")
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)
