"""Random, non-identity parameters for the flow networks, drawn with NumPy (no jitted
initializers): zero-initialised outputs become random, so every layer acts."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx


def random_params(factory, seed: int, *, dtype=np.float64, gain: float = 1.0):
    """``(graphdef, params)`` of ``factory(rngs)`` built abstractly (``nnx.eval_shape``) with
    every leaf drawn at random: kernels ``N(0, gain^2 / fan_in)``, the 1x1 convolutions'
    ``lu_p`` a random permutation and ``lu_sign_s`` random signs, the tanh couplings'
    ``scale_factor`` ``1 + N(0, 0.3^2)``, every other leaf ``N(0, 0.3^2)``."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))
    abstract = nnx.to_pure_dict(state)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        shape = leaf.shape
        if name == "lu_p":
            return np.eye(shape[0], dtype=dtype)[rng.permutation(shape[0])]
        if name == "lu_sign_s":
            return rng.choice([-1.0, 1.0], size=shape).astype(dtype)
        if name == "scale_factor":
            return (1.0 + 0.3 * rng.normal(size=shape)).astype(dtype)
        if name == "kernel":
            fan_in = math.prod(shape[:-1])
            return (gain / math.sqrt(fan_in) * rng.normal(size=shape)).astype(dtype)
        return (0.3 * rng.normal(size=shape)).astype(dtype)

    return graphdef, jax.tree_util.tree_map_with_path(draw, abstract)
