"""ArraySource and the Source protocol."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.data import ArraySource, Source


def test_get_returns_the_rows_asked_for():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)
    src = ArraySource({"x": x, "y": y})
    assert isinstance(src, Source) and len(src) == 10
    idx = np.array([9, 0, 4, 4])
    batch = src.get(idx)
    np.testing.assert_array_equal(batch["x"], x[idx])
    np.testing.assert_array_equal(batch["y"], y[idx])
    batch["x"][:] = -1  # a batch is a copy: writing to it does not touch the source
    np.testing.assert_array_equal(src.get(np.array([9]))["x"], x[[9]])
    assert src.get(np.array([], np.int64))["x"].shape == (0, 3)
    with pytest.raises(ValueError):
        src.arrays["x"][0, 0] = 5.0  # the stored arrays are read-only


def test_validation():
    with pytest.raises(ValueError, match="equal leading dimensions"):
        ArraySource({"x": np.zeros((5, 2)), "y": np.zeros(4)})
    with pytest.raises(ValueError, match="scalar"):
        ArraySource({"x": np.float32(1.0)})
    with pytest.raises(ValueError, match="at least one array"):
        ArraySource({})
    src = ArraySource({"x": np.zeros((5, 2))})
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        src.get(np.array([5]))
    with pytest.raises(IndexError):
        src.get(np.array([-1]))
    with pytest.raises(TypeError, match="integers"):
        src.get(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        src.get(np.zeros((2, 2), np.int64))
