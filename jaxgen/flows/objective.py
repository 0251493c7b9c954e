"""The flows' objective as pure functions of the bijection: exact log-likelihood by the change
of variables, and the dequantized discrete negative log-likelihood in nats and bits/dim.

A flow is a bijection ``f`` from data ``x`` to a latent ``z = f(x)`` with a simple base
density ``p_Z``; by the change of variables (Dinh, Sohl-Dickstein, Bengio 2017, eq. 3)::

    log p_X(x) = log p_Z(f(x)) + log |det df(x) / dx|.

The functions here see the flow only as a callable ``forward_fn(x) -> (z, log_det)``
(``log_det`` per example, (B,)) and the base log-density ``base_log_prob(z) -> (B,)``
(default ``N(0, I)``, :func:`jaxgen.flows.standard_normal_log_prob`), so any bijection
(a network's ``forward``, Glow's ``forward_standardized``, a composition of the pure
bijectors of this package) is scored the same way.

**Discrete images** (``num_levels = L``): images in ``[-1, 1]`` at the levels
``2k / (L - 1) - 1`` are dequantized to ``y = (k + u) / L`` with ``u ~ U[0, 1)^D``
(:func:`jaxgen.flows.uniform_dequantize`) and scored by the bound (Theis et al. 2016)::

    log P(k) >= E_u[log p(y)] + D log(1 / L),

the offset being ``jaxgen.core.dequantization_offset(L, D, grid="unit")``; the loss is the
negated one-draw estimate in nats, and ``bits_per_dim = nll / (D ln 2)``
(:func:`jaxgen.core.bits_per_dim`), the discrete unit of every jaxgen likelihood.
**Continuous data** (``num_levels=None``): the loss is ``-log p(x)`` in nats.

References:
  Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
  Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core import units
from jaxgen.core.levels import images_to_levels
from jaxgen.core.validation import check_num_levels
from jaxgen.flows.multiscale import standard_normal_log_prob
from jaxgen.flows.preprocessing import uniform_dequantize

__all__ = ["ForwardFn", "flow_log_prob", "flow_nll"]

ForwardFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
BaseLogProb = Callable[[jax.Array], jax.Array]


def _forward(forward_fn: ForwardFn, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    z, log_det = forward_fn(x)
    if jnp.ndim(log_det) != 1 or log_det.shape[0] != x.shape[0]:
        raise ValueError(
            f"forward_fn must return (z, log_det) with log_det per example ({x.shape[0]},), "
            f"got log_det of shape {jnp.shape(log_det)}"
        )
    return z, log_det


def flow_log_prob(
    forward_fn: ForwardFn, x: jax.Array, *, base_log_prob: BaseLogProb = standard_normal_log_prob
) -> jax.Array:
    """``log p(x) = base_log_prob(z) + log_det`` per example (B,), ``(z, log_det) =
    forward_fn(x)``: the density of whatever ``forward_fn`` is given (nats)."""
    z, log_det = _forward(forward_fn, jnp.asarray(x))
    return base_log_prob(z) + log_det


def flow_nll(
    forward_fn: ForwardFn,
    x: jax.Array,
    key: jax.Array | None,
    *,
    num_levels: int | None,
    base_log_prob: BaseLogProb = standard_normal_log_prob,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-example negative log-likelihood (nats) of a flow, and its named terms.

    Args:
      forward_fn: the bijection ``x -> (z, log_det)`` (log-determinant per example).
      x: images in ``[-1, 1]`` (B, H, W, C) at ``num_levels`` levels, or continuous data
        (B, ...) when ``num_levels`` is None.
      key: the dequantization draw ``u = jax.random.uniform(key, x.shape)`` (unused and
        may be None for continuous data).
      num_levels: the images' levels ``L``; None for continuous data.
      base_log_prob: ``log p_Z(z)`` per example (default standard normal).

    Returns:
      ``(nll, terms)``: ``nll = -(log p(y) + D log(1 / L))`` for images (the dequantized
      bound, module doc; ``y = (k + u) / L``), ``-log p(x)`` for continuous data; terms
      ``base_log_prob`` and ``log_det`` (the two parts of ``log p``) and, for images,
      ``bits_per_dim = nll / (D ln 2)``; all (B,).
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"flow_nll expects a batch (B, ...), got shape {x.shape}")
    num_dims = math.prod(x.shape[1:])
    if num_levels is None:
        y = x
    else:
        num_levels = check_num_levels(num_levels)
        if key is None:
            raise ValueError("flow_nll needs a key for the dequantization of discrete images")
        levels = images_to_levels(x, num_levels=num_levels)
        y = uniform_dequantize(levels, key, num_levels=num_levels, dtype=x.dtype)
    z, log_det = _forward(forward_fn, y)
    base = base_log_prob(z)
    offset = units.dequantization_offset(num_levels, num_dims, grid="unit")
    nll = -(base + log_det + offset)
    terms = {"base_log_prob": base, "log_det": log_det}
    if num_levels is not None:
        terms["bits_per_dim"] = units.bits_per_dim(nll, num_dims)
    return nll, terms
