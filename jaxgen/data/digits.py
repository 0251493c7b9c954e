"""The 8x8 handwritten digits bundled with scikit-learn (no download).

1797 greyscale images with integer levels 0..16 (17 levels), labels 0..9. jaxgen fixes
one train/test split for every model family so that their numbers are comparable:
a permutation drawn with ``numpy.random.default_rng(0)``; the first 1437 images are
``train``, the last 360 are ``test``.

Images are returned as float32 NHWC arrays scaled to [-1, 1]: level k maps to
``2 k / 16 - 1``, so neighbouring levels are ``2 / 16`` apart.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxgen.data.checks import UnknownSplitError

NUM_LEVELS = 17
IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10
NUM_TRAIN = 1437
NUM_TEST = 360
SPLITS = ("train", "test", "all")


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    levels = bunch.images.astype(np.int32)  # (1797, 8, 8), values 0..16
    order = np.random.default_rng(0).permutation(levels.shape[0])
    return levels[order], bunch.target.astype(np.int32)[order]


def load_digit_levels(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Integer grey levels (N, 8, 8, 1) int32 in 0..16 and labels (N,) int32."""
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown digits split {split!r}; expected one of {SPLITS}")
    levels, labels = _load_all()
    sl = {"train": slice(0, NUM_TRAIN), "test": slice(NUM_TRAIN, None), "all": slice(None)}[split]
    return levels[sl][..., None].copy(), labels[sl].copy()


def load_digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 8, 8, 1) float32 in [-1, 1] and labels (N,) int32 for a fixed split."""
    levels, labels = load_digit_levels(split)
    images = levels.astype(np.float32) * (2.0 / (NUM_LEVELS - 1)) - 1.0
    return images, labels
