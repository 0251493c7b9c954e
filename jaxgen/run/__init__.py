"""The application floor: config -> data -> recipe -> engine (the CLI calls only this).

TRANSITIONAL: re-exports of today's engine entry points while the floor is built
(issue 12). Import these names from here, not from the engine.
"""

from jaxgen.engine.inference import draw_samples, evaluate_run, load_run
from jaxgen.engine.trainer import build_recipe, load_train_dataset, train
from jaxgen.recipes.registry import families, get_recipe

__all__ = [
    "build_recipe",
    "draw_samples",
    "evaluate_run",
    "families",
    "get_recipe",
    "load_run",
    "load_train_dataset",
    "train",
]
