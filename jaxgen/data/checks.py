"""Host-side sanity checks on image batches, with errors that say what is wrong.

Every model in jaxgen expects images as float NHWC arrays scaled to [-1, 1]. The usual
mistakes (a uint8 batch that was never scaled, NCHW from a PyTorch habit, a missing
batch axis, NaNs from a broken transform) otherwise surface much later as a shape error
deep inside a network or as a loss that silently never improves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class UnknownSplitError(ValueError):
    """A split name that the dataset does not have (the message names the known ones)."""


def check_images(
    images: np.ndarray,
    *,
    expected_shape: Sequence[int] | None = None,
    name: str = "images",
) -> np.ndarray:
    """Raise ``ValueError`` unless ``images`` is a finite float NHWC batch in [-1, 1].

    Args:
      images: a host array (anything ``np.asarray`` accepts, e.g. a fetched jax.Array).
      expected_shape: the per-example ``(H, W, C)`` it must have, if given.
      name: how to call the array in error messages.

    Returns:
      ``images`` as a numpy array, so the call can be chained.
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        hint = ""
        if arr.ndim == 3:
            hint = " (a single image or a batch without its channel axis? add it with x[..., None])"
        raise ValueError(
            f"{name} must be a 4-D NHWC batch (batch, height, width, channels), "
            f"got {arr.ndim}-D shape {arr.shape}{hint}"
        )
    if expected_shape is not None:
        expected = tuple(int(d) for d in expected_shape)
        if tuple(arr.shape[1:]) != expected:
            hint = ""
            if arr.shape[1] == expected[-1] and tuple(arr.shape[2:]) == expected[:2]:
                hint = " (looks like NCHW; transpose with x.transpose(0, 2, 3, 1))"
            raise ValueError(
                f"{name} have per-example shape (H, W, C) = {tuple(arr.shape[1:])}, "
                f"expected {expected}{hint}"
            )
    if not np.issubdtype(arr.dtype, np.floating):
        hint = ""
        if arr.dtype == np.uint8:
            hint = (
                "; 8-bit images must be scaled to [-1, 1] first, e.g. "
                "x.astype(np.float32) / 127.5 - 1"
            )
        raise ValueError(f"{name} must have a floating dtype, got {arr.dtype}{hint}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        num_nan = int(np.count_nonzero(np.isnan(arr)))
        raise ValueError(
            f"{name} contain {bad} non-finite values ({num_nan} NaN, {bad - num_nan} inf) "
            f"out of {arr.size}"
        )
    if arr.size:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1.0 or hi > 1.0:
            hint = ""
            if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
                hint = " (looks like unscaled 0..255 values; use x / 127.5 - 1)"
            raise ValueError(f"{name} must lie in [-1, 1], got min {lo:.6g}, max {hi:.6g}{hint}")
    return arr
