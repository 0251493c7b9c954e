"""check_images: a clear error for each way an image batch can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.data import check_images


def _good():
    return np.random.default_rng(0).uniform(-1, 1, size=(4, 8, 8, 3)).astype(np.float32)


def test_good_batch_passes():
    images = _good()
    out = check_images(images, expected_shape=(8, 8, 3))
    assert out is images or np.shares_memory(out, images)
    check_images(np.array([[[[-1.0]]], [[[1.0]]]], np.float32))  # the bounds are allowed


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"must be a 4-D NHWC batch.*3-D shape \(8, 8, 3\)"):
        check_images(_good()[0])
    with pytest.raises(ValueError, match="2-D"):
        check_images(np.zeros((4, 64), np.float32))


def test_wrong_per_example_shape():
    with pytest.raises(ValueError, match=r"\(8, 8, 3\), expected \(8, 8, 1\)"):
        check_images(_good(), expected_shape=(8, 8, 1))
    nchw = _good().transpose(0, 3, 1, 2)
    with pytest.raises(ValueError, match="looks like NCHW"):
        check_images(nchw, expected_shape=(8, 8, 3))


def test_unscaled_integer_images():
    raw = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
    with pytest.raises(ValueError, match=r"floating dtype, got uint8.*127\.5 - 1"):
        check_images(raw)
    with pytest.raises(ValueError, match="got int32"):
        check_images(raw.astype(np.int32))


def test_out_of_range_reports_min_and_max():
    x = _good()
    x[0, 0, 0, 0] = -1.5
    x[1, 1, 1, 1] = 2.25
    with pytest.raises(ValueError, match=r"\[-1, 1\], got min -1\.5, max 2\.25"):
        check_images(x, name="training images")
    with pytest.raises(ValueError, match="unscaled 0..255"):
        check_images(np.full((1, 2, 2, 1), 200.0, np.float32))


def test_non_finite():
    x = _good()
    x[0, 0, 0, 0] = np.nan
    x[2, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite values \(1 NaN, 1 inf\)"):
        check_images(x)
