"""Exact log-likelihood and ancestral sampling for autoregressive image models.

An image model (``PixelCNN``, ``GatedPixelCNN``) maps an image ``x`` (B, H, W, C) of
integer levels ``0..L-1`` to logits (B, H, W, C, L) with ``logits[:, i, j, c]`` a function of
the entries before (i, j, c) in raster order only (van den Oord et al. 2016a, sec. 2.1,
eq. 2). Then, with ``t`` running over the ``D = H W C`` positions in raster order (row by
row, left to right, channels in order within a pixel)::

    log p(x) = sum_t log p(x_t | x_<t) = sum_{i,j,c} log softmax(logits[:, i, j, c])[x_ijc],

computed for every position in one network pass (:func:`image_log_prob`, nats, (B,); it
lives in :mod:`jaxgen.autoregressive.losses` with the training objective
:func:`jaxgen.autoregressive.image_nll`, ``(-log p(x), {bits_per_dim})``, and is re-exported
here). :func:`bits_per_dim` converts it to ``-log p(x) / (D log 2)`` bits per dimension
(:func:`jaxgen.core.bits_per_dim` of the negated log-likelihood), the unit in which every
jaxgen likelihood is compared (on the 8x8 digits ``D = 64``, ``L = 17``;
a uniform model scores ``log2 17 = 4.09`` bits/dim).

Sampling (:func:`sample_image`) is ancestral and therefore sequential: starting from an
all-zero image, for ``t = 0 .. D - 1`` the whole network is run on the current image and
``x_t`` is drawn from ``softmax(logits_t / temperature)`` (after optional top-k / nucleus
filtering), then written in. Entries at or after ``t`` are still zero when ``x_t`` is
drawn; a causal network never looks at them. This costs ``D`` full network passes
(O(HWC) passes; 64 for a digit; ``nfe = D`` in the returned
:class:`jaxgen.core.SamplerOutput`), a ``lax.fori_loop`` whose body is traced once. The
passes recompute the features of every earlier position; caching them (e.g. Ramachandran
et al. 2017, Fast PixelCNN++) is not done here.

Token filtering is :func:`jaxgen.autoregressive.sampling.filter_logits` (temperature, then
top-k, then top-p / nucleus, Holtzman et al. 2020), applied to the logits of the current
position. ``temperature = 0`` (which ``filter_logits`` does not accept) means greedy
decoding, ``x_t = argmax logits_t``: the limit ``T -> 0`` of ``softmax(l / T)`` when the
maximum is unique; ``top_k`` / ``top_p`` are then irrelevant.

**Per-example keys.** ``key`` is one key (image ``b`` uses ``k_b = fold_in(key, b)``,
:func:`jaxgen.core.example_keys`) or a ``(B,)`` batch of per-example keys; the value at
position ``t`` of image ``b`` is drawn with ``fold_in(k_b, t)`` from that image's logits
alone, so the ``i``-th image of a seed does not depend on the batch size.

References:
  van den Oord, Kalchbrenner, Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016a.
  Holtzman, Buys, Du, Forbes, Choi. The Curious Case of Neural Text Degeneration. ICLR 2020.
  Ramachandran et al. Fast Generation for Convolutional Autoregressive Models. ICLR 2017
  workshop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.autoregressive.losses import image_log_prob
from jaxgen.autoregressive.sampling import filter_logits
from jaxgen.core.sampling import SamplerOutput, as_example_keys
from jaxgen.core.validation import check_num_levels, check_sample_shape

__all__ = ["image_log_prob", "sample_image"]


def _check_filters(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not isinstance(temperature, (int, float)) or not temperature >= 0.0:
        raise ValueError(f"temperature must be a Python number >= 0, got {temperature!r}.")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}.")


def sample_image(
    logits_fn: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    shape: tuple[int, int, int, int],
    *,
    num_levels: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> SamplerOutput:
    """Ancestral samples (B, H, W, C) int32 in ``0..num_levels-1``, one position at a time.

    Args:
      logits_fn: integer images (B, H, W, C) -> logits (B, H, W, C, num_levels), causal in
        raster order (close over parameters and labels, e.g.
        ``lambda x: nnx.merge(graphdef, params)(x, labels)``).
      key: one key or ``(B,)`` per-example keys; position ``t`` of image ``b`` uses
        ``fold_in(k_b, t)`` (module docstring).
      shape: ``(B, H, W, C)``.
      num_levels: ``L``, the number of values per entry.
      temperature: ``>= 0``; ``0`` is greedy decoding.
      top_k: keep only the ``k`` most likely values per position (None: all).
      top_p: nucleus sampling threshold in ``(0, 1]`` (None: no nucleus filter).

    Returns:
      ``SamplerOutput(levels (B, H, W, C) int32, nfe=H W C)``: one ``logits_fn`` call per
      position (see the module docstring). Jittable with ``logits_fn``, ``shape`` and the
      options static.
    """
    _check_filters(temperature, top_k, top_p)
    shape = check_sample_shape(shape)
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, H, W, C) positive ints, got {shape!r}.")
    num_levels = check_num_levels(num_levels)
    batch = shape[0]
    num_dims = math.prod(shape[1:])
    keys = as_example_keys(key, batch)

    def draw(t: jax.Array, logits: jax.Array) -> jax.Array:
        def one(k, row):
            return jax.random.categorical(jax.random.fold_in(k, t), row)

        return jax.vmap(one)(keys, logits)

    def body(t: jax.Array, x: jax.Array) -> jax.Array:
        logits = logits_fn(x)
        if logits.shape != (*shape, num_levels):
            raise ValueError(
                f"logits_fn must return logits of shape {(*shape, num_levels)}, got {logits.shape}."
            )
        current = jax.lax.dynamic_index_in_dim(
            logits.reshape(batch, num_dims, num_levels), t, axis=1, keepdims=False
        )
        if temperature == 0:
            value = jnp.argmax(current, axis=-1)
        else:
            current = filter_logits(current, temperature=temperature, top_k=top_k, top_p=top_p)
            value = draw(t, current)
        flat = x.reshape(batch, num_dims)
        flat = jax.lax.dynamic_update_index_in_dim(flat, value.astype(x.dtype), t, axis=1)
        return flat.reshape(shape)

    levels = jax.lax.fori_loop(0, num_dims, body, jnp.zeros(shape, jnp.int32))
    return SamplerOutput(levels, num_dims)
