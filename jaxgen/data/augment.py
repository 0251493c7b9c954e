"""Host-side augmentations: ``transform(batch, rng) -> batch`` for ``BatchLoader``.

A transform gets this process's slice of a batch (numpy arrays) and a
``numpy.random.Generator`` that the loader derives from (seed, step, process index), so
an augmented batch is as reproducible as an unaugmented one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Transform = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]


def random_horizontal_flip(
    batch: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    key: str = "image",
    prob: float = 0.5,
) -> dict[str, np.ndarray]:
    """Mirror each NHWC image left-right with probability ``prob`` (DDPM's CIFAR-10 flip).

    Args:
      batch: a batch dict; ``batch[key]`` must be ``(N, H, W, C)``.
      rng: the generator the loader passes for this step.
      key: which entry holds the images.
      prob: flip probability per example.

    Returns:
      A new dict; other entries are passed through unchanged, the input is not modified.
    """
    images = batch[key]
    if images.ndim != 4:
        raise ValueError(f"random_horizontal_flip expects NHWC images, got shape {images.shape}")
    flip = rng.random(images.shape[0]) < prob
    out = dict(batch)
    out[key] = np.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    return out


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order, each with its own generator spawned from ``rng``."""

    def composed(batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        for t, child in zip(transforms, rng.spawn(len(transforms)), strict=True):
            batch = t(batch, child)
        return batch

    return composed
