"""Fixed (untrained) 2x resampling of NHWC feature maps for the U-Net.

* ``nearest_upsample`` / ``avg_pool_downsample``: the DDPM network's resampling without a
  filter (BigGAN's residual blocks resample this way too).
* ``fir_upsample`` / ``fir_downsample``: anti-aliased resampling with the separable FIR
  filter ``k = [1, 3, 3, 1] (x) [1, 3, 3, 1] / 64`` (Zhang 2019; StyleGAN2, Karras et al.
  2020), applied as a fixed depthwise convolution with zero padding, exactly as
  ``upfirdn2d``: down = ``k`` with padding (1, 1) then keep every 2nd sample; up = zero
  insertion then ``4 k`` with padding (2, 1). Up is 4 times the adjoint of down, and both
  preserve constants away from the border.

References:
  Zhang, "Making convolutional networks shift-invariant again", ICML 2019.
  Karras et al., "Analyzing and improving the image quality of StyleGAN", CVPR 2020.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FIR_TAPS",
    "avg_pool_downsample",
    "fir_downsample",
    "fir_filter",
    "fir_kernel",
    "fir_upsample",
    "nearest_upsample",
    "resample_fn",
]

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_kernel(gain: float = 1.0) -> np.ndarray:
    """The 4x4 FIR filter ``gain * outer(t, t) / sum(outer(t, t))`` with ``t = [1, 3, 3, 1]``."""
    k = np.outer(FIR_TAPS, FIR_TAPS)
    return k * (gain / k.sum())


def fir_filter(
    x: jax.Array,
    *,
    gain: float,
    padding: tuple[int, int],
    stride: int = 1,
    dilation: int = 1,
) -> jax.Array:
    """Depthwise correlation of NHWC ``x`` with ``fir_kernel(gain)`` (fixed, untrained).

    ``padding`` (before, after) is applied to H and W after the input dilation (zero
    insertion) ``dilation``; the kernel is symmetric, so correlation = convolution.
    """
    c = x.shape[-1]
    k = jnp.asarray(fir_kernel(gain), x.dtype)
    k = jnp.broadcast_to(k.reshape(4, 4, 1, 1), (4, 4, 1, c))
    return jax.lax.conv_general_dilated(
        x,
        k,
        window_strides=(stride, stride),
        padding=(padding, padding),
        lhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )


def fir_downsample(x: jax.Array) -> jax.Array:
    """FIR 2x downsampling of NHWC ``x`` (``upfirdn2d(x, k, down=2, pad=(1, 1))``).

    ``y[i, j] = sum_{a, b} k[a, b] x[2i + a - 1, 2j + b - 1]`` with zero outside the image.
    """
    return fir_filter(x, gain=1.0, padding=(1, 1), stride=2)


def fir_upsample(x: jax.Array) -> jax.Array:
    """FIR 2x upsampling of NHWC ``x`` (``upfirdn2d(x, 4 k, up=2, pad=(2, 1))``).

    Zero insertion followed by the filter ``4 k`` (each polyphase component of ``4 k`` sums
    to 1); the exact adjoint of ``fir_downsample`` times 4.
    """
    return fir_filter(x, gain=4.0, padding=(2, 2), dilation=2)


def avg_pool_downsample(x: jax.Array) -> jax.Array:
    """2x2 average pooling of NHWC ``x`` (BigGAN's downsampling without a filter)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling of NHWC ``x``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def resample_fn(direction: str, *, fir: bool) -> Callable[[jax.Array], jax.Array]:
    """The fixed resampling ``"down"`` or ``"up"``: FIR if ``fir``, else average pooling /
    nearest neighbour."""
    if direction == "down":
        return fir_downsample if fir else avg_pool_downsample
    if direction == "up":
        return fir_upsample if fir else nearest_upsample
    raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
