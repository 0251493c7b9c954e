"""Flow models and diffusion models are the same models on a Gaussian path: exact conversions,
and an adapter that lets the score-SDE samplers (DPM-Solver++, EDM) sample a flow model.

On a path ``x_t = alpha x_data + sigma x_source`` (data at ``t = 0``, Gaussian source at
``t = 1``; Lipman et al.'s clock is ``t' = 1 - t``, their velocity ``-u``) the marginal
velocity ``u = alpha' E[x_data | x_t] + sigma' E[x_source | x_t]``, the score ``s =
-E[x_source | x_t] / sigma`` (Tweedie), the denoiser ``E[x_data | x_t]`` and the noise
prediction ``E[x_source | x_t]`` determine each other given ``(alpha, sigma, alpha',
sigma')``: with ``det = alpha sigma' - sigma alpha'``,
``E[x_data|x_t] = (sigma' x - sigma u) / det`` and ``E[x_source|x_t] = (alpha u - alpha' x) /
det`` (:mod:`jaxgen.core.parameterization`, which every conversion here calls). In
particular the probability-flow ODE of an SDE (Song et al. 2021, eq. 13), ``dx/dt = f -
g^2 s / 2`` with ``f = (alpha'/alpha) x`` and ``g^2 = 2 sigma sigma' - 2 (alpha'/alpha)
sigma^2``, *is* the velocity ``alpha' E[x_0|x] + sigma' E[eps|x]`` of the same path.

:class:`PathSDE` exposes a :class:`~jaxgen.flow_matching.paths.GaussianPath` through the
methods the score-SDE samplers call (``alpha``, ``sigma``, ``log_snr`` and its inverse,
``sigma_ratio`` and its inverse, ``prior_std``, ``T``, ``t_min``, the drift and diffusion of
the SDE with this kernel), so ``dpm_solver_sample(velocity_to_score(u, path), PathSDE(path),
...)`` samples a flow model. ``T`` must be below 1 where ``alpha(1) = 0`` (those samplers
divide by ``alpha(T)``). By default ``[t_min, T]`` is EDM's noise range (Karras et al. 2022):
``sigma(T) / alpha(T) = 80`` and ``sigma(t_min) / alpha(t_min) = 0.002``; the samplers start
from ``N(0, sigma(T)^2 I)``, whose mismatch with the true ``p_T`` is of order ``alpha(T)``
(0.012 on the linear path).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core import sampling
from jaxgen.core.parameterization import convert
from jaxgen.core.validation import check_finite_number, is_concrete
from jaxgen.flow_matching.paths import GaussianPath, _bcast, _elementwise_derivative, _pytree

__all__ = [
    "PathSDE",
    "convert_model",
    "score_to_velocity",
    "velocity_to_score",
]

Fn = Callable[[jax.Array, jax.Array], jax.Array]
_LOG_2PI = math.log(2.0 * math.pi)
EDM_SIGMA_MAX, EDM_SIGMA_MIN = 80.0, 0.002  # Karras et al. 2022, Sec. 5: sigma = s~ range


def convert_model(model_fn: Fn, path: GaussianPath, *, source: str, target: str) -> Fn:
    """``model_fn(x, t)`` of parameterization ``source`` re-expressed as a ``target`` one on
    ``path`` (exact; :func:`jaxgen.core.parameterization.convert`)."""

    def fn(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma, alpha_dot, sigma_dot = path.coefficients(t)
        return convert(
            model_fn(x, t),
            x,
            alpha,
            sigma,
            source=source,
            target=target,
            alpha_dot=alpha_dot,
            sigma_dot=sigma_dot,
        ).astype(x.dtype)

    return fn


def velocity_to_score(velocity_fn: Fn, path: GaussianPath) -> Fn:
    """The score ``s = -E[x_source|x_t] / sigma = -(alpha u - alpha' x) / (sigma det)`` of a
    velocity model on a Gaussian-source ``path`` (module doc), for the score-SDE samplers."""
    return convert_model(velocity_fn, path, source="velocity", target="score")


def score_to_velocity(score_fn: Fn, sde_or_path) -> Fn:
    """The velocity ``u = alpha' E[x_0|x] + sigma' E[eps|x]`` of a score model, for the flow
    samplers (integrate from ``t = 1`` down to the SDE's ``t_min``).

    For an SDE (anything with ``probability_flow``, e.g. :class:`jaxgen.sde.VPSDE`) this is
    its probability-flow field ``f - g^2 s / 2`` (Song et al. eq. 13), which equals the
    converted velocity (module doc) and stays finite at ``t = 0``; for a
    :class:`~jaxgen.flow_matching.paths.GaussianPath` it is the core's score -> velocity
    conversion, which needs ``alpha > 0`` (``E[x_0|x] = (x + sigma^2 s) / alpha``): sample it
    with ``t_max < 1`` on paths whose ``alpha(1) = 0``."""
    if hasattr(sde_or_path, "probability_flow"):
        return sde_or_path.probability_flow(score_fn)
    return convert_model(score_fn, sde_or_path, source="score", target="velocity")


@_pytree
class PathSDE:
    """A Gaussian path seen as the forward SDE with the same kernel ``N(alpha x_0, sigma^2 I)``
    on ``[0, T]``, for :mod:`jaxgen.sde.samplers` (module doc). ``t_min`` is the samplers'
    default last time."""

    path: GaussianPath
    T: float | None = None
    t_min: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, GaussianPath):
            raise ValueError(f"PathSDE needs a GaussianPath, got {type(self.path).__name__}.")
        for name, ratio in (("T", EDM_SIGMA_MAX), ("t_min", EDM_SIGMA_MIN)):
            if getattr(self, name) is None:
                t = self.path.t_from_log_snr(jnp.asarray(-2.0 * math.log(ratio)))
                object.__setattr__(self, name, float(t) if is_concrete(t) else t)
        check_finite_number(self.T, "T", low=0.0, high=1.0, low_open=True)
        check_finite_number(self.t_min, "t_min", low=0.0, low_open=True)
        if is_concrete(self.T) and is_concrete(self.t_min) and not self.t_min < self.T:
            raise ValueError(f"need 0 < t_min < T <= 1, got t_min={self.t_min}, T={self.T}.")
        if is_concrete(self.T) and not float(self.path.alpha(jnp.asarray(self.T))) > 0.0:
            raise ValueError(
                f"PathSDE: alpha(T) must be positive (the samplers divide by it), got "
                f"alpha({self.T}) = {float(self.path.alpha(jnp.asarray(self.T))):.3g}; use T < 1."
            )

    def alpha(self, t: jax.Array) -> jax.Array:
        """``alpha(t)`` of the path."""
        return self.path.alpha(t)

    def sigma(self, t: jax.Array) -> jax.Array:
        """``sigma(t)`` of the path."""
        return self.path.sigma(t)

    def log_snr(self, t: jax.Array) -> jax.Array:
        """``log(alpha^2 / sigma^2)``."""
        return self.path.log_snr(t)

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        """The inverse of :meth:`log_snr`."""
        return self.path.t_from_log_snr(log_snr)

    def sigma_ratio(self, t: jax.Array) -> jax.Array:
        """EDM's noise level ``sigma / alpha = exp(-lambda / 2)``."""
        return jnp.exp(-0.5 * self.log_snr(t))

    def t_from_sigma_ratio(self, sigma_ratio: jax.Array) -> jax.Array:
        """The inverse of :meth:`sigma_ratio`."""
        return self.t_from_log_snr(-2.0 * jnp.log(sigma_ratio))

    def prior_std(self) -> jax.Array:
        """``sigma(T)``: the samplers start from ``N(0, sigma(T)^2 I)``."""
        return jnp.asarray(self.path.sigma(jnp.asarray(self.T)))

    def prior_log_prob(self, z: jax.Array) -> jax.Array:
        """``log N(z; 0, sigma(T)^2 I)`` per example."""
        dim = math.prod(z.shape[1:])
        std = self.prior_std()
        sq = jnp.sum(jnp.square(z.reshape(z.shape[0], -1)), axis=-1)
        return -0.5 * dim * (_LOG_2PI + 2.0 * jnp.log(std)) - 0.5 * sq / jnp.square(std)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32):
        """``N(0, sigma(T)^2 I)`` draws, example ``b`` from its own key (core sampling)."""
        keys = sampling.as_example_keys(key, tuple(shape)[0])
        return (self.prior_std() * sampling.normal(keys, tuple(shape)[1:], dtype)).astype(dtype)

    def log_alpha_rate(self, t: jax.Array) -> jax.Array:
        """``alpha' / alpha``: the drift is ``f = (alpha'/alpha) x``."""
        return self.path.alpha_dot(t) / self.path.alpha(t)

    def diffusion(self, t: jax.Array) -> jax.Array:
        """``g = sqrt(d sigma^2/dt - 2 (alpha'/alpha) sigma^2)``."""
        dvar = _elementwise_derivative(lambda s: jnp.square(self.path.sigma(s)), t)
        return jnp.sqrt(dvar - 2.0 * self.log_alpha_rate(t) * jnp.square(self.path.sigma(t)))

    def drift(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """``f(x, t) = (alpha'/alpha) x``."""
        return _bcast(self.log_alpha_rate(t), x) * x

    def reverse_drift(self, score_fn: Fn, x: jax.Array, t: jax.Array, *, probability_flow=False):
        """``f - g^2 s`` (reverse SDE) or ``f - g^2 s / 2`` (probability flow)."""
        weight = 0.5 if probability_flow else 1.0
        g2 = _bcast(jnp.square(self.diffusion(t)), x)
        return self.drift(x, t) - weight * g2 * score_fn(x, t)

    def probability_flow(self, score_fn: Fn) -> Fn:
        """The probability-flow field ``f - g^2 s / 2``: the path's velocity (module doc)."""
        return lambda x, t: self.reverse_drift(score_fn, x, t, probability_flow=True)

    def replace(self, **changes) -> PathSDE:
        """A copy with fields replaced (``T``, ``t_min``)."""
        return dataclasses.replace(self, **changes)
