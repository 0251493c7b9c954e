"""Gaussian (affine) probability paths of flow matching, and the time samplers of training.

**The one time convention of the library: data at t = 0, source at t = 1.** A path is

    x_t = alpha(t) x_data + sigma(t) x_source,     t in [0, 1],

with ``alpha(0) = 1``, ``sigma(0) = sigma_min`` (0 or small) and ``alpha(1) = 0``,
``sigma(1) = 1`` (pure source). Its velocity is ``u = dx_t/dt = alpha'(t) x_data +
sigma'(t) x_source`` and sampling integrates ``dx/dt = u`` from ``t = 1`` (source) down to
``t = 0`` (data). This is :mod:`jaxgen.core.parameterization`'s ``x_t = alpha x_0 + sigma
eps`` (``x_0 = x_data``, ``eps = x_source``) and the convention of SD3 (Esser et al. 2024) and
diffusers' flow-matching schedulers. **Lipman et al. (2023) and Liu et al. (2023) use the
reversed clock** ``t' = 1 - t``, with ``x_0`` the source and ``x_1`` the data: their
``mu_{t'}``, ``sigma_{t'}`` are our ``alpha(1 - t') x_data`` and ``sigma(1 - t')``, and their
velocity is ``-u`` (``d/dt' = -d/dt``). To use a model trained in their convention here,
call it as ``u(x, t) = -v_theirs(x, 1 - t)``.

Paths (frozen dataclasses registered as pytrees; float fields are leaves):

* :class:`LinearPath`, Lipman et al.'s conditional-OT path (eq. 20: ``mu_{t'} = t' x_1``,
  ``sigma_{t'} = 1 - (1 - sigma_min) t'``), converted: ``alpha = 1 - t``, ``sigma =
  sigma_min + (1 - sigma_min) t``; ``sigma_min = 0`` is rectified flow's ``(1 - t) x_data +
  t x_source`` (Liu et al. 2023).
* :class:`VPPath`, the VP diffusion path (Lipman et al. Sec. 4.1, eq. 19 converted; Song et
  al. 2021's VP SDE): ``alpha = exp(-B(t)/2)``, ``sigma = sqrt(1 - alpha^2)``, ``B(t) =
  beta_min t + (beta_max - beta_min) t^2 / 2``. It reaches the source only approximately,
  ``alpha(1) = exp(-B(1)/2)`` (0.0066 for the defaults), within ``source_atol``, and its
  ``sigma'`` diverges at ``t = 0``: integrate it to a ``t_min > 0``.
* :class:`CosinePath`, the trigonometric interpolant (Albergo and Vanden-Eijnden 2023):
  ``alpha = cos(pi t / 2)`` (computed as ``sin(pi (1 - t) / 2)``, exactly 0 at ``t = 1``),
  ``sigma = sin(pi t / 2)``.
* :class:`CustomPath`: a user's ``alpha_fn``, ``sigma_fn`` (elementwise in ``t``; the
  derivatives by ``jax.jvp``).

Every path has ``alpha, sigma, alpha_dot, sigma_dot, log_snr = log(alpha^2 / sigma^2)`` and
its inverse ``t_from_log_snr`` (closed form, or bisection for :class:`CustomPath`: the log-SNR
must decrease in ``t``). A path built from concrete numbers whose schedule does not reach its
ends (``|alpha(0) - 1|``, ``sigma(0) - sigma_min``, ``alpha(1)``, ``|sigma(1) - 1|`` above the
tolerance) is refused with a ``ValueError`` naming the values.

**Time samplers** (:func:`sample_time`): ``"uniform"`` ``t ~ U[0, 1]`` and ``"logit_normal"``
``t = sigmoid(m + s n)``, ``n ~ N(0, 1)`` (Esser et al. 2024, Sec. 3.1, ``m = 0, s = 1``),
both mapped affinely into ``[t_min, t_max]``.

References:
  Lipman, Chen, Ben-Hamu, Nickel, Le. Flow Matching for Generative Modeling. ICLR 2023.
  Liu, Gong, Liu. Flow Straight and Fast: Learning to Generate and Transfer Data with
  Rectified Flow. ICLR 2023.
  Albergo, Vanden-Eijnden. Building Normalizing Flows with Stochastic Interpolants. ICLR 2023.
  Esser et al. Scaling Rectified Flow Transformers for High-Resolution Image Synthesis. 2024.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_choice, check_finite_number, is_concrete

__all__ = [
    "PATHS",
    "TIME_SAMPLERS",
    "CosinePath",
    "CustomPath",
    "GaussianPath",
    "LinearPath",
    "VPPath",
    "make_path",
    "sample_time",
]

TIME_SAMPLERS: tuple[str, ...] = ("uniform", "logit_normal")
_BISECTION_STEPS = 64


def _pytree(cls=None, *, static: tuple[str, ...] = ()):
    """Frozen dataclass whose fields are pytree leaves (``static`` ones auxiliary data);
    rebuilt without ``__init__`` (so without checks) when JAX unflattens it."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in static)

        def flatten_with_keys(obj):
            aux = tuple(getattr(obj, n) for n in static)
            return [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in names], aux

        def flatten(obj):
            return [getattr(obj, n) for n in names], tuple(getattr(obj, n) for n in static)

        def unflatten(aux, children):
            obj = object.__new__(cls)
            for n, child in zip(names, children, strict=True):
                object.__setattr__(obj, n, child)
            for n, value in zip(static, aux, strict=True):
                object.__setattr__(obj, n, value)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return wrap if cls is None else wrap(cls)


def _elementwise_derivative(fn: Callable[[jax.Array], jax.Array], t: jax.Array) -> jax.Array:
    t = jnp.asarray(t, jnp.result_type(float))
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))[1]


class GaussianPath:
    """``x_t = alpha(t) x_data + sigma(t) x_source`` on ``t in [0, 1]`` (module doc).

    Subclasses define ``alpha`` and ``sigma`` (elementwise in ``t``); ``alpha_dot`` and
    ``sigma_dot`` default to ``jax.jvp`` derivatives, ``t_from_log_snr`` to bisection.
    """

    sigma_min: float = 0.0  # sigma(0): the blur of the data end
    endpoint_atol: float = 1e-5  # tolerance of the endpoint checks (alpha(1) for VP's)

    def alpha(self, t: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma(self, t: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def alpha_dot(self, t: jax.Array) -> jax.Array:
        """``d alpha / dt``."""
        return _elementwise_derivative(self.alpha, t)

    def sigma_dot(self, t: jax.Array) -> jax.Array:
        """``d sigma / dt``."""
        return _elementwise_derivative(self.sigma, t)

    def coefficients(self, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(alpha, sigma, alpha_dot, sigma_dot)`` at ``t``."""
        return self.alpha(t), self.sigma(t), self.alpha_dot(t), self.sigma_dot(t)

    def log_snr(self, t: jax.Array) -> jax.Array:
        """``lambda(t) = log(alpha^2 / sigma^2)``, decreasing in ``t``."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        """The inverse of :meth:`log_snr` by bisection on ``[0, 1]`` (64 halvings)."""
        log_snr = jnp.asarray(log_snr, jnp.result_type(float))
        lo, hi = jnp.zeros_like(log_snr), jnp.ones_like(log_snr)

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > log_snr  # lambda decreasing: the root is right of mid
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
        return 0.5 * (lo + hi)

    def interpolate(self, x_data: jax.Array, x_source: jax.Array, t: jax.Array) -> jax.Array:
        """``x_t = alpha(t) x_data + sigma(t) x_source`` with ``t (B,)``."""
        a, s = _bcast(self.alpha(t), x_data), _bcast(self.sigma(t), x_data)
        return a * x_data + s * x_source

    def target_velocity(self, x_data: jax.Array, x_source: jax.Array, t: jax.Array) -> jax.Array:
        """``u = alpha'(t) x_data + sigma'(t) x_source``, the conditional velocity."""
        da, ds = _bcast(self.alpha_dot(t), x_data), _bcast(self.sigma_dot(t), x_data)
        return da * x_data + ds * x_source

    def check_endpoints(self) -> None:
        """``ValueError`` naming the values unless ``alpha(0) = 1``, ``sigma(0) = sigma_min``,
        ``alpha(1) = 0`` and ``sigma(1) = 1`` within :attr:`endpoint_atol`."""
        if not all(is_concrete(v) for v in jax.tree.leaves(self)):
            return
        ends = jnp.asarray([0.0, 1.0], jnp.float32)
        alpha = np.asarray(self.alpha(ends), np.float64)
        sigma = np.asarray(self.sigma(ends), np.float64)
        tol = float(self.endpoint_atol)
        name = type(self).__name__
        if not np.all(np.isfinite(alpha)) or not np.all(np.isfinite(sigma)):
            raise ValueError(
                f"{name}: the schedule must be finite at t = 0 and 1, got alpha = "
                f"{alpha.tolist()}, sigma = {sigma.tolist()}."
            )
        smin = float(self.sigma_min)
        if abs(alpha[0] - 1.0) > tol or abs(sigma[0] - smin) > tol:
            raise ValueError(
                f"{name}: the path must start at the data, alpha(0) = 1 and sigma(0) = "
                f"sigma_min = {smin:g} (within {tol:g}), got alpha(0) = {alpha[0]:.6g}, "
                f"sigma(0) = {sigma[0]:.6g}."
            )
        if abs(alpha[1]) > tol or abs(sigma[1] - 1.0) > tol:
            raise ValueError(
                f"{name}: the path must end at the pure source, alpha(1) = 0 and sigma(1) = 1 "
                f"(within {tol:g}), got alpha(1) = {alpha[1]:.6g}, sigma(1) = {sigma[1]:.6g}."
            )


def _bcast(value: jax.Array, x: jax.Array) -> jax.Array:
    value = jnp.asarray(value)
    if value.ndim == 0:
        return value
    return value.reshape(value.shape + (1,) * (x.ndim - value.ndim))


@_pytree
class LinearPath(GaussianPath):
    """Conditional-OT path: ``alpha = 1 - t``, ``sigma = sigma_min + (1 - sigma_min) t``
    (Lipman et al. 2023 eq. 20 with ``t' = 1 - t``); ``u = -x_data + (1 - sigma_min)
    x_source``."""

    sigma_min: float = 0.0

    def __post_init__(self) -> None:
        check_finite_number(self.sigma_min, "sigma_min", low=0.0, high=1.0, high_open=True)
        self.check_endpoints()

    def alpha(self, t):
        return 1.0 - jnp.asarray(t, jnp.result_type(float))

    def sigma(self, t):
        return self.sigma_min + (1.0 - self.sigma_min) * jnp.asarray(t, jnp.result_type(float))

    def alpha_dot(self, t):
        return -jnp.ones_like(jnp.asarray(t, jnp.result_type(float)))

    def sigma_dot(self, t):
        return (1.0 - self.sigma_min) * jnp.ones_like(jnp.asarray(t, jnp.result_type(float)))

    def t_from_log_snr(self, log_snr):
        # r = alpha / sigma = exp(lambda / 2): r (s0 + (1 - s0) t) = 1 - t.
        r = jnp.exp(0.5 * jnp.asarray(log_snr))
        return (1.0 - r * self.sigma_min) / (1.0 + r * (1.0 - self.sigma_min))


@_pytree
class CosinePath(GaussianPath):
    """Trigonometric path ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``;
    ``u = (pi / 2) (-sin(pi t / 2) x_data + cos(pi t / 2) x_source)``."""

    def __post_init__(self) -> None:
        self.check_endpoints()

    def alpha(self, t):
        return jnp.sin(0.5 * math.pi * (1.0 - jnp.asarray(t, jnp.result_type(float))))

    def sigma(self, t):
        return jnp.sin(0.5 * math.pi * jnp.asarray(t, jnp.result_type(float)))

    def alpha_dot(self, t):
        return -0.5 * math.pi * self.sigma(t)

    def sigma_dot(self, t):
        return 0.5 * math.pi * self.alpha(t)

    def t_from_log_snr(self, log_snr):
        # alpha / sigma = cot(pi t / 2) = exp(lambda / 2).
        return (2.0 / math.pi) * jnp.arctan(jnp.exp(-0.5 * jnp.asarray(log_snr)))


@_pytree
class VPPath(GaussianPath):
    """VP diffusion path ``alpha = exp(-B/2)``, ``sigma = sqrt(1 - exp(-B))`` with ``B(t) =
    beta_min t + (beta_max - beta_min) t^2 / 2`` (Song et al.'s VP SDE); ``alpha(1)`` must be
    below ``source_atol``."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    source_atol: float = 1e-2

    @property
    def endpoint_atol(self) -> float:  # type: ignore[override]
        return self.source_atol

    def __post_init__(self) -> None:
        check_finite_number(self.beta_min, "beta_min", low=0.0)
        check_finite_number(self.beta_max, "beta_max", low=0.0, low_open=True)
        check_finite_number(self.source_atol, "source_atol", low=0.0, low_open=True)
        self.check_endpoints()

    def _integrated_beta(self, t):
        t = jnp.asarray(t, jnp.result_type(float))
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * jnp.square(t)

    def alpha(self, t):
        return jnp.exp(-0.5 * self._integrated_beta(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(-self._integrated_beta(t)))

    def _beta(self, t):
        return self.beta_min + jnp.asarray(t, jnp.result_type(float)) * (
            self.beta_max - self.beta_min
        )

    def alpha_dot(self, t):
        return -0.5 * self._beta(t) * self.alpha(t)

    def sigma_dot(self, t):
        return 0.5 * self._beta(t) * jnp.square(self.alpha(t)) / self.sigma(t)

    def log_snr(self, t):
        return -jnp.log(jnp.expm1(self._integrated_beta(t)))

    def t_from_log_snr(self, log_snr):
        b = jax.nn.softplus(-jnp.asarray(log_snr))
        delta = self.beta_max - self.beta_min
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * delta * b))


@_pytree(static=("alpha_fn", "sigma_fn"))
class CustomPath(GaussianPath):
    """A user's schedule: ``alpha = alpha_fn(t)``, ``sigma = sigma_fn(t)`` (elementwise,
    differentiable); derivatives by ``jax.jvp``; ``t_from_log_snr`` by bisection."""

    alpha_fn: Callable[[jax.Array], jax.Array]
    sigma_fn: Callable[[jax.Array], jax.Array]
    sigma_min: float = 0.0
    atol: float = 1e-5

    @property
    def endpoint_atol(self) -> float:  # type: ignore[override]
        return self.atol

    def __post_init__(self) -> None:
        if not callable(self.alpha_fn) or not callable(self.sigma_fn):
            raise ValueError(
                f"CustomPath needs callables alpha_fn and sigma_fn, got {self.alpha_fn!r} and "
                f"{self.sigma_fn!r}."
            )
        check_finite_number(self.sigma_min, "sigma_min", low=0.0, high=1.0, high_open=True)
        check_finite_number(self.atol, "atol", low=0.0, low_open=True)
        self.check_endpoints()

    def alpha(self, t):
        return self.alpha_fn(jnp.asarray(t, jnp.result_type(float)))

    def sigma(self, t):
        return self.sigma_fn(jnp.asarray(t, jnp.result_type(float)))


PATHS: dict[str, type[GaussianPath]] = {
    "linear": LinearPath,
    "cosine": CosinePath,
    "vp": VPPath,
}


def make_path(name: str, **kwargs) -> GaussianPath:
    """``make_path("linear" | "cosine" | "vp", **fields)``."""
    check_choice("path", name, tuple(PATHS))
    cls = PATHS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown {name} path field(s) {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**kwargs)


def sample_time(
    key: jax.Array,
    batch: int,
    *,
    sampler: str = "uniform",
    t_min: float = 0.0,
    t_max: float = 1.0,
    loc: float = 0.0,
    scale: float = 1.0,
    dtype=None,
) -> jax.Array:
    """``(batch,)`` training times in ``[t_min, t_max]``: ``t_min + (t_max - t_min) v`` with
    ``v ~ U[0, 1]`` (``"uniform"``) or ``v = sigmoid(loc + scale n)``, ``n ~ N(0, 1)``
    (``"logit_normal"``, Esser et al. 2024 eq. 19, density
    ``exp(-(logit v - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi) v (1 - v))``)."""
    check_choice("time_sampler", sampler, TIME_SAMPLERS)
    check_finite_number(t_min, "t_min", low=0.0, high=1.0)
    check_finite_number(t_max, "t_max", low=0.0, high=1.0)
    if is_concrete(t_min) and is_concrete(t_max) and not float(t_min) < float(t_max):
        raise ValueError(f"need t_min < t_max in [0, 1], got t_min={t_min!r}, t_max={t_max!r}.")
    check_finite_number(scale, "scale", low=0.0, low_open=True)
    dtype = dtype or jnp.result_type(float)
    if sampler == "uniform":
        v = jax.random.uniform(key, (batch,), dtype)
    else:
        v = jax.nn.sigmoid(loc + scale * jax.random.normal(key, (batch,), dtype))
    return t_min + (t_max - t_min) * v
