"""The train state: one pytree that holds everything a run needs to continue exactly."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Parameters, optimizer state, EMA parameters, step and PRNG key of a run.

    ``rng`` holds raw key data (``jax.random.key_data``) so that checkpoints store plain
    uint32 arrays; the step's key is ``fold_in(wrap_key_data(rng), step)``, which makes the
    randomness of step ``s`` independent of how the run got there (exact resume).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array

    def step_key(self) -> jax.Array:
        """The PRNG key for this state's step."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
