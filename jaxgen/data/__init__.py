"""Datasets and deterministic sharded batching.

* ``load_dataset(name, split)``: the built-in digits, 2-D toy distributions and TFDS
  paper datasets as a ``Dataset`` (a random-access ``Source`` plus shape/level info).
* ``BatchLoader``: the batch at a step is a pure function of (source, seed, step), as a
  global ``jax.Array`` sharded over a mesh's data axis.
* ``check_images``: clear errors for badly scaled or shaped image batches.
"""

from jaxgen.data.augment import compose, random_horizontal_flip
from jaxgen.data.checks import UnknownSplitError, check_images
from jaxgen.data.digits import load_digit_levels, load_digits
from jaxgen.data.loader import BatchLoader
from jaxgen.data.registry import DATASET_NAMES, Dataset, load_dataset
from jaxgen.data.source import ArraySource, Source
from jaxgen.data.tfds_images import (
    TFDS_IMAGE_DATASETS,
    DatasetNotFoundError,
    TfdsImageSource,
    open_tfds_images,
)
from jaxgen.data.toy2d import TOY2D_NAMES, GaussianModes, mixture_modes, sample_toy2d

__all__ = [
    "ArraySource",
    "BatchLoader",
    "DATASET_NAMES",
    "Dataset",
    "DatasetNotFoundError",
    "GaussianModes",
    "Source",
    "TFDS_IMAGE_DATASETS",
    "TOY2D_NAMES",
    "TfdsImageSource",
    "UnknownSplitError",
    "check_images",
    "compose",
    "load_dataset",
    "load_digit_levels",
    "load_digits",
    "mixture_modes",
    "open_tfds_images",
    "random_horizontal_flip",
    "sample_toy2d",
]
