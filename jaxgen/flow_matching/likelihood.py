"""Exact log-likelihood and bits/dim of a flow-matching model (instantaneous change of
variables through the shared :mod:`jaxgen.core.ode_likelihood`).

**Convention: data at t = 0, source at t = 1** (Lipman et al. write ``t' = 1 - t`` and
``-u``). The velocity ODE ``dx/dt = u(x, t)`` carries the marginals ``p_t`` of the path, so
with ``x(t_min) = x`` (Chen et al. 2018, Thm. 1; Lipman et al. 2023, App. C) ::

    log p_{t_min}(x) = log p_source(x(t_max)) + int_{t_min}^{t_max} div_x u(x(t), t) dt,

with ``p_source = N(0, I)`` (or ``source_log_prob``) at ``t_max = 1``. With ``sigma_min > 0``
the density at ``t = 0`` is that of the data blurred by ``sigma_min``; for the VP path, whose
velocity diverges at ``t = 0``, use ``t_min > 0`` (the density of ``p_{t_min}``), and its
``alpha(1) > 0`` makes ``p_1`` only approximately ``N(0, I)`` (as in the score-SDE family).
:func:`bits_per_dim` dequantises discrete data on ``num_levels`` levels of ``[-1, 1]`` and
reports ``-(log p(y) + D log w) / (D ln 2)``, ``w = 2 / (L - 1)`` (an upper bound on the
discrete bits/dim; Theis et al. 2016), like :func:`jaxgen.sde.bits_per_dim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core import ode_likelihood, units
from jaxgen.core.validation import check_finite_number, check_num_levels, is_concrete

__all__ = ["bits_per_dim", "log_likelihood", "standard_normal_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` per example, ``(B,)``."""
    flat = jnp.reshape(z, (z.shape[0], -1))
    return -0.5 * (flat.shape[1] * _LOG_2PI + jnp.sum(jnp.square(flat), axis=-1))


def log_likelihood(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array | None,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
    source_log_prob: Callable[[jax.Array], jax.Array] | None = None,
    divergence: str = "rademacher",
    num_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``log p_{t_min}(x)`` in nats per example (module doc).

    Args:
      velocity_fn: ``u(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      x: data ``(B, *event)``.
      key: Hutchinson probe key (``None`` for ``divergence="exact"``).
      t_min, t_max: the data and source ends, ``0 <= t_min < t_max <= 1``.
      source_log_prob: ``log p_source(z)`` per example; ``None``: ``N(0, I)``.
      divergence, num_probes, rtol, atol, solver, max_steps: see
        :func:`jaxgen.core.ode_likelihood.ode_log_likelihood`.

    Returns:
      ``(log_p (B,), terms)`` with the core's terms (``"prior_log_p"``, ``"delta_log_p"``,
      ``"nfe"``, ``"num_steps"``, ``"success"``, ``"z"``).
    """
    check_finite_number(t_min, "t_min", low=0.0, high=1.0)
    check_finite_number(t_max, "t_max", low=0.0, high=1.0)
    if is_concrete(t_min) and is_concrete(t_max) and not float(t_min) < float(t_max):
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}.")
    return ode_likelihood.ode_log_likelihood(
        velocity_fn,
        x,
        key,
        t0=t_min,
        t1=t_max,
        prior_log_prob=source_log_prob or standard_normal_log_prob,
        divergence=divergence,
        num_probes=num_probes,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
    )


def bits_per_dim(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array | None,
    *,
    num_levels: int | None = None,
    dequantize: bool = True,
    **options,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Bits per dimension ``-(log p(y) + D log w) / (D ln 2)`` (module doc); ``key`` is split
    into the dequantisation key and the probe key (``None`` when nothing is random);
    ``options`` are :func:`log_likelihood`'s.

    Returns:
      ``(bpd (B,), terms)``: :func:`log_likelihood`'s terms plus ``"log_p"`` and ``"offset"``
      (``D log w``, broadcast to ``(B,)``).
    """
    x = ode_likelihood.check_data(x)
    check_num_levels(num_levels, allow_none=True)
    dim = math.prod(x.shape[1:])
    offset = units.dequantization_offset(num_levels, dim, grid="centered")
    divergence = options.get("divergence", "rademacher")
    needs_key = divergence != "exact" or (num_levels is not None and dequantize)
    if key is None and needs_key:
        raise ValueError("bits_per_dim needs a PRNG key (Hutchinson probes / dequantisation).")
    key_deq, key_ll = jax.random.split(key) if key is not None else (None, None)
    y, valid = ode_likelihood.dequantize_data(
        x, key_deq, num_levels=num_levels, dequantize=dequantize
    )
    log_p, terms = log_likelihood(velocity_fn, y, key_ll, **options)
    bpd = jnp.where(valid, units.bits_per_dim(-(log_p + offset), dim), jnp.nan)
    terms = dict(terms, log_p=log_p, offset=jnp.full((x.shape[0],), offset, dtype=x.dtype))
    return bpd, terms
