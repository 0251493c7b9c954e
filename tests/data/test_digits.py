"""The fixed 8x8 digits split: sizes, grey levels, split membership and class balance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_load_digits

from jaxgen.data import digits, load_dataset


def test_split_sizes():
    assert digits.load_digits("train")[0].shape == (1437, 8, 8, 1)
    assert digits.load_digits("test")[0].shape == (360, 8, 8, 1)
    assert digits.load_digits("all")[0].shape == (1797, 8, 8, 1)
    images, labels = digits.load_digits("train")
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert labels.shape == (1437,)


def test_levels_are_exactly_the_17_grid_values():
    expected = {np.float32(2 * k / 16 - 1) for k in range(17)}
    for split in ("train", "test"):
        images, _ = digits.load_digits(split)
        values = set(np.unique(images).tolist())
        assert values <= expected
    train, _ = digits.load_digits("train")
    assert set(np.unique(train).tolist()) == expected  # every level occurs
    levels, _ = digits.load_digit_levels("train")
    np.testing.assert_array_equal(train, levels.astype(np.float32) * (2 / 16) - 1)


def test_split_is_the_fixed_permutation_and_disjoint():
    bunch = sklearn_load_digits()
    order = np.random.default_rng(0).permutation(1797)
    train_x, train_y = digits.load_digit_levels("train")
    test_x, test_y = digits.load_digit_levels("test")
    np.testing.assert_array_equal(train_x[..., 0], bunch.images[order[:1437]])
    np.testing.assert_array_equal(test_x[..., 0], bunch.images[order[1437:]])
    np.testing.assert_array_equal(train_y, bunch.target[order[:1437]])
    np.testing.assert_array_equal(test_y, bunch.target[order[1437:]])
    # disjoint and covering: the two index sets partition the 1797 images
    assert set(order[:1437]).isdisjoint(order[1437:])
    assert len(set(order[:1437]) | set(order[1437:])) == 1797
    # loading twice gives the same split (no hidden randomness)
    np.testing.assert_array_equal(digits.load_digits("test")[0], digits.load_digits("test")[0])


def test_labels_roughly_balanced():
    for split, n in (("train", 1437), ("test", 360)):
        _, labels = digits.load_digits(split)
        counts = np.bincount(labels, minlength=10)
        assert counts.sum() == n and counts.size == 10
        expected = n / 10
        # binomial sd is about sqrt(n/10); allow 4 sd around the uniform share
        assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), counts


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown digits split"):
        digits.load_digits("valid")


def test_registry_entry():
    ds = load_dataset("digits", "test")
    assert ds.image_shape == (8, 8, 1) and ds.event_shape == (8, 8, 1)
    assert ds.num_levels == 17 and ds.num_classes == 10 and len(ds) == 360
    batch = ds.source.get(np.arange(5))
    images, labels = digits.load_digits("test")
    np.testing.assert_array_equal(batch["image"], images[:5])
    np.testing.assert_array_equal(batch["label"], labels[:5])
