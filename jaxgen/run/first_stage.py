"""The first stage of a two-stage run (latent diffusion, code priors): trained first when the
config says how, loaded, attached to the second stage's recipe, and checked against the
workdir's record (:mod:`jaxgen.recipes.first_stage`).

* :func:`first_stage_training` gives the first stage's experiment and workdir when the
  second stage's config names its experiment file (``model.first_stage.config``): ``jaxgen
  train`` on the second stage trains (or resumes) that run first, so one command runs both
  stages and resumes whichever was interrupted.
* :func:`attach_first_stage_recipe` (when the recipe is built): the first stage's recipe,
  built from its ``config.json``, is attached without parameters (enough to restore and
  sample a trained second stage, whose checkpoints hold the first stage's parameters).
* :func:`prepare_first_stage` (before training): the first stage's EMA parameters from its
  newest checkpoint (the run must exist, be finished and be of a family the second stage can
  use), the latent scale ``1 / std`` of the training set's latents (latent diffusion), and
  the record ``<workdir>/first_stage.json`` (the first stage's resolved workdir, config
  hash, step and family, and the latent scale): written when the second stage starts,
  compared at every resume, where a changed or other first stage is refused by name and the
  recorded scale is used.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import (
    ConfigError,
    ExperimentConfig,
    config_from_json,
    config_to_json,
    diff_configs,
    load_experiment,
)
from jaxgen.data.registry import Dataset
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.restore import restore_train_state
from jaxgen.recipes.first_stage import FirstStageConfig, SecondStageRecipe
from jaxgen.run.data import init_batch_for, load_train_dataset
from jaxgen.run.distill_teacher import construct_recipe
from jaxgen.run.families import model_config_class
from jaxgen.run.teacher import config_hash

RECORD_NAME = "first_stage.json"
SCALE_CHUNK = 256
SCALE_MAX_EXAMPLES = 50_000  # the scale is over the first ones (all 1437 of the digits)
# Config keys that do not change what a first-stage run learns.
UNCHANGING = (
    "eval.",
    "expected",
    "name",
    "train.log_every",
    "train.progress_bar",
    "train.sample_every",
    "train.num_grid_samples",
    "train.keep_checkpoints",
    "train.checkpoint_every",
    "train.async_checkpoints",
)  # training images encoded per compiled call for the latent scale

log = logging.getLogger("jaxgen")


def _first_stage_config(config: ExperimentConfig) -> FirstStageConfig | None:
    fs = getattr(config.model, "first_stage", None)
    return fs if isinstance(fs, FirstStageConfig) and not fs.identity else None


def needs_first_stage(recipe: Recipe) -> bool:
    """True for a second-stage recipe over a first-stage run (not the identity)."""
    return isinstance(recipe, SecondStageRecipe) and not recipe.first_stage_config.identity


def first_stage_training(config: ExperimentConfig) -> tuple[ExperimentConfig, pathlib.Path] | None:
    """``(first-stage experiment, its workdir)`` when ``config`` names the first stage's
    experiment file in ``model.first_stage.config``; None otherwise."""
    fs = _first_stage_config(config)
    if fs is None or not fs.config:
        return None
    try:
        first = load_experiment(fs.config, resolve_model=model_config_class)
    except ConfigError as err:
        raise ConfigError(f"model.first_stage.config={fs.config!r}: {err}") from None
    return first, pathlib.Path(fs.workdir)


def first_stage_finished(config: ExperimentConfig, workdir: str | pathlib.Path) -> bool:
    """True when ``workdir`` holds a checkpoint at ``config.train.num_steps`` or later;
    ``ConfigError`` when it holds a run of another config than ``model.first_stage.config``
    (a difference in any key but :data:`UNCHANGING`)."""
    saved = pathlib.Path(workdir) / "config.json"
    if saved.exists():
        changed = diff_configs(json.loads(saved.read_text()), json.loads(config_to_json(config)))
        changed = [k for k in changed if not k.startswith(UNCHANGING)]
        if changed:
            raise ConfigError(
                f"model.first_stage.workdir={str(workdir)!r} holds a run of another config than "
                f"model.first_stage.config ({', '.join(changed)} differ); use another first-stage "
                "workdir"
            )
    path = pathlib.Path(workdir) / "checkpoints"
    if not path.is_dir():
        return False
    checkpointer = Checkpointer(path, use_async=False, read_only=True)
    try:
        latest = checkpointer.latest_step()
    finally:
        checkpointer.close()
    return latest is not None and latest >= config.train.num_steps


def _missing(recipe: SecondStageRecipe) -> str:
    fs = recipe.first_stage_config
    how = (
        f"`jaxgen train` on this config trains it first from {fs.config!r}"
        if fs.config
        else "train it first, or name its experiment file in model.first_stage.config"
    )
    return f"model.first_stage.workdir={fs.workdir!r} is not a jaxgen run (no config.json); {how}"


def _load_config(recipe: SecondStageRecipe, path: pathlib.Path) -> ExperimentConfig:
    config = config_from_json((path / "config.json").read_text(), resolve_model=model_config_class)
    allowed = recipe.first_stage_families
    if config.family not in allowed:
        raise ConfigError(
            f"model.first_stage.workdir={str(path)!r} is a {config.family!r} run; the "
            f"{recipe.family!r} family needs a first stage of {', '.join(allowed)}"
        )
    return config


def _attach(recipe: SecondStageRecipe, first: Recipe, params: Any, hash_: str) -> None:
    try:
        recipe.attach_first_stage(first, params, config_hash=hash_)
    except ConfigError:
        raise
    except ValueError as err:
        name = f"model.first_stage.workdir={recipe.first_stage_config.workdir!r}"
        raise ConfigError(f"{name}: {err}") from None


def attach_first_stage_recipe(recipe: Recipe) -> None:
    """Attach the first stage's recipe (no parameters) to a second-stage recipe whose first
    stage run exists; otherwise remember why not (using the recipe raises it)."""
    if not needs_first_stage(recipe):
        return
    path = pathlib.Path(recipe.first_stage_config.workdir)
    if not (path / "config.json").exists():
        recipe.first_stage_error = _missing(recipe)
        return
    config = _load_config(recipe, path)
    first = construct_recipe(config, load_train_dataset(config))
    _attach(recipe, first, None, config_hash(path))


def load_first_stage(recipe: SecondStageRecipe) -> tuple[ExperimentConfig, Recipe, Any, int]:
    """``(config, recipe, EMA parameters, step)`` of the finished first-stage run;
    ``ConfigError`` (one line, naming the workdir) for a missing, unfinished or damaged run
    or another family."""
    fs = recipe.first_stage_config
    path = pathlib.Path(fs.workdir)
    name = f"model.first_stage.workdir={fs.workdir!r}"
    if not (path / "config.json").exists():
        raise ConfigError(_missing(recipe))
    config = _load_config(recipe, path)
    dataset = load_train_dataset(config)
    first = construct_recipe(config, dataset)
    try:
        state, step = restore_train_state(
            first, config, path, init_batch=init_batch_for(first, dataset)
        )
    except CheckpointError as err:
        raise ConfigError(f"{name}: {err}") from None
    if step < config.train.num_steps:
        raise ConfigError(
            f"{name} is unfinished (step {step} of {config.train.num_steps}); finish training "
            "the first stage first"
        )
    return config, first, state.ema_params, step


def latent_scale(recipe: SecondStageRecipe, dataset: Dataset) -> tuple[float, float]:
    """``(1 / std, mean)`` of the first stage's latents over the training set (every element
    of every latent of its first :data:`SCALE_MAX_EXAMPLES` examples, accumulated in float64
    over chunks of :data:`SCALE_CHUNK`; LDM used one batch)."""
    first = recipe.require_first_stage()
    params = recipe.first_stage_params
    encode = jax.jit(first.encode_latents)
    total = total_sq = 0.0
    count = 0
    total_examples = min(len(dataset.source), SCALE_MAX_EXAMPLES)
    for start in range(0, total_examples, SCALE_CHUNK):
        rows = np.arange(start, min(start + SCALE_CHUNK, total_examples))
        images = jnp.asarray(dataset.source.get(rows)[dataset.data_key], jnp.float32)
        z = np.asarray(encode(params, images), np.float64)
        total += float(z.sum())
        total_sq += float(np.square(z).sum())
        count += z.size
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
    if not np.isfinite(std) or std <= 0:
        raise ConfigError(
            f"model.first_stage.workdir={recipe.first_stage_config.workdir!r}: its latents over "
            f"the training set have standard deviation {std!r}; no latent scale exists"
        )
    return 1.0 / std, mean


def prepare_first_stage(recipe: Recipe, workdir: str | pathlib.Path, dataset: Dataset) -> None:
    """Load and attach the first stage with its parameters, set the latent scale, and write
    or check ``<workdir>/first_stage.json`` (module docstring). Nothing for other recipes."""
    if isinstance(recipe, SecondStageRecipe) and recipe.first_stage_kind == "latents":
        if recipe.first_stage_config.identity:
            log.info("latent scale: %.6g (identity first stage)", recipe.latent_scale)
            return
    if not needs_first_stage(recipe):
        return
    config, first, params, step = load_first_stage(recipe)
    path = pathlib.Path(recipe.first_stage_config.workdir)
    now = {
        "first_stage_workdir": str(path.resolve()),
        "config_hash": config_hash(path),
        "step": int(step),
        "family": config.family,
    }
    _attach(recipe, first, params, now["config_hash"])
    workdir = pathlib.Path(workdir)
    record_path = workdir / RECORD_NAME
    if (workdir / "config.json").exists():
        saved = _check_record(workdir, record_path, now)
        if recipe.first_stage_kind == "latents":
            recipe.set_latent_scale(float(saved["latent_scale"]))
        return
    if recipe.first_stage_kind == "latents":
        fixed = recipe.config.model.latent_scale
        scale, mean = latent_scale(recipe, dataset) if fixed is None else (float(fixed), None)
        recipe.set_latent_scale(scale)
        now["latent_scale"] = scale
        now["latent_scale_source"] = "1/std over the training set" if fixed is None else "config"
        if mean is not None:
            now["latent_mean"] = mean
        log.info("latent scale: %.6g (%s)", scale, now["latent_scale_source"])
        print(f"latent scale s = {scale:.6g} ({now['latent_scale_source']})", flush=True)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f".{RECORD_NAME}.tmp"
        tmp.write_text(json.dumps(now, indent=2))
        tmp.replace(record_path)


def _check_record(workdir: pathlib.Path, record_path: pathlib.Path, now: dict) -> dict:
    if not record_path.exists():
        raise ConfigError(
            f"{workdir} holds a started run without a first-stage record ({RECORD_NAME}); use "
            "a fresh workdir"
        )
    saved = json.loads(record_path.read_text())
    if saved.get("first_stage_workdir") != now["first_stage_workdir"]:
        raise ConfigError(
            f"{workdir} was trained on first stage {saved.get('first_stage_workdir')!r}, but "
            f"model.first_stage.workdir names {now['first_stage_workdir']!r}; use a fresh workdir"
        )
    if (saved.get("config_hash"), saved.get("step")) != (now["config_hash"], now["step"]):
        raise ConfigError(
            f"first stage {now['first_stage_workdir']!r} changed since {workdir} started: it had "
            f"config {saved.get('config_hash')} at step {saved.get('step')} ({record_path}), now "
            f"config {now['config_hash']} at step {now['step']}; restore it or use a fresh workdir"
        )
    return saved
