"""Pictures every latent-variable model is judged by (Kingma and Welling 2014, figs. 4-5):
reconstructions next to their inputs, latent interpolations, and the learned 2-D manifold.

Each function takes the model as callables, ``encode_fn(x) -> z`` (a point code, e.g. the
posterior mean) and ``decode_fn(z) -> images in [-1, 1]``, and returns a uint8 grid.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from jaxgen.images import make_grid

ArrayFn = Callable[[jax.Array], jax.Array]


def reconstruction_grid(inputs: jax.Array, reconstructions: jax.Array, *, num_cols: int = 8):
    """Rows of inputs, each followed by the row of their reconstructions."""
    n = (len(inputs) // num_cols) * num_cols
    a = np.asarray(inputs[:n]).reshape(-1, num_cols, *inputs.shape[1:])
    b = np.asarray(reconstructions[:n]).reshape(-1, num_cols, *inputs.shape[1:])
    pairs = np.stack([a, b], axis=1).reshape(-1, *inputs.shape[1:])
    return make_grid(pairs, num_cols=num_cols)


def interpolation_grid(
    encode_fn: ArrayFn, decode_fn: ArrayFn, starts: jax.Array, ends: jax.Array, *, steps: int = 10
):
    """One row per pair: decodes of ``(1 - a) z_start + a z_end`` for ``a`` in [0, 1]."""
    z0, z1 = encode_fn(starts), encode_fn(ends)
    alphas = jnp.linspace(0.0, 1.0, steps)
    path = jax.vmap(lambda a: (1.0 - a) * z0 + a * z1, out_axes=1)(alphas)  # (P, steps, ...)
    images = decode_fn(path.reshape(-1, *z0.shape[1:]))
    return make_grid(np.asarray(images), num_cols=steps)


def latent_manifold_grid(decode_fn: ArrayFn, *, size: int = 16, dtype=jnp.float32):
    """Decodes of a 2-D latent grid at the standard normal's quantiles 0.05 .. 0.95
    (Kingma and Welling 2014, fig. 4): the learned manifold of a 2-D-latent model."""
    q = ndtri(jnp.linspace(0.05, 0.95, size, dtype=dtype))
    z1, z2 = jnp.meshgrid(q, q[::-1], indexing="xy")  # columns: z1 rising; rows: z2 falling
    z = jnp.stack([z1, z2], axis=-1).reshape(-1, 2)
    return make_grid(np.asarray(decode_fn(z)), num_cols=size)
