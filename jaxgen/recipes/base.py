"""The interface between a model family and the training engine.

A recipe owns a family's networks and wires them to its pure losses and samplers. The
engine only ever calls these methods, so every family trains, checkpoints, logs and
samples the same way:

* ``init_params(key)``: parameters as a plain nested dict (pure; the engine jits it with
  output shardings, and plans shapes with ``jax.eval_shape``).
* ``loss(params, batch, key)``: ``batch[self.data_key]`` holds the data; returns the
  per-example loss (B,) and a dict of named per-example terms; the engine's step
  averages and differentiates it.
* ``sample(params, key, num_samples)``: a batch of samples (pure, jittable; ``num_samples``
  is static).
* ``evaluate(params, dataset, key)``: host-level evaluation numbers (bits/dim, scores).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax

from jaxgen.config import ExperimentConfig


class Recipe(abc.ABC):
    """Base class of model-family recipes; see the module docstring."""

    family: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        data_shape: tuple[int, ...],
        num_levels: int | None,
        data_key: str = "image",
    ):
        if not isinstance(config.model, self.config_class):
            raise TypeError(
                f"recipe {self.family!r} needs model config {self.config_class.__name__}, "
                f"got {type(config.model).__name__}"
            )
        self.config = config
        self.data_shape = tuple(data_shape)
        self.num_levels = num_levels
        self.data_key = data_key

    @abc.abstractmethod
    def init_params(self, key: jax.Array) -> Any: ...

    @abc.abstractmethod
    def loss(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    @abc.abstractmethod
    def sample(self, params: Any, key: jax.Array, num_samples: int) -> jax.Array: ...

    def evaluate(self, params: Any, images: Any, key: jax.Array) -> dict[str, float]:
        """Evaluation numbers on held-out ``images``; families override this."""
        return {}
