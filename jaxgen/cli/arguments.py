"""argparse types of the ``jaxgen`` command line: each refuses a bad value with a message
naming it (argparse turns it into one line and exit code 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (``--steps 0`` is an error, never ignored)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def interval(text: str) -> tuple[float, float]:
    """argparse type: ``LO,HI`` noise levels (EDM sigma), finite, ``0 <= LO < HI``."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two noise levels LO,HI (e.g. 0.3,5), got {text!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise argparse.ArgumentTypeError(f"must be finite noise levels 0 <= LO < HI, got {text!r}")
    return lo, hi


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def scales(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated finite, distinct guidance scales (e.g. ``0,1,2,3,5``)."""
    try:
        scales = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0,1,2,3,5, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in scales):
        raise argparse.ArgumentTypeError(f"scales must be finite numbers, got {text!r}")
    if len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"scales must be distinct, got {text!r}")
    return scales


def levels(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated distinct augmentation levels >= 0 (e.g. ``0,0.1,0.2``)."""
    values = scales(text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"levels must be >= 0, got {text!r}")
    return values
