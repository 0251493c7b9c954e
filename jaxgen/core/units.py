"""Likelihood units shared by every family: nats <-> bits/dim and the dequantization offset.

Sign convention: every function here takes a **negative** log-likelihood (nats, per
example, positive for a probability below one) and returns bits per dimension
``nll / (D ln 2)``; log-likelihoods are negated by the caller.

Discrete data of ``L`` levels per dimension are scored by a density ``p`` fitted to
uniformly dequantized data; for bins of width ``w`` per dimension,
``log P(k) >= E_u[log p(k + u w)] + D log w`` (Theis et al. 2016; Ho et al. 2019). jaxgen
has two grids:

* ``"centered"``: level ``k`` at ``2k / (L - 1) - 1`` in ``[-1, 1]`` (the images every
  family trains on), bin width ``w = 2 / (L - 1)``;
* ``"unit"``: bins ``[k / L, (k + 1) / L)`` on ``[0, 1]`` (flows' ``y = (k + u) / L``),
  bin width ``w = 1 / L``.

References:
  Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_num_levels, check_positive_int

__all__ = ["GRIDS", "bin_width", "bits_per_dim", "dequantization_offset", "discrete_nll"]

GRIDS: tuple[str, ...] = ("centered", "unit")


def bits_per_dim(nll_nats: jax.Array, num_dims: int) -> jax.Array:
    """``nll / (D ln 2)``: a per-example negative log-likelihood in nats as bits/dim."""
    num_dims = check_positive_int(num_dims, "num_dims")
    return jnp.asarray(nll_nats) / (num_dims * math.log(2.0))


def bin_width(num_levels: int, *, grid: str = "centered") -> float:
    """Width of one level's bin on ``grid`` (module doc)."""
    num_levels = check_num_levels(num_levels)
    check_choice("grid", grid, GRIDS)
    return 2.0 / (num_levels - 1) if grid == "centered" else 1.0 / num_levels


def dequantization_offset(
    num_levels: int | None, num_dims: int, *, grid: str = "centered"
) -> float:
    """``D log w``: added to a dequantized density's log-likelihood it bounds the discrete
    log-probability from below (0 for continuous data, ``num_levels=None``)."""
    num_levels = check_num_levels(num_levels, allow_none=True)
    num_dims = check_positive_int(num_dims, "num_dims")
    check_choice("grid", grid, GRIDS)
    if num_levels is None:
        return 0.0
    return num_dims * math.log(bin_width(num_levels, grid=grid))


def discrete_nll(
    continuous_nll: jax.Array, *, num_dims: int, num_levels: int | None, grid: str = "centered"
) -> jax.Array:
    """``-log p(y) - D log w``: the dequantized density's negative log-likelihood as a bound
    on the discrete data's (unchanged for ``num_levels=None``)."""
    offset = dequantization_offset(num_levels, num_dims, grid=grid)
    return jnp.asarray(continuous_nll) - offset
