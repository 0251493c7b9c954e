"""The teacher run of a distillation recipe (consistency distillation, progressive
distillation): loaded, attached to the recipe, and checked against the workdir's record.

A distillation config names its teacher (``model.teacher_workdir``): a finished ``ddpm``,
``score_sde``, ``flow_matching`` or ``progressive`` run (:data:`TEACHER_FAMILIES`).
:func:`construct_recipe` builds a recipe from a config and, for a recipe that has a teacher,
attaches the teacher's recipe (built from its ``config.json``; recursively, for a progressive
teacher of its own teacher) with ``recipe.attach_teacher(teacher_recipe, None,
config_hash)``: enough to restore and sample a trained student, whose checkpoints hold the
teacher's parameters. Training loads the teacher run in full
(:func:`attach_teacher_params`: finished, of a teacher family, its EMA parameters, step
and config hash) before anything initialises parameters.

Before training, :func:`check_teacher_record` writes ``<workdir>/teacher.json`` (the
teacher's resolved workdir, config hash, step and family) when the run starts, and compares
it at every resume: a teacher whose config or checkpoint changed, another teacher, or a
record that is missing from a started run is refused with a ``ConfigError`` naming them.
The student's checkpoints hold the teacher's parameters (a state collection), so a resumed
run continues exactly; sampling a trained student (``jaxgen sample`` / ``eval``) needs the
teacher run only for its architecture.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax

from jaxgen.config import ConfigError, ExperimentConfig, config_from_json
from jaxgen.data.registry import Dataset
from jaxgen.engine.checkpointing import CheckpointError
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.restore import restore_train_state
from jaxgen.recipes.teacher_denoiser import TEACHER_FAMILIES, DistillationRecipe
from jaxgen.run.data import init_batch_for, load_train_dataset
from jaxgen.run.families import get_recipe, model_config_class
from jaxgen.run.teacher import Teacher, config_hash

RECORD_NAME = "teacher.json"


def needs_teacher(recipe: Recipe) -> bool:
    """True for a distillation recipe whose config names a teacher run."""
    return isinstance(recipe, DistillationRecipe) and recipe.teacher_workdir is not None


def construct_recipe(config: ExperimentConfig, dataset: Dataset) -> Recipe:
    """The recipe of ``config.family``, told the data's shape, levels, key and classes; a
    ``ValueError`` of the family's maths becomes a ``ConfigError``. A distillation recipe gets
    its teacher's *recipe* (architecture, levels) attached when the teacher run exists
    (cheap: no parameters are read; :func:`attach_teacher_params` loads them for training);
    otherwise using the recipe raises the ``ConfigError`` naming the missing teacher."""
    recipe_cls = get_recipe(config.family)
    try:
        recipe = recipe_cls(
            config,
            data_shape=dataset.event_shape,
            num_levels=dataset.num_levels,
            data_key=dataset.data_key,
            num_classes=dataset.num_classes,
        )
    except ConfigError:
        raise
    except ValueError as err:  # the family's maths refused a value the config gave it
        raise ConfigError(f"{config.family} model config: {err}") from err
    if needs_teacher(recipe):
        path = pathlib.Path(recipe.teacher_workdir)
        if (path / "config.json").exists():
            teacher_config = _teacher_config(path)
            teacher_recipe = construct_recipe(teacher_config, load_train_dataset(teacher_config))
            _attach(recipe, teacher_recipe, None, config_hash(path))
        else:
            recipe.teacher_error = _missing(recipe.teacher_workdir)
    return recipe


def _missing(workdir: str | pathlib.Path) -> str:
    return (
        f"model.teacher_workdir={str(workdir)!r} is not a jaxgen run (no config.json); "
        "train the teacher first"
    )


def _teacher_config(path: pathlib.Path) -> ExperimentConfig:
    config = config_from_json((path / "config.json").read_text(), resolve_model=model_config_class)
    if config.family not in TEACHER_FAMILIES:
        raise ConfigError(
            f"model.teacher_workdir={str(path)!r} is a {config.family!r} run; a distillation "
            f"teacher must be a {', '.join(TEACHER_FAMILIES)} run"
        )
    return config


def _attach(recipe: Recipe, teacher_recipe: Recipe, params: Any, hash_: str) -> None:
    try:
        recipe.attach_teacher(teacher_recipe, params, hash_)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"model.teacher_workdir={recipe.teacher_workdir!r}: {err}") from err


def attach_teacher_params(recipe: Recipe) -> Teacher | None:
    """Load the teacher run of a distillation recipe (:func:`load_distillation_teacher`) and
    attach it with its parameters (training needs them); None for other recipes."""
    if not needs_teacher(recipe):
        return None
    teacher = load_distillation_teacher(recipe.teacher_workdir)
    _attach(recipe, teacher.recipe, teacher.params, teacher.config_hash)
    recipe.teacher_run = teacher
    return teacher


def load_distillation_teacher(workdir: str | pathlib.Path) -> Teacher:
    """The EMA parameters of the newest checkpoint of a finished teacher run of a family in
    :data:`TEACHER_FAMILIES`; ``ConfigError`` (one line, naming the workdir) for a missing,
    unfinished or damaged run or another family."""
    path = pathlib.Path(workdir)
    name = f"model.teacher_workdir={str(workdir)!r}"
    if not (path / "config.json").exists():
        raise ConfigError(_missing(workdir))
    config = _teacher_config(path)
    dataset = load_train_dataset(config)
    recipe = construct_recipe(config, dataset)
    try:
        state, step = restore_train_state(
            recipe, config, path, init_batch=init_batch_for(recipe, dataset)
        )
    except CheckpointError as err:
        raise ConfigError(f"{name}: {err}") from None
    if step < config.train.num_steps:
        raise ConfigError(
            f"{name} is unfinished (step {step} of {config.train.num_steps}); finish training "
            "the teacher first"
        )
    return Teacher(path, config, recipe, state.ema_params, step, config_hash(path))


def teacher_record(teacher: Teacher) -> dict[str, Any]:
    """What ``<workdir>/teacher.json`` records of a teacher run."""
    return {
        "teacher_workdir": str(teacher.workdir.resolve()),
        "config_hash": teacher.config_hash,
        "step": int(teacher.step),
        "family": teacher.config.family,
    }


def check_teacher_record(recipe: Recipe, workdir: str | pathlib.Path) -> None:
    """Record the teacher of a run that starts (no ``config.json`` yet) in
    ``<workdir>/teacher.json``; at a resume, refuse (``ConfigError``) a teacher whose
    workdir, config hash or checkpoint step differ from the record, or a missing record."""
    if not needs_teacher(recipe):
        return
    if getattr(recipe, "teacher_run", None) is None:
        attach_teacher_params(recipe)
    workdir = pathlib.Path(workdir)
    record_path = workdir / RECORD_NAME
    now = teacher_record(recipe.teacher_run)
    started = (workdir / "config.json").exists()
    if started:
        if not record_path.exists():
            raise ConfigError(
                f"{workdir} holds a started run without a teacher record ({RECORD_NAME}); "
                "use a fresh workdir"
            )
        saved = json.loads(record_path.read_text())
        if saved.get("teacher_workdir") != now["teacher_workdir"]:
            raise ConfigError(
                f"{workdir} was distilled from teacher {saved.get('teacher_workdir')!r}, but "
                f"model.teacher_workdir names {now['teacher_workdir']!r}; use a fresh workdir"
            )
        if (saved.get("config_hash"), saved.get("step")) != (now["config_hash"], now["step"]):
            raise ConfigError(
                f"teacher {now['teacher_workdir']!r} changed since {workdir} started: it had "
                f"config {saved.get('config_hash')} at step {saved.get('step')} "
                f"({record_path}), now config {now['config_hash']} at step {now['step']}; "
                "restore the teacher or use a fresh workdir"
            )
        return
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f".{RECORD_NAME}.tmp"
        tmp.write_text(json.dumps(now, indent=2))
        tmp.replace(record_path)
