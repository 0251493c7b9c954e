"""``jaxgen.core.validation``: every message names the value and what is allowed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import validation
from jaxgen.core.validation import (
    check_choice,
    check_num_levels,
    check_positive_int,
    check_range,
    check_sample_shape,
    is_concrete,
)


def test_check_choice():
    assert check_choice("sampler", "ddim", ("ancestral", "ddim")) == "ddim"
    assert check_choice("steps", 3, [1, 3]) == 3
    with pytest.raises(ValueError) as err:
        check_choice("sampler", "euler", ("ancestral", "ddim"))
    assert str(err.value) == "sampler must be one of ('ancestral', 'ddim'), got 'euler'"
    # A near miss gets a suggestion.
    with pytest.raises(ValueError, match=r"got 'ddm'; did you mean 'ddim'\?"):
        check_choice("sampler", "ddm", ("ancestral", "ddim"))
    # Choices may be any iterable (a generator is consumed once and still listed).
    with pytest.raises(ValueError, match=r"grid must be one of \('centered', 'unit'\), got 7"):
        check_choice("grid", 7, (g for g in ("centered", "unit")))


@pytest.mark.parametrize("value", [0, -2, True, False, 1.5, "3", None, np.float32(2.0)])
def test_check_positive_int_refuses(value):
    with pytest.raises(ValueError) as err:
        check_positive_int(value, "num_steps")
    assert str(err.value) == f"num_steps must be an integer >= 1, got {value!r}"


def test_check_positive_int_accepts():
    assert check_positive_int(4, "n") == 4
    out = check_positive_int(np.int64(5), "n")
    assert out == 5 and type(out) is int
    assert check_positive_int(0, "first", minimum=0) == 0
    with pytest.raises(ValueError, match="first must be an integer >= 2, got 1"):
        check_positive_int(1, "first", minimum=2)


def test_check_num_levels():
    assert check_num_levels(256) == 256
    out = check_num_levels(np.int32(17))
    assert out == 17 and type(out) is int
    assert check_num_levels(None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"num_levels must be an integer >= 2 \(.*\), got None"):
        check_num_levels(None)
    for bad in (1, 0, True, 2.0, "256"):
        with pytest.raises(ValueError, match=f"num_levels must be an integer >= 2, got {bad!r}"):
            check_num_levels(bad)
        with pytest.raises(ValueError, match=f"must be None or an integer >= 2, got {bad!r}"):
            check_num_levels(bad, allow_none=True)


def test_check_range():
    check_range(jnp.array([-1.0, 0.0, 1.0]), -1.0, 1.0, "images")
    check_range(np.array([1.0 + 1e-7]), -1.0, 1.0, "images")  # within the slack
    check_range(jnp.zeros((0,)), -1.0, 1.0, "images")  # empty: nothing to check
    check_range([0, 3], 0, 3, "levels")  # lists too
    with pytest.raises(ValueError) as err:
        check_range(np.array([0.5, 1.25, -0.5]), -1.0, 1.0, "images")
    assert str(err.value) == "images must lie in [-1.0, 1.0], got values in [-0.5, 1.25]"
    with pytest.raises(ValueError, match=r"images must be finite values in \[-1.0, 1.0\]"):
        check_range(np.array([0.0, np.inf]), -1.0, 1.0, "images")
    with pytest.raises(ValueError, match="must be finite"):
        check_range(np.array([np.nan]), -1.0, 1.0, "images")

    # Under jit the values are unknown: the check is skipped, nothing raises.
    @jax.jit
    def f(x):
        check_range(x, -1.0, 1.0, "images")
        return x

    np.testing.assert_array_equal(f(jnp.array([5.0])), [5.0])


def test_is_concrete():
    assert is_concrete(jnp.ones(2)) and is_concrete(np.ones(2)) and is_concrete(3.0)
    seen = []
    jax.jit(lambda x: seen.append(is_concrete(x)) or x)(jnp.ones(2))
    jax.grad(lambda x: seen.append(is_concrete(x)) or x)(1.0)
    assert seen == [False, False]


def test_check_sample_shape():
    assert check_sample_shape((4, 8, 8, 1)) == (4, 8, 8, 1)
    assert check_sample_shape([2, np.int64(3)]) == (2, 3)
    assert check_sample_shape((5,)) == (5,)
    with pytest.raises(
        ValueError, match=r"shape must be a non-empty tuple of positive ints, got \(\)"
    ):
        check_sample_shape(())
    with pytest.raises(ValueError, match=r"got \(4, 0, 2\)"):
        check_sample_shape((4, 0, 2))
    with pytest.raises(
        ValueError, match=r"size must be a static tuple of ints \(B, \*event\), got 5"
    ):
        check_sample_shape(5, "size")
    with pytest.raises(ValueError, match="got None"):
        check_sample_shape(None)


def test_all_names_exported():
    assert set(validation.__all__) == {
        "check_choice",
        "check_num_levels",
        "check_positive_int",
        "check_range",
        "check_sample_shape",
        "is_concrete",
    }
