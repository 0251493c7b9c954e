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
    "check_choice",
    "check_num_levels",
    "check_positive_int",
    "check_range",
    "check_sample_shape",
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
