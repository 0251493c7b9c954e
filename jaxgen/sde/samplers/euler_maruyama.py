"""Euler-Maruyama for the reverse-time SDE (Song et al. 2021, eq. 6), and the set-up the
SDE samplers share.

Given a score ``s(x, t) ~ grad_x log p_t(x)``, the reverse of ``dx = f dt + g dw`` is

    dx = [f(x, t) - g(t)^2 s(x, t)] dt + g(t) dw_bar,         t from T down to t_min,

started from the prior ``x_T ~ p_T`` (:meth:`SDE.prior_sample`). On the grid
``T = t_0 > t_1 > ... > t_N = t_min`` (uniform in ``t``, :meth:`SDE.time_grid`) with
``dt_i = t_{i+1} - t_i < 0``, Euler-Maruyama is

    x_{i+1} = x_i + [f(x_i, t_i) - g(t_i)^2 s(x_i, t_i)] dt_i + g(t_i) sqrt(|dt_i|) z_i,

``z_i ~ N(0, I)``, noise included on every step, so ``x_N`` approximates a draw of
``p_{t_min}`` (weak order 1, strong order 1/2 in ``dt``). With ``denoise=True`` the sampler
ends with Song et al.'s "noise removal" (App. G), here Tweedie's formula at ``t_min``:

    x_0 = E[x_0 | x_{t_min}] = (x + sigma^2 s(x, t_min)) / alpha,

one more model evaluation. ``nfe = N + denoise``.

The loop is one ``jax.lax.scan``; the score function is traced once. ``shape``,
``num_steps`` and ``denoise`` must be static under ``jax.jit``; ``t_min`` may be traced.

**Keys** (shared by every sampler in :mod:`jaxgen.sde.samplers`). ``key`` is one key or a
``(B,)`` batch of per-example keys (:func:`jaxgen.core.sampling.as_example_keys`). Each
example's key is split by :func:`jaxgen.core.sampling.initial_and_step_keys` into the key of
its prior draw ``x_T = prior_std z`` and the keys of its steps, so every random number of
example ``b`` comes from its own key: the same seed gives the same ``b``-th sample at any
batch size, and samplers given the same key start from the same ``x_T``
(:func:`prior_and_step_keys`).

Reference:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole. Score-Based Generative Modeling through
  Stochastic Differential Equations. ICLR 2021 (eq. 6; App. G "noise removal").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxgen.core import sampling
from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_sample_shape, check_time_range
from jaxgen.sde.parameterization import score_to_x0
from jaxgen.sde.samplers import time_steps
from jaxgen.sde.sdes import SDE, ScoreFn, _bcast

__all__ = [
    "euler_maruyama_sample",
    "euler_maruyama_step",
    "example_normal",
    "prior_and_step_keys",
    "tweedie_denoise",
]


def check_num_steps(num_steps: int, name: str = "num_steps") -> int:
    """A static positive int, or a clear ``ValueError``."""
    return time_steps.check_num_steps(num_steps, name=name)


def prior_and_step_keys(
    sde: SDE, key: jax.Array, shape: tuple[int, ...], num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """``x_T ~ p_T = N(0, prior_std^2 I)`` of ``shape = (B, *event)`` (default float dtype)
    and ``(num_steps, B)`` per-example step keys.

    ``x_T[b] = prior_std * z_b`` with ``z_b`` the standard normal draw of
    :func:`jaxgen.core.sampling.initial_and_step_keys` from example ``b``'s key alone; every
    sampler here starts this way, so samplers given the same key start from the same
    ``x_T``.
    """
    z, step_keys = sampling.initial_and_step_keys(key, shape, num_steps, jnp.result_type(float))
    return (sde.prior_std() * z).astype(z.dtype), step_keys


def example_normal(key: jax.Array, x: jax.Array) -> jax.Array:
    """Standard normal noise like ``x`` (``(B, *event)``), example ``b`` from its own key:
    ``key`` is a ``(B,)`` batch of per-example keys or one key (then example ``b`` uses
    ``fold_in(key, b)``)."""
    keys = sampling.as_example_keys(key, x.shape[0])
    return sampling.normal(keys, x.shape[1:], x.dtype)


def resolve_t_min(sde: SDE, t_min: float | jax.Array | None) -> jax.Array:
    """``t_min`` or, when ``None``, ``sde.t_min`` (checked to lie in ``(0, T)``), as an array."""
    return jnp.asarray(time_steps.resolve_t_min(sde, t_min))


def tweedie_denoise(score_fn: ScoreFn, sde: SDE, x: jax.Array, t: jax.Array) -> jax.Array:
    """Tweedie's ``E[x_0 | x_t = x] = (x + sigma(t)^2 s(x, t)) / alpha(t)`` for a scalar
    ``t`` in ``(0, T]`` (one model evaluation; a concrete ``t`` outside raises
    ``ValueError``, a traced one is not checked)."""
    check_time_range(t, float(sde.T), "t")
    t_b = jnp.full((x.shape[0],), t, dtype=x.dtype)
    return score_to_x0(score_fn(x, t_b), x, sde.alpha(t_b), sde.sigma(t_b)).astype(x.dtype)


def euler_maruyama_step(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    x: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
) -> jax.Array:
    """One Euler-Maruyama step of the reverse SDE from ``t`` to ``t_next < t`` (both
    ``(B,)``): ``x + [f - g^2 s] dt + g sqrt(|dt|) z`` (one model evaluation); ``z`` of
    example ``b`` from its own key (``key``: ``(B,)`` keys, or one key, see
    :func:`example_normal`)."""
    dt = _bcast(t_next - t, x)
    drift = sde.reverse_drift(score_fn, x, t)
    g = _bcast(sde.diffusion(t), x)
    z = example_normal(key, x)
    return (x + drift * dt + g * jnp.sqrt(jnp.abs(dt)) * z).astype(x.dtype)


def euler_maruyama_sample(
    score_fn: ScoreFn,
    sde: SDE,
    key: jax.Array,
    shape: Sequence[int],
    *,
    num_steps: int = 1000,
    t_min: float | jax.Array | None = None,
    denoise: bool = True,
) -> SamplerOutput:
    """Samples by Euler-Maruyama on the reverse SDE (see module docstring).

    Args:
      score_fn: ``score_fn(x, t)``, ``x (B, *event)``, float ``t (B,)``.
      sde: the forward SDE (VP, sub-VP, VE or any :class:`SDE`).
      key: one ``jax.random.key`` or ``(B,)`` per-example keys (module docstring).
      shape: static sample shape ``(B, *event)``.
      num_steps: static number of steps ``N`` on the uniform grid ``T -> t_min``.
      t_min: end time; ``None`` means ``sde.t_min``.
      denoise: end with Tweedie's denoiser at ``t_min`` (one more evaluation).

    Returns:
      :class:`SamplerOutput` with ``samples`` of shape ``shape`` and the static
      ``nfe = num_steps + denoise``.
    """
    shape = check_sample_shape(shape)
    num_steps = check_num_steps(num_steps)
    t_end = resolve_t_min(sde, t_min)
    x_T, step_keys = prior_and_step_keys(sde, key, shape, num_steps)
    times = sde.time_grid(num_steps, t_min=t_end).astype(x_T.dtype)
    batch = shape[0]

    def step(x, inputs):
        t, t_next, step_key = inputs
        t_b = jnp.full((batch,), t, dtype=x.dtype)
        t_next_b = jnp.full((batch,), t_next, dtype=x.dtype)
        return euler_maruyama_step(score_fn, sde, step_key, x, t_b, t_next_b), None

    x, _ = jax.lax.scan(step, x_T, (times[:-1], times[1:], step_keys))
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, times[-1])
    return SamplerOutput(samples=x, nfe=num_steps + int(bool(denoise)))
