"""What a recipe needs from the data: the training set, its initialisation batch, the
held-out rows its samples are conditioned on, and the host augmentation."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig
from jaxgen.data.augment import random_horizontal_flip
from jaxgen.data.checks import UnknownSplitError
from jaxgen.data.loader import Transform
from jaxgen.data.registry import DATASET_NAMES, Dataset, load_dataset
from jaxgen.data.resolution import downsample_dataset
from jaxgen.engine.recipe import Recipe


def load_split(config: ExperimentConfig, split: str = "train") -> Dataset:
    """The ``split`` of ``config.data.name`` (``ConfigError`` naming close names if unknown),
    at ``config.data.resolution`` when set."""
    if config.data.name not in DATASET_NAMES:
        close = difflib.get_close_matches(config.data.name, DATASET_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"data.name: unknown dataset {config.data.name!r}{hint} "
            f"(known: {', '.join(DATASET_NAMES)})"
        )
    try:
        dataset = load_dataset(
            config.data.name, split, data_dir=config.data.data_dir, download=config.data.download
        )
    except UnknownSplitError as err:
        raise ConfigError(f"dataset {config.data.name!r}: {err}") from err
    if config.data.resolution is None:
        return dataset
    try:
        return downsample_dataset(dataset, config.data.resolution)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_train_dataset(config: ExperimentConfig, split: str = "train") -> Dataset:
    """The training data of ``config`` (``split`` selects another split of the dataset)."""
    return load_split(config, split)


def init_batch_for(recipe: Recipe, dataset: Dataset) -> dict[str, np.ndarray] | None:
    """The first ``recipe.init_batch_size`` training examples (all of them if fewer), the
    same for every run of the dataset; None when the recipe needs none."""
    n = int(recipe.init_batch_size)
    if n <= 0:
        return None
    rows = dataset.source.get(np.arange(min(n, len(dataset.source))))
    return {k: np.asarray(v) for k, v in rows.items()}


def held_out_rows(config: ExperimentConfig, split: str) -> dict[str, np.ndarray]:
    """The first ``eval.max_examples`` (default: all) rows of a held-out split."""
    held_out = load_split(config, split)
    n = len(held_out.source)
    if config.eval.max_examples is not None:
        n = min(n, config.eval.max_examples)
    return {k: np.asarray(v) for k, v in held_out.source.get(np.arange(n)).items()}


def sample_condition_for(
    recipe: Recipe, config: ExperimentConfig
) -> Callable[[np.ndarray], Mapping[str, np.ndarray]] | None:
    """``condition(indices)`` for recipes whose samples are conditioned on held-out data
    (``recipe.sample_condition_split``): example ``i`` gets held-out row ``i mod N``."""
    split = recipe.sample_condition_split
    if split is None:
        return None
    rows = held_out_rows(config, split)
    n = len(next(iter(rows.values())))
    if n == 0:
        raise ConfigError(f"the {split!r} split of {config.data.name!r} is empty")

    def condition(indices: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[np.asarray(indices) % n] for k, v in rows.items()}

    return condition


def transform_for(config: ExperimentConfig) -> Transform | None:
    """The host augmentation of the training batches (``data.random_flip``)."""
    return random_horizontal_flip if config.data.random_flip else None
