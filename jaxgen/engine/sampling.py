"""Drawing many samples in compiled chunks, the same way for every recipe.

Example ``i`` of a draw depends only on the key and ``i``: every chunk calls
``recipe.sample(params, key, chunk, first_index=start)`` with the *same* key, and the
recipe gives example ``start + j`` the key ``core.example_keys(key, chunk, start=start)[j]``.
So a draw of 64 samples in chunks of 16 equals one chunk of 64, on one device or eight.

A chunk is a multiple of the number of devices (each device draws a slice); the last chunk
is drawn whole and cut, so the sampler compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.engine import sharding
from jaxgen.engine.recipe import Recipe, sample_array

# ``condition(indices) -> {name: rows}``: the conditioning rows of the examples ``indices``.
ConditionFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


class ChunkedSampler:
    """``sampler(params, key) -> (num_samples, *event)`` NumPy samples, drawn in jitted chunks.

    Args:
      recipe: the recipe whose ``sample`` is called.
      num_samples: how many samples one call returns.
      batch_size: the largest chunk (rounded up to a multiple of the devices).
      mesh: the device mesh (default: all devices).
      condition: ``condition(indices)`` gives the conditioning arrays of those examples
        (recipes with a ``sample_condition_split``); None for unconditional recipes.
      **options: keyword options of ``recipe.sample`` (sampler, num_steps, ...).
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        num_samples: int,
        batch_size: int,
        mesh: jax.sharding.Mesh | None = None,
        condition: ConditionFn | None = None,
        **options: Any,
    ):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(
                f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}"
            )
        self.mesh = mesh or sharding.make_mesh()
        devices = self.mesh.size
        self.num_samples = num_samples
        self.chunk = -(-min(batch_size, num_samples) // devices) * devices
        self.condition = condition
        chunk = self.chunk

        def draw(params, key, first_index, cond):
            kwargs = dict(options)
            if cond is not None:
                kwargs["condition"] = cond
            out = recipe.sample(params, key, chunk, first_index=first_index, **kwargs)
            return sample_array(out)

        self._draw = jax.jit(draw, out_shardings=sharding.output_sharding(chunk, self.mesh))

    def __call__(self, params: Any, key: jax.Array) -> np.ndarray:
        params = _on_mesh(params, self.mesh)
        parts = []
        for start in range(0, self.num_samples, self.chunk):
            cond = None
            if self.condition is not None:
                rows = self.condition(start + np.arange(self.chunk))
                cond = jax.device_put(
                    {k: np.asarray(v) for k, v in rows.items()},
                    sharding.batch_sharding(self.mesh),
                )
            parts.append(np.asarray(self._draw(params, key, jnp.int32(start), cond)))
        return np.concatenate(parts, axis=0)[: self.num_samples]


def _on_mesh(params: Any, mesh: jax.sharding.Mesh) -> Any:
    """``params`` as they are when they already live on ``mesh``'s devices (sharded or not),
    else replicated onto it (e.g. parameters of an 8-device run sampled on one device)."""
    devices = set(mesh.devices.flat)
    leaves = jax.tree.leaves(params)
    if all(getattr(x, "sharding", None) and x.sharding.device_set == devices for x in leaves):
        return params
    return jax.device_put(params, sharding.replicated(mesh))
