"""Noise levels of consistency models: Karras levels, iCT's curriculum and index sampling.

Every function works with EDM noise levels ``s = sigma / alpha`` (Karras et al. 2022), increasing
``s_1 = sigma_min < s_2 < ... < s_N = sigma_max``; the training pair of index ``n`` (0-based,
``n in [0, N - 2]``) is ``(s_n, s_{n+1})`` in 0-based numbering (``levels[n], levels[n + 1]``).

References:
  Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative
  Models (EDM). NeurIPS 2022, eq. 5.
  Song, Dhariwal, Chen, Sutskever. Consistency Models. ICML 2023, Sec. 3 and App. C.
  Song, Dhariwal. Improved Techniques for Training Consistency Models (iCT). ICLR 2024,
  eq. 7 (curriculum) and eq. 9 (lognormal index distribution).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.sampling import as_example_keys
from jaxgen.core.validation import (
    check_choice,
    check_finite_number,
    check_positive_int,
    is_concrete,
)

__all__ = [
    "INDEX_DISTRIBUTIONS",
    "check_levels",
    "ict_num_levels",
    "karras_level",
    "karras_levels",
    "lognormal_index_logits",
    "sample_level_index",
]

INDEX_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "lognormal")


def _check_sigma_range(sigma_min, sigma_max, rho) -> None:
    check_finite_number(sigma_min, "sigma_min", low=0.0, low_open=True)
    check_finite_number(sigma_max, "sigma_max", low=0.0, low_open=True)
    check_finite_number(rho, "rho", low=0.0, low_open=True)
    if (
        is_concrete(sigma_min)
        and is_concrete(sigma_max)
        and not float(sigma_min) < float(sigma_max)
    ):
        raise ValueError(f"sigma_min must be < sigma_max, got {sigma_min!r} and {sigma_max!r}")


def check_levels(levels: jax.Array, name: str = "levels", *, increasing: bool = True) -> jax.Array:
    """``levels`` as a float array ``(N,)``, ``N >= 2``; ``ValueError`` unless (when concrete)
    its values are finite, non-negative and strictly increasing (``increasing=False``:
    strictly decreasing), and positive except a decreasing list's last entry, which may be 0."""
    levels = jnp.asarray(levels)
    if not jnp.issubdtype(levels.dtype, jnp.floating):
        levels = levels.astype(jnp.result_type(float))
    if levels.ndim != 1 or levels.shape[0] < 2:
        raise ValueError(
            f"{name} must be a 1-D array of at least 2 noise levels, got {levels.shape}"
        )
    if is_concrete(levels):
        values = np.asarray(levels, dtype=np.float64)
        order = "increasing" if increasing else "decreasing"
        steps = np.diff(values) if increasing else -np.diff(values)
        positive = values if increasing else values[:-1]
        bad = np.any(steps <= 0) or np.any(positive <= 0) or values.min() < 0
        if not np.all(np.isfinite(values)) or bad:
            zero = "" if increasing else " (the last may be 0)"
            raise ValueError(
                f"{name} must be finite, positive{zero} and strictly {order}, got {values}"
            )
    return levels


def karras_level(
    index: jax.Array | int,
    num_levels: jax.Array | int,
    *,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
) -> jax.Array:
    """Level ``index`` (0-based) of ``num_levels`` Karras levels, traced ``index`` and
    ``num_levels`` allowed (the iCT curriculum changes ``N`` inside ``jit``):

        s_i = (sigma_min^(1/rho) + i / (N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,

    ``i = 0 .. N - 1`` (EDM eq. 5 in increasing order; Song et al. 2023 App. C). The end points
    are exactly ``sigma_min`` and ``sigma_max`` (so a consistency function's boundary
    ``f(x, sigma_min) = x`` is hit bit for bit). Out-of-range traced indices are clipped.
    """
    _check_sigma_range(sigma_min, sigma_max, rho)
    if is_concrete(num_levels) and np.ndim(num_levels) == 0:
        check_positive_int(int(num_levels), "num_levels", minimum=2)
    dtype = jnp.result_type(float)
    n_last = jnp.asarray(num_levels, dtype) - 1.0
    index = jnp.clip(jnp.asarray(index), 0, jnp.asarray(num_levels) - 1)
    frac = index.astype(dtype) / n_last
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    level = (lo + frac * (hi - lo)) ** rho
    level = jnp.where(index == 0, jnp.asarray(sigma_min, dtype), level)
    return jnp.where(index == jnp.asarray(num_levels) - 1, jnp.asarray(sigma_max, dtype), level)


def karras_levels(
    num_levels: int, *, sigma_min: float, sigma_max: float, rho: float = 7.0
) -> jax.Array:
    """The ``(num_levels,)`` increasing Karras levels ``s_0 = sigma_min < ... < s_{N-1} =
    sigma_max`` of :func:`karras_level` (EDM eq. 5 reversed; Song et al. 2023 App. C)."""
    num_levels = check_positive_int(num_levels, "num_levels", minimum=2)
    return karras_level(
        jnp.arange(num_levels), num_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho
    )


def ict_num_levels(
    step: jax.Array | int, total_steps: int, *, initial: int = 10, final: int = 1280
) -> jax.Array:
    """iCT's exponential curriculum (Song & Dhariwal 2024, eq. 7): at training step ``k`` of
    ``K = total_steps``,

        N(k) = min(s0 2^floor(k / K'), s1) + 1,   K' = floor(K / (log2 floor(s1 / s0) + 1)),

    with ``s0 = initial``, ``s1 = final`` (10 and 1280 in the paper: ``N`` doubles from 11 to
    1281 in 8 equal stages). ``step`` may be traced; returns an int32 array of ``step``'s shape.
    """
    total_steps = check_positive_int(total_steps, "total_steps")
    initial = check_positive_int(initial, "initial")
    final = check_positive_int(final, "final")
    if final < initial:
        raise ValueError(f"final must be >= initial = {initial}, got {final}")
    stages = math.log2(final // initial) + 1
    k_prime = max(math.floor(total_steps / stages), 1)
    cap = math.ceil(math.log2(final / initial)) + 1  # 2^cap * initial >= final
    exponent = jnp.minimum(jnp.asarray(step, jnp.int32) // k_prime, cap)
    return jnp.minimum(initial * jnp.left_shift(jnp.int32(1), exponent), final) + 1


def lognormal_index_logits(
    levels: jax.Array,
    *,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    num_valid: jax.Array | int | None = None,
) -> jax.Array:
    """Log-probabilities ``(N - 1,)`` of iCT's lognormal pair index (Song & Dhariwal 2024, eq. 9):

        p(n) ∝ erf(u_{n+1}) - erf(u_n),   u_n = (log s_n - P_mean) / (sqrt(2) P_std),

    the mass that ``log s ~ N(P_mean, P_std^2)`` puts on ``[s_n, s_{n+1}]``, normalised over the
    pairs. ``levels`` are increasing; with ``num_valid`` (traced ok) only the first
    ``num_valid`` levels count (pairs ``n >= num_valid - 1`` get probability 0): the static
    ``levels`` buffer of a traced curriculum. The difference is taken as ``erfc(a) - erfc(b)``
    where both arguments are positive, so it keeps its precision in the upper tail.
    """
    levels = jnp.asarray(levels)
    check_finite_number(p_std, "p_std", low=0.0, low_open=True)
    scale = math.sqrt(2.0) * p_std
    u = (jnp.log(levels) - p_mean) / scale
    lo, hi = u[:-1], u[1:]
    upper = lo > 0
    mass = jnp.where(
        upper,
        jax.scipy.special.erfc(lo) - jax.scipy.special.erfc(hi),
        jax.scipy.special.erf(hi) - jax.scipy.special.erf(lo),
    )
    if num_valid is not None:
        mass = jnp.where(jnp.arange(mass.shape[0]) < jnp.asarray(num_valid) - 1, mass, 0.0)
    mass = jnp.maximum(mass, 0.0)
    return jnp.log(mass) - jnp.log(jnp.sum(mass))


def sample_level_index(
    key: jax.Array,
    num_levels: jax.Array | int,
    *,
    batch_size: int | None = None,
    distribution: str = "uniform",
    p_mean: float = -1.1,
    p_std: float = 2.0,
    max_levels: int | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    levels: jax.Array | None = None,
) -> jax.Array:
    """Per-example pair indices ``n (B,)`` in ``[0, N - 2]`` (``N = num_levels``, traced ok).

    ``key``: one key (then ``batch_size`` is needed and example ``b`` uses ``fold_in(key, b)``)
    or a ``(B,)`` batch of per-example keys (each index depends on its own key alone).

    ``distribution="uniform"``: ``n ~ U{0, ..., N - 2}`` (Song et al. 2023, Alg. 2-3).
    ``"lognormal"``: iCT's ``p(n)`` of :func:`lognormal_index_logits` on the Karras levels of
    ``(sigma_min, sigma_max, rho)`` (Song & Dhariwal 2024, eq. 9), or on explicit ``levels (N,)``.
    A traced ``num_levels`` needs a static bound ``max_levels >= N`` (the levels are built for
    ``max_levels`` indices and the pairs past ``N - 2`` masked out).
    """
    check_choice("distribution", distribution, INDEX_DISTRIBUTIONS)
    if batch_size is None:
        if not is_key_batch(key):
            raise ValueError("sample_level_index needs batch_size when given one key")
        keys = key
    else:
        keys = as_example_keys(key, check_positive_int(batch_size, "batch_size"))
    if is_concrete(num_levels) and np.ndim(num_levels) == 0:
        check_positive_int(int(num_levels), "num_levels", minimum=2)
    if distribution == "uniform":
        high = jnp.asarray(num_levels) - 1
        return jax.vmap(lambda k: jax.random.randint(k, (), 0, high))(keys)
    if levels is None:
        if sigma_min is None or sigma_max is None:
            raise ValueError(
                "the lognormal index distribution needs sigma_min and sigma_max (or levels)"
            )
        if max_levels is None:
            if not is_concrete(num_levels):
                raise ValueError(
                    "a traced num_levels needs a static max_levels bound for the lognormal "
                    "index distribution"
                )
            max_levels = int(num_levels)
        max_levels = check_positive_int(max_levels, "max_levels", minimum=2)
        if is_concrete(num_levels) and int(num_levels) > max_levels:
            raise ValueError(f"num_levels = {int(num_levels)} exceeds max_levels = {max_levels}")
        levels = karras_level(
            jnp.arange(max_levels), num_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho
        )
        logits = lognormal_index_logits(levels, p_mean=p_mean, p_std=p_std, num_valid=num_levels)
    else:
        levels = check_levels(levels)
        if is_concrete(num_levels) and int(num_levels) != levels.shape[0]:
            raise ValueError(
                f"num_levels = {int(num_levels)} must equal len(levels) = {levels.shape[0]}"
            )
        logits = lognormal_index_logits(levels, p_mean=p_mean, p_std=p_std)
    return jax.vmap(lambda k: jax.random.categorical(k, logits))(keys)


def is_key_batch(key: jax.Array) -> bool:
    """True for a ``(B,)`` batch of keys (typed keys ``(B,)``, raw uint32 keys ``(B, 2)``)."""
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2
