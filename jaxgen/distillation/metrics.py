"""Distances ``d(a, b) -> (B,)`` of consistency losses: squared error, pseudo-Huber, features.

References:
  Song, Dhariwal, Chen, Sutskever. Consistency Models. ICML 2023, Sec. 3 (d = l2, l1, LPIPS).
  Song, Dhariwal. Improved Techniques for Training Consistency Models (iCT). ICLR 2024,
  Sec. 3.3 (pseudo-Huber, ``c = 0.00054 sqrt(d)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, check_finite_number

__all__ = ["METRICS", "consistency_metric", "pseudo_huber", "squared_distance"]

METRICS: tuple[str, ...] = ("squared", "pseudo_huber", "feature")

Metric = Callable[[jax.Array, jax.Array], jax.Array]


def _check_pair(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a and b must have the same shape (B, ...), got {a.shape} and {b.shape}")
    return a, b


def squared_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """``mean_j (a_j - b_j)^2`` over the non-batch axes, per example ``(B,)`` (the l2 metric of
    Song et al. 2023, normalised by the dimension)."""
    a, b = _check_pair(a, b)
    axes = tuple(range(1, a.ndim))
    return jnp.mean(jnp.square(a - b), axis=axes) if axes else jnp.square(a - b)


def pseudo_huber(a: jax.Array, b: jax.Array, *, c: float | None = None) -> jax.Array:
    """iCT's pseudo-Huber distance per example (Song & Dhariwal 2024, Sec. 3.3):

        d(a, b) = sqrt(||a - b||^2 + c^2) - c,   c = 0.00054 sqrt(D) by default,

    ``D`` the number of values per example. It is ``~ ||a - b||^2 / (2 c)`` for ``||a - b|| << c``
    and ``~ ||a - b||`` for ``||a - b|| >> c`` (robust to outliers, smooth at 0). Computed as
    ``r / (sqrt(r + c^2) + c)`` with ``r = ||a - b||^2`` (the same number, without the
    cancellation of the first form when ``r << c^2``).
    """
    a, b = _check_pair(a, b)
    dim = math.prod(a.shape[1:])
    if c is None:
        c = 0.00054 * math.sqrt(dim)
    check_finite_number(c, "c", low=0.0, low_open=True)
    r = jnp.sum(jnp.square(a - b).reshape(a.shape[0], -1), axis=1)
    return r / (jnp.sqrt(r + c * c) + c)


def consistency_metric(
    name: str,
    *,
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    huber_c: float | None = None,
) -> Metric:
    """The distance ``d(a, b) -> (B,)`` called ``name`` (one of :data:`METRICS`):

    * ``"squared"``: :func:`squared_distance`, ``mean_j (a_j - b_j)^2``.
    * ``"pseudo_huber"``: :func:`pseudo_huber` with ``c = huber_c`` (iCT's default if None).
    * ``"feature"``: ``mean_j (phi(a)_j - phi(b)_j)^2`` with ``phi = feature_fn`` mapping
      ``(B, ...) -> (B, ...)``: an LPIPS-like metric the user plugs in (Song et al. 2023 use
      LPIPS; on the digits, the project's digit classifier's features).
    """
    check_choice("metric", name, METRICS)
    if name == "squared":
        return squared_distance
    if name == "pseudo_huber":
        return lambda a, b: pseudo_huber(a, b, c=huber_c)
    if feature_fn is None or not callable(feature_fn):
        raise ValueError(f"metric 'feature' needs a callable feature_fn, got {feature_fn!r}")

    def feature_distance(a: jax.Array, b: jax.Array) -> jax.Array:
        a, b = _check_pair(a, b)
        return squared_distance(feature_fn(a), feature_fn(b))

    return feature_distance


def resolve_metric(
    metric: str | Metric,
    *,
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    huber_c: float | None = None,
) -> Metric:
    """``metric`` itself if it is a callable ``d(a, b) -> (B,)``, else
    :func:`consistency_metric` of that name."""
    if callable(metric):
        return metric
    return consistency_metric(metric, feature_fn=feature_fn, huber_c=huber_c)
