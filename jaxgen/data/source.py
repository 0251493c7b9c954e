"""Random-access data sources: the one interface the batch loader reads from.

A source is anything with a length and a batched read::

    len(source) -> int
    source.get(indices) -> dict[str, np.ndarray]   # every array has leading dim len(indices)

Reads are batched (one call per batch, not per example) so that file-backed sources
(TFDS ArrayRecord) can fetch a batch's records together. Sources hold no iteration
state: which examples make up a batch is decided by the loader from (seed, step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """A finite, random-access collection of examples, read in batches."""

    def __len__(self) -> int: ...

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The examples at ``indices`` (1-D integers), stacked along a new leading axis."""
        ...


def check_indices(indices: np.ndarray, length: int) -> np.ndarray:
    """``indices`` as a 1-D int64 array, all in ``[0, length)``; raises otherwise.

    Negative indices are refused rather than wrapped: a negative index here is a bug in
    the caller, not a request for the end of the dataset.
    """
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    if idx.size == 0:
        return idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= length:
        raise IndexError(f"indices must lie in [0, {length}); got min {lo}, max {hi}")
    return idx.astype(np.int64, copy=False)


class ArraySource:
    """An in-memory source over a dict of equal-length arrays.

    Args:
      arrays: name -> array; every array must have at least one dimension and the same
        leading size (the number of examples). The arrays are not copied; they are made
        read-only views so that a batch cannot be altered through the source.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        if not arrays:
            raise ValueError("ArraySource needs at least one array")
        views: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for key, value in arrays.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                raise ValueError(f"array {key!r} is a scalar; every array needs a leading axis")
            view = arr.view()
            view.flags.writeable = False
            views[key] = view
            lengths[key] = arr.shape[0]
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays must have equal leading dimensions, got {lengths}")
        self._arrays = views
        self._length = next(iter(lengths.values()))

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The (read-only) arrays."""
        return dict(self._arrays)

    def __len__(self) -> int:
        return self._length

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        idx = check_indices(indices, self._length)
        return {key: arr[idx] for key, arr in self._arrays.items()}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v.dtype}{list(v.shape[1:])}" for k, v in self._arrays.items())
        return f"ArraySource(len={self._length}, {fields})"
