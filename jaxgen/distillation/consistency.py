"""Consistency models: the parameterisation, distillation and training losses, and sampling.

All in the EDM frame (:mod:`jaxgen.distillation.ode`): ``x~ = x_0 + s eps``. A consistency
function ``f(x~, s)`` maps any point of a probability-flow trajectory to its end at
``s = sigma_min``: ``f(x~_s, s) = x~_{sigma_min}`` (Song et al. 2023, eq. 2-3), with the
boundary condition ``f(x~, sigma_min) = x~``.

References:
  Song, Dhariwal, Chen, Sutskever. Consistency Models. ICML 2023: Alg. 1 (multistep
  sampling), Alg. 2 (consistency distillation, CD), Alg. 3 (consistency training, CT);
  CD reaches CIFAR-10 FID 3.55 in one step and 2.93 in two.
  Song, Dhariwal. Improved Techniques for Training Consistency Models (iCT). ICLR 2024:
  pseudo-Huber metric, lognormal index distribution, exponential curriculum, weighting
  ``lambda(s_n) = 1 / (s_{n+1} - s_n)``, and no EMA target (the target is the student's own
  parameters under stop-gradient).
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.sampling import SamplerOutput, as_example_keys, initial_and_step_keys
from jaxgen.core.validation import (
    check_choice,
    check_finite_number,
    check_index_range,
    check_sample_shape,
    is_concrete,
)
from jaxgen.distillation.levels import (
    INDEX_DISTRIBUTIONS,
    check_levels,
    karras_level,
    sample_level_index,
)
from jaxgen.distillation.metrics import Metric, resolve_metric
from jaxgen.distillation.ode import Denoiser, expand, per_example_sigma, probability_flow_step

__all__ = [
    "CONSISTENCY_WEIGHTINGS",
    "consistency_coefficients",
    "consistency_distillation_loss",
    "consistency_function",
    "consistency_mixing",
    "consistency_training_loss",
    "multistep_consistency_sample",
]

CONSISTENCY_WEIGHTINGS: tuple[str, ...] = ("uniform", "inverse_gap")

ConsistencyFn = Callable[[jax.Array, jax.Array], jax.Array]


def consistency_coefficients(
    sigma: jax.Array, *, sigma_min: float, sigma_data: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """``(c_skip, c_out)`` of Song et al. (2023, App. C), ``f = c_skip x~ + c_out F``:

        c_skip(s) = sigma_data^2 / ((s - sigma_min)^2 + sigma_data^2),
        c_out(s)  = sigma_data (s - sigma_min) / sqrt(sigma_data^2 + s^2),

    EDM's preconditioning (Karras et al. 2022, Table 1) shifted so that ``c_skip(sigma_min) = 1``
    and ``c_out(sigma_min) = 0`` exactly.
    """
    check_finite_number(sigma_min, "sigma_min", low=0.0)
    check_finite_number(sigma_data, "sigma_data", low=0.0, low_open=True)
    sigma = jnp.asarray(sigma)
    gap = sigma - sigma_min
    c_skip = sigma_data**2 / (gap * gap + sigma_data**2)
    c_out = sigma_data * gap / jnp.sqrt(sigma_data**2 + sigma * sigma)
    return c_skip, c_out


def consistency_mixing(
    sigma: jax.Array, *, sigma_min: float, sigma_data: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """``(a, b)`` with ``f(x~, s) = a(s) x~ + b(s) D(x~, s)`` (:func:`consistency_function`):

        b(s) = c_out(s) / c_out^EDM(s) = 1 - sigma_min / s,
        a(s) = c_skip(s) - b(s) c_skip^EDM(s),

    ``c_skip^EDM = sigma_data^2 / (s^2 + sigma_data^2)``, ``c_out^EDM = s sigma_data /
    sqrt(s^2 + sigma_data^2)``: Song et al.'s ``f = c_skip x~ + c_out F`` with the raw output
    ``F = (D - c_skip^EDM x~) / c_out^EDM`` read off any denoiser ``D``. ``a(sigma_min) = 1``,
    ``b(sigma_min) = 0`` exactly; ``a -> 0``, ``b -> 1`` for ``s >> sigma_data``, and ``b`` grows
    linearly from the boundary, so a bounded ``D`` can represent the probability-flow map.
    """
    c_skip, _ = consistency_coefficients(sigma, sigma_min=sigma_min, sigma_data=sigma_data)
    sigma = jnp.asarray(sigma)
    b = 1.0 - sigma_min / sigma
    c_skip_edm = sigma_data**2 / (sigma * sigma + sigma_data**2)
    return c_skip - b * c_skip_edm, b


def consistency_function(
    denoiser: Denoiser, *, sigma_min: float, sigma_data: float = 0.5
) -> ConsistencyFn:
    """The consistency function of a denoiser ``D`` of any parameterisation:

        f(x~, s) = c_skip(s) x~ + c_out(s) F(x~, s),   F = (D - c_skip^EDM x~) / c_out^EDM,

    i.e. ``f = a(s) x~ + b(s) D`` with ``b = 1 - sigma_min / s`` (:func:`consistency_mixing`).
    This is exactly Song et al.'s (2023, App. C) parameterisation ``c_skip x~ + c_out F`` of a
    raw network ``F`` when ``D = c_skip^EDM x~ + c_out^EDM F`` is EDM-preconditioned, so a
    student initialised from an EDM teacher starts as in the paper; for any teacher
    parameterisation (eps, v, score converted to a denoiser) it starts at ``f ~ D_teacher``,
    the teacher's one-step denoiser, for ``s >> sigma_min``. At ``s = sigma_min`` it returns
    ``x~`` bit for bit (selected with ``jnp.where``, so even where ``D`` is inf or NaN).

    (Why not ``f = c_skip x~ + (1 - c_skip) D``: that weight on ``D`` is ``O((s -
    sigma_min)^2)`` near the boundary, while the flow map differs from ``x~`` by ``O(s)``, so
    ``D`` would have to grow like ``1 / s``; here ``b = O(s - sigma_min)`` and ``D`` stays
    bounded.)
    """
    check_finite_number(sigma_min, "sigma_min", low=0.0)

    def f(x_scaled: jax.Array, sigma: jax.Array) -> jax.Array:
        x = jnp.asarray(x_scaled)
        s = per_example_sigma(sigma, x, "sigma")
        boundary = s == sigma_min
        s_safe = jnp.where(boundary | (s <= 0), jnp.ones_like(s), s)  # no 0/0 in any branch
        a, b = consistency_mixing(s_safe, sigma_min=sigma_min, sigma_data=sigma_data)
        out = expand(a, x) * x + expand(b, x) * denoiser(x, s)
        return jnp.where(expand(boundary, x), x, out)

    return f


def _weight(weighting: str, s_lo: jax.Array, s_hi: jax.Array) -> jax.Array:
    if weighting == "uniform":
        return jnp.ones_like(s_hi)
    return 1.0 / (s_hi - s_lo)


def _check_x0(x0: jax.Array) -> jax.Array:
    x0 = jnp.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (B, *event), got {x0.shape}")
    return x0


def _index_and_noise(
    key: jax.Array, x0: jax.Array, index: jax.Array | None, sample_index: Callable
) -> tuple[jax.Array, jax.Array]:
    """Per-example pair index and noise ``z``: example ``b`` uses only its own key."""
    keys = as_example_keys(key, x0.shape[0])
    pairs = jax.vmap(jax.random.split)(keys)
    z = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(pairs[:, 1])
    if index is None:
        index = sample_index(pairs[:, 0])
    else:
        index = jnp.asarray(index)
        if index.shape != x0.shape[:1] or not jnp.issubdtype(index.dtype, jnp.integer):
            raise ValueError(f"index must be ints of shape ({x0.shape[0]},), got {index.shape}")
    return index, z


def _consistency_loss(
    student_fn, target_fn, x_hi, s_hi, x_lo, s_lo, distance, weighting, index
) -> tuple[jax.Array, dict[str, jax.Array]]:
    target = jax.lax.stop_gradient(target_fn(jax.lax.stop_gradient(x_lo), s_lo))
    dist = distance(student_fn(x_hi, s_hi), target)
    weight = _weight(weighting, s_lo, s_hi)
    terms = {
        "sigma": s_hi,
        "sigma_target": s_lo,
        "distance": dist,
        "weight": weight,
        "index": index,
    }
    return weight * dist, terms


def consistency_distillation_loss(
    student_fn: ConsistencyFn,
    target_fn: ConsistencyFn,
    teacher_denoiser: Denoiser,
    x0: jax.Array,
    key: jax.Array,
    *,
    levels: jax.Array,
    metric: str | Metric = "squared",
    solver: str = "heun",
    weighting: str = "uniform",
    index: jax.Array | None = None,
    index_distribution: str = "uniform",
    p_mean: float = -1.1,
    p_std: float = 2.0,
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    huber_c: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Consistency distillation (Song et al. 2023, Alg. 2), per example:

        n ~ U{0..N-2},  z ~ N(0, I),  x_{n+1} = x_0 + s_{n+1} z,
        x^_n = Phi_teacher(x_{n+1}; s_{n+1} -> s_n)     (one Euler or Heun ODE step),
        L = lambda(s_n, s_{n+1}) d(f_student(x_{n+1}, s_{n+1}), sg(f_target(x^_n, s_n))),

    ``lambda = 1`` (``weighting="uniform"``, Song et al. 2023) or ``1 / (s_{n+1} - s_n)``
    (``"inverse_gap"``, iCT). ``levels (N,)`` increasing (e.g. :func:`karras_levels`);
    ``index (B,)`` fixes ``n``; ``index_distribution="lognormal"`` draws ``n`` by iCT's eq. 9 on
    these levels instead. ``metric``: a name of :data:`METRICS` or a callable ``d(a, b) ->
    (B,)``. ``target_fn`` is the student under stop-gradient (iCT) or its EMA (Song et al.
    2023); the teacher step and the target are stop-gradiented here. Example ``b`` draws its
    index and noise from its own key (``fold_in(key, b)`` or ``key[b]``).

    With the exact teacher and the minimiser ``f`` of the loss, ``f`` is the composition of the
    teacher's steps down the levels, which tends to the exact probability-flow map as the
    levels get dense (Song et al. 2023, Thm. 1: error ``O((Delta s)^p)`` for a solver of order
    ``p``).

    Returns ``(per_example (B,), terms)``, terms ``"sigma"`` (``s_{n+1}``), ``"sigma_target"``
    (``s_n``), ``"distance"``, ``"weight"``, ``"index"``.
    """
    check_choice("weighting", weighting, CONSISTENCY_WEIGHTINGS)
    check_choice("index_distribution", index_distribution, INDEX_DISTRIBUTIONS)
    distance = resolve_metric(metric, feature_fn=feature_fn, huber_c=huber_c)
    levels = check_levels(levels)
    x0 = _check_x0(x0)
    num_levels = levels.shape[0]
    if index is not None:
        check_index_range(index, num_levels - 1, "index", what="N - 1")

    def sample_index(keys):
        return sample_level_index(
            keys,
            num_levels,
            distribution=index_distribution,
            p_mean=p_mean,
            p_std=p_std,
            levels=levels if index_distribution == "lognormal" else None,
        )

    index, z = _index_and_noise(key, x0, index, sample_index)
    levels = levels.astype(x0.dtype)
    s_lo, s_hi = levels[index], levels[index + 1]
    x_hi = x0 + expand(s_hi, x0) * z
    x_lo, _ = probability_flow_step(teacher_denoiser, x_hi, s_hi, s_lo, solver=solver)
    return _consistency_loss(
        student_fn, target_fn, x_hi, s_hi, x_lo, s_lo, distance, weighting, index
    )


def consistency_training_loss(
    student_fn: ConsistencyFn,
    target_fn: ConsistencyFn,
    x0: jax.Array,
    key: jax.Array,
    *,
    levels: jax.Array | None = None,
    num_levels: jax.Array | int | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    max_levels: int | None = None,
    metric: str | Metric = "pseudo_huber",
    weighting: str = "inverse_gap",
    index_distribution: str = "lognormal",
    p_mean: float = -1.1,
    p_std: float = 2.0,
    index: jax.Array | None = None,
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    huber_c: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Consistency training without a teacher (Song et al. 2023, Alg. 3; iCT 2024), per example:

        n ~ p(n),  z ~ N(0, I),
        L = lambda(s_n, s_{n+1}) d(f_student(x_0 + s_{n+1} z, s_{n+1}),
                                   sg(f_target(x_0 + s_n z, s_n))),

    the same ``z`` at both levels: ``x_0 + s_n z`` is the Euler step of the ODE with the
    one-sample denoiser estimate ``D = x_0`` (unbiased for ``E[x_0 | x~]``), so for the squared
    metric the CT gradient equals the CD gradient with an exact Euler teacher up to
    ``o(Delta s)`` (Song et al. 2023, Thm. 2). Defaults are iCT's: pseudo-Huber metric,
    ``lambda = 1 / (s_{n+1} - s_n)``, lognormal ``p(n)`` (eq. 9, ``P_mean = -1.1``,
    ``P_std = 2``), and the target is the student under stop-gradient (no EMA).

    Levels: explicit increasing ``levels (N,)``, or ``num_levels`` (traced ok, e.g.
    :func:`ict_num_levels` of the step) Karras levels on ``[sigma_min, sigma_max]`` with
    ``rho``; the lognormal distribution of a traced ``num_levels`` needs a static ``max_levels``.

    Returns ``(per_example (B,), terms)`` as :func:`consistency_distillation_loss`.
    """
    check_choice("weighting", weighting, CONSISTENCY_WEIGHTINGS)
    check_choice("index_distribution", index_distribution, INDEX_DISTRIBUTIONS)
    distance = resolve_metric(metric, feature_fn=feature_fn, huber_c=huber_c)
    x0 = _check_x0(x0)
    if (levels is None) == (num_levels is None):
        raise ValueError("consistency_training_loss needs exactly one of levels or num_levels")
    if levels is not None:
        levels = check_levels(levels)
        n_levels = levels.shape[0]
        level_of = lambda i: levels.astype(x0.dtype)[i]  # noqa: E731
    else:
        n_levels = num_levels

        def level_of(i):
            return karras_level(
                i, num_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho
            ).astype(x0.dtype)

    if index is not None and is_concrete(n_levels):
        check_index_range(index, int(n_levels) - 1, "index", what="N - 1")

    def sample_index(keys):
        return sample_level_index(
            keys,
            n_levels,
            distribution=index_distribution,
            p_mean=p_mean,
            p_std=p_std,
            max_levels=max_levels,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            rho=rho,
            levels=levels if index_distribution == "lognormal" else None,
        )

    index, z = _index_and_noise(key, x0, index, sample_index)
    s_lo, s_hi = level_of(index), level_of(index + 1)
    x_hi = x0 + expand(s_hi, x0) * z
    x_lo = x0 + expand(s_lo, x0) * z
    return _consistency_loss(
        student_fn, target_fn, x_hi, s_hi, x_lo, s_lo, distance, weighting, index
    )


def multistep_consistency_sample(
    consistency_fn: ConsistencyFn,
    key: jax.Array,
    shape: Sequence[int],
    *,
    sigmas: jax.Array | Sequence[float],
    sigma_min: float,
) -> SamplerOutput:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1):

        x = f(s_0 z_0, s_0);   for k >= 1:  x = f(x + sqrt(s_k^2 - sigma_min^2) z_k, s_k),

    over decreasing ``sigmas`` (``s_0 = sigma_max``, all ``>= sigma_min``): each step re-noises
    the current sample to level ``s_k`` and maps it back with ``f``. One step is the
    consistency model's one-step generator; ``nfe = len(sigmas)``. Example ``i``'s noise comes
    from its own key (:func:`jaxgen.core.sampling.initial_and_step_keys`).
    """
    shape = check_sample_shape(shape)
    check_finite_number(sigma_min, "sigma_min", low=0.0)
    sigmas = _check_sampling_sigmas(sigmas, sigma_min)
    x_init, keys = initial_and_step_keys(key, shape, max(sigmas.shape[0] - 1, 1))
    dtype = x_init.dtype
    sigmas = sigmas.astype(dtype)
    batch = shape[0]
    x = consistency_fn(sigmas[0] * x_init, jnp.full((batch,), sigmas[0], dtype))
    if sigmas.shape[0] == 1:
        return SamplerOutput(x, 1)

    def step(x, inputs):
        s, step_keys = inputs
        z = jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(step_keys)
        noise_scale = jnp.sqrt(jnp.maximum(s * s - sigma_min**2, 0.0))
        return consistency_fn(x + noise_scale * z, jnp.full((batch,), s, dtype)), None

    x, _ = jax.lax.scan(step, x, (sigmas[1:], keys))
    return SamplerOutput(x, int(sigmas.shape[0]))


def _check_sampling_sigmas(sigmas, sigma_min: float) -> jax.Array:
    """Concrete, finite, strictly decreasing ``sigmas (K,)``, ``K >= 1``, all ``>= sigma_min``."""
    if not is_concrete(sigmas):
        raise ValueError("sigmas must be concrete (their number fixes the steps), got a tracer")
    values = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if (
        values.size == 0
        or np.ndim(sigmas) > 1
        or not np.all(np.isfinite(values))
        or np.any(np.diff(values) >= 0)
        or values.min() < sigma_min
        or values.min() <= 0
    ):
        raise ValueError(
            f"sigmas must be a non-empty, strictly decreasing list of noise levels >= "
            f"sigma_min = {sigma_min} (and > 0), got {values}"
        )
    return jnp.asarray(values, jnp.result_type(float))
