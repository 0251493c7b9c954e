"""``load_dataset(name, split)``: every dataset jaxgen knows, behind one call.

==================== =============== ============ ========== ===========================
name                 key, shape      levels       classes    splits
==================== =============== ============ ========== ===========================
digits               image 8x8x1     17           10         train 1437, test 360, all
moons, swiss_roll,   x (2,)          continuous   none       train (seed 0), test (seed 1)
ring, grid,
checkerboard
mnist, fashion_mnist image 28x28x1   256          10         train, test (TFDS)
cifar10, cifar100    image 32x32x3   256          10 / 100   train, test (TFDS)
svhn_cropped         image 32x32x3   256          10         train, test, extra (TFDS)
imagenet_resized_32  image 32x32x3   256          1000       train, validation (TFDS
                                                             ``imagenet_resized/32x32``)
imagenet_resized_64  image 64x64x3   256          1000       train, validation (TFDS
                                                             ``imagenet_resized/64x64``)
celeb_a_hq_256       image 256x256x3 256          none       train 30,000 (TFDS
                                                             ``celeb_a_hq/256``, manual)
imagenet2012_256     image 256x256x3 256          1000       train, validation (TFDS
                                                             ``imagenet2012``, manual)
stdlib_text          tokens (128,)   256 (bytes)  none       train, test, all
==================== =============== ============ ========== ===========================

Images are float32 NHWC in [-1, 1] under the key ``"image"``, labels int32 under
``"label"`` (unlabelled image datasets, ``num_classes`` None, have only ``"image"``). The
``imagenet_resized`` rows are the downsampled ImageNet of Chrabaszcz et al. (2017),
1,281,167 training and 50,000 validation images; their TFDS names carry a builder config
after a slash, which ``DatasetNotFoundError`` and the ``tfds build`` hint name.

The two "manual" rows are paper datasets whose files tfds cannot download: CelebA-HQ at
256x256 (LDM's CelebA-HQ, Rombach et al. 2022, Table 1; no labels) and ILSVRC 2012, read at
256x256 by cropping each image's central ``min(H, W)`` square and resizing it with PIL's
antialiased bicubic filter (VQ-VAE-2, Razavi et al. 2019). Which files to put where is in
:mod:`jaxgen.data.tfds_images` and in their ``DatasetNotFoundError``.

The 2-D toy datasets are fixed samples (``"x"``, float32): the ``train`` split is
``TOY2D_NUM_TRAIN`` = 100,000 points drawn with seed ``TOY2D_TRAIN_SEED`` = 0,
the ``test`` split ``TOY2D_NUM_TEST`` = 10,000 points with seed ``TOY2D_TEST_SEED`` = 1;
``num_samples=`` overrides the size (the seeds stay fixed).

``stdlib_text`` is byte-level text, the Python standard-library sources of this install
(:mod:`jaxgen.data.text`, split by file): int32 tokens in ``0..255`` under ``"tokens"``, cut
into non-overlapping windows of ``TEXT_SEQ_LEN`` = 128 bytes; ``seq_len=`` overrides the
window. ``num_levels`` is the vocabulary size 256 (the models add a start token 256).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

from jaxgen.data import digits, text, toy2d
from jaxgen.data.checks import UnknownSplitError
from jaxgen.data.source import ArraySource, Source
from jaxgen.data.tfds_images import NUM_LEVELS as TFDS_NUM_LEVELS
from jaxgen.data.tfds_images import TFDS_IMAGE_DATASETS, open_tfds_images

TOY2D_NUM_TRAIN = 100_000
TOY2D_NUM_TEST = 10_000
TOY2D_TRAIN_SEED = 0
TOY2D_TEST_SEED = 1
TOY2D_SPLITS = ("train", "test")
TEXT_SEQ_LEN = 128

DATASET_NAMES: tuple[str, ...] = (
    "digits",
    *toy2d.TOY2D_NAMES,
    *TFDS_IMAGE_DATASETS,
    "stdlib_text",
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A loaded split: a random-access source plus what models need to know about it.

    Attributes:
      name: registry name ("digits", "ring", "cifar10", ...).
      split: the split expression it was loaded with.
      source: the examples (``len`` and batched ``get``).
      event_shape: shape of one example of ``data_key`` ((H, W, C), (2,) or (seq_len,)).
      num_levels: discrete levels per channel (256 for 8-bit images, 17 for digits; the
        vocabulary size for tokens), None for continuous data.
      num_classes: number of label classes, None if unlabelled.
      data_key: the batch key holding the data ("image", "x" or "tokens").
    """

    name: str
    split: str
    source: Source
    event_shape: tuple[int, ...]
    num_levels: int | None
    num_classes: int | None
    data_key: str = "image"

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(H, W, C)`` for image datasets, None otherwise."""
        if self.data_key == "image" and len(self.event_shape) == 3:
            return self.event_shape  # type: ignore[return-value]
        return None

    def __len__(self) -> int:
        return len(self.source)


def _no_options(name: str, options: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"load_dataset({name!r}) got unexpected options {unknown}; "
            f"accepted: {list(allowed) or 'none'}"
        )


def _unknown_name(name: str) -> ValueError:
    close = difflib.get_close_matches(str(name), DATASET_NAMES, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASET_NAMES)}")


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **options: Any,
) -> Dataset:
    """Load a split of a named dataset (see the module doc for the table).

    Args:
      name: a name from ``DATASET_NAMES``.
      split: "train", "test", ... (TFDS datasets accept TFDS slicing, "train[:90%]").
      data_dir: TFDS data directory (TFDS datasets only).
      download: let TFDS download and prepare missing data (TFDS datasets only).
      **options: per-dataset options; toy2d datasets accept ``num_samples``,
        ``stdlib_text`` accepts ``seq_len``.

    Raises:
      ValueError: unknown name (with close matches) or split.
      DatasetNotFoundError: a TFDS dataset that is not prepared in ``data_dir``.
    """
    if name == "digits":
        _no_options(name, options)
        images, labels = digits.load_digits(split)
        return Dataset(
            name=name,
            split=split,
            source=ArraySource({"image": images, "label": labels}),
            event_shape=digits.IMAGE_SHAPE,
            num_levels=digits.NUM_LEVELS,
            num_classes=digits.NUM_CLASSES,
        )
    if name in toy2d.TOY2D_NAMES:
        _no_options(name, options, ("num_samples",))
        if split not in TOY2D_SPLITS:
            raise UnknownSplitError(
                f"unknown split {split!r} for {name!r}; expected one of {TOY2D_SPLITS}"
            )
        default_n, seed = {
            "train": (TOY2D_NUM_TRAIN, TOY2D_TRAIN_SEED),
            "test": (TOY2D_NUM_TEST, TOY2D_TEST_SEED),
        }[split]
        n = int(options.get("num_samples", default_n))
        points = toy2d.sample_toy2d(name, n, seed=seed)
        return Dataset(
            name=name,
            split=split,
            source=ArraySource({"x": points}),
            event_shape=(2,),
            num_levels=None,
            num_classes=None,
            data_key="x",
        )
    if name == "stdlib_text":
        _no_options(name, options, ("seq_len",))
        seq_len = int(options.get("seq_len", TEXT_SEQ_LEN))
        tokens = text.load_text(split, seq_len=seq_len)
        return Dataset(
            name=name,
            split=split,
            source=ArraySource({"tokens": tokens}),
            event_shape=(seq_len,),
            num_levels=text.VOCAB_SIZE,
            num_classes=None,
            data_key="tokens",
        )
    if name in TFDS_IMAGE_DATASETS:
        _no_options(name, options)
        spec = TFDS_IMAGE_DATASETS[name]
        source = open_tfds_images(name, split, data_dir=data_dir, download=download)
        return Dataset(
            name=name,
            split=split,
            source=source,
            event_shape=spec.image_shape,
            num_levels=TFDS_NUM_LEVELS,
            num_classes=spec.num_classes,
        )
    raise _unknown_name(name)
