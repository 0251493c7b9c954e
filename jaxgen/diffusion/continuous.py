"""A continuous-time view of a discrete DDPM schedule, for the few-step ODE samplers.

The samplers of :mod:`jaxgen.sde.samplers` (DPM-Solver++, UniPC, EDM) integrate the
probability-flow ODE of a Gaussian path ``x_t = alpha(t) x_0 + sigma(t) eps`` in continuous
time ``t in [t_min, T]``; they need ``alpha``, ``sigma``, the log-SNR ``lambda(t) = log(alpha^2
/ sigma^2)`` and its inverse, the EDM noise level ``sigma / alpha = exp(-lambda / 2)`` and its
inverse, and the prior ``N(0, prior_std^2 I)`` at ``T``. A DDPM (Ho et al. 2020) defines the
path only at its ``N`` steps: step ``k = 1..N`` (array index ``k - 1``, what the network is
given) has ``alpha_k^2 = abar_k`` and ``sigma_k^2 = 1 - abar_k``, so

    lambda_k = log(abar_k / (1 - abar_k)),    strictly decreasing in k (every beta_k > 0).

:class:`ContinuousSchedule` extends it to real ``t in [1, N]`` (``t`` is the paper's step,
``T = N``, ``t_min = 1``; the network is called at index ``t - 1``, a float the U-Net's
sinusoidal embedding takes as it is) by interpolating the log-SNR linearly between the steps::

    lambda(t) = (1 - w) lambda_k + w lambda_{k+1},    k = floor(t), w = t - k,
    alpha(t)^2 = sigmoid(lambda(t)),   sigma(t)^2 = sigmoid(-lambda(t))   (variance preserving),

(diffusers' Karras-grid schedulers map a level to a fractional step by interpolating ``log
sigma`` linearly between the integer steps, with their ``sigma = sqrt((1 - abar) / abar) =
exp(-lambda / 2)``: the same interpolation). ``lambda`` is continuous and strictly
decreasing, with a closed-form inverse, piecewise linear too: for ``lambda_{k+1} <= l <=
lambda_k``, ``t(l) = k + (lambda_k - l) / (lambda_k - lambda_{k+1})``; the EDM level inverts
through ``lambda = -2 log(sigma / alpha)``. Outside ``[1, N]`` (and ``[lambda_N, lambda_1]``)
both maps are clamped to the ends.

**Approximation.** At integer ``t = k`` every coefficient equals the discrete schedule's
(exactly in the maths; to float rounding in the arrays, where ``alpha`` is computed as
``sqrt(sigmoid(lambda_k))``). DPM-Solver++ and UniPC step in ``lambda`` and use ``t`` only to
call the network, so the interpolation decides one thing: which network time answers for a
log-SNR between two steps' (here the step at the same fraction of the log-SNR gap). There the
network is evaluated at noise levels it was not trained on; a U-Net trained on 1000 steps
varies little between neighbours. With an exact model of the interpolated path (e.g. the
exact eps of Gaussian data, through :func:`continuous_score_fn`) the samplers solve the ODE of
that path, whose marginals at integer steps are exactly the DDPM's ``q(x_k)``.

References:
  Ho, Jain, Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Kingma, Salimans, Poole, Ho. Variational Diffusion Models. NeurIPS 2021 (log-SNR view).
  Lu, Zhou, Bao, Chen, Li, Zhu. DPM-Solver. NeurIPS 2022 (App. on discrete-time models;
  their released code interpolates ``log alpha`` piecewise linearly in ``t`` instead).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import parameterization as core_param
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = ["ContinuousSchedule", "continuous_score_fn", "index_path"]


class ContinuousSchedule:
    """The DDPM ``schedule`` as a continuous variance-preserving path on ``t in [1, N]``.

    Duck-types the interface of :class:`jaxgen.sde.SDE` that the ODE samplers use
    (``T``, ``t_min``, ``alpha``, ``sigma``, ``log_snr``, ``t_from_log_snr``, ``sigma_ratio``,
    ``t_from_sigma_ratio``, ``prior_std``), without importing :mod:`jaxgen.sde` (which sits
    above :mod:`jaxgen.diffusion`). ``t`` is the paper's step (network index ``t - 1``);
    ``lambda(t)`` interpolates ``lambda_k = log(abar_k / (1 - abar_k))`` linearly (module
    docstring). Methods are elementwise in ``t`` and traceable; the table is concrete.

    Attributes:
      T: ``N`` (a float), the first time of a sampler, where the prior ``N(0, I)`` stands in
        for ``q(x_N)`` (``abar_N`` ~ 4e-5 for Ho et al.'s schedule).
      t_min: ``1.0``, the last step (index 0).
      log_snrs: ``(N,)`` table ``lambda_1..lambda_N`` (float64 maths, stored in the default
        float dtype).
    """

    def __init__(self, schedule: DiffusionSchedule) -> None:
        # lambda_k = 2 log(sqrt(abar_k) / sqrt(1 - abar_k)) from the two stored columns, each
        # accurate to float rounding (1 - abar from a float32 abar would lose the small sigmas).
        alpha = np.asarray(schedule.sqrt_alphas_cumprod, dtype=np.float64)
        sigma = np.asarray(schedule.sqrt_one_minus_alphas_cumprod, dtype=np.float64)
        lam = 2.0 * (np.log(alpha) - np.log(sigma))
        if not np.all(np.isfinite(lam)) or not np.all(np.diff(lam) < 0):
            raise ValueError(
                "the schedule's log-SNR log(abar / (1 - abar)) must be finite and strictly "
                f"decreasing; got values from {lam.min()!r} to {lam.max()!r}."
            )
        self.num_timesteps = int(lam.shape[0])
        self.T = float(self.num_timesteps)
        self.t_min = 1.0
        self.log_snrs = jnp.asarray(lam, dtype=jnp.result_type(float))

    def __repr__(self) -> str:
        return f"ContinuousSchedule(N={self.num_timesteps})"

    def log_snr(self, t: jax.Array) -> jax.Array:
        """``lambda(t) = (1 - w) lambda_k + w lambda_{k+1}``, ``k = floor(t)``, ``w = t - k``
        (``t`` clamped to ``[1, N]``); exactly ``lambda_k`` at integer ``t = k``."""
        dtype = self.log_snrs.dtype
        s = jnp.clip(jnp.asarray(t, dtype) - 1.0, 0.0, self.T - 1.0)  # network index
        k = jnp.clip(jnp.floor(s).astype(jnp.int32), 0, self.num_timesteps - 2)
        w = s - k.astype(dtype)
        lo, hi = self.log_snrs[k], self.log_snrs[k + 1]
        return lo + w * (hi - lo)

    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        """The inverse of :meth:`log_snr`: ``t = k + (lambda_k - l) / (lambda_k -
        lambda_{k+1})`` for ``lambda_{k+1} <= l <= lambda_k`` (clamped to ``[1, N]``)."""
        dtype = self.log_snrs.dtype
        steps = jnp.arange(1, self.num_timesteps + 1, dtype=dtype)
        # jnp.interp needs increasing abscissae: -lambda_k increases with k.
        return jnp.interp(-jnp.asarray(log_snr, dtype), -self.log_snrs, steps)

    def alpha(self, t: jax.Array) -> jax.Array:
        """``alpha(t) = sqrt(sigmoid(lambda(t))) = exp(-softplus(-lambda) / 2)``."""
        return jnp.exp(-0.5 * jax.nn.softplus(-self.log_snr(t)))

    def sigma(self, t: jax.Array) -> jax.Array:
        """``sigma(t) = sqrt(sigmoid(-lambda(t))) = exp(-softplus(lambda) / 2)``."""
        return jnp.exp(-0.5 * jax.nn.softplus(self.log_snr(t)))

    def sigma_ratio(self, t: jax.Array) -> jax.Array:
        """EDM's noise level ``sigma(t) / alpha(t) = exp(-lambda(t) / 2)``."""
        return jnp.exp(-0.5 * self.log_snr(t))

    def t_from_sigma_ratio(self, sigma_ratio: jax.Array) -> jax.Array:
        """The inverse of :meth:`sigma_ratio`, ``t(lambda = -2 log(sigma / alpha))``."""
        return self.t_from_log_snr(-2.0 * jnp.log(sigma_ratio))

    def prior_std(self) -> jax.Array:
        """``1``: the prior ``N(0, I)`` of a variance-preserving path."""
        return jnp.asarray(1.0, self.log_snrs.dtype)

    def model_time(self, t: jax.Array) -> jax.Array:
        """The network's (0-based, float) timestep ``t - 1`` of continuous time ``t``."""
        return jnp.asarray(t, self.log_snrs.dtype) - 1.0


def index_path(view: ContinuousSchedule) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``s -> (alpha(s + 1), sigma(s + 1))``: the path in the network's (float) index ``s``,
    a callable path for :func:`jaxgen.guidance.path_coefficients` (guidance transforms of a
    model called at fractional steps). At integer ``s`` it is the DDPM schedule's
    ``(sqrt(abar), sqrt(1 - abar))`` at index ``s``."""

    def coefficients(s: jax.Array) -> tuple[jax.Array, jax.Array]:
        t = jnp.asarray(s, view.log_snrs.dtype) + 1.0
        return view.alpha(t), view.sigma(t)

    return coefficients


def continuous_score_fn(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    view: ContinuousSchedule,
    *,
    parameterization: str,
    clip_denoised: bool = False,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The score ``s(x, t)`` of a DDPM network on the continuous path ``view``.

    The network predicts ``parameterization`` (eps, x0 or v) at index ``t - 1``; with
    ``alpha = alpha(t)``, ``sigma = sigma(t)`` its ``(x0^, eps^)`` follow exactly
    (:func:`jaxgen.core.parameterization.to_x0_eps`) and the score is Tweedie's

        s(x, t) = -eps^ / sigma = (alpha x0^ - x) / sigma^2.

    With ``clip_denoised`` the data prediction is clipped, ``x0^ <- clip(x0^, -1, 1)``, and the
    score is the second form with the clipped ``x0^``: a data-prediction solver
    (DPM-Solver++, UniPC, which read ``x0 = (x + sigma^2 s) / alpha``) then steps with the
    clipped ``x0^``, DPM-Solver++'s thresholding (Lu et al. 2022b, Sec. 5) with ratio 1, as
    DDPM's own samplers clip.

    Args:
      model_fn: ``model_fn(x (B, *event), index (B,) float) -> prediction``.
      view: the continuous schedule.
      parameterization: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip ``x0^`` to ``[-1, 1]``.

    Returns:
      ``score_fn(x, t)`` with float ``t (B,)`` in ``[1, N]``.
    """
    core_param.check_parameterization(parameterization, ("eps", "x0", "v"))

    def score_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = view.alpha(t), view.sigma(t)
        pred = model_fn(x, view.model_time(t))
        x0, eps = core_param.to_x0_eps(pred, x, alpha, sigma, parameterization=parameterization)
        a = core_param.broadcast_to_event(alpha, x)
        s = core_param.broadcast_to_event(sigma, x)
        if clip_denoised:
            return (a * jnp.clip(x0, -1.0, 1.0) - x) / jnp.square(s)
        return -eps / s

    return score_fn
