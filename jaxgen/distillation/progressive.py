"""Progressive distillation (Salimans & Ho 2022) in the EDM frame, and its DDIM sampler.

In the EDM frame (:mod:`jaxgen.distillation.ode`) a DDIM step is an Euler step in ``s``:

    x~' = x~ + (s' - s) (x~ - D(x~, s)) / s = (s'/s) x~ + (1 - s'/s) D(x~, s).

Each round halves the sampler's steps: the student learns to do in one DDIM step what the
teacher does in two. The student's step from ``s`` to ``s''`` lands on the teacher's two-step
result ``x''`` iff its denoiser outputs

    D* = (x'' - (s''/s) x~) / (1 - s''/s)        (= x'' where s'' = 0),

which is Salimans & Ho's Alg. 2 target ``x~ = (z'' - (sigma''/sigma) z) / (alpha'' -
(sigma''/sigma) alpha)`` divided through by ``alpha''``.

References:
  Salimans, Ho. Progressive Distillation for Fast Sampling of Diffusion Models. ICLR 2022,
  Alg. 2 and eq. 9 (the truncated-SNR weighting ``max(SNR, 1)``).
  Song, Meng, Ermon. Denoising Diffusion Implicit Models. ICLR 2021.
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.sampling import SamplerOutput, as_example_keys, initial_and_step_keys
from jaxgen.core.validation import (
    check_choice,
    check_index_range,
    check_sample_shape,
    is_concrete,
)
from jaxgen.distillation.levels import check_levels
from jaxgen.distillation.metrics import squared_distance
from jaxgen.distillation.ode import Denoiser, expand, per_example_sigma

__all__ = [
    "PROGRESSIVE_WEIGHTINGS",
    "ddim_sample_levels",
    "ddim_step",
    "progressive_distillation_loss",
    "progressive_distillation_target",
]

PROGRESSIVE_WEIGHTINGS: tuple[str, ...] = ("truncated_snr", "snr", "uniform")


def ddim_step(
    x_scaled: jax.Array, x0_hat: jax.Array, sigma: jax.Array, sigma_next: jax.Array
) -> jax.Array:
    """The deterministic DDIM step ``(s'/s) x~ + (1 - s'/s) D`` from ``sigma (B,)`` to
    ``sigma_next (B,)`` given the denoiser output ``x0_hat = D(x~, s)`` (Euler in ``s``;
    exactly ``D`` where ``s' = 0``)."""
    ratio = expand(sigma_next / sigma, x_scaled)
    return ratio * x_scaled + (1.0 - ratio) * x0_hat


def progressive_distillation_target(
    teacher_denoiser: Denoiser,
    x_scaled: jax.Array,
    sigma: jax.Array,
    sigma_mid: jax.Array,
    sigma_next: jax.Array,
) -> jax.Array:
    """The student's denoiser target ``D*`` (Salimans & Ho 2022, Alg. 2, EDM frame; module doc).

    Two teacher DDIM steps ``s -> s_mid -> s_next`` from ``x~`` give ``x''``; then
    ``D* = (x'' - (s_next/s) x~) / (1 - s_next/s)``, so that the student's one DDIM step
    ``(s_next/s) x~ + (1 - s_next/s) D*`` equals ``x''``. Where ``s_next = 0`` this is
    ``D* = x''``. Levels are ``(B,)`` (or scalars), ``s > s_mid > 0`` and ``s_mid > s_next >= 0``.
    Not stop-gradiented (the loss does that).
    """
    x = jnp.asarray(x_scaled)
    s = per_example_sigma(sigma, x, "sigma")
    s_mid = per_example_sigma(sigma_mid, x, "sigma_mid")
    s_next = per_example_sigma(sigma_next, x, "sigma_next")
    if all(is_concrete(v) for v in (s, s_mid, s_next)):
        a, b, c = (np.asarray(v, np.float64) for v in (s, s_mid, s_next))
        if not (np.all(a > b) and np.all(b > c) and np.all(c >= 0)):
            raise ValueError(
                "progressive_distillation_target needs sigma > sigma_mid > sigma_next >= 0, "
                f"got {a}, {b}, {c}"
            )
    x_mid = ddim_step(x, teacher_denoiser(x, s), s, s_mid)
    x_two = ddim_step(x_mid, teacher_denoiser(x_mid, s_mid), s_mid, s_next)
    ratio = expand(s_next / s, x)
    return (x_two - ratio * x) / (1.0 - ratio)


def _progressive_weight(weighting: str, sigma: jax.Array) -> jax.Array:
    if weighting == "uniform":
        return jnp.ones_like(sigma)
    snr = 1.0 / jnp.square(sigma)
    return snr if weighting == "snr" else jnp.maximum(snr, 1.0)


def progressive_distillation_loss(
    student_denoiser: Denoiser,
    teacher_denoiser: Denoiser,
    x0: jax.Array,
    key: jax.Array,
    *,
    teacher_levels: jax.Array,
    weighting: str = "truncated_snr",
    index: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One round of progressive distillation (Salimans & Ho 2022, Alg. 2), per example:

        i ~ U{0..N-1},  z ~ N(0, I),  x~ = x_0 + s_{2i} z,
        L = w(s_{2i}) mean_j (D_student(x~, s_{2i}) - sg(D*))_j^2,

    ``D*`` of :func:`progressive_distillation_target` with ``(s_{2i}, s_{2i+1}, s_{2i+2})``.
    ``teacher_levels (2N + 1,)`` decreasing: the teacher's ``2N`` DDIM steps (the last level may
    be 0); the student's levels are every other one, ``teacher_levels[::2]``. Weighting ``w``:
    ``"truncated_snr"`` ``max(SNR, 1)`` (their eq. 9; ``SNR = 1/s^2`` in the EDM frame),
    ``"snr"`` ``1/s^2`` (the eps-prediction loss), ``"uniform"`` 1. ``index (B,)`` fixes ``i``.
    Example ``b`` draws ``i`` and ``z`` from its own key.

    Returns ``(per_example (B,), terms)``, terms ``"sigma"`` (``s_{2i}``), ``"weight"``,
    ``"mse"`` (the unweighted mean squared error) and ``"index"``.
    """
    check_choice("weighting", weighting, PROGRESSIVE_WEIGHTINGS)
    levels = check_levels(teacher_levels, "teacher_levels", increasing=False)
    if levels.shape[0] % 2 != 1:
        raise ValueError(
            "teacher_levels must hold an odd number 2N + 1 of levels (2N teacher steps), got "
            f"{levels.shape[0]}"
        )
    num_student = (levels.shape[0] - 1) // 2
    x0 = jnp.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (B, *event), got {x0.shape}")
    keys = as_example_keys(key, x0.shape[0])
    pairs = jax.vmap(jax.random.split)(keys)
    z = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(pairs[:, 1])
    if index is None:
        index = jax.vmap(lambda k: jax.random.randint(k, (), 0, num_student))(pairs[:, 0])
    else:
        index = jnp.asarray(index)
        if index.shape != x0.shape[:1] or not jnp.issubdtype(index.dtype, jnp.integer):
            raise ValueError(f"index must be ints of shape ({x0.shape[0]},), got {index.shape}")
        check_index_range(index, num_student, "index", what="N")
    levels = levels.astype(x0.dtype)
    s, s_mid, s_next = levels[2 * index], levels[2 * index + 1], levels[2 * index + 2]
    x = x0 + expand(s, x0) * z
    target = jax.lax.stop_gradient(
        progressive_distillation_target(teacher_denoiser, x, s, s_mid, s_next)
    )
    mse = squared_distance(student_denoiser(x, s), target)
    weight = _progressive_weight(weighting, s)
    return weight * mse, {"sigma": s, "weight": weight, "mse": mse, "index": index}


def ddim_sample_levels(
    denoiser: Denoiser,
    key: jax.Array,
    shape: Sequence[int],
    *,
    sigmas: jax.Array | Sequence[float],
) -> SamplerOutput:
    """Deterministic DDIM over decreasing ``sigmas`` (Euler in ``s``; the sampler of a
    progressively distilled model, Salimans & Ho 2022):

        x = s_0 z;   x <- (s_{k+1}/s_k) x + (1 - s_{k+1}/s_k) D(x, s_k),  k = 0 .. K - 2,

    the last level may be 0 (then the last step returns ``D``). ``nfe = len(sigmas) - 1``.
    Example ``i``'s initial noise comes from its own key
    (:func:`jaxgen.core.sampling.initial_and_step_keys`).
    """
    shape = check_sample_shape(shape)
    if not is_concrete(sigmas):
        raise ValueError("sigmas must be concrete (their number fixes the steps), got a tracer")
    sigmas = check_levels(jnp.asarray(sigmas, jnp.result_type(float)), "sigmas", increasing=False)
    x_init, _ = initial_and_step_keys(key, shape, 1)
    sigmas = sigmas.astype(x_init.dtype)
    batch = shape[0]

    def step(x, pair):
        s, s_next = pair
        s_b = jnp.full((batch,), s, x.dtype)
        return ddim_step(x, denoiser(x, s_b), s_b, jnp.full((batch,), s_next, x.dtype)), None

    x, _ = jax.lax.scan(step, sigmas[0] * x_init, (sigmas[:-1], sigmas[1:]))
    return SamplerOutput(x, int(sigmas.shape[0] - 1))
