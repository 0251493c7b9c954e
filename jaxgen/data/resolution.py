"""Training at a lower resolution: a dataset's images area-downsampled on the fly.

The base stage of a cascade (Ho et al. 2022) is trained on the data at the cascade's lowest
resolution, made the same way as the super-resolution stages' conditions: the mean of every
``f x f`` block (``jaxgen.core.resize.downsample_mean``, here in NumPy on the host). Images
of ``L`` levels become images of ``(L - 1) f^2 + 1`` levels (the 8x8 digits' 17 levels give
65 at 4x4), which is what likelihoods are then measured on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxgen.core.resize import downsampled_num_levels
from jaxgen.data.source import Source

__all__ = ["DownsampledSource", "downsample_dataset"]


def _block_mean(images: np.ndarray, factor: int) -> np.ndarray:
    b, h, w, c = images.shape
    blocks = images.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


class DownsampledSource:
    """``source`` with ``key``'s images replaced by their ``factor x factor`` block means."""

    def __init__(self, source: Source, key: str, factor: int):
        self.source, self.key, self.factor = source, key, factor

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        rows = dict(self.source.get(indices))
        rows[self.key] = _block_mean(np.asarray(rows[self.key], np.float32), self.factor)
        return rows

    def __repr__(self) -> str:
        return f"DownsampledSource({self.source!r}, factor={self.factor})"


def downsample_dataset(dataset, resolution: int):
    """``dataset`` (a :class:`jaxgen.data.registry.Dataset`) at ``resolution x resolution``:
    ``ValueError`` naming the sizes when it has no square images or ``resolution`` does not
    divide their size."""
    shape = dataset.image_shape
    if shape is None:
        raise ValueError(
            f"data.resolution applies to image datasets; {dataset.name!r} has examples of "
            f"shape {dataset.event_shape}"
        )
    h, w, c = shape
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or resolution < 1
        or h % resolution
        or w % resolution
        or h // resolution != w // resolution
    ):
        raise ValueError(
            f"data.resolution={resolution!r} must divide the image size {h}x{w} of "
            f"{dataset.name!r} by the same integer factor on both sides"
        )
    factor = h // resolution
    if factor == 1:
        return dataset
    return dataclasses.replace(
        dataset,
        source=DownsampledSource(dataset.source, dataset.data_key, factor),
        event_shape=(h // factor, w // factor, c),
        num_levels=downsampled_num_levels(dataset.num_levels, factor),
    )
