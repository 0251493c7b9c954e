"""Paper image datasets through ``tensorflow_datasets`` random access (no TensorFlow).

``open_tfds_images(name, split)`` wraps ``tfds.data_source`` (ArrayRecord files read on
demand, a batch of records per call) as a jaxgen ``Source`` that yields
``{"image": float32 (N, H, W, C) in [-1, 1], "label": int32 (N,)}`` (only ``"image"`` for
an unlabelled dataset). Nothing is read until a batch is asked for.

Getting the data. ``tfds.data_source`` needs the dataset prepared in a random-access
format (``array_record``) under ``data_dir`` (default ``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``). Preparing it needs TensorFlow and network access, once::

    pip install tensorflow tensorflow-datasets
    tfds build mnist --file_format=array_record --data_dir=~/tensorflow_datasets

or ``open_tfds_images(..., download=True)`` / ``load_dataset(..., download=True)``
from an environment that has them. A dataset that is not there raises
``DatasetNotFoundError`` (a ``FileNotFoundError``) saying where it looked.

A jaxgen name may differ from the TFDS name: ``imagenet_resized_32`` / ``_64`` are TFDS's
``imagenet_resized/32x32`` / ``64x64`` (a builder config after the slash), prepared with
``tfds build imagenet_resized/64x64 --file_format=array_record``; tfds downloads the
downsampled-ImageNet files of Chrabaszcz et al. (2017) from image-net.org for it, under
ImageNet's terms of access.

What tfds itself raises for missing data (tensorflow-datasets 4.9.10): with
``file_format="array_record"`` (which we always pass) and ``download=False``,
``KeyError("Trying to access `splits['train']` but `splits` is empty. This likely
indicates the dataset has not been generated yet.")`` from ``SplitDict.__getitem__``;
without a file format and an explicit ``data_dir``, a misleading
``NotImplementedError("Random access data source for file format FileFormat.TFRECORD is
not supported ...")``. A dataset prepared only as TFRecord also ends in that
``NotImplementedError``. Both are translated here, and so is the
``AssertionError("Manual directory ... does not exist or is empty ...")`` that
``download=True`` ends in for a manual-download dataset whose files are not there.

Manual downloads. Two paper datasets cannot be fetched by tfds; their files go in the
manual directory, ``<data_dir>/downloads/manual`` (or ``tfds build --manual_dir=DIR``),
before ``tfds build NAME --file_format=array_record`` (or ``download=True``) prepares them:

* ``celeb_a_hq_256`` is TFDS ``celeb_a_hq/256``: CelebA-HQ (Karras et al. 2018), 30,000
  face images at 256x256, one ``train`` split, no labels; the 256x256 images of LDM's
  CelebA-HQ results (Rombach et al. 2022, Table 1). The TFDS catalog's instructions: the
  manual directory holds ``data256x256.tar``, a tar of the 256x256 PNG images, made from
  CelebA and the CelebA-HQ delta files as described in
  https://github.com/tkarras/progressive_growing_of_gans#preparing-datasets-for-training .
* ``imagenet2012_256`` is TFDS ``imagenet2012``: ILSVRC 2012, 1000 classes, 1,281,167
  ``train`` and 50,000 ``validation`` JPEGs of varying size. The manual directory holds
  ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar``, downloaded after registering
  at https://image-net.org/download-images . Each image is read at 256x256 (VQ-VAE-2,
  Razavi et al. 2019; BigGAN's evaluations): the central ``min(H, W)`` square is cropped
  and resized with PIL's antialiased bicubic filter (``center_crop_resize``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxgen.data.checks import UnknownSplitError
from jaxgen.data.source import check_indices

# tfds's SplitDict message for a dataset with no generated splits (KeyError).
_NOT_GENERATED_MARK = "has not been generated yet"
# tfds.testing.mock_data installs an unbound stand-in for ``__getitems__`` on its mock
# ArrayRecord reader, which fails with this TypeError; ``__getitem__`` works there.
_MOCK_GETITEMS_MARK = "missing 1 required positional argument: 'record_keys'"
# tfds's download manager, download=True with an empty manual directory (AssertionError).
_NO_MANUAL_FILES_MARK = "Manual directory"

_CELEB_A_HQ_MANUAL = (
    "CelebA-HQ needs a manual download: put data256x256.tar (a tar of the 30,000 CelebA-HQ "
    "PNG images at 256x256, made from CelebA and the CelebA-HQ deltas as described in "
    "https://github.com/tkarras/progressive_growing_of_gans#preparing-datasets-for-training)"
)
_IMAGENET_MANUAL = (
    "ImageNet needs a manual download: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
    "(from https://image-net.org/download-images, after registering)"
)


@dataclasses.dataclass(frozen=True)
class TfdsImageSpec:
    """What jaxgen knows about a TFDS image dataset.

    Attributes:
      image_shape: ``(H, W, C)`` of the images jaxgen yields.
      num_classes: number of label classes; None for an unlabelled dataset (then
        ``label_key`` is None too and batches hold only ``"image"``).
      splits: the TFDS splits.
      image_key, label_key: the feature names in the TFDS records.
      tfds_name: the name tfds knows it by, with its builder config after a slash
        (``"imagenet_resized/64x64"``); None: jaxgen's name is the TFDS name.
      center_crop: crop each stored image to its central ``min(H, W)`` square first.
      resize: resize each stored image to ``image_shape``'s ``H x W`` (PIL, antialiased
        bicubic); for datasets stored at varying sizes.
      manual_download: what to put in the manual directory, for datasets tfds cannot
        download itself (named by ``DatasetNotFoundError``); None: tfds downloads it.
    """

    image_shape: tuple[int, int, int]
    num_classes: int | None
    splits: tuple[str, ...]
    image_key: str = "image"
    label_key: str | None = "label"
    tfds_name: str | None = None
    center_crop: bool = False
    resize: bool = False
    manual_download: str | None = None

    def __post_init__(self) -> None:
        if (self.num_classes is None) != (self.label_key is None):
            raise ValueError(
                f"num_classes={self.num_classes!r} and label_key={self.label_key!r}: both "
                "must be None (an unlabelled dataset) or both set"
            )


TFDS_IMAGE_DATASETS: dict[str, TfdsImageSpec] = {
    "mnist": TfdsImageSpec((28, 28, 1), 10, ("train", "test")),
    "fashion_mnist": TfdsImageSpec((28, 28, 1), 10, ("train", "test")),
    "cifar10": TfdsImageSpec((32, 32, 3), 10, ("train", "test")),
    "cifar100": TfdsImageSpec((32, 32, 3), 100, ("train", "test")),
    "svhn_cropped": TfdsImageSpec((32, 32, 3), 10, ("train", "test", "extra")),
    # ImageNet downsampled by Chrabaszcz et al. (2017), 1,281,167 train / 50,000 validation
    # images (the "train" split is big: about 1.3M records at 64x64).
    "imagenet_resized_32": TfdsImageSpec(
        (32, 32, 3), 1000, ("train", "validation"), tfds_name="imagenet_resized/32x32"
    ),
    "imagenet_resized_64": TfdsImageSpec(
        (64, 64, 3), 1000, ("train", "validation"), tfds_name="imagenet_resized/64x64"
    ),
    # CelebA-HQ at 256x256, 30,000 unlabelled faces (LDM, Rombach et al. 2022, Table 1).
    "celeb_a_hq_256": TfdsImageSpec(
        (256, 256, 3),
        None,
        ("train",),
        label_key=None,
        tfds_name="celeb_a_hq/256",
        manual_download=_CELEB_A_HQ_MANUAL,
    ),
    # ILSVRC 2012 at 256x256, central square crop + antialiased resize (VQ-VAE-2).
    "imagenet2012_256": TfdsImageSpec(
        (256, 256, 3),
        1000,
        ("train", "validation"),
        tfds_name="imagenet2012",
        center_crop=True,
        resize=True,
        manual_download=_IMAGENET_MANUAL,
    ),
}

NUM_LEVELS = 256  # 8-bit images


class DatasetNotFoundError(FileNotFoundError):
    """A TFDS dataset is not prepared (in a random-access format) where we looked.

    Attributes:
      dataset: the TFDS name.
      split: the requested split.
      data_dir: the data directory that was searched.
    """

    def __init__(self, message: str, *, dataset: str, split: str, data_dir: str | None):
        super().__init__(message)
        self.dataset = dataset
        self.split = split
        self.data_dir = data_dir

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):  # keep the keyword attributes when pickled (e.g. across workers)
        return (_rebuild_not_found, (self.args[0], self.dataset, self.split, self.data_dir))


def _rebuild_not_found(message: str, dataset: str, split: str, data_dir: str | None):
    return DatasetNotFoundError(message, dataset=dataset, split=split, data_dir=data_dir)


def _split_names(split: str) -> list[str]:
    """Base split names in a TFDS split expression like ``"train[:90%]+test"``."""
    names = []
    for part in split.split("+"):
        match = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*(\[[^\]]*\])?\s*", part)
        if match is None:
            raise ValueError(f"cannot parse split expression {split!r}")
        names.append(match.group(1))
    return names


def check_split(name: str, split: str) -> None:
    """Raise ``ValueError`` unless every split named in ``split`` exists for ``name``."""
    spec = TFDS_IMAGE_DATASETS[name]
    if not isinstance(split, str):
        raise TypeError(f"split must be a string, got {split!r}")
    unknown = [s for s in _split_names(split) if s not in spec.splits]
    if unknown:
        raise UnknownSplitError(
            f"unknown split {unknown[0]!r} for TFDS dataset {name!r}; known splits: "
            f"{spec.splits} (TFDS slicing such as 'train[:90%]' or 'train+test' is allowed)"
        )


def _default_data_dir(name: str, data_dir: str | os.PathLike | None) -> str:
    """The root data directory tfds searches for ``name``."""
    if data_dir is not None:
        return os.fspath(data_dir)
    try:
        import tensorflow_datasets as tfds

        return os.fspath(tfds.builder(name, file_format="array_record").data_dir_root)
    except Exception:  # only for the error message; never hide the real error
        return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _how_to_get(name: str, root: str, *, download: bool = False, manual: str | None = None) -> str:
    if manual is not None:
        manual_dir = os.path.join(root, "downloads", "manual")
        return (
            f"{manual} in the manual directory {manual_dir}, then prepare it once with "
            f"TensorFlow:\n"
            f"    tfds build {name} --file_format=array_record --data_dir={root}\n"
            f"(add --manual_dir=DIR if the files are elsewhere), or pass download=True once "
            f"the files are there, or point data_dir / $TFDS_DATA_DIR at a directory that "
            f"already holds it."
        )
    text = (
        f"Prepare it once with TensorFlow and network access:\n"
        f"    tfds build {name} --file_format=array_record --data_dir={root}\n"
    )
    if not download:
        text += "or pass download=True (also needs network; preparing needs TensorFlow), "
    return text + "or point data_dir / $TFDS_DATA_DIR at a directory that already holds it."


def _central_square(img: np.ndarray) -> np.ndarray:
    """The central ``min(H, W)`` square of an ``(H, W, ...)`` array (floor offsets)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def center_crop_resize(
    image: np.ndarray, *, height: int, width: int, center_crop: bool = True
) -> np.ndarray:
    """An image's central square, resized to ``height x width`` (uint8 in, uint8 out).

    With ``s = min(H, W)``, the crop keeps rows ``[(H - s) // 2, (H - s) // 2 + s)`` and
    columns ``[(W - s) // 2, (W - s) // 2 + s)``: the central square, as in the 256x256
    ImageNet of VQ-VAE-2 (Razavi et al. 2019) and BigGAN (Brock et al. 2019). It is then
    resized with PIL's bicubic filter, which is antialiased when shrinking (its support is
    widened by the downscale factor, so each output pixel averages the input area it
    covers) and rounds back to uint8, keeping 256 levels.

    Args:
      image: uint8 ``(H, W, C)`` with ``C`` 1 or 3.
      height, width: the output size.
      center_crop: False: resize the whole image (its aspect ratio is not kept).

    Returns:
      uint8 ``(height, width, C)``.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 (H, W, 1 or 3) image, got {img.dtype}{img.shape}")
    if isinstance(height, bool) or isinstance(width, bool) or min(height, width) < 1:
        raise ValueError(f"height and width must be positive integers, got {height}, {width}")
    if center_crop:
        img = _central_square(img)
    if img.shape[:2] == (height, width):
        return np.ascontiguousarray(img)
    from PIL import Image  # imported on first use: jaxgen.data stays light to import

    channels = img.shape[-1]
    pil = Image.fromarray(img[..., 0] if channels == 1 else img)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC))
    return out.reshape(height, width, channels)


class TfdsImageSource:
    """A ``Source`` over TFDS image records: batched, lazy reads, scaled to [-1, 1].

    Args:
      records: a random-access sequence of TFDS example dicts (what ``tfds.data_source``
        returns); ``__getitems__`` is used for batched reads when present.
      image_shape: the expected ``(H, W, C)`` of every image (after cropping / resizing).
      name: dataset name for error messages.
      image_key, label_key: feature names in the records; ``label_key=None`` drops labels.
      center_crop, resize: crop each image to its central square and / or resize it to
        ``image_shape`` first (``center_crop_resize``).
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        image_shape: tuple[int, int, int],
        name: str = "tfds",
        image_key: str = "image",
        label_key: str | None = "label",
        center_crop: bool = False,
        resize: bool = False,
    ):
        self._records = records
        self._length = len(records)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.name = name
        self._image_key = image_key
        self._label_key = label_key
        self._center_crop = center_crop
        self._resize = resize
        self._batched = hasattr(records, "__getitems__")

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        if self._resize:
            h, w = self.image_shape[:2]
            return center_crop_resize(img, height=h, width=w, center_crop=self._center_crop)
        return _central_square(img) if self._center_crop else img

    def __len__(self) -> int:
        return self._length

    def _read(self, keys: list[int]) -> Sequence[Any]:
        if self._batched:
            try:
                return self._records.__getitems__(keys)
            except TypeError as err:
                if _MOCK_GETITEMS_MARK not in str(err):
                    raise
                self._batched = False
        return [self._records[k] for k in keys]

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        idx = check_indices(indices, self._length)
        records = self._read([int(i) for i in idx])
        if len(records) != idx.size:
            raise IndexError(f"{self.name}: asked for {idx.size} records, got {len(records)}")
        images = np.empty((idx.size, *self.image_shape), np.uint8)
        for row, rec in enumerate(records):
            try:
                img = self._prepare(np.asarray(rec[self._image_key]))
            except ValueError as err:
                raise ValueError(f"{self.name}: record {int(idx[row])}: {err}") from None
            if img.shape != self.image_shape or img.dtype != np.uint8:
                raise ValueError(
                    f"{self.name}: record {int(idx[row])} has image {img.dtype}{img.shape}, "
                    f"expected uint8{self.image_shape}"
                )
            images[row] = img
        out = {"image": images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)}
        if self._label_key is not None:
            out["label"] = np.asarray(
                [int(rec[self._label_key]) for rec in records], dtype=np.int32
            ).reshape(idx.size)
        return out

    def __repr__(self) -> str:
        return f"TfdsImageSource({self.name}, len={self._length}, image_shape={self.image_shape})"


def open_tfds_images(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> TfdsImageSource:
    """A lazy random-access source over a TFDS image dataset (see the module doc).

    Images are uint8 levels ``k`` mapped to ``k / 127.5 - 1`` in [-1, 1] (after the spec's
    central crop and resize, if any); labels, for labelled datasets, are int32.

    Args:
      name: one of ``TFDS_IMAGE_DATASETS`` (jaxgen's name; tfds is asked for the spec's
        ``tfds_name``, e.g. ``imagenet_resized_64`` is ``imagenet_resized/64x64``).
      split: a split of that dataset, optionally with TFDS slicing ("train[:90%]").
      data_dir: TFDS data directory; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      download: let tfds download and prepare the data if missing (needs network and,
        for preparing, TensorFlow).

    Raises:
      DatasetNotFoundError: the dataset is not prepared in ``data_dir`` as array_record.
      ValueError: unknown dataset or split.
    """
    if name not in TFDS_IMAGE_DATASETS:
        raise ValueError(
            f"unknown TFDS image dataset {name!r}; supported: {tuple(TFDS_IMAGE_DATASETS)}"
        )
    check_split(name, split)
    spec = TFDS_IMAGE_DATASETS[name]
    source = spec.tfds_name or name  # what tfds calls it ("dataset/config")

    import tensorflow_datasets as tfds

    kwargs: dict[str, Any] = {
        "split": split,
        "download": download,
        # Without this, an explicit data_dir makes tfds default to TFRecord, which has no
        # random access: download=True would prepare data that data_source cannot read.
        "builder_kwargs": {"file_format": "array_record"},
    }
    if data_dir is not None:
        kwargs["data_dir"] = os.fspath(data_dir)
    known_as = "" if source == name else f", jaxgen's {name!r}"
    where = f"{source!r} (split {split!r}{known_as})"
    try:
        records = tfds.data_source(source, **kwargs)
    except KeyError as err:
        if _NOT_GENERATED_MARK not in str(err):
            raise
        root = _default_data_dir(source, data_dir)
        raise DatasetNotFoundError(
            f"TFDS dataset {where} is not prepared under data_dir {root!r}.\n"
            + _how_to_get(source, root, download=download, manual=spec.manual_download),
            dataset=source,
            split=split,
            data_dir=root,
        ) from None
    except NotImplementedError:
        root = _default_data_dir(source, data_dir)
        raise DatasetNotFoundError(
            f"TFDS dataset {where} under data_dir {root!r} is not in a random-access format "
            f"(it is missing, or was prepared as TFRecord, which tfds.data_source cannot "
            f"read).\n" + _how_to_get(source, root, download=download, manual=spec.manual_download),
            dataset=source,
            split=split,
            data_dir=root,
        ) from None
    except AssertionError as err:  # download=True, manual files missing
        if _NO_MANUAL_FILES_MARK not in str(err) or spec.manual_download is None:
            raise
        root = _default_data_dir(source, data_dir)
        raise DatasetNotFoundError(
            f"TFDS dataset {where} is not prepared under data_dir {root!r}, and tfds cannot "
            f"download it: its files are not in the manual directory.\n"
            + _how_to_get(source, root, download=download, manual=spec.manual_download),
            dataset=source,
            split=split,
            data_dir=root,
        ) from None
    except ImportError as err:
        if not download:
            raise
        root = _default_data_dir(source, data_dir)
        raise DatasetNotFoundError(
            f"TFDS dataset {where} is not prepared under data_dir {root!r}, and downloading "
            f"it failed: the module {err.name!r} is missing ({err}).\n"
            + _how_to_get(source, root, download=download, manual=spec.manual_download),
            dataset=source,
            split=split,
            data_dir=root,
        ) from err
    return TfdsImageSource(
        records,
        image_shape=spec.image_shape,
        name=f"{name}[{split}]",
        image_key=spec.image_key,
        label_key=spec.label_key,
        center_crop=spec.center_crop,
        resize=spec.resize,
    )
