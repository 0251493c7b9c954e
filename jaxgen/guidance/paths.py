"""Noise levels of a Gaussian path, and guidance intervals given in them.

Every model guided here lives on a path ``x_t = alpha_t x_0 + sigma_t eps``
(:mod:`jaxgen.core.parameterization`). Its noise level, independent of how time is written,
is the EDM noise level ``sigma = sigma_t / alpha_t = exp(-lambda / 2)`` with the log-SNR
``lambda = log(alpha_t^2 / sigma_t^2)`` (Karras et al. 2022; Kingma et al. 2021).

Kynkaanniemi et al. (2024) apply classifier-free guidance only on a limited interval of noise
levels, ``sigma_lo < sigma <= sigma_hi`` (their eq. 6), and leave the model unguided (the
conditional model) elsewhere: :class:`GuidanceInterval`.

References:
  Kynkaanniemi, Aittala, Karras, Laine, Aila, Lehtinen. Applying Guidance in a Limited
  Interval Improves Sample and Distribution Quality in Diffusion Models. NeurIPS 2024.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_choice, is_concrete

__all__ = [
    "INTERVAL_KINDS",
    "NULL_LABEL",
    "GuidanceInterval",
    "PathFn",
    "check_interval_in_range",
    "path_coefficients",
]

NULL_LABEL = -1
"""The class label meaning "no condition" (networks map it to a learned null embedding)."""

INTERVAL_KINDS: tuple[str, ...] = ("sigma", "log_snr")

PathFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
"""``t -> (alpha_t, sigma_t)``, each of ``t``'s shape."""


def path_coefficients(path: Any) -> PathFn:
    """``t -> (alpha_t, sigma_t)`` of a Gaussian path ``x_t = alpha_t x_0 + sigma_t eps``.

    Args:
      path: one of

        * a DDPM schedule (anything with ``(T,)`` arrays ``sqrt_alphas_cumprod`` and
          ``sqrt_one_minus_alphas_cumprod``, e.g. :class:`jaxgen.diffusion.DiffusionSchedule`):
          ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)`` at integer 0-based ``t``;
        * an SDE-like object with methods ``alpha(t)`` and ``sigma(t)`` (e.g.
          :class:`jaxgen.sde.VPSDE`), float ``t``;
        * a callable ``t -> (alpha, sigma)``, returned as is (with broadcasting).

    Returns:
      ``fn(t) -> (alpha, sigma)``, both of ``t``'s shape (``(B,)`` for per-example ``t``).

    Raises:
      ValueError: when ``path`` is none of these.
    """
    if hasattr(path, "sqrt_alphas_cumprod") and hasattr(path, "sqrt_one_minus_alphas_cumprod"):

        def fn(t):
            t = jnp.asarray(t)
            return path.sqrt_alphas_cumprod[t], path.sqrt_one_minus_alphas_cumprod[t]

    elif callable(getattr(path, "alpha", None)) and callable(getattr(path, "sigma", None)):

        def fn(t):
            return path.alpha(t), path.sigma(t)

    elif callable(path):
        fn = path
    else:
        raise ValueError(
            "path must be a DDPM schedule (sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod), "
            f"an SDE (alpha(t), sigma(t)) or a callable t -> (alpha, sigma), got {path!r}"
        )

    def coefficients(t: jax.Array) -> tuple[jax.Array, jax.Array]:
        shape = jnp.shape(t)
        alpha, sigma = fn(t)
        return jnp.broadcast_to(alpha, shape), jnp.broadcast_to(sigma, shape)

    return coefficients


def path_derivatives(path: Any) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]] | None:
    """``t -> (dalpha/dt, dsigma/dt)`` of a path that has them (methods ``alpha_dot(t)`` and
    ``sigma_dot(t)``, e.g. the paths of :mod:`jaxgen.flow_matching`), else ``None``.

    The ``"velocity"`` parameterization ``u = alpha' x_0 + sigma' eps`` needs them to be
    converted to or from the others (:func:`jaxgen.core.parameterization.convert`)."""
    alpha_dot = getattr(path, "alpha_dot", None)
    sigma_dot = getattr(path, "sigma_dot", None)
    if not (callable(alpha_dot) and callable(sigma_dot)):
        return None

    def derivatives(t: jax.Array) -> tuple[jax.Array, jax.Array]:
        shape = jnp.shape(t)
        return jnp.broadcast_to(alpha_dot(t), shape), jnp.broadcast_to(sigma_dot(t), shape)

    return derivatives


def _bound(value: Any, name: str) -> Any:
    """``value`` as a float when concrete (may be +-inf), unchecked when traced."""
    if not is_concrete(value):
        return value
    if isinstance(value, bool) or jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got NaN")
    return number


@dataclasses.dataclass(frozen=True)
class GuidanceInterval:
    """The noise levels where guidance is on (Kynkaanniemi et al. 2024, eq. 6).

    * ``kind="sigma"``: on where ``low < sigma <= high`` with the EDM noise level
      ``sigma = sigma_t / alpha_t``; ``0 <= low < high`` (``high`` may be ``inf``).
    * ``kind="log_snr"``: on where ``low <= lambda < high`` with
      ``lambda = log(alpha_t^2 / sigma_t^2) = -2 log sigma``, the same set for
      ``(low, high) = (-2 log sigma_hi, -2 log sigma_lo)``; ``low < high`` (either may be
      infinite).

    Attributes:
      low: lower end.
      high: upper end.
      kind: ``"sigma"`` or ``"log_snr"``.
    """

    low: float
    high: float
    kind: str = dataclasses.field(default="sigma", kw_only=True)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, INTERVAL_KINDS)
        low = _bound(self.low, "interval low")
        high = _bound(self.high, "interval high")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if not (is_concrete(low) and is_concrete(high)):
            return
        if self.kind == "sigma" and low < 0.0:
            raise ValueError(
                f"a sigma interval needs low >= 0 (sigma = sigma_t / alpha_t is a noise "
                f"level), got low = {low!r}"
            )
        if not low < high:
            raise ValueError(
                f"a guidance interval needs low < high, got low = {low!r}, high = {high!r} "
                f"(kind {self.kind!r})"
            )

    def sigma_bounds(self) -> tuple[float, float]:
        """The interval as EDM noise levels ``(sigma_lo, sigma_hi)``: guidance is on where
        ``sigma_lo < sigma <= sigma_hi`` (``sigma = exp(-lambda / 2)`` for ``log_snr``)."""
        if self.kind == "sigma":
            return self.low, self.high
        return _sigma_of_log_snr(self.high), _sigma_of_log_snr(self.low)

    def contains(self, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
        """Boolean mask, of ``alpha``'s and ``sigma``'s broadcast shape, of the path points
        ``(alpha_t, sigma_t)`` inside the interval (see the class docstring)."""
        alpha = jnp.asarray(alpha)
        sigma = jnp.asarray(sigma)
        if self.kind == "sigma":
            level = sigma / alpha
            return (level > self.low) & (level <= self.high)
        log_snr = 2.0 * (jnp.log(alpha) - jnp.log(sigma))
        return (log_snr >= self.low) & (log_snr < self.high)


def _sigma_of_log_snr(log_snr: float) -> float:
    if log_snr == math.inf:
        return 0.0
    if log_snr == -math.inf:
        return math.inf
    return math.exp(-0.5 * log_snr)


def check_interval_in_range(
    interval: GuidanceInterval, sigma_min: float, sigma_max: float
) -> GuidanceInterval:
    """``interval`` if it overlaps the sampler's noise range ``[sigma_min, sigma_max]`` (EDM
    noise levels ``sigma_t / alpha_t``), else ``ValueError`` (guidance would never be on).

    The overlap condition, with ``(sigma_lo, sigma_hi)`` of :meth:`GuidanceInterval.sigma_bounds`,
    is ``sigma_lo < sigma_max`` and ``sigma_hi >= sigma_min``.
    """
    if not isinstance(interval, GuidanceInterval):
        raise ValueError(f"interval must be a GuidanceInterval, got {interval!r}")
    lo_range = _bound(sigma_min, "sigma_min")
    hi_range = _bound(sigma_max, "sigma_max")
    if not (0.0 <= lo_range <= hi_range):
        raise ValueError(
            f"the noise range needs 0 <= sigma_min <= sigma_max, got [{sigma_min!r}, {sigma_max!r}]"
        )
    lo, hi = interval.sigma_bounds()
    if not (lo < hi_range and hi >= lo_range):
        where = f"sigma in ({lo:g}, {hi:g}]"
        noise_range = f"sigma in [{lo_range:g}, {hi_range:g}]"
        raise ValueError(
            f"guidance interval {interval!r} ({where}) lies outside the sampler's noise "
            f"range {noise_range}: guidance would never be applied"
        )
    return interval
