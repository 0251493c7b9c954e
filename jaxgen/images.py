"""Image grids and PNG files for samples in [-1, 1]."""

from __future__ import annotations

import math
import pathlib

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map [-1, 1] floats to uint8 0..255 (clipping outside values)."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, *, num_cols: int | None = None, padding: int = 1) -> np.ndarray:
    """Tile NHWC images (N, H, W, C) into one (rows*H, cols*W, C) uint8 image."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"make_grid expects NHWC images, got shape {x.shape}")
    n, h, w, c = x.shape
    cols = num_cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = to_uint8(x)
    grid = np.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c), 255, np.uint8
    )
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def save_png(path: str | pathlib.Path, image: np.ndarray, *, upscale: int = 1) -> pathlib.Path:
    """Write a uint8 HxWxC (C in 1, 3) image as PNG, optionally upscaled by pixel repeat."""
    from PIL import Image

    img = np.asarray(image)
    if upscale > 1:
        img = img.repeat(upscale, axis=0).repeat(upscale, axis=1)
    if img.shape[-1] == 1:
        img = img[..., 0]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def save_grid(
    path: str | pathlib.Path, images: np.ndarray, *, upscale: int | None = None
) -> pathlib.Path:
    """Grid of NHWC samples in [-1, 1] written as PNG; small images are upscaled to ~256 px."""
    grid = make_grid(images)
    if upscale is None:
        upscale = max(1, 256 // max(grid.shape[:2]))
    return save_png(path, grid, upscale=upscale)


def density_picture(points: np.ndarray, *, extent: float = 3.0, bins: int = 128) -> np.ndarray:
    """A (bins, bins, 1) uint8 picture of 2-D ``points`` on ``[-extent, extent]^2``: a
    log-scaled histogram, dark where points are dense, white where there are none; the
    first axis is ``y`` from top (``+extent``) to bottom, so it reads like a scatter plot."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"density_picture expects points of shape (N, 2), got {pts.shape}")
    edges = np.linspace(-extent, extent, bins + 1)
    counts, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=(edges, edges))
    level = np.log1p(counts[::-1])
    level = level / max(level.max(), 1e-12)
    return (255 * (1.0 - level)).round().astype(np.uint8)[..., None]
