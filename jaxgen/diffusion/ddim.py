"""DDIM sampling (Song, Meng, Ermon 2021) on a subsequence of the DDPM timesteps.

On an increasing subsequence ``tau_1 < ... < tau_S`` of the steps, with ``abar`` of the
DDPM schedule (the DDIM paper writes ``alpha`` for ``abar``), one step from ``tau_i`` to
``tau_{i-1}`` (``abar_{tau_0} = 1``, i.e. the last step lands on data) is eq. 12::

    x_prev = sqrt(abar_prev) x0_pred
             + sqrt(1 - abar_prev - sigma^2) eps_pred
             + sigma z,                                   z ~ N(0, I),
    x0_pred = (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t),

with eq. 16 for the noise level::

    sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).

``eta = 0`` is the deterministic DDIM map (a first-order discretisation of the probability
flow ODE ``d(x / sqrt(abar)) = eps d(sqrt(1 - abar) / sqrt(abar))``, eq. 14); ``eta = 1``
on all ``T`` steps is ancestral sampling with ``sigma_t^2 = beta_tilde_t`` (DDPM).

The loop is one ``jax.lax.scan`` over the reversed subsequence; the model is traced once.
Randomness is per example and split as in ancestral sampling
(:func:`jaxgen.core.sampling.initial_and_step_keys`): for the same key, DDIM on any number of
steps starts from the same ``x_T``, and with ``eta = 1`` on all ``T`` steps it draws exactly
the noise of ancestral sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import sampling
from jaxgen.core.sampling import SamplerOutput
from jaxgen.core.validation import check_choice, check_sample_shape
from jaxgen.diffusion.ddpm_loss import ModelFn
from jaxgen.diffusion.parameterization import check_parameterization, to_eps, to_x0
from jaxgen.diffusion.schedules import DiffusionSchedule

__all__ = ["SPACINGS", "ddim_sample", "ddim_timesteps"]

SPACINGS: tuple[str, ...] = ("uniform", "quadratic")


def ddim_timesteps(num_timesteps: int, num_steps: int, *, spacing: str = "uniform") -> np.ndarray:
    """The increasing subsequence ``tau`` of 0-based timestep indices used by DDIM.

    * ``"uniform"``: ``round(linspace(0, T - 1, S))``;
    * ``"quadratic"``: ``round(linspace(0, sqrt(T - 1), S)^2)`` (denser near the data, as
      in Song et al. Sec. D.2), pushed up where rounding would repeat an index.

    Both start at index 0 (``t = 1``) and end at ``T - 1`` (``t = T``); ``S = T`` gives every
    step and ``S = 1`` gives ``[T - 1]`` (one jump from noise to data).

    Args:
      num_timesteps: ``T`` of the schedule.
      num_steps: ``S``, with ``1 <= S <= T``.
      spacing: ``"uniform"`` or ``"quadratic"``.

    Returns:
      int64 NumPy array of shape ``(S,)``, strictly increasing (a static value).
    """
    check_choice("spacing", spacing, SPACINGS)
    if not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(
            f"num_steps must be an int in [1, num_timesteps = {num_timesteps}], got {num_steps!r}."
        )
    if num_steps == 1:
        return np.array([num_timesteps - 1], dtype=np.int64)
    if spacing == "uniform":
        grid = np.linspace(0.0, num_timesteps - 1.0, num_steps)
    else:
        grid = np.linspace(0.0, np.sqrt(num_timesteps - 1.0), num_steps) ** 2
    steps = np.floor(grid + 0.5).astype(np.int64)
    for i in range(1, num_steps):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    # By convexity of the grid this never exceeds T - 1; keep the guard for safety.
    if steps[-1] != num_timesteps - 1 or np.any(np.diff(steps) <= 0):
        raise ValueError(
            f"could not build {num_steps} distinct {spacing} steps in {num_timesteps}."
        )
    return steps


def ddim_sample(
    model_fn: ModelFn,
    schedule: DiffusionSchedule,
    key: jax.Array,
    shape: Sequence[int],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    parameterization: str = "eps",
    clip_denoised: bool = False,
    spacing: str = "uniform",
) -> SamplerOutput:
    """Draws samples with DDIM (Song et al. 2021, eq. 12 with sigma from eq. 16).

    Args:
      model_fn: ``model_fn(x_t, t) -> prediction``, ``t`` int32 ``(B,)`` 0-based.
      schedule: the diffusion schedule the model was trained on.
      key: one ``jax.random.key`` (example ``b`` uses ``fold_in(key, b)``) or ``(B,)``
        per-example keys (only ``x_T`` is random when ``eta = 0``).
      shape: static sample shape ``(B, *event)``.
      num_steps: ``S``, number of model evaluations, ``1 <= S <= T`` (static).
      eta: ``>= 0``; 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
      parameterization: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_denoised: clip each ``x0_pred`` to ``[-1, 1]`` (eps is then recomputed from the
        clipped ``x0_pred``, so the step stays consistent with ``x_t``).
      spacing: timestep subsequence, see :func:`ddim_timesteps`.

    Returns:
      :class:`SamplerOutput` with ``samples`` of shape ``shape`` and ``nfe = num_steps``.
    """
    check_parameterization(parameterization)
    if isinstance(eta, (int, float)) and not eta >= 0.0:
        raise ValueError(f"eta must be >= 0, got {eta!r}.")
    shape = check_sample_shape(shape)
    steps = ddim_timesteps(schedule.num_timesteps, num_steps, spacing=spacing)
    abar = schedule.alphas_cumprod
    abar_t = abar[steps]
    abar_prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[steps[:-1]]])
    x_T, step_keys = sampling.initial_and_step_keys(key, shape, num_steps, abar.dtype)

    def step(x, inputs):
        index, a_t, a_prev, step_key = inputs
        t = jnp.full((shape[0],), index, dtype=jnp.int32)
        pred = model_fn(x, t)
        if jnp.shape(pred) != shape:
            raise ValueError(f"model_fn output has shape {jnp.shape(pred)}, expected {shape}.")
        x0_pred = to_x0(schedule, x, t, pred, parameterization=parameterization)
        if clip_denoised:
            x0_pred = jnp.clip(x0_pred, -1.0, 1.0)
            eps_pred = (x - jnp.sqrt(a_t) * x0_pred) / jnp.sqrt(1.0 - a_t)
        else:
            eps_pred = to_eps(schedule, x, t, pred, parameterization=parameterization)
        sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        # sqrt(1 - abar_prev - sigma^2), zero at the last step; safe sqrt keeps gradients
        # (e.g. with respect to eta) finite there.
        dir_var = 1.0 - a_prev - jnp.square(sigma)
        positive = dir_var > 0.0
        direction = jnp.where(positive, jnp.sqrt(jnp.where(positive, dir_var, 1.0)), 0.0)
        z = sampling.normal(step_key, shape[1:], x.dtype)
        x_prev = jnp.sqrt(a_prev) * x0_pred + direction * eps_pred + sigma * z
        return x_prev.astype(x.dtype), None

    inputs = (
        jnp.asarray(steps[::-1], dtype=jnp.int32),
        abar_t[::-1],
        abar_prev[::-1],
        step_keys,
    )
    samples, _ = jax.lax.scan(step, x_T, inputs)
    return SamplerOutput(samples=samples, nfe=num_steps)
