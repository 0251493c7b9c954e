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

    Read-only: a damaged step is skipped with a warning (or, for ``step``, reported), never
    renamed, and nothing is written in ``checkpoints/``.

    Raises:
      CheckpointError: no checkpoint, none for ``step``, or ``step`` is damaged.
    """
    mesh = mesh or sharding.mesh_for(config)
    _, _, abstract, _ = abstract_train_state(recipe, config, mesh, init_batch=init_batch)
    checkpointer = Checkpointer(
        pathlib.Path(workdir) / "checkpoints", use_async=False, read_only=True
    )
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
            try:
                state = checkpointer.restore(step, abstract)
            except Exception as err:  # noqa: BLE001 - any failure means "damaged"
                first_line = (str(err).splitlines() or [""])[0][:200]
                raise CheckpointError(
                    f"checkpoint step {step} in {checkpointer.directory} is damaged "
                    f"({type(err).__name__}: {first_line}); "
                    f"available steps: {checkpointer.all_steps()}"
                ) from None
    finally:
        checkpointer.close()
    return state, int(step)
