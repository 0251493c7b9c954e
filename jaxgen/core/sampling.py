"""What every sampler of every family returns, and how every sampler draws its randomness.

**Output.** A sampler returns :class:`SamplerOutput`: the samples ``(B, *event)`` and
``nfe``, the number of network evaluations it made (a diffusion step, a flow's inverse
pass, one autoregressive token, a decoder or generator pass). ``nfe`` is a Python ``int``
known at trace time for fixed-work samplers and stays one under ``jax.jit``/``jax.vmap``
(static auxiliary data of the pytree); adaptive solvers, whose work depends on the data,
return it as an integer array, and then it is a leaf like ``samples``.

**Keys: samples depend only on the seed and the example's index.** Example ``i`` of a
draw with key ``k`` uses its own key ``fold_in(k, i)`` (:func:`example_keys`), and every
random number of that example (its initial noise, the noise of each step, its latent, its
tokens) comes from that key alone. So the same seed gives the same ``i``-th sample whether
it is drawn in a batch of 16 or 64, in chunks, or on 1 or 8 devices. A sampler takes
``key`` as either one key (then example ``i`` of its batch uses ``fold_in(key, i)``) or a
``(B,)`` array of per-example keys (used as they are, e.g. for ``i = start .. start+B-1``
of a larger draw). Each example's key is split the same way by every sampler
(:func:`initial_and_step_keys`), so samplers given the same key start from the same noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.validation import check_positive_int, check_sample_shape, is_concrete

__all__ = [
    "SamplerOutput",
    "as_example_keys",
    "cyclic_labels",
    "example_keys",
    "initial_and_step_keys",
    "normal",
    "step_keys",
    "uniform",
]


class SamplerOutput(NamedTuple):
    """Samples ``(B, *event)`` and the number of network evaluations (a static int, or an
    int array for adaptive solvers)."""

    samples: jax.Array
    nfe: int | jax.Array


def _flatten(out: SamplerOutput):
    if isinstance(out.nfe, (int, np.integer)) and not isinstance(out.nfe, bool):
        return (out.samples,), int(out.nfe)
    return (out.samples, out.nfe), None


def _unflatten(nfe, children) -> SamplerOutput:
    if nfe is None:
        return SamplerOutput(children[0], children[1])
    return SamplerOutput(children[0], nfe)


jax.tree_util.register_pytree_node(SamplerOutput, _flatten, _unflatten)


def _is_key_batch(key: jax.Array) -> bool:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2  # raw uint32 keys: (B, 2)


def example_keys(key: jax.Array, num_examples: int, *, start: int | jax.Array = 0) -> jax.Array:
    """Per-example keys ``fold_in(key, i)`` for ``i = start .. start + num_examples - 1``.

    ``start`` may be traced (a chunk's offset inside ``jit``); ``num_examples`` is static.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    if _is_key_batch(key):
        raise ValueError(f"example_keys needs one key, got a batch of keys of shape {key.shape}")
    if is_concrete(start):
        value = np.asarray(start)
        if (
            value.ndim != 0
            or not np.issubdtype(value.dtype, np.integer)
            or not 0 <= int(value) <= 2**32 - num_examples
        ):
            raise ValueError(
                f"start must be an integer in [0, 2**32 - num_examples], got {start!r}"
            )
    index = jnp.arange(num_examples, dtype=jnp.uint32) + jnp.asarray(start, jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


def as_example_keys(key: jax.Array, batch_size: int) -> jax.Array:
    """``(B,)`` per-example keys from one key (:func:`example_keys`) or from a batch of keys,
    whose length must be ``batch_size``."""
    if _is_key_batch(key):
        if key.shape[0] != batch_size:
            raise ValueError(
                f"got {key.shape[0]} per-example keys for a batch of {batch_size} samples"
            )
        return key
    return example_keys(key, batch_size)


def cyclic_labels(num_examples: int, num_classes: int, *, start: int | jax.Array = 0) -> jax.Array:
    """Class labels ``(start + i) mod num_classes`` of a class-conditional draw: like its
    noise, example ``i``'s class depends only on its index (a grid of ``num_classes``
    columns shows one class per column)."""
    num_examples = check_positive_int(num_examples, "num_examples")
    num_classes = check_positive_int(num_classes, "num_classes")
    return (jnp.arange(num_examples) + start) % num_classes


def normal(keys: jax.Array, event_shape: Sequence[int], dtype=None) -> jax.Array:
    """``(B, *event)`` standard normal draws, example ``b`` from ``keys[b]`` alone."""
    dtype = dtype or jnp.result_type(float)
    return jax.vmap(lambda k: jax.random.normal(k, tuple(event_shape), dtype))(keys)


def uniform(keys: jax.Array, event_shape: Sequence[int], dtype=None) -> jax.Array:
    """``(B, *event)`` draws of ``U[0, 1)``, example ``b`` from ``keys[b]`` alone."""
    dtype = dtype or jnp.result_type(float)
    return jax.vmap(lambda k: jax.random.uniform(k, tuple(event_shape), dtype))(keys)


def step_keys(keys: jax.Array, num_steps: int) -> jax.Array:
    """``(num_steps, B)`` keys: row ``n`` holds every example's key of step ``n`` (split from
    that example's key alone), ready to be scanned over."""
    num_steps = check_positive_int(num_steps, "num_steps")
    return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, num_steps))(keys), 0, 1)


def initial_and_step_keys(
    key: jax.Array, shape: Sequence[int], num_steps: int, dtype=None
) -> tuple[jax.Array, jax.Array]:
    """``x_T ~ N(0, I)`` of ``shape = (B, *event)`` and ``(num_steps, B)`` step keys.

    Every iterative sampler splits each example's key ``k_b`` into ``(k_init, k_steps) =
    split(k_b)`` this way; ``x_T[b] = normal(k_init)`` and step ``n``'s noise comes from
    ``split(k_steps, num_steps)[n]``. Sharing the split makes samplers comparable path by
    path (DDIM with ``eta = 1`` on all ``T`` steps draws the noise of ancestral sampling).
    """
    shape = check_sample_shape(shape)
    keys = as_example_keys(key, shape[0])
    pairs = jax.vmap(jax.random.split)(keys)  # (B, 2)
    x_init = normal(pairs[:, 0], shape[1:], dtype)
    return x_init, step_keys(pairs[:, 1], num_steps)
