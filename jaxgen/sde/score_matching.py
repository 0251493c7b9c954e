"""Denoising score matching (DSM) for any SDE of :mod:`jaxgen.sde.sdes`.

With ``x_t = alpha(t) x_0 + sigma(t) eps`` and ``eps ~ N(0, I)`` the perturbation kernel's
score is ``grad log p_0t(x_t | x_0) = -eps / sigma(t)``. Song et al. (2021, eq. 7) train
``s_theta`` by the weighted DSM objective (Vincent 2011)::

    J(theta; lambda) = 1/2 int_{t_min}^T lambda(t) E_{x_0,eps} ||s_theta(x_t, t) + eps/sigma||^2 dt,

which differs from the intractable score-matching objective ``E ||s_theta - grad log p_t||^2``
by a constant independent of ``theta``, so for every ``t`` its minimiser is the true score
``grad log p_t``. The loss is evaluated in the numerically natural "eps space": with the
residual ``r = sigma s_theta + eps`` (so ``eps_hat = -sigma s_theta = eps - r``)::

    lambda(t) || s_theta + eps / sigma ||^2 = (lambda(t) / sigma^2) || r ||^2,

and ``r`` is formed without dividing by a small ``sigma`` wherever the parameterization
allows (:mod:`jaxgen.sde.parameterization`; ``s~ = sigma / alpha``, ``sd = sigma_data``):

* ``score``: ``r = sigma s_theta + eps``;
* ``eps``: ``r = eps - eps_theta``;
* ``x0``: ``r = (x0_theta - x_0) / s~`` (the division is the weighting of an x0 error);
* ``v``: ``r = alpha (v - v_theta) / (alpha^2 + sigma^2)`` with ``v = alpha eps - sigma x_0``;
* ``edm``: with ``x~ = x_t / alpha = x_0 + s~ eps`` and ``D = c_skip x~ + c_out F``,
  ``r = (D - x_0) / s~ = c_skip eps - s~ x_0 / (s~^2 + sd^2) + sd F / sqrt(s~^2 + sd^2)``.

Weightings ``lambda`` (:data:`WEIGHTINGS`) and the eps-space factor ``w = lambda / sigma^2``:

* ``"sigma2"``: ``lambda = sigma^2`` (Song et al.'s default, ``lambda ~ 1 / E||grad log
  p_0t||^2``); ``w = 1``, i.e. ``1/2 ||eps_theta - eps||^2`` for an eps network.
* ``"likelihood"``: ``lambda = g(t)^2`` (Song, Durkan, Murray, Ermon 2021, Theorem 1:
  ``KL(p_0 || p_theta^SDE) <= J_SM(theta; g^2) + KL(p_T || pi)``, so with this weighting
  the loss is an upper bound on the negative log-likelihood up to a theta-independent
  constant); ``w = g^2 / sigma^2 = -d log-SNR / dt``.
* ``"edm"``: Karras et al. (2022, Table 1) weight the denoiser error,
  ``lambda_x0 ||D - x_0||^2`` with ``lambda_x0 = (s~^2 + sd^2) / (s~ sd)^2``; since
  ``D - x_0 = s~ r``, ``w = (s~^2 + sd^2) / sd^2``. (EDM's loss has no factor 1/2; ours does,
  like every weighting here.)

Time sampling and the convention for the estimate. For ``"sigma2"`` and ``"likelihood"``
the per-example loss is an unbiased one-sample estimate of ``J(theta; lambda)``, the
integral over ``[t_min, T]`` (not the average over ``t``):

* uniform ``t ~ U[t_min, T]`` (density ``1 / (T - t_min)``): ``loss = 1/2 (T - t_min) w(t)
  ||r||^2``, so the reported weight includes the factor ``T - t_min`` (1 - 1e-5 by default);
* importance sampling (``importance_sampling=True``, likelihood weighting only): for every
  SDE here ``g^2 / sigma^2 = -d lambda_snr / dt`` with ``lambda_snr(t) = log(alpha^2 /
  sigma^2)`` decreasing, so the density ``q(t) = (g^2 / sigma^2) / Z`` on ``[t_min, T]``,
  ``Z = lambda_snr(t_min) - lambda_snr(T)``, is sampled exactly by ``l ~ U[lambda_snr(T),
  lambda_snr(t_min)]``, ``t = t_from_log_snr(l)``. The importance weight ``1 / q(t)`` turns
  the integrand ``1/2 (g^2 / sigma^2) ||r||^2`` into ``loss = 1/2 Z ||r||^2``: the same
  expectation ``J(theta; g^2)`` as uniform ``t``, without the ``1/t``-like spikes of
  ``g^2 / sigma^2`` near ``t = 0`` (it is the integral over log-SNR of Kingma et al. 2021).
  For VE, ``g^2 / sigma^2 = 2 log(sigma_max / sigma_min)`` is constant and the two
  estimators coincide.

For ``"edm"`` the loss is instead an estimate of ``E_{t ~ p_EDM}[1/2 w(t) ||r||^2]`` where
``ln s~ ~ N(P_mean, P_std^2)`` (EDM Table 1: ``P_mean = -1.2``, ``P_std = 1.2``), mapped to
``t = sde.t_from_sigma_ratio(s~)`` and clipped to ``[t_min, T]`` (the clipped log-normal
is the sampling law; no density correction is applied).

The per-example event reduction is a sum (``reduce="sum"``: nats, the scale of the
likelihood bound) or a mean (``reduce="mean"``). Outputs are per example, shape ``(B,)``,
with ``terms``: ``"t"`` (the sampled times), ``"weight"`` (``w`` including the
time-sampling factor, so ``loss = 1/2 weight sum_or_mean(r^2)``) and ``"eps_mse"`` (the
event mean of ``r^2``, i.e. of ``(eps_hat - eps)^2``, comparable across weightings).

References:
  Vincent. A Connection Between Score Matching and Denoising Autoencoders. Neural
  Computation 2011.
  Song et al. Score-Based Generative Modeling through SDEs. ICLR 2021 (eq. 7).
  Song, Durkan, Murray, Ermon. Maximum Likelihood Training of Score-Based Diffusion Models.
  NeurIPS 2021 (Theorem 1; importance sampling of the likelihood weighting).
  Kingma, Salimans, Poole, Ho. Variational Diffusion Models. NeurIPS 2021.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models. NeurIPS 2022 (Table 1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.core.validation import check_time_range
from jaxgen.sde.parameterization import NetworkFn, check_parameterization, edm_coefficients
from jaxgen.sde.sdes import SDE, _bcast

__all__ = ["REDUCTIONS", "WEIGHTINGS", "dsm_loss", "dsm_loss_at"]

WEIGHTINGS: tuple[str, ...] = ("sigma2", "likelihood", "edm")
REDUCTIONS: tuple[str, ...] = ("sum", "mean")


def _check_options(parameterization: str, weighting: str, reduce: str, sigma_data: float) -> None:
    check_parameterization(parameterization)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}.")
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; expected one of {REDUCTIONS}.")
    if not float(sigma_data) > 0.0:
        raise ValueError(f"sigma_data must be positive, got {sigma_data}.")


def _check_x0(x0: jax.Array) -> jax.Array:
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have shape (B, *event), got {x0.shape}.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be a float array, got dtype {x0.dtype}.")
    return x0


def _event_reduce(values: jax.Array, reduce: str) -> jax.Array:
    axes = tuple(range(1, values.ndim))
    return jnp.sum(values, axis=axes) if reduce == "sum" else jnp.mean(values, axis=axes)


def _residual(
    net: NetworkFn,
    sde: SDE,
    x0: jax.Array,
    t: jax.Array,
    noise: jax.Array,
    *,
    parameterization: str,
    sigma_data: float,
    noise_input: Callable[[jax.Array], jax.Array] | None,
) -> jax.Array:
    """``r = sigma s_theta(x_t, t) + eps`` computed in the parameterization's own space."""
    alpha, sigma = sde.alpha(t), sde.sigma(t)
    a, s = _bcast(alpha, x0), _bcast(sigma, x0)
    xt = a * x0 + s * noise
    if parameterization == "edm":
        # The network sees exactly what network_to_denoiser gives it.
        ratio = sigma / alpha
        c_skip, _, c_in, c_noise = edm_coefficients(ratio, sigma_data)
        out = net(_bcast(c_in, x0) * (xt / a), c_noise)
    else:
        out = net(xt, t if noise_input is None else noise_input(t))
    if jnp.shape(out) != x0.shape:
        raise ValueError(f"net output has shape {jnp.shape(out)}, expected x0's shape {x0.shape}.")
    if parameterization == "score":
        return s * out + noise
    if parameterization == "eps":
        return noise - out
    if parameterization == "x0":
        return (out - x0) * (a / s)
    if parameterization == "v":
        v = a * noise - s * x0
        return (v - out) * (a / (jnp.square(a) + jnp.square(s)))
    # edm: r = (D - x0) / s~ with D = c_skip (x0 + s~ eps) + c_out F, without cancellation.
    r_ = _bcast(ratio, x0)
    var = jnp.square(r_) + sigma_data**2
    return _bcast(c_skip, x0) * noise - (r_ / var) * x0 + (sigma_data / jnp.sqrt(var)) * out


def _eps_space_weight(sde: SDE, t: jax.Array, weighting: str, sigma_data: float) -> jax.Array:
    """``w(t) = lambda(t) / sigma(t)^2``, the factor on ``||sigma s + eps||^2``."""
    if weighting == "sigma2":
        return jnp.ones_like(t)
    if weighting == "likelihood":
        return jnp.square(sde.diffusion(t) / sde.sigma(t))
    return 1.0 + jnp.square(sde.sigma_ratio(t) / sigma_data)  # edm: (s~^2 + sd^2) / sd^2


def _per_example_t(t: jax.Array, x0: jax.Array) -> jax.Array:
    t = jnp.asarray(t)
    if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
        raise ValueError(f"t must hold real times in (0, T], got dtype {t.dtype}.")
    t = t.astype(x0.dtype)
    if t.ndim == 0:
        return jnp.broadcast_to(t, (x0.shape[0],))
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x0.shape[0]},), got {t.shape}.")
    return t


def dsm_loss_at(
    net: NetworkFn,
    sde: SDE,
    x0: jax.Array,
    t: jax.Array,
    noise: jax.Array,
    *,
    parameterization: str = "eps",
    weighting: str = "sigma2",
    sigma_data: float = 0.5,
    noise_input: Callable[[jax.Array], jax.Array] | None = None,
    reduce: str = "sum",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The DSM integrand at given times and noise (deterministic; see the module doc).

    ``loss = 1/2 lambda(t) ||s_theta(x_t, t) + noise / sigma(t)||^2 = 1/2 w(t) ||r||^2``
    with ``x_t = alpha(t) x0 + sigma(t) noise`` and ``w = lambda / sigma^2``; no
    time-sampling factor is applied (:func:`dsm_loss` adds it).

    Args:
      net: the raw network ``net(x_in, c)``: for ``"score"``, ``"eps"``, ``"x0"``, ``"v"``
        it gets ``(x_t, noise_input(t))`` and its output is that prediction; for ``"edm"``
        it gets ``(c_in x_t / alpha, c_noise)`` and is EDM's ``F``
        (:func:`jaxgen.sde.network_to_denoiser`).
      sde: the forward SDE.
      x0: float data ``(B, *event)``.
      t: times in ``(0, T]``, a scalar or ``(B,)``. Concrete times outside (or NaN) raise
        ``ValueError`` naming them and the range. Under ``jit`` (traced ``t``) they cannot
        be checked and are mapped into the range instead, NaN-free: ``t > T`` becomes ``T``
        and ``t <= 0`` becomes ``eps * T`` (``eps`` the dtype's machine epsilon); the
        network, the weight and ``terms["t"]`` all see the mapped time.
      noise: standard normal noise of ``x0``'s shape.
      parameterization: one of :data:`jaxgen.sde.PARAMETERIZATIONS`.
      weighting: one of :data:`WEIGHTINGS`.
      sigma_data: EDM's ``sigma_data`` (for ``"edm"`` parameterization and weighting).
      noise_input: maps ``t`` to the network's conditioning input; default identity.
      reduce: ``"sum"`` or ``"mean"`` over the event dimensions.

    Returns:
      ``(loss (B,), terms)`` with ``terms["t"]``, ``terms["weight"]`` (``w(t)``) and
      ``terms["eps_mse"]`` (event mean of ``r^2``), each ``(B,)``.
    """
    _check_options(parameterization, weighting, reduce, sigma_data)
    x0 = _check_x0(x0)
    t = _per_example_t(t, x0)
    t_max = float(sde.T)
    check_time_range(t, t_max, "t")
    # Traced t cannot be checked: t > T is clipped to T and t <= 0 (where sigma = 0 and the
    # weights divide by zero) is replaced by the dtype's machine epsilon times T.
    t = jnp.where(t > 0.0, jnp.minimum(t, t_max), jnp.finfo(x0.dtype).eps * t_max)
    if jnp.shape(noise) != x0.shape:
        raise ValueError(f"noise must have x0's shape {x0.shape}, got {jnp.shape(noise)}.")
    weight = _eps_space_weight(sde, t, weighting, sigma_data).astype(x0.dtype)
    r = _residual(
        net,
        sde,
        x0,
        t,
        noise,
        parameterization=parameterization,
        sigma_data=sigma_data,
        noise_input=noise_input,
    )
    return _finish(r, t, weight, reduce)


def _finish(
    r: jax.Array, t: jax.Array, weight: jax.Array, reduce: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    sq = jnp.square(r)
    loss = 0.5 * weight * _event_reduce(sq, reduce)
    return loss, {"t": t, "weight": weight, "eps_mse": _event_reduce(sq, "mean")}


def dsm_loss(
    net: NetworkFn,
    sde: SDE,
    x0: jax.Array,
    key: jax.Array,
    *,
    parameterization: str = "eps",
    weighting: str = "sigma2",
    importance_sampling: bool = False,
    t_min: float = 1e-5,
    sigma_data: float = 0.5,
    noise_input: Callable[[jax.Array], jax.Array] | None = None,
    reduce: str = "sum",
    p_mean: float = -1.2,
    p_std: float = 1.2,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Monte Carlo DSM loss with one ``(t, eps)`` draw per example (see the module doc).

    Draws ``t`` (uniform on ``[t_min, T]``; log-SNR-uniform with ``importance_sampling``;
    EDM's log-normal for ``weighting="edm"``) and ``eps ~ N(0, I)``, and returns
    ``1/2 weight ||r||^2`` with ``r = sigma s_theta(x_t, t) + eps``. For ``"sigma2"`` and
    ``"likelihood"`` its expectation is ``1/2 int_{t_min}^T lambda(t) E||s_theta + eps /
    sigma||^2 dt`` (uniform ``t`` carries the factor ``T - t_min``).

    Args:
      net: the raw network ``net(x_in, c)`` (see :func:`dsm_loss_at`).
      sde: the forward SDE.
      x0: float data ``(B, *event)``.
      key: a ``jax.random.key``.
      parameterization: one of :data:`jaxgen.sde.PARAMETERIZATIONS`.
      weighting: one of :data:`WEIGHTINGS`.
      importance_sampling: sample ``t`` with density ``~ g^2 / sigma^2`` (only with
        ``weighting="likelihood"``).
      t_min: the smallest training time, a Python float in ``(0, T)``.
      sigma_data: EDM's ``sigma_data``.
      noise_input: maps ``t`` to the network's conditioning input; default identity.
      reduce: ``"sum"`` (nats) or ``"mean"`` over the event dimensions.
      p_mean: mean of ``ln(sigma / alpha)`` for ``weighting="edm"``.
      p_std: std of ``ln(sigma / alpha)`` for ``weighting="edm"``.

    Returns:
      ``(loss (B,), terms)`` with ``terms["t"]``, ``terms["weight"]`` (the factor ``w`` on
      ``1/2 ||r||^2``, time-sampling factor included) and ``terms["eps_mse"]``, each ``(B,)``.
    """
    _check_options(parameterization, weighting, reduce, sigma_data)
    x0 = _check_x0(x0)
    t_max = float(sde.T)
    t_min = float(t_min)
    if not 0.0 < t_min < t_max:
        raise ValueError(f"t_min must lie in (0, T = {t_max}), got {t_min}.")
    if importance_sampling and weighting != "likelihood":
        raise ValueError(
            f"importance_sampling is only defined for weighting='likelihood', got {weighting!r}."
        )
    if weighting == "edm" and not float(p_std) > 0.0:
        raise ValueError(f"p_std must be positive, got {p_std}.")

    batch, dtype = x0.shape[0], x0.dtype
    key_t, key_eps = jax.random.split(key)
    if weighting == "edm":
        ln_ratio = p_mean + p_std * jax.random.normal(key_t, (batch,), dtype=dtype)
        t = jnp.clip(sde.t_from_sigma_ratio(jnp.exp(ln_ratio)), t_min, t_max).astype(dtype)
        weight = _eps_space_weight(sde, t, weighting, sigma_data)
    elif importance_sampling:
        u = jax.random.uniform(key_t, (batch,), dtype=dtype)
        snr_hi = jnp.asarray(sde.log_snr(t_min), dtype)
        snr_lo = jnp.asarray(sde.log_snr(t_max), dtype)
        log_snr = snr_hi - (snr_hi - snr_lo) * u  # u = 0 -> t_min, u = 1 -> T
        t = jnp.clip(sde.t_from_log_snr(log_snr), t_min, t_max).astype(dtype)
        weight = jnp.broadcast_to(snr_hi - snr_lo, (batch,))
    else:
        t = t_min + (t_max - t_min) * jax.random.uniform(key_t, (batch,), dtype=dtype)
        weight = (t_max - t_min) * _eps_space_weight(sde, t, weighting, sigma_data)
    noise = jax.random.normal(key_eps, x0.shape, dtype=dtype)
    weight = weight.astype(dtype)
    r = _residual(
        net,
        sde,
        x0,
        t,
        noise,
        parameterization=parameterization,
        sigma_data=sigma_data,
        noise_input=noise_input,
    )
    return _finish(r, t, weight, reduce)
