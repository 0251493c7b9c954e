"""Images <-> discrete levels: the one data convention of every image family.

Images are floats in ``[-1, 1]``; an image of ``L`` levels per value holds
``x = 2 k / (L - 1) - 1`` for integer ``k = 0 .. L - 1`` (8-bit data: ``L = 256``; the
built-in 8x8 digits: ``L = 17``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_num_levels, check_range, is_concrete

__all__ = ["images_to_levels", "levels_to_images"]


def images_to_levels(x: jax.Array, *, num_levels: int) -> jax.Array:
    """Integer levels ``k`` (int32) of images ``x = 2 k / (L - 1) - 1`` in ``[-1, 1]``
    (rounded to the nearest level)."""
    num_levels = check_num_levels(num_levels)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"images must be floats in [-1, 1], got dtype {x.dtype}")
    check_range(x, -1.0, 1.0, "images")
    k = jnp.round((x + 1.0) * (0.5 * (num_levels - 1)))
    return jnp.clip(k, 0, num_levels - 1).astype(jnp.int32)


def levels_to_images(levels: jax.Array, *, num_levels: int, dtype=jnp.float32) -> jax.Array:
    """Images ``2 k / (L - 1) - 1`` in ``[-1, 1]`` from integer levels ``k``."""
    num_levels = check_num_levels(num_levels)
    levels = jnp.asarray(levels)
    if is_concrete(levels) and np.size(levels):
        values = np.asarray(levels)
        if np.any(values != np.round(values)):
            raise ValueError(f"levels must be whole numbers 0..{num_levels - 1}")
        check_range(values, 0, num_levels - 1, "levels")
    return levels.astype(dtype) * (2.0 / (num_levels - 1)) - 1.0
