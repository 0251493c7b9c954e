"""The squeeze operation of multi-scale flows (RealNVP sec. 3.6, Fig. 3; Glow sec. 3).

``squeeze`` trades space for channels: every 2x2xC block of the image becomes one 1x1x4C
pixel (RealNVP: "for each channel, it divides the image into subsquares of shape 2x2xc,
then reshapes them into subsquares of shape 1x1x4c"). The ordering of the 4C output channels
is that of ``space_to_depth`` with block size 2 (as ``tf.nn.space_to_depth``)::

    out[b, i, j, (2 * di + dj) * C + c] = x[b, 2 * i + di, 2 * j + dj, c],   di, dj in {0, 1}

so channels ``[0, C)`` are the top-left pixels of the blocks, ``[C, 2C)`` the top-right,
``[2C, 3C)`` the bottom-left and ``[3C, 4C)`` the bottom-right. ``unsqueeze`` is its exact
inverse. Both are permutations of the coordinates, so ``|det| = 1`` and the log-determinant
is 0; they return the array alone (not a ``(output, log_det)`` pair).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["squeeze", "unsqueeze"]


def squeeze(x: jax.Array) -> jax.Array:
    """``(B, H, W, C) -> (B, H/2, W/2, 4C)`` in the space_to_depth order above."""
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"squeeze expects (B, H, W, C) with even H and W, got {x.shape}")
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)  # (b, i, di, j, dj, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x: jax.Array) -> jax.Array:
    """``(B, H, W, 4C) -> (B, 2H, 2W, C)``, the exact inverse of :func:`squeeze`."""
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[3] % 4:
        raise ValueError(f"unsqueeze expects (B, H, W, 4C), got {x.shape}")
    b, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(b, h, w, 2, 2, c)  # (b, i, j, di, dj, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
