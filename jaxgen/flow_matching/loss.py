"""The conditional flow-matching loss (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024).

**Convention: data at t = 0, source at t = 1** (:mod:`jaxgen.flow_matching.paths`). For a
pair ``(x_data, x_source)`` from a coupling and ``t`` from a time sampler,
``x_t = alpha(t) x_data + sigma(t) x_source`` and the conditional velocity is
``u_t = alpha'(t) x_data + sigma'(t) x_source``; the loss per example is

    L = || f(x_t, t) - target ||^2 / D,

with ``target`` the model's ``parameterization`` of the pair, through the core's
:func:`jaxgen.core.parameterization.from_x0_eps` (``x_0 = x_data``, ``eps = x_source``):
``"velocity"``: ``u_t`` (Lipman et al. eq. 23 with ``t' = 1 - t``, whose target is
``x_1 - (1 - sigma_min) x_0 = -u_t``: a model trained in their convention predicts ``-u``);
``"x0"``: ``x_data``; ``"eps"``: ``x_source`` (the source sample, Gaussian or not);
``"v"``: ``alpha x_source - sigma x_data``. Minimising ``E[L]`` over ``f`` gives
``f*(x, t) = E[target | x_t = x]``: for ``"velocity"`` the marginal velocity
``u*(x, t) = alpha' E[x_data | x_t] + sigma' E[x_source | x_t]`` whose flow carries the
source to the data (Lipman et al. Thm. 2). Each parameterization's loss is unweighted in its
own space; the minimisers convert into each other exactly.

References:
  Lipman, Chen, Ben-Hamu, Nickel, Le. Flow Matching for Generative Modeling. ICLR 2023.
  Liu, Gong, Liu. Flow Straight and Fast. ICLR 2023.
  Tong et al. Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
  Transport. TMLR 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core.parameterization import from_x0_eps
from jaxgen.core.validation import check_choice, check_time_range
from jaxgen.flow_matching.paths import GaussianPath, sample_time

__all__ = [
    "FM_PARAMETERIZATIONS",
    "check_pair",
    "flow_matching_loss",
    "flow_matching_loss_at",
    "flow_matching_target",
]

FM_PARAMETERIZATIONS: tuple[str, ...] = ("velocity", "x0", "eps", "v")

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def check_pair(x_source: jax.Array, x_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``ValueError`` unless source and data batches have the same shape ``(B, *event)``."""
    x_source, x_data = jnp.asarray(x_source), jnp.asarray(x_data)
    if x_source.shape != x_data.shape:
        raise ValueError(
            f"source and data batches must have the same shape (B, *event), got source "
            f"{x_source.shape} and data {x_data.shape}."
        )
    if x_data.ndim < 2:
        raise ValueError(f"x_data must have shape (B, *event), got {x_data.shape}.")
    return x_source, x_data


def _check_t(t: jax.Array, batch: int) -> jax.Array:
    t = jnp.asarray(t)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},), got {t.shape}.")
    check_time_range(t, 1.0, "t", low=0.0, low_open=False)
    return t


def flow_matching_target(
    path: GaussianPath,
    x_data: jax.Array,
    x_source: jax.Array,
    t: jax.Array,
    *,
    parameterization: str = "velocity",
) -> tuple[jax.Array, jax.Array]:
    """``(x_t, target)``: ``x_t = alpha x_data + sigma x_source`` and the regression target
    of a ``parameterization`` model (module doc), via the core's ``from_x0_eps``."""
    check_choice("parameterization", parameterization, FM_PARAMETERIZATIONS)
    alpha, sigma, alpha_dot, sigma_dot = path.coefficients(t)
    x_t = path.interpolate(x_data, x_source, t)
    target = from_x0_eps(
        x_data,
        x_source,
        alpha,
        sigma,
        parameterization=parameterization,
        alpha_dot=alpha_dot,
        sigma_dot=sigma_dot,
    )
    return x_t, target


def flow_matching_loss_at(
    model: ModelFn,
    path: GaussianPath,
    x_data: jax.Array,
    x_source: jax.Array,
    t: jax.Array,
    *,
    parameterization: str = "velocity",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``||f(x_t, t) - target||^2 / D`` per example at given ``t (B,)`` in ``[0, 1]`` and a
    given pair (module doc).

    Returns:
      ``(per_example (B,), terms)`` with ``"t"`` and ``"mse"`` (the per-example loss).
    """
    x_source, x_data = check_pair(x_source, x_data)
    t = _check_t(t, x_data.shape[0])
    x_t, target = flow_matching_target(path, x_data, x_source, t, parameterization=parameterization)
    pred = model(x_t, t)
    if jnp.shape(pred) != x_data.shape:
        raise ValueError(f"the model must return shape {x_data.shape}, got {jnp.shape(pred)}.")
    dim = math.prod(x_data.shape[1:])
    mse = jnp.sum(jnp.square(pred - target).reshape(x_data.shape[0], -1), axis=-1) / dim
    return mse, {"t": t, "mse": mse}


def flow_matching_loss(
    model: ModelFn,
    path: GaussianPath,
    x_data: jax.Array,
    key: jax.Array,
    *,
    x_source: jax.Array | None = None,
    parameterization: str = "velocity",
    time_sampler: str = "uniform",
    t_min: float = 0.0,
    t_max: float = 1.0,
    loc: float = 0.0,
    scale: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Conditional flow matching, ``E_t E_{pair} ||f(x_t, t) - target||^2 / D`` (module doc).

    Args:
      model: ``f(x_t, t)``, ``x_t (B, *event)``, float ``t (B,)``, returning like ``x_t``.
      path: a :class:`~jaxgen.flow_matching.paths.GaussianPath` (data at ``t = 0``).
      x_data: ``(B, *event)`` data.
      key: PRNG key, split into the time key and (when ``x_source`` is None) the source key.
      x_source: ``(B, *event)`` source samples paired with ``x_data`` (a coupling's output,
        another data set); ``None`` draws ``N(0, I)``.
      parameterization: ``"velocity"``, ``"x0"``, ``"eps"`` (the source) or ``"v"``.
      time_sampler: ``"uniform"`` or ``"logit_normal"``
        (:func:`~jaxgen.flow_matching.paths.sample_time`, with ``loc``, ``scale``), mapped
        into ``[t_min, t_max]`` (``t_min > 0`` for the VP path, whose ``sigma'`` diverges
        at 0).

    Returns:
      ``(per_example (B,), terms)`` with ``"t"`` and ``"mse"``.
    """
    x_data = jnp.asarray(x_data)
    key_t, key_source = jax.random.split(key)
    if x_source is None:
        x_source = jax.random.normal(key_source, x_data.shape, x_data.dtype)
    x_source, x_data = check_pair(x_source, x_data)
    t = sample_time(
        key_t,
        x_data.shape[0],
        sampler=time_sampler,
        t_min=t_min,
        t_max=t_max,
        loc=loc,
        scale=scale,
        dtype=x_data.dtype,
    )
    return flow_matching_loss_at(
        model, path, x_data, x_source, t, parameterization=parameterization
    )
