"""Noise-conditioning augmentation of the low-resolution condition (Ho et al. 2022,
"Cascaded Diffusion Models for High Fidelity Image Generation", sec. 3.2 and 4.4.2).

A super-resolution stage is trained on real downsampled images ``y`` but sampled on the
output of the stage below it, which has errors. Corrupting ``y`` during training, by a
level ``s`` the network is told (a second time input), and choosing ``s`` at sampling
time makes the stage tolerant of those errors.

* **Gaussian** (CDM's "Gaussian conditioning augmentation"): the variance-preserving
  forward process applied to the condition,

      z = alpha(s) y + sigma(s) e,   e ~ N(0, I),   alpha(s) = cos(pi s / 2),
      sigma(s) = sin(pi s / 2),   s in [0, 1],

  so ``s = 0`` leaves ``y`` unchanged and ``s = 1`` replaces it by pure noise.
* **Blur** (CDM's augmentation of the 256x256 stage): a Gaussian blur of standard
  deviation ``s`` pixels (of the low-resolution image), separable, on a fixed
  ``2 radius + 1``-tap kernel with edge padding; ``s = 0`` is no blur.

At level 0 both return their input bit for bit (selected with ``jnp.where``, not
computed), per example: a batch may mix levels.

Per-example noise comes from per-example keys (``jaxgen.core.example_keys``), so an
augmented condition depends only on its own key, never on the batch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxgen.core.sampling import as_example_keys, normal

__all__ = [
    "AUGMENTATIONS",
    "augment_condition",
    "blur_condition",
    "gaussian_augmentation_coefficients",
    "noise_condition",
    "uniform_levels",
]

AUGMENTATIONS: tuple[str, ...] = ("none", "gaussian", "blur")
BLUR_RADIUS = 2


def _levels(level: jax.Array | float, batch: int) -> jax.Array:
    level = jnp.asarray(level, jnp.float32)
    if level.ndim == 0:
        return jnp.full((batch,), level)
    if level.shape != (batch,):
        raise ValueError(
            f"the augmentation level must be a scalar or of shape ({batch},), got {level.shape}"
        )
    return level


def _check_condition(y: jax.Array) -> None:
    if y.ndim < 2:
        raise ValueError(f"the condition must be batched (B, ...), got shape {y.shape}")
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise ValueError(f"the condition must be a float array, got dtype {y.dtype}")


def gaussian_augmentation_coefficients(level: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(alpha(s), sigma(s)) = (cos(pi s / 2), sin(pi s / 2))``."""
    level = jnp.asarray(level, jnp.float32)
    return jnp.cos(0.5 * math.pi * level), jnp.sin(0.5 * math.pi * level)


def noise_condition(y: jax.Array, level: jax.Array | float, keys: jax.Array) -> jax.Array:
    """``alpha(s) y + sigma(s) e`` per example (``y`` itself where ``s = 0``); ``keys``: one
    key or one per example."""
    _check_condition(y)
    batch = y.shape[0]
    s = _levels(level, batch)
    e = normal(as_example_keys(keys, batch), y.shape[1:], y.dtype)
    alpha, sigma = gaussian_augmentation_coefficients(s)
    shape = (batch,) + (1,) * (y.ndim - 1)
    noised = alpha.reshape(shape).astype(y.dtype) * y + sigma.reshape(shape).astype(y.dtype) * e
    return jnp.where((s == 0).reshape(shape), y, noised)


def _blur_kernels(sigma: jax.Array, radius: int) -> jax.Array:
    """(B, 2 radius + 1) normalised Gaussian taps of std ``sigma`` (a delta at ``sigma = 0``)."""
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    safe = jnp.where(sigma > 0, sigma, 1.0)[:, None]
    taps = jnp.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    taps = taps / taps.sum(axis=1, keepdims=True)
    delta = (offsets == 0).astype(jnp.float32)[None, :]
    return jnp.where((sigma > 0)[:, None], taps, delta)


def blur_condition(
    y: jax.Array, level: jax.Array | float, *, radius: int = BLUR_RADIUS
) -> jax.Array:
    """Separable Gaussian blur of NHWC ``y`` with per-example std ``level`` (pixels), on a
    ``2 radius + 1``-tap kernel with edge padding (``y`` itself where ``level = 0``)."""
    _check_condition(y)
    if y.ndim != 4:
        raise ValueError(f"blur augmentation needs NHWC images, got shape {y.shape}")
    batch, h, w, _ = y.shape
    s = _levels(level, batch)
    k = _blur_kernels(s, radius).astype(y.dtype)
    padded = jnp.pad(y, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode="edge")
    rows = sum(k[:, i, None, None, None] * padded[:, i : i + h] for i in range(2 * radius + 1))
    padded = jnp.pad(rows, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="edge")
    out = sum(k[:, i, None, None, None] * padded[:, :, i : i + w] for i in range(2 * radius + 1))
    return jnp.where((s == 0).reshape(batch, 1, 1, 1), y, out)


def augment_condition(
    y: jax.Array,
    level: jax.Array | float,
    keys: jax.Array | None = None,
    *,
    kind: str = "gaussian",
) -> jax.Array:
    """The condition ``y`` corrupted at ``level`` by augmentation ``kind`` (one of
    :data:`AUGMENTATIONS`; ``"none"`` returns ``y``). ``keys`` (one, or one per example)
    are needed for ``"gaussian"``."""
    if kind not in AUGMENTATIONS:
        raise ValueError(
            f"augmentation must be one of {', '.join(map(repr, AUGMENTATIONS))}, got {kind!r}"
        )
    if kind == "none":
        return y
    if kind == "blur":
        return blur_condition(y, level)
    if keys is None:
        raise ValueError("Gaussian augmentation needs keys (one, or one per example)")
    return noise_condition(y, level, keys)


def uniform_levels(keys: jax.Array, batch: int, max_level: float) -> jax.Array:
    """Training levels ``s ~ U[0, max_level]``, one per example (all 0 when
    ``max_level = 0``)."""
    keys = as_example_keys(keys, batch)
    u = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys)
    return u * jnp.float32(max_level)
