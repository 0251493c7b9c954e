"""Predictor-corrector (PC) sampling (Song et al. 2021, Sec. 4.2, Alg. 1-5, App. G).

On the uniform grid ``T = t_0 > t_1 > ... > t_N = t_min`` (:meth:`SDE.time_grid`), starting
from ``x ~ p_T`` at ``t_0``, each iteration ``i = 0..N-1`` makes one *predictor* step from ``t_i``
to ``t_{i+1}`` (a numerical step of the reverse SDE) and then ``M`` *corrector* steps at
``t_{i+1}`` (score-based MCMC targeting ``p_{t_{i+1}}``), as in Alg. 1. With
``dt = t_{i+1} - t_i`` and ``z ~ N(0, I)`` fresh every time, the predictors are:

* ``"euler_maruyama"``: ``x + [f - g^2 s] dt + g sqrt(|dt|) z`` (eq. 6 discretised; see
  :mod:`jaxgen.sde.samplers.euler_maruyama`).
* ``"reverse_diffusion"`` (eq. 46, Alg. 2/3): with Song et al.'s discretisation of the
  forward SDE ``x_{i+1} = x_i + f_i(x_i) + G_i z`` (:meth:`SDE.discretize` on ``N`` steps:
  the DDPM chain for VP, the SMLD chain for VE), the reverse step is
  ``x - f_i(x) + G_i^2 s(x, t_i) + G_i z``.
* ``"ancestral"`` (App. F): DDPM's ancestral step for VP, with ``beta_i = G_i^2 =
  beta(t_i) / N`` the VP's discretised betas,
  ``(x + beta_i s) / sqrt(1 - beta_i) + sqrt(beta_i) z`` (eq. 47); SMLD's for VE, with
  ``sigma_i = sigma(t_i)`` and ``sigma_{i-1}^2 = sigma_i^2 - G_i^2`` (the previous of the
  ``N`` geometric levels, 0 below the first),
  ``x + (sigma_i^2 - sigma_{i-1}^2) s + sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) /
  sigma_i^2) z`` (eq. 45). The sub-VP SDE has no ancestral chain, and is refused.
* ``"none"``: no predictor (corrector-only sampling: annealed Langevin dynamics, Alg. 2
  with ``P = identity``).

and the correctors:

* ``"langevin"`` (Alg. 4/5): ``x + eps s(x, t) + sqrt(2 eps) z`` with the step size set by
  the target signal-to-noise ratio ``r = snr``, per example,
  ``eps = 2 a (r ||z|| / ||s(x, t)||)^2`` (norms over the event dims), ``a = 1 - beta(t)/N``
  for VP and sub-VP (the discretised ``alpha_i``) and ``a = 1`` otherwise. With
  ``langevin_step="per_example"`` (the default) each example gets its own ``eps``, so a
  sample never depends on the rest of its batch (nor on how the batch is sharded). In
  high dimension ``||z||`` and ``||s||`` concentrate and this is Song et al.'s step; in low
  dimension it is heavy-tailed: for a Gaussian ``p_t = N(mu, v I)`` in ``d`` dims,
  ``eps / v = 2 a snr^2 ||z||^2 / ||(x - mu) / sqrt(v)||^2 = 2 a snr^2 F`` with ``F`` an
  F(d, d) variable, whose mean ``d / (d - 2)`` is infinite for ``d <= 2``: a few points near
  a mode's centre jump far (measured on the 2-D test mixture: PC's MMD^2 to exact samples
  goes from ~0 to 1.6-5x the test threshold). ``langevin_step="batch_mean"`` uses the
  batch means of ``||z||`` and ``||s||`` instead, as Song et al.'s code does, and is stable
  in any dimension.
  An example whose score is exactly zero takes no step.
* ``"none"``: no corrector.

With ``denoise=True`` the sampler ends with Tweedie's ``x_0 = (x + sigma^2 s) / alpha`` at
``t_min`` (App. G "noise removal", one more evaluation). Every predictor and corrector step
costs one evaluation ("none" zero), so ``nfe = N (P + M C) + denoise``. The VP chain
(``beta_i = beta(t) / N < 1``) and the Langevin ``a`` need ``N > beta_max`` (20 by
default); this is checked when the SDE's ``beta_max`` is a concrete number.

:func:`pc_loop` is the loop itself, from a given ``x_T`` and with an optional projection
applied after every predictor and corrector step (what the controllable-generation samplers
in :mod:`jaxgen.sde.samplers.controllable` use). ``shape``, ``num_steps``, ``predictor``,
``corrector``, ``num_corrector_steps``, ``langevin_step`` and ``denoise`` must be static
under ``jax.jit``; ``snr`` and ``t_min`` may be traced.

Reference:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through
  Stochastic Differential Equations. ICLR 2021 (Sec. 4.2; App. E, F, G; Alg. 1-5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxgen.core import sampling
from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_positive_int, check_sample_shape
from jaxgen.sde.samplers.euler_maruyama import (
    check_num_steps,
    euler_maruyama_step,
    example_normal,
    prior_and_step_keys,
    resolve_t_min,
    tweedie_denoise,
)
from jaxgen.sde.sdes import SDE, VESDE, VPSDE, ScoreFn, SubVPSDE, _bcast

__all__ = [
    "CORRECTORS",
    "LANGEVIN_STEPS",
    "PREDICTORS",
    "ancestral_predictor",
    "euler_maruyama_predictor",
    "langevin_corrector",
    "pc_loop",
    "pc_nfe",
    "pc_sample",
    "reverse_diffusion_predictor",
]

PREDICTORS: tuple[str, ...] = ("euler_maruyama", "reverse_diffusion", "ancestral", "none")
CORRECTORS: tuple[str, ...] = ("langevin", "none")
LANGEVIN_STEPS: tuple[str, ...] = ("per_example", "batch_mean")

ProjectFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``project(x, t, keys) -> x``: applied after every step, ``t`` float ``(B,)``, ``keys`` a
``(B,)`` batch of per-example keys (fresh for every call)."""


def _per_example_norm(v: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), axis=-1))


def euler_maruyama_predictor(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
    *,
    num_steps: int,
) -> jax.Array:
    """Reverse-SDE Euler-Maruyama step ``t -> t_next`` (``num_steps`` is unused; it is
    accepted so that every predictor has the same signature)."""
    del num_steps
    return euler_maruyama_step(score_fn, sde, key, x, t, t_next)


def reverse_diffusion_predictor(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
    *,
    num_steps: int,
) -> jax.Array:
    """Reverse-diffusion step (eq. 46): ``x - f_i + G_i^2 s + G_i z`` with
    ``(f_i, G_i) = sde.discretize(x, t, num_steps)``; ``t_next`` is unused (the chain's
    step is ``T / num_steps``)."""
    del t_next
    num_steps = check_positive_int(num_steps, "num_steps")
    f, g = sde.discretize(x, t, num_steps)
    g = _bcast(g, x)
    z = example_normal(key, x)
    return (x - f + jnp.square(g) * score_fn(x, t) + g * z).astype(x.dtype)


def _check_ancestral(sde: SDE) -> None:
    if not isinstance(sde, (VPSDE, VESDE)):
        raise ValueError(
            "the 'ancestral' predictor is defined for VPSDE (DDPM) and VESDE (SMLD) only, "
            f"got {type(sde).__name__}; use 'reverse_diffusion' or 'euler_maruyama'."
        )


def ancestral_predictor(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
    *,
    num_steps: int,
) -> jax.Array:
    """DDPM (VP, eq. 47) or SMLD (VE, eq. 45) ancestral step on the ``num_steps`` chain of
    :meth:`SDE.discretize` at ``t``; ``t_next`` is unused. Raises for other SDEs."""
    del t_next
    _check_ancestral(sde)
    num_steps = check_positive_int(num_steps, "num_steps")
    _, g = sde.discretize(x, t, num_steps)
    g2 = jnp.square(g)  # VP: beta_i; VE: sigma_i^2 - sigma_{i-1}^2
    z = example_normal(key, x)
    s = score_fn(x, t)
    if isinstance(sde, VPSDE):
        mean = (x + _bcast(g2, x) * s) / _bcast(jnp.sqrt(1.0 - g2), x)
        std = jnp.sqrt(g2)
    else:
        sigma2 = jnp.square(sde.sigma(t))
        prev2 = jnp.maximum(sigma2 - g2, 0.0)
        mean = x + _bcast(g2, x) * s
        std = jnp.sqrt(prev2 * g2 / sigma2)
    return (mean + _bcast(std, x) * z).astype(x.dtype)


def _no_predictor(score_fn, sde, key, x, t, t_next, *, num_steps):
    del score_fn, sde, key, t, t_next, num_steps
    return x


def langevin_corrector(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x: jax.Array,
    t: jax.Array,
    *,
    snr: float | jax.Array,
    num_steps: int,
    langevin_step: str = "per_example",
) -> jax.Array:
    """One Langevin step at ``t`` (Alg. 4/5): ``x + eps s + sqrt(2 eps) z`` with
    ``eps = 2 a (snr ||z|| / ||s||)^2``; ``a = 1 - beta(t) / num_steps`` for VP / sub-VP,
    else 1. The norms are per example (``"per_example"``) or their batch means
    (``"batch_mean"``); see the module docstring for when each is appropriate."""
    check_choice("langevin_step", langevin_step, LANGEVIN_STEPS)
    num_steps = check_positive_int(num_steps, "num_steps")
    s = score_fn(x, t)
    z = example_normal(key, x)
    grad_norm = _per_example_norm(s)
    noise_norm = _per_example_norm(z)
    if langevin_step == "batch_mean":
        grad_norm = jnp.broadcast_to(jnp.mean(grad_norm), grad_norm.shape)
        noise_norm = jnp.broadcast_to(jnp.mean(noise_norm), noise_norm.shape)
    if isinstance(sde, (VPSDE, SubVPSDE)):
        a = 1.0 - sde.beta(t) / num_steps
    else:
        a = jnp.ones_like(t)
    safe = jnp.where(grad_norm > 0.0, grad_norm, 1.0)
    eps = jnp.where(grad_norm > 0.0, 2.0 * a * jnp.square(snr * noise_norm / safe), 0.0)
    eps = _bcast(eps.astype(x.dtype), x)
    return (x + eps * s + jnp.sqrt(2.0 * eps) * z).astype(x.dtype)


def _no_corrector(score_fn, sde, key, x, t, *, snr, num_steps, langevin_step):
    del score_fn, sde, key, t, snr, num_steps, langevin_step
    return x


_PREDICTOR_FNS = {
    "euler_maruyama": euler_maruyama_predictor,
    "reverse_diffusion": reverse_diffusion_predictor,
    "ancestral": ancestral_predictor,
    "none": _no_predictor,
}
_CORRECTOR_FNS = {"langevin": langevin_corrector, "none": _no_corrector}


def pc_nfe(
    num_steps: int, predictor: str, corrector: str, num_corrector_steps: int, denoise: bool
) -> int:
    """``N (P + M C) + denoise``: the model evaluations of a PC run."""
    num_steps = check_positive_int(num_steps, "num_steps")
    check_positive_int(num_corrector_steps, "num_corrector_steps", minimum=0)
    per_step = int(predictor != "none") + num_corrector_steps * int(corrector != "none")
    return num_steps * per_step + int(bool(denoise))


def _check_chain_length(sde, num_steps, predictor, corrector):
    """The VP chain's ``beta_i = beta(t) / N`` (reverse diffusion, ancestral) and the
    Langevin ``a = 1 - beta(t) / N`` (VP, sub-VP) need ``N > beta_max``. Checked when
    ``beta_max`` is concrete (not when the SDE is a traced argument)."""
    uses_chain = isinstance(sde, VPSDE) and predictor in ("reverse_diffusion", "ancestral")
    uses_alpha = isinstance(sde, (VPSDE, SubVPSDE)) and corrector == "langevin"
    if not (uses_chain or uses_alpha):
        return
    try:
        beta_max = float(sde.beta_max)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return
    if num_steps <= beta_max:
        raise ValueError(
            f"num_steps = {num_steps} must exceed beta_max = {beta_max} for the discretised "
            f"{type(sde).__name__} chain (beta_i = beta(t) / num_steps < 1) used by "
            f"predictor={predictor!r} / corrector={corrector!r}."
        )


def _check_pc_options(
    sde, num_steps, predictor, corrector, num_corrector_steps, snr, langevin_step
):
    check_num_steps(num_steps)
    check_choice("predictor", predictor, PREDICTORS)
    check_choice("corrector", corrector, CORRECTORS)
    check_choice("langevin_step", langevin_step, LANGEVIN_STEPS)
    if (
        isinstance(num_corrector_steps, bool)
        or not isinstance(num_corrector_steps, int)
        or num_corrector_steps < 0
    ):
        raise ValueError(
            f"num_corrector_steps must be a static int >= 0, got {num_corrector_steps!r}."
        )
    active_corrector = corrector != "none" and num_corrector_steps > 0
    if predictor == "none" and not active_corrector:
        raise ValueError(
            "predictor='none' needs a corrector ('langevin') with num_corrector_steps >= 1; "
            "otherwise nothing would be sampled."
        )
    if predictor == "ancestral":
        _check_ancestral(sde)
    _check_chain_length(sde, num_steps, predictor, corrector)
    if isinstance(snr, (int, float)) and not snr > 0:
        raise ValueError(f"snr must be positive, got {snr!r}.")


def _pc_scan(
    score_fn: ScoreFn,
    sde: SDE,
    step_keys: jax.Array,
    x_init: jax.Array,
    *,
    num_steps: int,
    predictor: str,
    corrector: str,
    snr: float | jax.Array,
    num_corrector_steps: int,
    langevin_step: str,
    t_min: float | jax.Array | None,
    project: ProjectFn | None,
) -> jax.Array:
    """The PC iterations with ``(num_steps, B)`` per-example step keys (options checked)."""
    predict = _PREDICTOR_FNS[predictor]
    correct = _CORRECTOR_FNS[corrector]
    m = num_corrector_steps if corrector != "none" else 0
    batch = x_init.shape[0]
    dtype = x_init.dtype
    times = sde.time_grid(num_steps, t_min=resolve_t_min(sde, t_min)).astype(dtype)

    def maybe_project(x, t_b, k):
        return x if project is None else project(x, t_b, k)

    def step(x, inputs):
        t, t_next, step_key = inputs  # step_key: (B,), one per example
        t_b = jnp.full((batch,), t, dtype=dtype)
        t_next_b = jnp.full((batch,), t_next, dtype=dtype)
        keys = sampling.step_keys(step_key, 2 * (m + 1))  # (2 (m + 1), B)
        if predictor != "none":
            x = predict(score_fn, sde, keys[0], x, t_b, t_next_b, num_steps=num_steps)
            x = maybe_project(x, t_next_b, keys[1])
        for j in range(m):  # static and small: unrolled
            x = correct(
                score_fn,
                sde,
                keys[2 + 2 * j],
                x,
                t_next_b,
                snr=snr,
                num_steps=num_steps,
                langevin_step=langevin_step,
            )
            x = maybe_project(x, t_next_b, keys[3 + 2 * j])
        return x, None

    x, _ = jax.lax.scan(step, x_init, (times[:-1], times[1:], step_keys))
    return x


def pc_loop(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x_init: jax.Array,
    *,
    num_steps: int,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float | jax.Array = 0.16,
    num_corrector_steps: int = 1,
    langevin_step: str = "per_example",
    t_min: float | jax.Array | None = None,
    project: ProjectFn | None = None,
) -> jax.Array:
    """The PC iterations from ``x_init`` at ``T`` down to ``t_min`` (no denoising).

    ``key`` is one key or ``(B,)`` per-example keys; example ``b``'s key is split into one
    key per step (:func:`jaxgen.core.sampling.step_keys`) and each step's into the keys of
    its predictor, corrector and projection noise, so example ``b``'s randomness is its
    own. ``project(x, t, keys)``, if given, is applied after every predictor and every
    corrector step, with the time that step ended at and fresh ``(B,)`` per-example keys.
    Returns ``x`` at ``t_min``. Options as :func:`pc_sample`; costs
    ``pc_nfe(num_steps, ..., denoise=False)`` evaluations.
    """
    _check_pc_options(sde, num_steps, predictor, corrector, num_corrector_steps, snr, langevin_step)
    keys = sampling.as_example_keys(key, x_init.shape[0])
    return _pc_scan(
        score_fn,
        sde,
        sampling.step_keys(keys, num_steps),
        x_init,
        num_steps=num_steps,
        predictor=predictor,
        corrector=corrector,
        snr=snr,
        num_corrector_steps=num_corrector_steps,
        langevin_step=langevin_step,
        t_min=t_min,
        project=project,
    )


def pc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    num_steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float | jax.Array = 0.16,
    num_corrector_steps: int = 1,
    langevin_step: str = "per_example",
    t_min: float | jax.Array | None = None,
    denoise: bool = True,
) -> SamplerOutput:
    """Predictor-corrector sampling (Song et al. Alg. 1; see module docstring).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE.
      key: one ``jax.random.key`` or ``(B,)`` per-example keys (split as
        :func:`jaxgen.sde.samplers.euler_maruyama.prior_and_step_keys`).
      shape: static sample shape ``(B, *event)``.
      num_steps: static ``N``, the number of predictor steps (and of the discretised chain).
      predictor: one of :data:`PREDICTORS`.
      corrector: one of :data:`CORRECTORS`.
      snr: the Langevin corrector's target signal-to-noise ratio ``r``.
      num_corrector_steps: static ``M``, corrector steps after each predictor step.
      langevin_step: static; ``"per_example"`` or ``"batch_mean"`` norms in the Langevin
        step size (see the module docstring; use ``"batch_mean"`` for low-dimensional data).
      t_min: end time; ``None`` means ``sde.t_min``.
      denoise: end with Tweedie's denoiser at ``t_min`` (one more evaluation).

    Returns:
      :class:`SamplerOutput` with ``samples`` of shape ``shape`` and the static
      ``nfe = N (P + M C) + denoise`` (``P``, ``C`` = 1, or 0 for ``"none"``).
    """
    shape = check_sample_shape(shape)
    _check_pc_options(sde, num_steps, predictor, corrector, num_corrector_steps, snr, langevin_step)
    # The shared split: the x_T and step keys of Euler-Maruyama for the same key.
    x_T, step_keys = prior_and_step_keys(sde, key, shape, num_steps)
    x = _pc_scan(
        score_fn,
        sde,
        step_keys,
        x_T,
        num_steps=num_steps,
        predictor=predictor,
        corrector=corrector,
        snr=snr,
        num_corrector_steps=num_corrector_steps,
        langevin_step=langevin_step,
        t_min=t_min,
        project=None,
    )
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, resolve_t_min(sde, t_min).astype(x.dtype))
    nfe = pc_nfe(num_steps, predictor, corrector, num_corrector_steps, denoise)
    return SamplerOutput(samples=x, nfe=nfe)
