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
        "check_binary",
        "check_choice",
        "check_finite_number",
        "check_index_range",
        "check_num_levels",
        "check_on_grid",
        "check_positive_int",
        "check_range",
        "check_sample_shape",
        "check_time_range",
        "is_concrete",
    }


def test_value_checks_name_the_value_and_skip_tracers():
    """The issue-18 validators: eager checks with one message style, no checks on tracers."""
    v = validation
    assert v.check_finite_number(0.5, "eta", low=0.0) == 0.5
    with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, inf\), got -1"):
        v.check_finite_number(-1, "eta", low=0.0)
    with pytest.raises(ValueError, match=r"top_p must be a finite number in \(0, 1\], got nan"):
        v.check_finite_number(float("nan"), "top_p", low=0.0, high=1.0, low_open=True)
    v.check_index_range(jnp.array([0, 9]), 10, "t")
    with pytest.raises(ValueError, match=r"t must lie in \[0, T - 1\] = \[0, 9\].*\[-1, 10\]"):
        v.check_index_range(jnp.array([-1, 10]), 10, "t")
    v.check_time_range(jnp.array([1e-5, 1.0]), 1.0)
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        v.check_time_range(0.0, 1.0)
    v.check_time_range(0.0, 1.0, low_open=False)
    v.check_binary(jnp.array([0.0, 1.0, 1.0]), "x")
    v.check_binary(jnp.array([True, False]), "mask")
    with pytest.raises(ValueError, match=r"x must hold only 0 or 1.*got 0.5"):
        v.check_binary(jnp.array([0.0, 0.5]), "x")
    grid = jnp.arange(17, dtype=jnp.float32) / 8.0 - 1.0
    v.check_on_grid(grid, 17, "x")
    with pytest.raises(ValueError, match=r"x must lie on the grid of num_levels = 17.*got 0.03"):
        v.check_on_grid(grid.at[8].set(0.03), 17, "x")

    @jax.jit
    def traced(x):  # none of these can see traced values: they are skipped
        v.check_index_range(x, 1, "t")
        v.check_time_range(x, 1.0)
        v.check_binary(x, "x")
        v.check_on_grid(x, 2, "x")
        v.check_finite_number(x[0], "x", low=0.0)
        return x

    traced(jnp.array([-5.0, 0.5]))
