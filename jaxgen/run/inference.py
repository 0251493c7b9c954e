"""A trained run: load it from its workdir (with evaluation-time overrides) and draw samples."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig, apply_overrides, config_from_json
from jaxgen.data.registry import Dataset
from jaxgen.engine import distributed
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.restore import restore_train_state
from jaxgen.engine.sampling import ChunkedSampler
from jaxgen.images import density_picture, make_grid, save_png
from jaxgen.run.data import init_batch_for, load_train_dataset, sample_condition_for
from jaxgen.run.families import get_recipe, model_config_class
from jaxgen.run.train import build_recipe


@dataclasses.dataclass
class LoadedRun:
    """A run's config, recipe, training data and (EMA) parameters at ``step``."""

    config: ExperimentConfig
    recipe: Recipe
    dataset: Dataset
    params: Any
    ema_params: Any
    step: int
    workdir: pathlib.Path
    _condition: Any = dataclasses.field(default=None, repr=False)

    def sample_condition(self) -> Callable[[np.ndarray], Mapping[str, np.ndarray]] | None:
        """The held-out rows samples are conditioned on (loaded once), or None."""
        if self.recipe.sample_condition_split is None:
            return None
        if self._condition is None:
            self._condition = sample_condition_for(self.recipe, self.config)
        return self._condition


def eval_time_keys(recipe_cls: type[Recipe]) -> tuple[str, ...]:
    """The config keys that may change after training: ``eval.*`` and ``model.<field>`` for
    the recipe's ``eval_time_fields``."""
    return ("eval.*", *(f"model.{f}" for f in recipe_cls.eval_time_fields))


def check_eval_time_overrides(recipe_cls: type[Recipe], overrides: Sequence[str]) -> None:
    """``ConfigError`` for an override of a key that would change the trained model."""
    fields = recipe_cls.eval_time_fields
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        section, _, rest = key.partition(".")
        if section == "eval" or (
            section == "model" and any(rest == f or rest.startswith(f + ".") for f in fields)
        ):
            continue
        raise ConfigError(
            f"{key!r} cannot be changed after training; for family {recipe_cls.family!r} only "
            f"{', '.join(eval_time_keys(recipe_cls))} can be overridden at evaluation time"
        )


def load_run(
    workdir: str | pathlib.Path,
    *,
    step: int | None = None,
    overrides: Sequence[str] = (),
) -> LoadedRun:
    """The config, recipe and (EMA) parameters of the newest good checkpoint (or ``step``).

    ``overrides`` (``key=value``) may change evaluation and sampling settings only
    (:func:`eval_time_keys`: ``eval.*`` and the recipe's ``eval_time_fields``); the trained
    model stays as it was."""
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise ConfigError(f"{workdir} is not a jaxgen run directory (no config.json); train first")
    config = config_from_json(config_path.read_text(), resolve_model=model_config_class)
    check_eval_time_overrides(get_recipe(config.family), overrides)
    config = apply_overrides(config, overrides)
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    state, step = restore_train_state(
        recipe, config, workdir, step=step, init_batch=init_batch_for(recipe, dataset)
    )
    return LoadedRun(config, recipe, dataset, state.params, state.ema_params, step, workdir)


def check_sample_options(recipe: Recipe | type[Recipe], options: Mapping[str, Any]) -> None:
    """``ConfigError`` (one line) for a sample option the family does not declare
    (:meth:`jaxgen.engine.recipe.Recipe.check_sample_options`), checked before anything is
    compiled."""
    recipe.check_sample_options(options)


def draw_samples(
    run: LoadedRun,
    *,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 256,
    mesh: jax.sharding.Mesh | None = None,
    progress_desc: str | None = None,
    **options: Any,
) -> np.ndarray:
    """``num_samples`` samples from the EMA parameters, in equal jitted chunks of at most
    ``batch_size`` (rounded up to a multiple of the devices of ``mesh``, default all; 360
    samples at 256 are two chunks of 180, not 256 + 256 cut). Sample ``i`` depends only on
    ``seed`` and ``i`` (not on ``batch_size`` or the devices). ``options`` are the recipe's
    sample options (``sampler``, ``num_steps``, ``eta``, ``temperature``: what it declares
    in ``sample_options``). ``progress_desc``: show a progress bar on stderr."""
    check_sample_options(run.recipe, options)
    if batch_size >= 1 and num_samples >= 1:  # equal chunks (else ChunkedSampler refuses)
        batch_size = -(-num_samples // -(-num_samples // batch_size))
    sampler = ChunkedSampler(
        run.recipe,
        num_samples=num_samples,
        batch_size=batch_size,
        mesh=mesh,
        condition=run.sample_condition(),
        **options,
    )
    return sampler(run.ema_params, jax.random.key(seed), progress_desc=progress_desc)


def save_figures(figures: dict[str, np.ndarray], directory: pathlib.Path, step: int) -> None:
    """Write each named (H, W, C) picture as ``<directory>/<name>_step<N>.png`` (enlarged to
    about 512 pixels so 8x8 digits are visible)."""
    for name, picture in figures.items():
        upscale = max(1, 512 // max(picture.shape[:2]))
        save_png(directory / f"{name}_step{step}.png", picture, upscale=upscale)


def write_samples(
    run: LoadedRun,
    samples: np.ndarray,
    directory: pathlib.Path,
    stem: str,
    *,
    labels: np.ndarray | None = None,
    num_cols: int | None = None,
) -> dict[str, Any]:
    """Save ``samples`` as ``<stem>.npy`` plus a picture or text of them: a grid of images
    (``num_cols`` columns, default square), decoded token sequences (recipes with
    ``decode_samples``) or the density of 2-D points; the class each sample was asked for,
    if given, as ``<stem>_labels.npy``. Returns the paths written and the samples' shape.
    In a multi-process job only process 0 writes (every process returns the same record)."""
    directory = pathlib.Path(directory)
    write = distributed.is_main_process()  # one writer in a multi-process job
    record: dict[str, Any] = {"npy": str(directory / f"{stem}.npy"), "shape": list(samples.shape)}
    if write:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / f"{stem}.npy", samples)
    if labels is not None:
        record["labels"] = str(directory / f"{stem}_labels.npy")
        if write:
            np.save(directory / f"{stem}_labels.npy", np.asarray(labels))
    if samples.ndim == 4:  # images: a grid (at most 256 of them, whole rows)
        record["png"] = str(directory / f"{stem}.png")
        if write:
            shown = min(len(samples), 256 - 256 % num_cols if num_cols and num_cols <= 256 else 256)
            grid = make_grid(samples[:shown], num_cols=num_cols)
            save_png(directory / f"{stem}.png", grid, upscale=max(1, 256 // max(grid.shape[:2])))
    elif hasattr(run.recipe, "decode_samples"):  # token sequences: text
        record["txt"] = str(directory / f"{stem}.txt")
        if write:
            text = "\n\n-----\n\n".join(run.recipe.decode_samples(samples))
            (directory / f"{stem}.txt").write_text(text)
    elif samples.ndim == 2 and samples.shape[1] == 2:  # 2-D points: their density
        record["png"] = str(directory / f"{stem}.png")
        if write:
            save_png(directory / f"{stem}.png", density_picture(samples), upscale=4)
    return record
