"""Classifier-free guidance (Ho and Salimans 2022) as a transform of a model callable.

A conditional model ``model(x, t, condition)`` trained with condition dropout is also the
unconditional model ``model(x, t, null)``. With ``c = model(x, t, condition)`` and
``u = model(x, t, null)``, guidance returns, in either written form,

    guided = (1 + w) c - w u          (Ho and Salimans 2022, eq. 6; guidance weight w)
           = u + s (c - u)            (guidance scale s, as in Imagen / diffusers),

the same thing with ``s = 1 + w``: ``s = 1`` (``w = 0``) is the conditional model, unguided,
and ``s = 0`` the unconditional one. It is computed as ``c + w (c - u)``, so that ``w = 0``
returns ``c`` exactly. The combination is linear, so it means the same for every
parameterization (eps, x0, v, score, velocity): the guided score is
``grad log p(x) + s grad log p(c | x)`` (Ho and Salimans, eq. 6 and Sec. 3.2).

Options (all transforms of the callable; no sampler changes):

* ``interval``: guidance only where the noise level is in a :class:`GuidanceInterval`
  (Kynkaanniemi et al. 2024); elsewhere the output is ``model(x, t, condition)`` bit for bit,
  and when no example of the batch is inside, the unconditional pass is skipped
  (``jax.lax.cond``; the saving is real under ``jit``).
* ``rescale`` ``phi`` (Lin et al. 2024, Sec. 3.4, eqs. 15-16, Alg. 2), in
  ``rescale_parameterization`` space (their v-prediction by default), per example with the
  standard deviation over all non-batch axes:
  ``x_cfg = u + s (c - u)``, ``x_rescaled = x_cfg std(c) / std(x_cfg)``,
  ``out = phi x_rescaled + (1 - phi) x_cfg`` (the ratio of two standard deviations over the
  same number of entries does not depend on the ``ddof`` convention).
* ``batched``: one model call on ``[x; x]``, ``[t; t]``, ``[condition; null]`` (``2B``
  examples: faster, twice the activations) or two calls of ``B`` (less memory).

``scale``, ``weight`` and ``rescale`` may be traced (jit arguments), so one compiled sampler
serves every value.

References:
  Ho, Salimans. Classifier-Free Diffusion Guidance. NeurIPS 2021 Workshop (arXiv 2207.12598).
  Lin, Liu, Li, Yang. Common Diffusion Noise Schedules and Sample Steps are Flawed. WACV 2024.
  Kynkaanniemi et al. Applying Guidance in a Limited Interval Improves Sample and
  Distribution Quality in Diffusion Models. NeurIPS 2024.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.parameterization import broadcast_to_event, check_parameterization, convert
from jaxgen.core.validation import is_concrete
from jaxgen.guidance.paths import GuidanceInterval, path_coefficients, path_derivatives

__all__ = [
    "ConditionalModel",
    "GuidedFn",
    "classifier_free_guidance",
    "drop_condition",
    "multi_condition_guidance",
]

ConditionalModel = Callable[[jax.Array, jax.Array, Any], jax.Array]
"""``model(x, t, condition) -> prediction`` of ``x``'s shape."""

GuidedFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``guided(x, t) -> prediction``: what every sampler takes."""


def check_finite(value: Any, name: str) -> Any:
    """``value`` if all its entries are finite numbers (a scalar or an array), else
    ``ValueError``; a traced value is returned unchecked."""
    if value is None or not is_concrete(value):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _is_zero(value: Any) -> bool:
    """True for a concrete value that is exactly zero everywhere."""
    return is_concrete(value) and bool(np.all(np.asarray(value) == 0))


def _check_rescale(rescale: Any, path: Any) -> None:
    check_finite(rescale, "rescale")
    if is_concrete(rescale):
        values = np.asarray(rescale, dtype=np.float64)
        if np.any(values < 0.0) or np.any(values > 1.0):
            raise ValueError(f"rescale (phi of Lin et al.) must lie in [0, 1], got {rescale!r}")
    if not _is_zero(rescale) and path is None:
        raise ValueError(
            "rescale needs path= (a DDPM schedule, an SDE or t -> (alpha, sigma)) to convert "
            "predictions to the rescale parameterization; got path=None"
        )


def _null_like(condition: Any, null_condition: Any) -> Any:
    """``null_condition`` broadcast leaf by leaf to ``condition``'s shapes and dtypes."""
    try:
        return jax.tree.map(
            lambda c, n: jnp.broadcast_to(jnp.asarray(n, dtype=jnp.asarray(c).dtype), jnp.shape(c)),
            condition,
            null_condition,
        )
    except (ValueError, TypeError) as err:
        raise ValueError(
            "null_condition must have the structure of condition, with leaves that broadcast "
            f"to condition's ({err})"
        ) from err


def _match_batch(condition: Any, batch: int) -> Any:
    """``condition`` with leaves of leading axis 1 (or scalars) broadcast to ``batch``."""

    def match(leaf):
        leaf = jnp.asarray(leaf)
        if leaf.ndim == 0:
            return jnp.broadcast_to(leaf, (batch,))
        if leaf.shape[0] == batch:
            return leaf
        if leaf.shape[0] == 1:
            return jnp.broadcast_to(leaf, (batch,) + leaf.shape[1:])
        raise ValueError(
            f"condition leaves must have leading axis B = {batch} (the batch of x) or 1, got "
            f"shape {leaf.shape}"
        )

    return jax.tree.map(match, condition)


def _concat(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=0), *trees)


def _concat_t(t: jax.Array, copies: int) -> jax.Array:
    t = jnp.asarray(t)
    return t if t.ndim == 0 else jnp.concatenate([t] * copies, axis=0)


def _per_example_std(x: jax.Array) -> jax.Array:
    axes = tuple(range(1, x.ndim))
    return jnp.std(x, axis=axes, keepdims=True)


def _guidance_transform(
    model: ConditionalModel,
    conditions: Sequence[Any],
    null_condition: Any,
    *,
    first_weight: Any,
    other_scales: Sequence[Any],
    interval: GuidanceInterval | None,
    rescale: Any,
    parameterization: str,
    rescale_parameterization: str,
    path: Any,
    batched: bool,
) -> GuidedFn:
    """``c_0 + w_0 (c_0 - u) + sum_{k>=1} s_k (c_k - u)`` (= ``u + sum_k s_k (c_k - u)``
    with ``s_0 = 1 + w_0``), options as in :func:`classifier_free_guidance`."""
    check_parameterization(parameterization)
    check_parameterization(rescale_parameterization)
    if interval is not None and not isinstance(interval, GuidanceInterval):
        raise ValueError(f"interval must be a GuidanceInterval or None, got {interval!r}")
    if interval is not None and path is None:
        raise ValueError(
            "a guidance interval needs path= (a DDPM schedule, an SDE or t -> (alpha, sigma)) "
            "to read the noise level of t; got path=None"
        )
    _check_rescale(rescale, path)
    use_rescale = not _is_zero(rescale)
    derivatives = path_derivatives(path) if path is not None else None
    if use_rescale and parameterization != rescale_parameterization:
        if "velocity" in (parameterization, rescale_parameterization) and derivatives is None:
            raise ValueError(
                "rescale between 'velocity' and another parameterization needs the path's "
                "derivatives (a path with alpha_dot(t) and sigma_dot(t), e.g. a "
                "jaxgen.flow_matching path); or pass rescale_parameterization equal to "
                "parameterization"
            )
    coefficients = path_coefficients(path) if path is not None else None
    num = len(conditions)

    def passes(x, t):
        conds = [_match_batch(c, x.shape[0]) for c in conditions]
        nulls = _null_like(conds[0], null_condition)
        if batched:
            out = model(
                jnp.concatenate([x] * (num + 1), axis=0),
                _concat_t(t, num + 1),
                _concat([*conds, nulls]),
            )
            parts = jnp.split(out, num + 1, axis=0)
            return parts[:num], parts[num]
        outs = [model(x, t, c) for c in conds]
        return outs, model(x, t, nulls)

    def combine(x, t, conds, uncond):
        c0 = conds[0]
        out = c0 + broadcast_to_event(first_weight, c0) * (c0 - uncond)
        for scale, ck in zip(other_scales, conds[1:], strict=True):
            out = out + broadcast_to_event(scale, ck) * (ck - uncond)
        if use_rescale:
            alpha, sigma = coefficients(t)
            rates = {}
            if derivatives is not None:
                rates["alpha_dot"], rates["sigma_dot"] = derivatives(t)
            kw = dict(source=parameterization, target=rescale_parameterization, **rates)
            cfg_r = convert(out, x, alpha, sigma, **kw)
            ref_r = convert(c0, x, alpha, sigma, **kw)
            std_cfg = _per_example_std(cfg_r)
            ratio = _per_example_std(ref_r) / jnp.where(std_cfg > 0, std_cfg, 1.0)
            phi = broadcast_to_event(rescale, cfg_r)
            mixed = phi * (cfg_r * ratio) + (1.0 - phi) * cfg_r
            back = dict(source=rescale_parameterization, target=parameterization, **rates)
            out = convert(mixed, x, alpha, sigma, **back)
        return out.astype(c0.dtype)

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        if interval is None:
            conds, uncond = passes(x, t)
            return combine(x, t, conds, uncond)
        alpha, sigma = coefficients(t)
        inside = interval.contains(alpha, sigma)
        if inside.ndim == 0:
            inside = jnp.broadcast_to(inside, (x.shape[0],))

        def with_guidance(operand):
            x, t = operand
            conds, uncond = passes(x, t)
            out = combine(x, t, conds, uncond)
            return jnp.where(broadcast_to_event(inside, out), out, conds[0])

        def without(operand):
            x, t = operand
            return model(x, t, _match_batch(conditions[0], x.shape[0]))

        if is_concrete(inside):  # eager call: branch in Python
            return with_guidance((x, t)) if bool(jnp.any(inside)) else without((x, t))
        return jax.lax.cond(jnp.any(inside), with_guidance, without, (x, t))

    return guided


def classifier_free_guidance(
    model: ConditionalModel,
    condition: Any,
    null_condition: Any,
    *,
    scale: Any = None,
    weight: Any = None,
    interval: GuidanceInterval | None = None,
    rescale: Any = 0.0,
    parameterization: str = "eps",
    rescale_parameterization: str = "v",
    path: Any = None,
    batched: bool = True,
) -> GuidedFn:
    """Classifier-free guidance: ``guided(x, t) = u + s (c - u) = (1 + w) c - w u``.

    ``c = model(x, t, condition)``, ``u = model(x, t, null_condition)``; the scale
    ``s = 1 + w`` (Ho and Salimans 2022, eq. 6, write the weight ``w``). ``s = 1`` / ``w = 0``
    returns ``c`` exactly (computed as ``c + w (c - u)``). See the module docstring for the
    interval (Kynkaanniemi et al. 2024) and rescale (Lin et al. 2024, Alg. 2) options.

    Args:
      model: ``model(x, t, condition) -> prediction`` of ``x``'s shape.
      condition: pytree whose leaves have leading axis ``B`` (e.g. int labels ``(B,)``), or
        leading axis 1 (or scalars) to give every example the same condition; such a shared
        condition also works with samplers that call the model one example at a time (the
        adaptive probability-flow solve, which ``vmap``s per-example solves).
      null_condition: pytree of ``condition``'s structure whose leaves broadcast to
        ``condition``'s (e.g. :data:`NULL_LABEL`).
      scale: guidance scale ``s`` (scalar or per-example ``(B,)``; may be traced).
      weight: guidance weight ``w = s - 1``; give exactly one of ``scale`` and ``weight``.
      interval: guide only where the noise level is in this interval (needs ``path``).
      rescale: ``phi`` in ``[0, 1]`` (may be traced; nonzero needs ``path``).
      parameterization: what ``model`` predicts (``"eps"``, ``"x0"``, ``"score"``, ``"v"``,
        ``"velocity"``); used by ``rescale``.
      rescale_parameterization: the space the rescale acts in (``"v"`` as in Lin et al.).
      path: DDPM schedule, SDE or ``t -> (alpha, sigma)`` (:func:`path_coefficients`).
      batched: one ``2B`` call (True) or two ``B`` calls (False).

    Returns:
      ``guided(x, t)`` of the model's parameterization.

    Raises:
      ValueError: both or neither of ``scale``/``weight``, a concrete non-finite one, an
        interval or rescale without ``path``, an unknown parameterization.
    """
    if (scale is None) == (weight is None):
        raise ValueError(
            "give exactly one of scale (s) and weight (w = s - 1), got "
            f"scale={scale!r}, weight={weight!r}"
        )
    check_finite(scale, "guidance scale")
    check_finite(weight, "guidance weight")
    first_weight = weight if scale is None else jnp.asarray(scale) - 1.0
    return _guidance_transform(
        model,
        [condition],
        null_condition,
        first_weight=first_weight,
        other_scales=(),
        interval=interval,
        rescale=rescale,
        parameterization=parameterization,
        rescale_parameterization=rescale_parameterization,
        path=path,
        batched=batched,
    )


def multi_condition_guidance(
    model: ConditionalModel,
    conditions: Sequence[Any],
    null_condition: Any,
    *,
    scales: Sequence[Any] | jax.Array,
    interval: GuidanceInterval | None = None,
    rescale: Any = 0.0,
    parameterization: str = "eps",
    rescale_parameterization: str = "v",
    path: Any = None,
    batched: bool = True,
) -> GuidedFn:
    """Guidance by several conditions at once: ``u + sum_k s_k (c_k - u)``.

    ``c_k = model(x, t, conditions[k])``, ``u = model(x, t, null_condition)`` (composable
    guidance, Liu et al. 2022, eq. 11); a negative ``s_k`` steers away from ``conditions[k]``
    (a negative prompt). One condition with ``scales=[s]`` is
    :func:`classifier_free_guidance` with ``scale=s``. The rescale reference and the output
    outside the interval are those of ``conditions[0]``. Options as in
    :func:`classifier_free_guidance`; ``batched`` makes one ``(K + 1) B`` call.

    Args:
      model: ``model(x, t, condition) -> prediction``.
      conditions: ``K >= 1`` condition pytrees of the same structure and shapes.
      null_condition: as in :func:`classifier_free_guidance`.
      scales: ``K`` scales (each scalar or ``(B,)``; may be traced).
      interval, rescale, parameterization, rescale_parameterization, path, batched: as in
        :func:`classifier_free_guidance`.

    Returns:
      ``guided(x, t)``.
    """
    conditions = list(conditions)
    if not conditions:
        raise ValueError("conditions must hold at least one condition, got none")
    scales = [scales[i] for i in range(len(scales))]
    if len(scales) != len(conditions):
        raise ValueError(
            f"scales must have one entry per condition ({len(conditions)}), got {len(scales)}"
        )
    for i, s in enumerate(scales):
        check_finite(s, f"guidance scale {i}")
    return _guidance_transform(
        model,
        conditions,
        null_condition,
        first_weight=jnp.asarray(scales[0]) - 1.0,
        other_scales=scales[1:],
        interval=interval,
        rescale=rescale,
        parameterization=parameterization,
        rescale_parameterization=rescale_parameterization,
        path=path,
        batched=batched,
    )


def drop_condition(key: jax.Array, condition: Any, null_condition: Any, *, p_uncond: Any) -> Any:
    """Condition dropout for classifier-free training (Ho and Salimans 2022, Alg. 1).

    Per example ``b``, with probability ``p_uncond`` (independently, ``Bernoulli`` from
    ``key``) every leaf of ``condition`` is replaced by ``null_condition``'s, so that one
    network learns both ``eps(x, c)`` and ``eps(x) = eps(x, null)``.

    Args:
      key: a ``jax.random.key``.
      condition: pytree with leaves of leading axis ``B``.
      null_condition: pytree of the same structure, leaves broadcastable to ``condition``'s.
      p_uncond: the drop probability in ``[0, 1]`` (may be traced).

    Returns:
      The condition with dropped examples nulled (same structure, shapes and dtypes).
    """
    check_finite(p_uncond, "p_uncond")
    if is_concrete(p_uncond) and not 0.0 <= float(p_uncond) <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond!r}")
    leaves = jax.tree.leaves(condition)
    if not leaves:
        raise ValueError("condition must have at least one array leaf")
    batch = jnp.shape(leaves[0])[0]
    nulls = _null_like(condition, null_condition)
    drop = jax.random.uniform(key, (batch,)) < p_uncond

    def select(c, n):
        c = jnp.asarray(c)
        return jnp.where(drop.reshape((batch,) + (1,) * (c.ndim - 1)), n, c)

    return jax.tree.map(select, condition, nulls)
