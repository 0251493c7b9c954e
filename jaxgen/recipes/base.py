"""What every recipe file imports: the protocol (defined by the engine) and small helpers.

:class:`Recipe` is :class:`jaxgen.engine.recipe.Recipe` (see that module for the protocol);
``evaluate_in_chunks`` and ``nll_summary`` are engine helpers re-exported here, and
``check_choice`` is the core validator raising :class:`jaxgen.config.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jaxgen.config import ConfigError
from jaxgen.core import validation
from jaxgen.engine.recipe import Recipe, evaluate_in_chunks, nll_summary, sample_array

__all__ = ["Recipe", "check_choice", "evaluate_in_chunks", "nll_summary", "sample_array"]


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ConfigError`` naming ``key``, the value
    and the allowed ones (:func:`jaxgen.core.validation.check_choice`)."""
    try:
        return validation.check_choice(key, value, choices)
    except ValueError as err:
        raise ConfigError(str(err)) from None
