"""Family name -> recipe class."""

from __future__ import annotations

import difflib

from jaxgen.recipes.base import Recipe

_RECIPES: dict[str, type[Recipe]] = {}


def register(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make a recipe available under ``cls.family``."""
    _RECIPES[cls.family] = cls
    return cls


def get_recipe(family: str) -> type[Recipe]:
    _load_builtin()
    if family not in _RECIPES:
        from jaxgen.config import ConfigError

        close = difflib.get_close_matches(family, list(_RECIPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown model family {family!r}{hint} (known: {', '.join(sorted(_RECIPES))})"
        )
    return _RECIPES[family]


def families() -> list[str]:
    _load_builtin()
    return sorted(_RECIPES)


def _load_builtin() -> None:
    from jaxgen.recipes import (  # noqa: F401  (register themselves)
        autoencoder,
        ddpm,
        flow,
        gan,
        hierarchical_vae,
        pix2pix,
        pixelcnn,
        score_sde,
        sequence_model,
        vae,
        vae_gan,
        vqvae,
    )
