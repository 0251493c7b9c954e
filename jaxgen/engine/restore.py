"""Restore a run's train state from its checkpoints (newest good one, or a given step)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import jax

from jaxgen.config import ExperimentConfig
from jaxgen.engine import sharding
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.state import TrainState
from jaxgen.engine.trainer import abstract_train_state


def restore_train_state(
    recipe: Recipe,
    config: ExperimentConfig,
    workdir: str | pathlib.Path,
    *,
    step: int | None = None,
    init_batch: Mapping[str, Any] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[TrainState, int]:
    """The train state of the newest restorable checkpoint in ``<workdir>/checkpoints`` (or
    of ``step``) and its step; ``init_batch`` (shapes only) plans the state as in training.

    Raises:
      CheckpointError: no checkpoint, or none for ``step``.
    """
    mesh = mesh or sharding.make_mesh()
    _, _, abstract, _ = abstract_train_state(recipe, config, mesh, init_batch=init_batch)
    checkpointer = Checkpointer(pathlib.Path(workdir) / "checkpoints", use_async=False)
    try:
        if step is None:
            restored = checkpointer.restore_latest(abstract)
            if restored is None:
                raise CheckpointError(f"no checkpoint in {checkpointer.directory}; train first")
            state, step = restored
        else:
            if step not in checkpointer.all_steps():
                raise CheckpointError(
                    f"no checkpoint for step {step} in {checkpointer.directory} "
                    f"(available: {checkpointer.all_steps()})"
                )
            state = checkpointer.restore(step, abstract)
    finally:
        checkpointer.close()
    return state, int(step)
