"""Training from a config: data and recipe from the family table, then the engine's loop."""

from __future__ import annotations

import logging
import pathlib

import jax

from jaxgen.config import ExperimentConfig
from jaxgen.data.registry import Dataset
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.trainer import TrainResult, train_loop
from jaxgen.run.data import init_batch_for, load_train_dataset, sample_condition_for, transform_for
from jaxgen.run.distill_teacher import check_teacher_record, construct_recipe
from jaxgen.run.first_stage import (
    attach_first_stage_recipe,
    first_stage_finished,
    first_stage_training,
    prepare_first_stage,
)
from jaxgen.run.teacher import training_dataset

log = logging.getLogger("jaxgen")


def build_recipe(config: ExperimentConfig, dataset: Dataset) -> Recipe:
    """The recipe of ``config.family``, told the data's shape, levels, key and classes; a
    distillation recipe gets its teacher run attached (:mod:`jaxgen.run.distill_teacher`), a
    second stage its first stage's recipe (:mod:`jaxgen.run.first_stage`)."""
    recipe = construct_recipe(config, dataset)
    attach_first_stage_recipe(recipe)
    return recipe


def train(
    config: ExperimentConfig,
    workdir: str | pathlib.Path,
    *,
    mesh: jax.sharding.Mesh | None = None,
    stop_at_step: int | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train (or resume) ``config`` in ``workdir`` (see :mod:`jaxgen.engine.trainer`).

    ``stop_at_step`` behaves like a SIGTERM arriving after that step (a checkpoint is
    saved and the function returns); tests use it to interrupt and resume runs.
    ``restart=True`` lets a workdir whose every checkpoint was found damaged (and moved
    aside as ``*.corrupt``) start over from step 0; without it that raises
    ``CheckpointError`` naming them. A flow-matching config may train on other data than
    its data set: a teacher's pairs or a paired source (:mod:`jaxgen.run.teacher`); a
    distillation run's teacher is recorded in the workdir when it starts and must be
    unchanged when it resumes (:mod:`jaxgen.run.distill_teacher`). A two-stage config whose
    ``model.first_stage.config`` names the first stage's experiment trains (or resumes) that
    run first; an interrupted first stage returns its result without starting the second.
    The first stage is loaded, recorded and checked as :mod:`jaxgen.run.first_stage` says.
    """
    first = first_stage_training(config)
    if first is not None and not first_stage_finished(*first):
        log.info("training the first stage %s in %s", first[0].name, first[1])
        result = train(first[0], first[1], mesh=mesh, restart=restart)
        if result.stopped_early:
            return result
    dataset = load_train_dataset(config)
    recipe = build_recipe(config, dataset)
    prepare_first_stage(recipe, workdir, dataset)  # a second stage's first stage: loaded, checked
    check_teacher_record(recipe, workdir)  # a distillation run's teacher: recorded / unchanged
    dataset = training_dataset(config, workdir, recipe, dataset)  # teacher / paired data
    return train_loop(
        config,
        workdir,
        recipe=recipe,
        dataset=dataset,
        mesh=mesh,
        stop_at_step=stop_at_step,
        restart=restart,
        init_batch=init_batch_for(recipe, dataset),
        sample_condition=sample_condition_for(recipe, config)
        if config.train.sample_every
        else None,
        transform=transform_for(config),
    )
