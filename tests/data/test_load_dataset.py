"""The dataset registry: names, toy2d splits, options and errors."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.data import DATASET_NAMES, TOY2D_NAMES, load_dataset, registry, sample_toy2d


def test_known_names():
    for name in ("digits", "mnist", "fashion_mnist", "cifar10", "stdlib_text", *TOY2D_NAMES):
        assert name in DATASET_NAMES


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Did you mean 'cifar10'.*Known datasets: digits") as e:
        load_dataset("cifar_10", "train")
    assert "swiss_roll" in str(e.value)
    with pytest.raises(ValueError, match="Known datasets") as e:
        load_dataset("zzzz", "train")
    assert "Did you mean" not in str(e.value)


def test_toy2d_splits_are_fixed_seeded_samples():
    train = load_dataset("ring", "train")
    test = load_dataset("ring", "test")
    assert len(train) == registry.TOY2D_NUM_TRAIN and len(test) == registry.TOY2D_NUM_TEST
    assert train.event_shape == (2,) and train.image_shape is None
    assert train.num_levels is None and train.num_classes is None and train.data_key == "x"
    x = train.source.get(np.arange(len(train)))["x"]
    np.testing.assert_array_equal(x, sample_toy2d("ring", registry.TOY2D_NUM_TRAIN, seed=0))
    y = test.source.get(np.arange(len(test)))["x"]
    np.testing.assert_array_equal(y, sample_toy2d("ring", registry.TOY2D_NUM_TEST, seed=1))
    small = load_dataset("moons", "train", num_samples=64)
    assert len(small) == 64


def test_bad_options_and_splits():
    with pytest.raises(TypeError, match="unexpected options"):
        load_dataset("digits", "train", num_samples=5)
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("grid", "validation")
    with pytest.raises(ValueError, match="unknown digits split"):
        load_dataset("digits", "validation")


def test_stdlib_text_windows_are_the_split_bytes():
    from jaxgen.data import text

    train = load_dataset("stdlib_text", "train")
    assert train.event_shape == (registry.TEXT_SEQ_LEN,) == (128,)
    assert train.num_levels == 256 and train.num_classes is None and train.data_key == "tokens"
    assert train.image_shape is None
    test = load_dataset("stdlib_text", "test", seq_len=64)
    tokens = test.source.get(np.arange(len(test)))["tokens"]
    assert tokens.dtype == np.int32 and tokens.shape == (len(test), 64)
    raw = text.load_bytes("test")
    assert len(test) == len(raw) // 64
    # The windows, read in order, are the test files' bytes (the incomplete tail dropped).
    assert tokens.reshape(-1).astype(np.uint8).tobytes() == raw[: len(test) * 64]
    # Negative control: the train split holds other bytes.
    first = train.source.get(np.arange(1))["tokens"][0]
    assert first.astype(np.uint8).tobytes() != raw[:128]
    with pytest.raises(TypeError, match=r"accepted: \['seq_len'\]"):
        load_dataset("stdlib_text", "train", num_samples=5)
    with pytest.raises(ValueError, match="unknown text split"):
        load_dataset("stdlib_text", "validation")
