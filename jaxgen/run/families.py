"""The family table: family name -> recipe class, found by convention and imported only when asked.

A family named ``F`` is the :class:`~jaxgen.engine.recipe.Recipe` subclass with
``family = "F"`` defined in the module ``jaxgen/recipes/F.py``. Adding a family is therefore
one recipe file and one experiment config; nothing else is edited. Families that live in
another package (a researcher's own code) register through the ``jaxgen.recipes`` entry-point
group of their distribution (``F = "my_package.my_module:MyRecipe"`` in its
``pyproject.toml`` under ``[project.entry-points."jaxgen.recipes"]``).

Modules of ``jaxgen/recipes`` that define no recipe (shared helpers) are not families.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.metadata
import pathlib

from jaxgen.config import ConfigError
from jaxgen.engine.recipe import Recipe

RECIPES_PACKAGE = "jaxgen.recipes"
ENTRY_POINT_GROUP = "jaxgen.recipes"
_RECIPES_DIR = pathlib.Path(__file__).resolve().parent.parent / "recipes"


def _declares_family(path: pathlib.Path, family: str) -> bool:
    """True when the module source defines a class with ``family = "<family>"`` (read with
    ``ast``, nothing imported, so listing the families costs no heavy imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            target = getattr(item, "target", None) or (getattr(item, "targets", None) or [None])[0]
            value = getattr(item, "value", None)
            if (
                isinstance(target, ast.Name)
                and target.id == "family"
                and isinstance(value, ast.Constant)
                and value.value == family
            ):
                return True
    return False


@functools.cache
def _builtin_families() -> tuple[str, ...]:
    return tuple(
        sorted(
            path.stem
            for path in _RECIPES_DIR.glob("*.py")
            if not path.stem.startswith("_") and _declares_family(path, path.stem)
        )
    )


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def families() -> list[str]:
    """The known family names (built in and from entry points), sorted."""
    return sorted(set(_builtin_families()) | set(_entry_points()))


def get_recipe(family: str) -> type[Recipe]:
    """The recipe class of ``family`` (``ConfigError`` with the closest name if unknown)."""
    if family in _builtin_families():
        module = importlib.import_module(f"{RECIPES_PACKAGE}.{family}")
        found = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Recipe)
            and getattr(value, "family", None) == family
            and value.__module__ == module.__name__
        ]
        if len(found) != 1:
            raise RuntimeError(
                f"{module.__name__} must define exactly one Recipe with family={family!r}, "
                f"found {len(found)}"
            )
        return found[0]
    entry_points = _entry_points()
    if family in entry_points:
        cls = entry_points[family].load()
        if not (isinstance(cls, type) and issubclass(cls, Recipe)) or cls.family != family:
            raise ConfigError(
                f"entry point {family!r} of group {ENTRY_POINT_GROUP!r} must name a Recipe "
                f"subclass with family={family!r}, got {cls!r}"
            )
        return cls
    known = families()
    close = difflib.get_close_matches(str(family), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown model family {family!r}{hint} (known: {', '.join(known)})")


def model_config_class(family: str) -> type:
    """The model-config dataclass of ``family``."""
    return get_recipe(family).config_class
