"""The 256x256 paper datasets through TFDS: unlabelled CelebA-HQ (LDM) and ImageNet read at
256x256 by a central square crop and an antialiased resize (VQ-VAE-2), on mock data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.data import (
    DATASET_NAMES,
    BatchLoader,
    DatasetNotFoundError,
    TfdsImageSource,
    check_images,
    load_dataset,
)
from jaxgen.data.tfds_images import TfdsImageSpec, center_crop_resize, open_tfds_images

NUM_MOCK = 6


def _on_level_grid(images: np.ndarray) -> None:
    """Images in [-1, 1] that are uint8 levels k mapped to k / 127.5 - 1."""
    assert images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1
    levels = (images + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_names_are_registered():
    assert {"celeb_a_hq_256", "imagenet2012_256"} <= set(DATASET_NAMES)


def test_celeb_a_hq_256_has_images_and_no_labels():
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        ds = load_dataset("celeb_a_hq_256", "train")
        raw = tfds.data_source("celeb_a_hq/256", split="train")  # the same mock records
        assert ds.image_shape == (256, 256, 3) and ds.num_levels == 256
        assert ds.num_classes is None and ds.data_key == "image" and len(ds) == NUM_MOCK
        idx = np.array([4, 0, 4])
        batch = ds.source.get(idx)
        expected = np.stack([raw[int(i)]["image"] for i in idx])
        loaded = BatchLoader(ds, global_batch_size=2, seed=0, prefetch=0).host_batch_at(0)
    assert set(batch) == {"image"}  # no "label", and the string "image/filename" is dropped
    assert batch["image"].shape == (3, 256, 256, 3)
    _on_level_grid(batch["image"])
    np.testing.assert_allclose(batch["image"], expected / 127.5 - 1, rtol=0, atol=1e-6)
    assert set(loaded) == {"image"} and loaded["image"].shape == (2, 256, 256, 3)
    check_images(loaded["image"], expected_shape=(256, 256, 3))
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*\('train',\)"):
        load_dataset("celeb_a_hq_256", "validation")


def test_imagenet2012_256_crops_and_resizes_variable_size_mock_images():
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        for split in ("train", "validation"):
            ds = load_dataset("imagenet2012_256", split)
            raw = tfds.data_source("imagenet2012", split=split)
            assert ds.image_shape == (256, 256, 3) and ds.num_classes == 1000
            assert ds.num_levels == 256 and len(ds) == NUM_MOCK
            idx = np.arange(NUM_MOCK)
            batch = ds.source.get(idx)
            records = [raw[int(i)] for i in idx]
            images, labels = batch["image"], batch["label"]
            assert set(batch) == {"image", "label"}
            assert images.shape == (NUM_MOCK, 256, 256, 3)
            _on_level_grid(images)
            assert labels.dtype == np.int32 and labels.shape == (NUM_MOCK,)
            np.testing.assert_array_equal(labels, [int(r["label"]) for r in records])
            assert 0 <= labels.min() and labels.max() < 1000
            shapes = [r["image"].shape for r in records]
            assert any(h != w for h, w, _ in shapes), shapes  # the mock is not square
            crop = np.stack(
                [center_crop_resize(r["image"], height=256, width=256) for r in records]
            )
            np.testing.assert_allclose(images, crop / 127.5 - 1, rtol=0, atol=1e-6)
            # negative control: squashing the whole image gives other pictures
            squash = np.stack(
                [
                    center_crop_resize(r["image"], height=256, width=256, center_crop=False)
                    for r in records
                ]
            )
            assert not np.allclose(images, squash / 127.5 - 1, atol=0.1)
        with pytest.raises(ValueError, match=r"unknown split 'test'"):
            load_dataset("imagenet2012_256", "test")


@pytest.mark.parametrize("tall", [True, False])
def test_center_crop_takes_the_central_square(tall):
    """A 301x200 (or 200x301) image whose central 200x200 square is the only dark part."""
    rng = np.random.default_rng(0)
    centre = rng.integers(0, 100, size=(200, 200, 3), dtype=np.uint8)
    image = np.full((301, 200, 3), 255, np.uint8)
    image[50:250] = centre  # rows 0..49 and 250..300 are white bars; top = (301-200)//2 = 50
    if not tall:
        image, centre = image.transpose(1, 0, 2), centre.transpose(1, 0, 2)
    # at the crop's own size, no resizing: exactly the central square
    np.testing.assert_array_equal(center_crop_resize(image, height=200, width=200), centre)
    small = center_crop_resize(image, height=50, width=50)
    assert small.shape == (50, 50, 3) and small.dtype == np.uint8
    assert small.max() < 200  # no white from the bars
    # negative controls: an off-centre square, or no crop, bring the white bars in
    off = image[:200] if tall else image[:, :200]
    assert not np.array_equal(off, centre)
    squash = center_crop_resize(image, height=50, width=50, center_crop=False)
    assert squash.max() == 255


def test_resize_is_antialiased_and_handles_grey_images():
    """A one-pixel checkerboard shrunk 2x averages to mid-grey (point sampling would give
    0 or 255); upsampling a constant stays constant; a (H, W, 1) image keeps its channel."""
    board = ((np.indices((512, 512)).sum(0) % 2) * 255).astype(np.uint8)
    out = center_crop_resize(np.repeat(board[..., None], 3, -1), height=256, width=256)
    assert np.abs(out.astype(float) - 127.5).max() < 5
    point = board[::2, ::2]  # what a non-antialiased nearest resize would give
    assert np.abs(point.astype(float) - 127.5).max() > 100
    grey = np.full((17, 47, 1), 90, np.uint8)
    up = center_crop_resize(grey, height=64, width=64)
    assert up.shape == (64, 64, 1) and (up == 90).all()
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 1 or 3\)"):
        center_crop_resize(grey.astype(np.float32), height=8, width=8)
    with pytest.raises(ValueError, match="positive integers, got 0, 8"):
        center_crop_resize(grey, height=0, width=8)


def test_source_without_labels_and_with_resize():
    class Records:
        def __init__(self):
            self.images = [np.full((10 + i, 6, 3), 10 * i, np.uint8) for i in range(4)]

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return {"image": self.images[i]}

    src = TfdsImageSource(
        Records(), image_shape=(4, 4, 3), label_key=None, center_crop=True, resize=True
    )
    batch = src.get(np.array([3, 1]))
    assert set(batch) == {"image"} and batch["image"].shape == (2, 4, 4, 3)
    np.testing.assert_allclose(batch["image"][:, 0, 0, 0], np.array([30, 10]) / 127.5 - 1)
    # without resizing, images of the wrong size are refused, naming the record
    plain = TfdsImageSource(Records(), image_shape=(4, 4, 3), name="fake", label_key=None)
    with pytest.raises(ValueError, match=r"fake: record 1 has image uint8\(11, 6, 3\)"):
        plain.get(np.array([1]))


def test_spec_labels_and_classes_go_together():
    TfdsImageSpec((8, 8, 3), None, ("train",), label_key=None)
    with pytest.raises(ValueError, match="num_classes=None and label_key='label'"):
        TfdsImageSpec((8, 8, 3), None, ("train",))
    with pytest.raises(ValueError, match="both must be None"):
        TfdsImageSpec((8, 8, 3), 10, ("train",), label_key=None)


@pytest.mark.parametrize(
    ("name", "tfds_name", "split", "files"),
    [
        ("celeb_a_hq_256", "celeb_a_hq/256", "train", ["data256x256.tar"]),
        (
            "imagenet2012_256",
            "imagenet2012",
            "validation",
            ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "image-net.org"],
        ),
    ],
)
def test_missing_paper_dataset_names_the_manual_download(name, tfds_name, split, files, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, split, data_dir=tmp_path)
    err = info.value
    msg = str(err)
    manual_dir = str(tmp_path / "downloads" / "manual")
    for part in (
        f"'{tfds_name}'",
        f"'{split}'",
        f"jaxgen's '{name}'",
        "manual download",
        manual_dir,
        f"tfds build {tfds_name} --file_format=array_record --data_dir={tmp_path}",
        *files,
    ):
        assert part in msg, (part, msg)
    assert (err.dataset, err.split, err.data_dir) == (tfds_name, split, str(tmp_path))
    assert err.__cause__ is None and not any(tmp_path.iterdir())


def test_missing_manual_files_with_download_is_translated(monkeypatch, tmp_path):
    def no_manual_files(*args, **kwargs):  # what tfds's download manager raises
        raise AssertionError(
            f"Manual directory {tmp_path}/downloads/manual does not exist or is empty. "
            "Create it and download/extract dataset artifacts in there using instructions: ..."
        )

    monkeypatch.setattr(tfds, "data_source", no_manual_files)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)not in the manual directory.*data256"):
        open_tfds_images("celeb_a_hq_256", "train", data_dir=tmp_path, download=True)
    # a dataset tfds downloads itself, or another AssertionError, is passed through
    with pytest.raises(AssertionError, match="Manual directory"):
        open_tfds_images("mnist", "train", data_dir=tmp_path, download=True)

    def other(*args, **kwargs):
        raise AssertionError("something else")

    monkeypatch.setattr(tfds, "data_source", other)
    with pytest.raises(AssertionError, match="something else"):
        open_tfds_images("imagenet2012_256", "train", data_dir=tmp_path, download=True)


def test_tfds_datasets_that_download_themselves_say_nothing_of_manual_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", data_dir=tmp_path)
    assert "manual" not in str(info.value) and "download=True (also needs network" in str(
        info.value
    )
