"""Exact log-likelihoods and bits/dim through the probability-flow ODE.

**Instantaneous change of variables** (Chen et al. 2018, Thm. 1; Song et al. 2021, Sec. 4.3
and App. D.2). Along a solution of the probability-flow ODE (Song et al. eq. 13)
``dx/dt = v(x, t) = f(x, t) - g(t)^2 s(x, t) / 2`` the marginal densities obey
``d log p_t(x(t)) / dt = -div_x v(x(t), t)``, so with ``x(t_min) = x`` ::

    log p_{t_min}(x) = log p_T(x(T)) + int_{t_min}^{T} div_x v(x(t), t) dt.

We solve the augmented ODE ``d/dt [x, delta] = [v(x, t), div_x v(x, t)]`` from
``(x, 0)`` at ``t_min`` to ``T`` and return ``log p_T(x(T)) + delta(T)`` with the SDE's
Gaussian prior in place of ``p_T``, the same approximation as Song et al.'s: the true ``p_T``
is the data scaled by ``alpha(T)`` and blurred by ``sigma(T)``, and the mismatch
``log p_T(z) - log prior(z)`` is of order ``alpha(T) |x_0| |z| / sigma(T)^2`` per example (up
to ~1e-2 nats for data in ``[-1, 1]`` under the default VP / sub-VP / VE; ``terms["z"]`` lets
a caller with the exact ``p_T`` correct for it). ``v`` is :meth:`SDE.probability_flow` of the
model's score, so with the exact score this is the exact ``log p_{t_min}`` up to the solver
tolerance and the prior mismatch.

**Lower end.** ``t_min = None`` means ``1e-5`` for every SDE: Song et al.'s likelihood
``eps`` (their code evaluates the likelihood from ``t = 1e-5`` for VP, sub-VP and VE alike,
while their samplers stop at ``1e-3`` for VP). The ODE then computes the density of the
slightly noised data ``p_{t_min}``, not of ``p_0``.

**Divergence.** ``"exact"``: ``tr(dv/dx)`` from one linearisation of ``v`` and ``D`` JVPs
along the basis vectors (for small ``D``). ``"rademacher"`` / ``"gaussian"``: Hutchinson's
estimator ``tr(A) = E[eps^T A eps]`` for ``E[eps eps^T] = I`` (Hutchinson 1989; FFJORD,
Grathwohl et al. 2019, eq. 7), averaged over ``num_probes`` probes per example that are drawn
once from ``key`` and held fixed over the whole solve (as in FFJORD), so the estimate of the
integral is ``eps^T (int J dt) eps``: unbiased for the exact value, with one VJP per probe
reusing one forward pass of ``v``. Rademacher probes have variance
``2 sum_{i != j} M_ij^2`` (``M`` the symmetrised integrated Jacobian) against Gaussian
probes' ``2 sum_{i, j} M_ij^2``, never more. As in Song et al.'s code the estimator is applied
to all of ``v``, the linear drift ``f = (d log alpha / dt) x`` included (its trace is
``D d log alpha / dt``; Rademacher probes get it exactly, Gaussian ones add variance for it).

**Per-example solves.** Each example is integrated by its own ``diffrax`` solve, batched with
``jax.vmap``: every example gets its own adaptive step-size control, so its result does not
depend on the rest of the batch (one joint solve would take the steps the hardest example
needs and couple every example through the error norm, and its answer would change with the
batch composition). Under ``vmap`` the while loop runs until the slowest example is done, with
finished examples frozen; under ``jit`` with the batch sharded over a mesh the per-example
arithmetic is unchanged and only the loop's "all done?" predicate is reduced across devices,
so sharded results equal single-device ones.

**Work.** ``terms["nfe"]`` is, per example, the number of evaluations of the augmented vector
field, i.e. forward passes of ``score_fn``. The explicit Runge-Kutta solvers offered are all
FSAL (first same as last) and we hand the solver its first FSAL value, so a solve of ``n``
attempted steps (accepted plus rejected, ``diffrax`` ``stats["num_steps"]``) with an
``s``-stage method costs exactly ``1 + (s - 1) n`` evaluations (``1 + 6 n`` for Tsit5 and
Dopri5, ``1 + 3 n`` for Bosh3, ``1 + 13 n`` for Dopri8); the initial step is a fixed
``dt0 = 0.01 (T - t_min)``, so no evaluations go into choosing it. Each evaluation also runs
``num_probes`` VJPs (Hutchinson) or ``D`` JVPs (exact) through that same forward pass; those
are not counted separately. Under ``vmap`` the work actually done is set by the slowest
example in the batch (finished examples idle), which ``nfe`` does not show.

**Evaluation only.** The Runge-Kutta stages run in a plain ``lax`` loop (diffrax's
``scan_kind="lax"``), which compiles about twice as fast as diffrax's default checkpointed
stage loop but is not reverse-mode differentiable: ``jax.grad`` through
:func:`log_likelihood` raises. Train with the score-matching objectives instead.

**Bits per dimension** (:func:`bits_per_dim`). For data on ``L = num_levels`` evenly spaced
levels of ``[-1, 1]`` (level ``k`` at ``2k / (L - 1) - 1``, bins of width ``w = 2 / (L - 1)``,
the convention of :func:`jaxgen.diffusion.variational_bound.discretized_gaussian_log_likelihood`),
uniform dequantisation ``y = x + w (u - 1/2)``, ``u ~ U[0, 1)^D``, gives by Jensen's inequality
(Theis et al. 2016; Song et al. App. D.2 report bits/dim on uniformly dequantised data) ::

    log P(x) = log int_{bin(x)} p(y) dy >= E_u[log p(x + w (u - 1/2))] + D log w,

and we report ``bpd = -(log p(y) + D log w) / (D ln 2)``, a single-sample (unbiased) estimate
of an upper bound on the discrete model's bits/dim. ``D log w`` is
:func:`dequantization_offset` and the conversion to bits/dim is
:func:`jaxgen.core.units.bits_per_dim`. With ``num_levels = None`` the data are continuous and
``bpd = -log p(x) / (D ln 2)``.

The ODE integration, the divergence estimators and the dequantisation are the shared core's
(:mod:`jaxgen.core.ode_likelihood`), which the flow-matching family uses too.

References:
  Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations. NeurIPS 2018.
  Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. FFJORD: Free-form Continuous Dynamics
  for Scalable Reversible Generative Models. ICLR 2019.
  Hutchinson. A stochastic estimator of the trace of the influence matrix for Laplacian
  smoothing splines. 1989.
  Song et al. Score-Based Generative Modeling through SDEs. ICLR 2021.
  Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgen.core import ode_likelihood, units
from jaxgen.core.ode_likelihood import DIVERGENCES, DiscreteDataWarning, check_data
from jaxgen.core.validation import check_num_levels
from jaxgen.sde.sdes import SDE, ScoreFn

__all__ = [
    "DIVERGENCES",
    "LIKELIHOOD_SOLVERS",
    "LIKELIHOOD_T_MIN",
    "DiscreteDataWarning",
    "bits_per_dim",
    "dequantization_offset",
    "log_likelihood",
]

LIKELIHOOD_SOLVERS = ode_likelihood.ODE_SOLVERS
LIKELIHOOD_T_MIN: float = 1e-5
"""Default lower end of the likelihood ODE (Song et al.'s likelihood ``eps``)."""


def _check_t_min(t_min, sde) -> float:
    t_min = LIKELIHOOD_T_MIN if t_min is None else t_min
    if not isinstance(t_min, jax.core.Tracer) and not 0.0 < float(t_min) < sde.T:
        raise ValueError(f"t_min must lie in (0, {sde.T}), got {t_min!r}.")
    return t_min


# --------------------------------------------------------------------------- log-likelihood


def log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: jax.Array,
    key: jax.Array | None,
    *,
    divergence: str = "rademacher",
    num_probes: int = 1,
    t_min: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``log p_{t_min}(x)`` per example by the probability-flow ODE (see the module doc):
    ``log p_T(x(T)) + int_{t_min}^T div v dt`` with ``v = f - g^2 s / 2`` (Song et al. eq. 13),
    integrated by :func:`jaxgen.core.ode_likelihood.ode_log_likelihood`.

    Args:
      score_fn: ``score_fn(x, t)`` with ``x (B, *event)`` and float ``t (B,)``.
      sde: the forward SDE the score belongs to.
      x: data, ``(B, *event)``, float.
      key: PRNG key for the Hutchinson probes, drawn once with shape
        ``(B, num_probes, *event)`` (so example ``i`` uses row ``i``); may be ``None`` for
        ``divergence="exact"``.
      divergence: ``"exact"``, ``"rademacher"`` or ``"gaussian"``.
      num_probes: Hutchinson probes per example, fixed over the solve.
      t_min: lower end of the ODE; ``None`` means :data:`LIKELIHOOD_T_MIN` ``= 1e-5``.
      rtol, atol: tolerances of diffrax's PID step-size controller (on ``x`` and ``delta``).
      solver: one of :data:`LIKELIHOOD_SOLVERS` (explicit adaptive Runge-Kutta methods).
      max_steps: step budget per example; an example that runs out gets ``log_p = NaN`` and
        ``terms["success"] = False``.

    Returns:
      ``(log_p, terms)``: ``log_p (B,)`` in nats; ``terms`` holds ``"prior_log_p"``
      (``log p_T(x(T))``), ``"delta_log_p"`` (the divergence integral), ``"nfe"`` (int
      ``(B,)``, vector-field evaluations = score forward passes), ``"num_steps"`` (attempted
      steps), ``"success"`` (bool) and ``"z"`` (the latent ``x(T)``, like ``x``).
    """
    x = check_data(x)
    ode_likelihood.check_ode_options(divergence, num_probes, solver, rtol, atol, max_steps)
    t_min = _check_t_min(t_min, sde)
    return ode_likelihood.ode_log_likelihood(
        sde.probability_flow(score_fn),
        x,
        key,
        t0=t_min,
        t1=sde.T,
        prior_log_prob=sde.prior_log_prob,
        divergence=divergence,
        num_probes=num_probes,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
    )


# --------------------------------------------------------------------------- bits per dim


def dequantization_offset(num_levels: int | None, dim: int) -> float:
    """``D log w`` with bin width ``w = 2 / (L - 1)``: the term that turns a density of
    dequantised data into a bound on the discrete log-probability (0 for ``None``); the
    core's :func:`jaxgen.core.units.dequantization_offset` on the centered grid."""
    return units.dequantization_offset(num_levels, dim, grid="centered")


def bits_per_dim(
    score_fn: ScoreFn,
    sde: SDE,
    x: jax.Array,
    key: jax.Array | None,
    *,
    num_levels: int | None = None,
    dequantize: bool = True,
    divergence: str = "rademacher",
    num_probes: int = 1,
    t_min: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 4096,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Bits per dimension from the ODE likelihood, dequantised for discrete data:
    ``bpd = -(log p(y) + D log w) / (D ln 2)`` (module doc).

    ``key`` is split into a dequantisation key and the probe key of :func:`log_likelihood`
    (``None`` is allowed when nothing is random).

    Warnings: with ``num_levels`` given and ``dequantize=False`` a
    :class:`DiscreteDataWarning` is issued at trace time (the density at grid points plus
    ``D log w`` is not a bound). With ``num_levels=None``, data that all lie on a grid of at
    most 256 levels in ``[-1, 1]`` trigger the same warning at run time (from inside ``jit``,
    via ``jax.debug.callback``).

    Errors: with ``num_levels`` given, values outside ``[-1, 1]`` raise ``ValueError`` for
    concrete inputs; under ``jit`` the check runs at run time and fails the computation
    (a ``JaxRuntimeError`` carrying the message), and those examples' ``bpd`` are NaN.

    Args:
      score_fn, sde, x, key: as in :func:`log_likelihood`.
      num_levels: ``L`` levels per dimension of discrete data, or ``None`` for continuous.
      dequantize: add uniform noise ``w (u - 1/2)`` to discrete data (only with
        ``num_levels``).
      divergence, num_probes, t_min, rtol, atol, solver, max_steps: see
        :func:`log_likelihood`.

    Returns:
      ``(bpd (B,), terms)`` with the terms of :func:`log_likelihood` plus ``"log_p"`` (the
      continuous log-density of the (dequantised) input) and ``"offset"`` (``D log w``,
      :func:`dequantization_offset`, the same for every example, broadcast to ``(B,)`` like
      every other term; 0 for continuous data).
    """
    x = check_data(x)
    check_num_levels(num_levels, allow_none=True)
    dim = math.prod(x.shape[1:])
    offset = dequantization_offset(num_levels, dim)
    needs_key = divergence != "exact" or (num_levels is not None and dequantize)
    if key is None and needs_key:
        raise ValueError("bits_per_dim needs a PRNG key (Hutchinson probes / dequantisation).")
    key_deq, key_ll = jax.random.split(key) if key is not None else (None, None)
    y, valid = ode_likelihood.dequantize_data(
        x, key_deq, num_levels=num_levels, dequantize=dequantize
    )
    log_p, terms = log_likelihood(
        score_fn,
        sde,
        y,
        key_ll,
        divergence=divergence,
        num_probes=num_probes,
        t_min=t_min,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
    )
    bpd = units.bits_per_dim(-(log_p + offset), dim)
    bpd = jnp.where(valid, bpd, jnp.nan)
    # Every term is per example (B,): the offset D log w is the same for every example.
    terms = dict(terms, log_p=log_p, offset=jnp.full((x.shape[0],), offset, dtype=x.dtype))
    return bpd, terms
