"""The forward SDEs of score-based generative modelling (Song et al. 2021) as small pytrees.

Each SDE ``dx = f(x, t) dt + g(t) dw`` on ``t in [0, T]`` (``T = 1``) has a Gaussian
perturbation kernel of the form ``x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I)``:

* **VP** (eq. 11; the continuous limit of DDPM): ``beta(t) = beta_min + t (beta_max -
  beta_min)``, ``B(t) = int_0^t beta``; ``f = -beta(t) x / 2``, ``g = sqrt(beta(t))``;
  ``alpha = exp(-B/2)``, ``sigma^2 = 1 - exp(-B)``; prior ``N(0, I)``.
* **sub-VP** (eq. 12): same drift, ``g = sqrt(beta(t) (1 - exp(-2 B(t))))``;
  ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)`` (the *std*, so ``sigma^2`` is below VP's
  at every t); prior ``N(0, I)``.
* **VE** (eq. 9; the continuous limit of SMLD/NCSN): ``sigma(t) = sigma_min
  (sigma_max / sigma_min)^t``, ``f = 0``, ``g = sigma(t) sqrt(2 log(sigma_max /
  sigma_min))``; ``alpha = 1``; prior ``N(0, sigma_max^2 I)``. As in Song et al., the process
  starts from data already perturbed at ``sigma_min`` (``x(0) = x_0 + sigma_min z``), which
  makes ``sigma(t)`` the exact marginal std for all ``t``.

For all three, ``g(t)^2 = d sigma^2/dt - 2 (d log alpha/dt) sigma^2``, and the log
signal-to-noise ratio ``lambda(t) = log(alpha^2 / sigma^2)`` decreases monotonically with
``g^2 / sigma^2 = -d lambda / dt``. Every SDE has ``lambda`` and its inverse in closed form,
which gives the step grids of DPM-Solver and EDM and exact importance sampling of the
likelihood weighting (:mod:`jaxgen.sde.score_matching`).

Given a score function ``s(x, t) ~ grad_x log p_t(x)``:

* reverse SDE (eq. 6): ``dx = [f - g^2 s] dt + g dw_bar`` (time running backwards);
* probability-flow ODE (eq. 13): ``dx/dt = f - g^2 s / 2``, with the same marginals.

Hyperparameters are checked when an SDE is built from concrete numbers (``ValueError``
naming the value): ``0 <= beta_min <= beta_max``, ``beta_max > 0`` (VP, sub-VP);
``0 < sigma_min < sigma_max`` (VE); ``0 < t_min < T``. Built from traced values (inside
``jit``, or when JAX rebuilds the pytree) they are not checked.

Arguments: ``x`` has shape ``(B, *event)`` and ``t`` is float ``(B,)``; coefficient methods
(``alpha``, ``sigma``, ``diffusion``, ...) work elementwise on any ``t``.

References:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through
  Stochastic Differential Equations. ICLR 2021.
  Kingma, Salimans, Poole, Ho. Variational Diffusion Models. NeurIPS 2021 (log-SNR view).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import sampling
from jaxgen.core.validation import check_finite_number, check_positive_int
from jaxgen.diffusion.schedules import DiffusionSchedule, schedule_from_betas

__all__ = ["SDE", "SDES", "ScoreFn", "SubVPSDE", "VESDE", "VPSDE", "make_sde"]

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``score_fn(x, t) -> grad_x log p_t(x)``: ``x (B, *event)``, float ``t (B,)``."""

_LOG_2PI = math.log(2.0 * math.pi)


def _bcast(values: jax.Array, x: jax.Array) -> jax.Array:
    """Per-example ``(B,)`` values reshaped to broadcast against ``x`` of shape (B, ...)."""
    values = jnp.asarray(values)
    if values.ndim == 0:
        return values
    if values.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {values.shape}.")
    return jnp.reshape(values, values.shape + (1,) * (x.ndim - 1))


class SDE(abc.ABC):
    """A forward SDE with a Gaussian kernel ``N(alpha(t) x_0, sigma(t)^2 I)``; see module doc.

    Subclasses are frozen dataclasses registered as pytrees whose float fields are leaves, so
    an SDE can be passed through ``jit``/``vmap`` and differentiated with respect to its
    hyperparameters. ``T`` is 1; ``t_min`` is the smallest time samplers integrate to (and
    the default lower end of the likelihood ODE).
    """

    T: float = 1.0

    # ------------------------------------------------------------ per-SDE coefficients

    @abc.abstractmethod
    def alpha(self, t: jax.Array) -> jax.Array:
        """Signal scale of the perturbation kernel."""

    @abc.abstractmethod
    def sigma(self, t: jax.Array) -> jax.Array:
        """Noise std of the perturbation kernel."""

    @abc.abstractmethod
    def diffusion(self, t: jax.Array) -> jax.Array:
        """``g(t)``."""

    @abc.abstractmethod
    def log_alpha_rate(self, t: jax.Array) -> jax.Array:
        """``d log alpha / dt``; the drift is ``f(x, t) = (d log alpha/dt) x`` (linear)."""

    @abc.abstractmethod
    def log_snr(self, t: jax.Array) -> jax.Array:
        """``lambda(t) = log(alpha(t)^2 / sigma(t)^2)``, decreasing in ``t``."""

    @abc.abstractmethod
    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        """The inverse of :meth:`log_snr`."""

    @abc.abstractmethod
    def prior_std(self) -> jax.Array:
        """Std of the isotropic Gaussian prior ``p_T``."""

    t_min: float  # default end time of samplers (``epsilon`` in Song et al.); a field

    # ------------------------------------------------------------ shared machinery

    def drift(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """``f(x, t) = (d log alpha/dt) x``."""
        return _bcast(self.log_alpha_rate(t), x) * x

    def marginal_mean_std(self, x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean ``alpha(t) x_0`` (like ``x0``) and std ``sigma(t)`` (like ``t``) of
        ``p_{0t}(x_t | x_0)``."""
        return _bcast(self.alpha(t), x0) * x0, self.sigma(t)

    def perturb(self, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
        """``x_t = alpha(t) x_0 + sigma(t) noise``."""
        return _bcast(self.alpha(t), x0) * x0 + _bcast(self.sigma(t), x0) * noise

    def sigma_ratio(self, t: jax.Array) -> jax.Array:
        """``sigma(t) / alpha(t) = exp(-lambda/2)``: the noise level of ``x_t / alpha(t)``
        (EDM's sigma)."""
        return jnp.exp(-0.5 * self.log_snr(t))

    def t_from_sigma_ratio(self, sigma_ratio: jax.Array) -> jax.Array:
        """The inverse of :meth:`sigma_ratio`."""
        return self.t_from_log_snr(-2.0 * jnp.log(sigma_ratio))

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32):
        """A draw from the prior ``p_T = N(0, prior_std^2 I)`` of shape ``shape = (B, *event)``,
        example ``b`` from its own key (``key``: one key, example ``b`` then using
        ``fold_in(key, b)``, or ``(B,)`` per-example keys; :mod:`jaxgen.core.sampling`)."""
        keys = sampling.as_example_keys(key, tuple(shape)[0])
        return (self.prior_std() * sampling.normal(keys, tuple(shape)[1:], dtype)).astype(dtype)

    def prior_log_prob(self, z: jax.Array) -> jax.Array:
        """``log p_T(z)`` per example, ``(B,)``, summed over the event dims."""
        z = jnp.asarray(z)
        dim = math.prod(z.shape[1:])
        std = self.prior_std()
        sq = jnp.sum(jnp.square(z.reshape(z.shape[0], -1)), axis=-1)
        return -0.5 * dim * (_LOG_2PI + 2.0 * jnp.log(std)) - 0.5 * sq / jnp.square(std)

    def reverse_drift(
        self, score_fn: ScoreFn, x: jax.Array, t: jax.Array, *, probability_flow: bool = False
    ) -> jax.Array:
        """Drift of the reverse SDE ``f - g^2 s`` (eq. 6) or of the probability-flow ODE
        ``f - g^2 s / 2`` (eq. 13)."""
        weight = 0.5 if probability_flow else 1.0
        g2 = _bcast(jnp.square(self.diffusion(t)), x)
        return self.drift(x, t) - weight * g2 * score_fn(x, t)

    def probability_flow(self, score_fn: ScoreFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The probability-flow ODE's vector field ``v(x, t) = f - g^2 s / 2`` as a callable."""
        return lambda x, t: self.reverse_drift(score_fn, x, t, probability_flow=True)

    def discretize(self, x: jax.Array, t: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
        """Song et al.'s discretization ``x_{i+1} = x_i + f_i + G_i z`` on ``num_steps`` steps
        (App. B/E). Generic: ``f_i = f(x, t) dt`` and ``G_i = g(t) sqrt(dt)`` with ``dt =
        T / num_steps``; VP and VE override with the DDPM and SMLD chains."""
        dt = self.T / num_steps
        return self.drift(x, t) * dt, self.diffusion(t) * math.sqrt(dt)

    def time_grid(self, num_steps: int, *, t_min: float | None = None) -> jax.Array:
        """``num_steps + 1`` times from ``T`` down to ``t_min``, uniform in ``t``."""
        num_steps = check_positive_int(num_steps, "num_steps")
        t_min = self.t_min if t_min is None else t_min
        check_finite_number(t_min, "t_min", low=0.0, high=self.T, high_open=True)
        return jnp.linspace(self.T, t_min, num_steps + 1)


def _pytree(cls):
    """Frozen dataclass whose fields are pytree leaves.

    Registered with ``register_pytree_with_keys`` rather than ``register_dataclass``: in
    jax 0.10.2 treedefs of *different* ``register_dataclass`` classes with the same number
    of fields compare equal, so a jitted function called with a VP and then a sub-VP SDE
    could reuse the wrong compiled code (seen: 3 wrong results in 300 fresh functions).
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))

    def flatten_with_keys(obj):
        return [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in names], None

    def flatten(obj):
        return [getattr(obj, n) for n in names], None

    def unflatten(_, children):
        # Rebuilt without __init__, so without __post_init__'s checks: JAX rebuilds pytrees
        # with placeholders, vmap axes and gradients, which are not hyperparameters.
        obj = object.__new__(cls)
        for n, child in zip(names, children, strict=True):
            object.__setattr__(obj, n, child)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


def _concrete_fields(sde: SDE) -> dict[str, np.ndarray] | None:
    """Every field of ``sde`` as a float array when all are concrete reals, else ``None``:
    an SDE holding tracers (built inside ``jit``) or used as a ``vmap`` axis spec such as
    ``VPSDE(0, 0, None)`` is not checked."""
    values = {}
    for field in dataclasses.fields(sde):
        value = getattr(sde, field.name)
        if value is None or isinstance(value, (bool, jax.core.Tracer)):
            return None
        try:
            values[field.name] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None
    return values


def _fail(sde: SDE, message: str) -> None:
    raise ValueError(f"{type(sde).__name__}: {message}")


def _check_t_min(sde: SDE, t_min: np.ndarray) -> None:
    if not np.all((t_min > 0.0) & (t_min < sde.T)):
        _fail(sde, f"t_min must lie in (0, T) = (0, {sde.T:g}), got {sde.t_min!r}.")


def _check_betas(sde: SDE) -> None:
    """``0 <= beta_min <= beta_max`` with ``beta_max > 0``, all finite."""
    v = _concrete_fields(sde)
    if v is None:
        return
    lo, hi = v["beta_min"], v["beta_max"]
    if not np.all(np.isfinite(lo) & (lo >= 0.0)):
        _fail(sde, f"beta_min must be a finite number >= 0, got {sde.beta_min!r}.")
    if not np.all(np.isfinite(hi) & (hi > 0.0)):
        _fail(sde, f"beta_max must be a finite number > 0, got {sde.beta_max!r}.")
    if np.any(hi < lo):
        _fail(
            sde,
            f"beta(t) must be non-decreasing, i.e. beta_max >= beta_min, got "
            f"beta_min = {sde.beta_min!r} > beta_max = {sde.beta_max!r}.",
        )
    _check_t_min(sde, v["t_min"])


def _check_sigmas(sde: SDE) -> None:
    """``0 < sigma_min < sigma_max``, all finite."""
    v = _concrete_fields(sde)
    if v is None:
        return
    lo, hi = v["sigma_min"], v["sigma_max"]
    if not np.all(np.isfinite(lo) & (lo > 0.0)):
        _fail(sde, f"sigma_min must be a finite number > 0, got {sde.sigma_min!r}.")
    if not np.all(np.isfinite(hi) & (hi > 0.0)):
        _fail(sde, f"sigma_max must be a finite number > 0, got {sde.sigma_max!r}.")
    if not np.all(hi > lo):
        _fail(
            sde,
            f"sigma_max must be greater than sigma_min (the noise grows with t), got "
            f"sigma_min = {sde.sigma_min!r} and sigma_max = {sde.sigma_max!r}.",
        )
    _check_t_min(sde, v["t_min"])


class _LinearBetaMixin:
    """``beta(t) = beta_min + t (beta_max - beta_min)`` and its integral ``B(t)``."""

    beta_min: float
    beta_max: float

    def beta(self, t: jax.Array) -> jax.Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: jax.Array) -> jax.Array:
        """``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2``."""
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * jnp.square(t)

    def t_from_integrated_beta(self, b: jax.Array) -> jax.Array:
        """Solves ``B(t) = b`` (the positive root, written without cancellation)."""
        delta = self.beta_max - self.beta_min
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * delta * b))

    def log_alpha_rate(self, t: jax.Array) -> jax.Array:
        return -0.5 * self.beta(t)

    def alpha(self, t: jax.Array) -> jax.Array:
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def prior_std(self) -> jax.Array:
        return jnp.asarray(1.0)

    def ddpm_schedule(self, num_steps: int) -> DiffusionSchedule:
        """The DDPM chain this SDE is the limit of (Song et al. App. B):
        ``beta_i = beta_min / N + (i / (N - 1)) (beta_max - beta_min) / N``, ``i = 0..N-1``.
        With the defaults and ``N = 1000`` this is Ho et al.'s linear 1e-4..0.02 schedule."""
        n = check_positive_int(num_steps, "num_steps", minimum=2)
        i = np.arange(n, dtype=np.float64)
        beta_min, beta_max = float(self.beta_min), float(self.beta_max)
        return schedule_from_betas((beta_min + i / (n - 1) * (beta_max - beta_min)) / n)


@_pytree
class VPSDE(_LinearBetaMixin, SDE):
    """Variance-preserving SDE (Song et al. eq. 11), the continuous DDPM."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        _check_betas(self)

    def sigma(self, t: jax.Array) -> jax.Array:
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def diffusion(self, t: jax.Array) -> jax.Array:
        return jnp.sqrt(self.beta(t))

    def log_snr(self, t: jax.Array) -> jax.Array:
        # alpha^2 / sigma^2 = e^{-B} / (1 - e^{-B}) = 1 / (e^{B} - 1)
        return -jnp.log(jnp.expm1(self.integrated_beta(t)))

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        return self.t_from_integrated_beta(jax.nn.softplus(-log_snr))

    def discretize(self, x, t, num_steps):
        """DDPM's chain: ``x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z`` with
        ``beta_i = beta(t) / N``."""
        beta = self.beta(t) / num_steps
        return _bcast(jnp.sqrt(1.0 - beta), x) * x - x, jnp.sqrt(beta)


@_pytree
class SubVPSDE(_LinearBetaMixin, SDE):
    """sub-VP SDE (Song et al. eq. 12): variance bounded by VP's; best likelihoods."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        _check_betas(self)

    def sigma(self, t: jax.Array) -> jax.Array:
        return -jnp.expm1(-self.integrated_beta(t))

    def diffusion(self, t: jax.Array) -> jax.Array:
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2.0 * self.integrated_beta(t)))

    def log_snr(self, t: jax.Array) -> jax.Array:
        b = self.integrated_beta(t)
        return -b - 2.0 * jnp.log(-jnp.expm1(-b))

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        # With u = e^{-B} and r = e^lambda: r (1 - u)^2 = u, whose root in (0, 1) is
        # u = 2r / (2r + 1 + sqrt(4r + 1)), i.e. B = log1p((1 + sqrt(4r + 1)) / (2r)).
        # Written with e^{-lambda} so that it neither overflows nor cancels.
        inv_r = jnp.exp(-log_snr)
        b = jnp.log1p(0.5 * inv_r + jnp.sqrt(jnp.square(inv_r) + 4.0 * inv_r) * 0.5)
        return self.t_from_integrated_beta(b)


@_pytree
class VESDE(SDE):
    """Variance-exploding SDE (Song et al. eq. 9), the continuous SMLD / NCSN."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = 1e-5

    def __post_init__(self) -> None:
        _check_sigmas(self)

    def _log_ratio(self):
        return jnp.log(self.sigma_max) - jnp.log(self.sigma_min)

    def alpha(self, t: jax.Array) -> jax.Array:
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

    def sigma(self, t: jax.Array) -> jax.Array:
        return self.sigma_min * jnp.exp(t * self._log_ratio())

    def diffusion(self, t: jax.Array) -> jax.Array:
        return self.sigma(t) * jnp.sqrt(2.0 * self._log_ratio())

    def log_alpha_rate(self, t: jax.Array) -> jax.Array:
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(float)))

    def log_snr(self, t: jax.Array) -> jax.Array:
        return -2.0 * jnp.log(self.sigma(t))

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        return (-0.5 * log_snr - jnp.log(self.sigma_min)) / self._log_ratio()

    def prior_std(self) -> jax.Array:
        return jnp.asarray(self.sigma_max)

    def discretize(self, x, t, num_steps):
        """SMLD's chain: ``x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z`` on the
        ``num_steps`` geometric noise levels (``sigma_{-1} = 0``)."""
        t = jnp.asarray(t)
        sigma = self.sigma(t)
        prev = jnp.where(t - self.T / num_steps <= 0.0, 0.0, self.sigma(t - self.T / num_steps))
        return jnp.zeros_like(x), jnp.sqrt(jnp.square(sigma) - jnp.square(prev))


SDES: dict[str, type[SDE]] = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def make_sde(name: str, **kwargs: float) -> SDE:
    """``make_sde("vp" | "subvp" | "ve", **hyperparameters)``."""
    if name not in SDES:
        raise ValueError(f"unknown SDE {name!r}; expected one of {tuple(SDES)}.")
    cls = SDES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(
            f"unknown {name} SDE parameter(s) {sorted(unknown)}; known: {sorted(known)}."
        )
    return cls(**kwargs)
