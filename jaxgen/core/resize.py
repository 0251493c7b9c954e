"""Image resizing shared by every family that works across resolutions (super-resolution,
cascades, low-resolution training data).

* :func:`downsample_mean`: area (box) downsampling, the mean of each ``f x f`` block. On
  images whose pixels take ``L`` levels it gives ``(L - 1) f^2 + 1`` levels
  (:func:`downsampled_num_levels`): the mean of ``f^2`` values on a grid of step
  ``1 / (L - 1)`` lies on the grid of step ``1 / ((L - 1) f^2)``.
* :func:`upsample`: ``nearest`` (each pixel repeated ``f x f`` times, the exact right
  inverse of :func:`downsample_mean`: ``downsample_mean(upsample(y, f, "nearest"), f) == y`` up
  to float rounding),
  ``bilinear`` or ``bicubic`` (``jax.image.resize``, half-pixel centres, no antialiasing on
  enlargement).

All functions take NHWC arrays and are pure JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["UPSAMPLE_METHODS", "downsample_mean", "downsampled_num_levels", "psnr", "upsample"]

UPSAMPLE_METHODS: tuple[str, ...] = ("nearest", "bilinear", "bicubic")


def _check_images(images: jax.Array, name: str = "images") -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} must be NHWC (4 axes), got shape {images.shape}")


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    return factor


def downsample_mean(images: jax.Array, factor: int) -> jax.Array:
    """The mean of every ``factor x factor`` block: ``(B, H, W, C) -> (B, H/f, W/f, C)``.
    ``ValueError`` when ``factor`` does not divide H and W."""
    _check_images(images)
    f = _check_factor(factor)
    b, h, w, c = images.shape
    if h % f or w % f:
        raise ValueError(f"image size {(h, w)} is not divisible by the factor {f}")
    if f == 1:
        return images
    return images.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def upsample(images: jax.Array, factor: int, method: str = "nearest") -> jax.Array:
    """Enlarge ``(B, h, w, C)`` to ``(B, f h, f w, C)`` by ``method`` (one of
    :data:`UPSAMPLE_METHODS`)."""
    _check_images(images)
    f = _check_factor(factor)
    if method not in UPSAMPLE_METHODS:
        raise ValueError(
            f"upsampling method must be one of {', '.join(map(repr, UPSAMPLE_METHODS))}, "
            f"got {method!r}"
        )
    if f == 1:
        return images
    if method == "nearest":
        return jnp.repeat(jnp.repeat(images, f, axis=1), f, axis=2)
    b, h, w, c = images.shape
    kind = "linear" if method == "bilinear" else "cubic"
    return jax.image.resize(images, (b, f * h, f * w, c), kind, antialias=False)


def downsampled_num_levels(num_levels: int | None, factor: int) -> int | None:
    """The levels of :func:`downsample_mean`'s output on images of ``num_levels`` levels:
    ``(L - 1) f^2 + 1`` (None stays None: continuous data)."""
    f = _check_factor(factor)
    if num_levels is None:
        return None
    return (int(num_levels) - 1) * f * f + 1


def psnr(estimate: jax.Array, truth: jax.Array, *, peak: float = 2.0) -> jax.Array:
    """Per-example peak signal-to-noise ratio in dB, ``10 log10(peak^2 / mse)``; the default
    peak 2 is the range of images in ``[-1, 1]``."""
    if estimate.shape != truth.shape:
        raise ValueError(f"psnr needs equal shapes, got {estimate.shape} and {truth.shape}")
    mse = jnp.mean((estimate - truth).reshape(truth.shape[0], -1) ** 2, axis=1)
    return 10.0 * jnp.log10(peak**2 / jnp.maximum(mse, 1e-12))
