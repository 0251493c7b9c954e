"""Several named Flax NNX modules as one pure parameter dict.

Recipes with more than one network (encoder, decoder, discriminator, ...) keep each
module's graph definition here and their parameters as ``params[name]``, so the engine sees
one plain nested dict (checkpointed, sharded and EMA-averaged like any other) and a
recipe's pure functions rebuild a module with ``modules.bind(params, name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from jaxgen.nets import precision


class ModuleSet:
    """``factories[name](rngs=...) -> nnx.Module``; graph definitions are built abstractly."""

    def __init__(self, factories: Mapping[str, Callable[[nnx.Rngs], nnx.Module]]):
        self.factories = dict(factories)
        self.graphdefs = {
            name: nnx.split(nnx.eval_shape(lambda f=f: f(rngs=nnx.Rngs(0))))[0]
            for name, f in self.factories.items()
        }

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Fresh parameters ``{name: pure dict}``; each module gets its own key."""
        keys = jax.random.split(key, len(self.factories))
        return {
            name: nnx.to_pure_dict(nnx.split(f(rngs=nnx.Rngs(k)))[1])
            for (name, f), k in zip(self.factories.items(), keys, strict=True)
        }

    def bind(self, params: Mapping[str, Any], name: str) -> nnx.Module:
        """The module ``name`` with ``params[name]`` (inside ``jit`` this is free), computing
        in the active compute dtype (:func:`jaxgen.nets.precision.merge`)."""
        return precision.merge(self.graphdefs[name], params[name])
