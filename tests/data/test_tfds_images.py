"""TFDS image datasets through random access: mock data, batching, and missing data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgen.data import (
    BatchLoader,
    DatasetNotFoundError,
    TfdsImageSource,
    check_images,
    load_dataset,
    open_tfds_images,
)

NUM_MOCK = 24


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("fashion_mnist", (28, 28, 1))],
)
def test_mock_dataset_through_load_dataset_and_loader(name, shape):
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        ds = load_dataset(name, "train")
        raw = tfds.data_source(name, split="train")  # the same deterministic mock records
        assert ds.image_shape == shape and ds.num_levels == 256 and ds.num_classes == 10
        assert len(ds) == NUM_MOCK
        loader = BatchLoader(ds, global_batch_size=8, seed=0, prefetch=0)
        batch = loader.host_batch_at(1)
        idx = loader.host_indices_at(1)
        expected_images = np.stack([raw[int(i)]["image"] for i in idx])
        expected_labels = np.array([int(raw[int(i)]["label"]) for i in idx])
    images, labels = batch["image"], batch["label"]
    assert set(batch) == {"image", "label"}  # cifar10's string "id" is not passed on
    assert images.shape == (8, *shape) and images.dtype == np.float32
    assert labels.shape == (8,) and labels.dtype == np.int32
    check_images(images, expected_shape=shape)
    # uint8 level k maps to k / 127.5 - 1: exactly the raw record, rescaled
    np.testing.assert_allclose(images, expected_images / 127.5 - 1, rtol=0, atol=1e-6)
    levels = (images + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.min() >= 0 and labels.max() < 10


def test_mock_sharded_batch_and_split_slicing():
    import jax

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        ds = load_dataset("cifar10", "train[:50%]")
        batch = BatchLoader(ds, global_batch_size=16, seed=1, mesh=mesh).batch_at(0)
    assert batch["image"].shape == (16, 32, 32, 3)
    assert len(batch["image"].sharding.device_set) == 8
    assert float(batch["image"].min()) >= -1 and float(batch["image"].max()) <= 1


def test_missing_dataset_raises_a_helpful_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", data_dir=tmp_path)
    err = info.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    for part in ("'mnist'", "'train'", str(tmp_path), "tfds build mnist", "array_record"):
        assert part in msg, (part, msg)
    assert "download=True" in msg
    assert (err.dataset, err.split, err.data_dir) == ("mnist", "train", str(tmp_path))
    # no raw tfds traceback chained onto ours
    assert err.__cause__ is None and err.__suppress_context__
    assert not any(tmp_path.iterdir())  # nothing written when download=False


def test_unknown_split_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*'train', 'test'"):
        open_tfds_images("mnist", "validation", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'tset'"):
        open_tfds_images("cifar10", "train[:10%]+tset", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown TFDS image dataset"):
        open_tfds_images("imagenet", "train", data_dir=tmp_path)


def test_other_tfds_errors_are_translated_or_passed_through(monkeypatch, tmp_path):
    def raise_not_implemented(*args, **kwargs):
        raise NotImplementedError("Random access data source for file format TFRECORD ...")

    monkeypatch.setattr(tfds, "data_source", raise_not_implemented)
    with pytest.raises(DatasetNotFoundError, match="random-access format"):
        open_tfds_images("mnist", "test", data_dir=tmp_path)

    def raise_other_key_error(*args, **kwargs):
        raise KeyError("some unrelated key")

    monkeypatch.setattr(tfds, "data_source", raise_other_key_error)
    with pytest.raises(KeyError, match="unrelated"):
        open_tfds_images("mnist", "test", data_dir=tmp_path)


class _Records:
    """A stand-in for a tfds ArrayRecord source that counts reads."""

    def __init__(self, n, shape=(4, 4, 1)):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        self.labels = rng.integers(0, 10, size=n)
        self.batched_calls = 0
        self.single_calls = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.single_calls += 1
        return {"image": self.images[i], "label": np.int64(self.labels[i])}

    def __getitems__(self, keys):
        self.batched_calls += 1
        return [{"image": self.images[k], "label": np.int64(self.labels[k])} for k in keys]


def test_source_reads_lazily_in_one_batched_call():
    records = _Records(50)
    src = TfdsImageSource(records, image_shape=(4, 4, 1), name="fake")
    assert (records.batched_calls, records.single_calls) == (0, 0)  # nothing read yet
    idx = np.array([7, 3, 49, 3])
    batch = src.get(idx)
    assert (records.batched_calls, records.single_calls) == (1, 0)
    np.testing.assert_array_equal(batch["image"], records.images[idx] / np.float32(127.5) - 1)
    np.testing.assert_array_equal(batch["label"], records.labels[idx])
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    with pytest.raises(IndexError):
        src.get(np.array([50]))
    with pytest.raises(ValueError, match=r"expected uint8\(4, 4, 3\)"):
        TfdsImageSource(records, image_shape=(4, 4, 3), name="fake").get(np.array([0]))


def test_not_found_error_pickles_with_its_fields():
    import pickle

    err = DatasetNotFoundError("msg", dataset="mnist", split="test", data_dir="/d")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, DatasetNotFoundError) and str(back) == "msg"
    assert (back.dataset, back.split, back.data_dir) == ("mnist", "test", "/d")


@pytest.mark.parametrize(
    ("name", "tfds_name", "size"),
    [
        ("imagenet_resized_32", "imagenet_resized/32x32", 32),
        ("imagenet_resized_64", "imagenet_resized/64x64", 64),
    ],
)
def test_imagenet_resized_loads_through_its_tfds_builder_config(name, tfds_name, size):
    """jaxgen's name maps to TFDS's ``dataset/config`` name; both splits load, rescaled."""
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        for split in ("train", "validation"):
            ds = load_dataset(name, split)
            raw = tfds.data_source(tfds_name, split=split)  # the same mock records
            assert ds.image_shape == (size, size, 3) and ds.num_classes == 1000
            assert ds.num_levels == 256 and len(ds) == NUM_MOCK
            idx = np.arange(NUM_MOCK)[::-1]
            batch = ds.source.get(idx)
            expected = np.stack([raw[int(i)]["image"] for i in idx])
            expected_labels = np.array([int(raw[int(i)]["label"]) for i in idx])
            images, labels = batch["image"], batch["label"]
            assert images.shape == (NUM_MOCK, size, size, 3) and images.dtype == np.float32
            assert images.min() >= -1 and images.max() <= 1
            np.testing.assert_allclose(images, expected / 127.5 - 1, rtol=0, atol=1e-6)
            assert labels.dtype == np.int32 and labels.shape == (NUM_MOCK,)
            np.testing.assert_array_equal(labels, expected_labels)
            assert 0 <= labels.min() and labels.max() < 1000
            # the mock draws labels over all 1000 classes, not a 10-class range
            assert labels.max() >= 10
        with pytest.raises(ValueError, match=r"unknown split 'test'.*'train', 'validation'"):
            load_dataset(name, "test")


@pytest.mark.parametrize("size", [32, 64])
def test_missing_imagenet_resized_names_the_tfds_builder_config(size, tmp_path):
    tfds_name = f"imagenet_resized/{size}x{size}"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(f"imagenet_resized_{size}", "validation", data_dir=tmp_path)
    err = info.value
    msg = str(err)
    for part in (
        f"'{tfds_name}'",
        "'validation'",
        f"jaxgen's 'imagenet_resized_{size}'",
        str(tmp_path),
        f"tfds build {tfds_name} --file_format=array_record",
    ):
        assert part in msg, (part, msg)
    assert (err.dataset, err.split, err.data_dir) == (tfds_name, "validation", str(tmp_path))
    assert not any(tmp_path.iterdir())
