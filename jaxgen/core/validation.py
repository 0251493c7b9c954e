"""Validators shared by every family: one message style, naming the value and what is allowed.

Each check raises ``ValueError`` (``ConfigError`` in the config layer is a subclass of it)
and returns the checked value, so it can be used inline: ``n = check_positive_int(n,
"num_steps")``. Checks of array *values* run only on concrete arrays; under ``jit`` they
are skipped (the caller documents what happens to traced out-of-range values).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

__all__ = [
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
]

T = TypeVar("T")


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer under ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``, else ``ValueError`` naming ``name`` and the
    allowed values (argument order: what, value, allowed, as in every check here)."""
    choices = tuple(choices)
    if value not in choices:
        import difflib

        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {choices}, got {value!r}{hint}")
    return value


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_num_levels(num_levels: Any, *, allow_none: bool = False) -> int | None:
    """The number of discrete levels per dimension ``L >= 2`` (or ``None`` where continuous
    data are allowed)."""
    if num_levels is None:
        if allow_none:
            return None
        raise ValueError(
            "num_levels must be an integer >= 2 (the data's discrete levels), got None"
        )
    if (
        isinstance(num_levels, bool)
        or not isinstance(num_levels, (int, np.integer))
        or num_levels < 2
    ):
        allowed = "None or an integer >= 2" if allow_none else "an integer >= 2"
        raise ValueError(f"num_levels must be {allowed}, got {num_levels!r}")
    return int(num_levels)


def check_range(x: Any, low: float, high: float, name: str, *, slack: float = 1e-6) -> None:
    """``ValueError`` unless every value of a concrete ``x`` lies in ``[low, high]``
    (skipped for tracers and empty arrays)."""
    if not is_concrete(x) or np.size(x) == 0:
        return
    values = np.asarray(x)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite values in [{low}, {high}], got NaN or inf")
    if values.min() < low - slack or values.max() > high + slack:
        raise ValueError(
            f"{name} must lie in [{low}, {high}], got values in [{values.min()}, {values.max()}]"
        )


def check_sample_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """A static sample shape ``(B, *event)`` of positive ints, as a tuple."""
    try:
        if any(isinstance(s, bool) for s in shape):
            raise TypeError("bool")
        shape = tuple(operator.index(s) for s in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a static tuple of ints (B, *event), got {shape!r}"
        ) from err
    if len(shape) < 1 or any(s <= 0 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    return shape


def check_finite_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """``value`` if it is a finite real number within the given bounds, else ``ValueError``
    naming ``name`` and the allowed interval (``low_open``/``high_open`` exclude the ends).

    A traced ``value`` (under ``jit``) is returned unchecked; a concrete 0-d array is checked.
    """
    if not is_concrete(value):
        return value
    if isinstance(value, bool) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err
    left = "(" if low_open else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{left}{lo}, {hi}{right}"
    bad = not np.isfinite(number)
    if low is not None:
        bad = bad or (number <= low if low_open else number < low)
    if high is not None:
        bad = bad or (number >= high if high_open else number > high)
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def check_index_range(x: Any, size: int, name: str, *, what: str = "T") -> None:
    """``ValueError`` unless every value of a concrete integer ``x`` lies in ``[0, size - 1]``
    (the 0-based indices of ``size`` entries; skipped for tracers and empty arrays)."""
    if not is_concrete(x) or np.size(x) == 0:
        return
    values = np.asarray(x)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > size - 1:
        raise ValueError(
            f"{name} must lie in [0, {what} - 1] = [0, {size - 1}] ({what} = {size}), got "
            f"values in [{low}, {high}]"
        )


def check_time_range(
    t: Any, high: float, name: str = "t", *, low: float = 0.0, low_open: bool = True
) -> None:
    """``ValueError`` unless every value of a concrete ``t`` is finite and lies in
    ``(low, high]`` (``[low, high]`` with ``low_open=False``); skipped for tracers."""
    if not is_concrete(t) or np.size(t) == 0:
        return
    values = np.asarray(t, dtype=np.float64)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite times in {interval}, got NaN or inf")
    too_low = values.min() <= low if low_open else values.min() < low
    if too_low or values.max() > high:
        raise ValueError(
            f"{name} must lie in {interval}, got values in [{values.min():g}, {values.max():g}]"
        )


def _scalar(values: np.ndarray) -> str:
    """The first of ``values`` written plainly (``0.3``, not ``np.float32(0.3)``)."""
    first = np.asarray(values).flat[0]
    return f"{float(first):.6g}" if np.isreal(first) else repr(first)


def check_binary(x: Any, name: str) -> None:
    """``ValueError`` unless every value of a concrete ``x`` is 0 or 1 (skipped for tracers)."""
    if not is_concrete(x) or np.size(x) == 0:
        return
    values = np.asarray(x)
    bad = (values != 0) & (values != 1)
    if np.any(bad):
        raise ValueError(
            f"{name} must hold only 0 or 1 (binary data), got {_scalar(values[bad])}"
            f" ({int(np.sum(bad))} value(s) off {{0, 1}})"
        )


def check_on_grid(x: Any, num_levels: int, name: str) -> None:
    """``ValueError`` unless every value of a concrete ``x`` lies on the grid of ``L =
    num_levels`` values ``2 k / (L - 1) - 1`` in ``[-1, 1]`` (up to rounding of the dtype);
    skipped for tracers."""
    if not is_concrete(x) or np.size(x) == 0:
        return
    values = np.asarray(x)
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    values = values.astype(np.float64)
    half = 1.0 / (num_levels - 1)
    tol = max(1e-2 * half, 8.0 * float(jax.numpy.finfo(dtype).eps))
    k = np.round((values + 1.0) / (2.0 * half))
    off = ~np.isfinite(values) | (np.abs(values - (2.0 * half * k - 1.0)) > tol)
    off |= (k < 0) | (k > num_levels - 1)
    if np.any(off):
        raise ValueError(
            f"{name} must lie on the grid of num_levels = {num_levels} values "
            f"2 k / {num_levels - 1} - 1 in [-1, 1], got {_scalar(values[off])}"
            f" ({int(np.sum(off))} value(s) off the grid)"
        )
