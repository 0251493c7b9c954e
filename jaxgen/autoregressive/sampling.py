"""Ancestral sampling of token sequences, with temperature, top-k and nucleus filtering.

**Filtering** (:func:`filter_logits`), applied to each position's logits ``l`` (..., V) in
this order; a removed token gets logit ``-inf`` (probability 0), and the kept ones are
renormalised by the softmax of the sampler:

1. temperature ``tau > 0``: ``l <- l / tau``, i.e. ``p_tau(i) ∝ p(i)^(1/tau)``. As
   ``tau -> 0`` the distribution tends to the uniform one over the argmax set (greedy
   decoding); ``tau = 1`` leaves it unchanged.
2. top-k (Fan, Lewis, Dauphin 2018): keep the tokens whose logit is ``>=`` the
   ``k``-th largest logit. Ties at the ``k``-th value are all kept, so more than ``k`` tokens
   survive only when several logits equal the ``k``-th largest.
3. top-p / nucleus (Holtzman, Buys, Du, Forbes, Choi 2020, sec. 3.1): with the
   probabilities ``p = softmax(l)`` after steps 1-2 sorted in decreasing order
   ``p_(1) >= p_(2) >= ...``, the nucleus is the smallest prefix whose mass reaches
   ``top_p``: token ``(j)`` is kept iff ``sum_{i < j} p_(i) < top_p``, so the most likely
   token is always kept and ``top_p = 1`` keeps every token of non-zero probability. Ties
   at the boundary are all kept (every token whose probability equals that of the last
   nucleus token), so the result does not depend on how a sort orders equal values. A
   mass that lands on ``top_p`` exactly within rounding may fall on either side.

**Sampling.** Both samplers follow the shift convention of
:mod:`jaxgen.autoregressive.losses`: the input at position 0 is ``bos`` and the input at
position ``t > 0`` is the token drawn at ``t - 1``. They take the size as ``shape = (B,
length)`` and return :class:`jaxgen.core.SamplerOutput` with ``nfe = length`` (one model
step per token, cached or not). **Per-example keys**: ``key`` is one key (example ``b``
uses ``k_b = fold_in(key, b)``, :func:`jaxgen.core.example_keys`) or a ``(B,)`` batch of
per-example keys ``k_b``; the token of example ``b`` at position ``t`` is
``jax.random.categorical(fold_in(k_b, t), filtered_logits[b, t])``, drawn from that
example's key alone. So the ``i``-th sequence of a seed is the same at any batch size or
device count (up to the model computing the same logits per row), the first ``n`` tokens
do not depend on ``length``, and two samplers that compute the same logits draw the same
tokens:

* :func:`sample_sequence` scans ``step_fn(carry, token, position) -> (carry, logits (B, V))``
  over ``t = 0..length-1`` (an RNN's ``step``, a transformer's ``decode_step``): O(1)
  model work per token.
* :func:`sample_sequence_uncached` calls ``logits_fn(inputs (B, length)) -> (B, length, V)``
  on the whole buffer at every step and reads position ``t``: O(length) work per token. The
  positions after ``t`` hold placeholders that a causal model ignores. It serves models
  without a cache (causal convolutions) and is the oracle for the cached sampler.

References:
  Fan, Lewis, Dauphin. Hierarchical Neural Story Generation. ACL 2018.
  Holtzman, Buys, Du, Forbes, Choi. The Curious Case of Neural Text Degeneration. ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.autoregressive.losses import shift_right
from jaxgen.core.sampling import SamplerOutput, as_example_keys
from jaxgen.core.validation import check_sample_shape

__all__ = ["filter_logits", "sample_sequence", "sample_sequence_uncached"]

StepFn = Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]
LogitsFn = Callable[[jax.Array], jax.Array]


def _check_options(temperature, top_k, top_p) -> None:
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy), got {temperature}.")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}.")
    if isinstance(top_p, (int, float)) and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p}.")


def filter_logits(
    logits: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
) -> jax.Array:
    """Tempered logits (..., V) with the tokens outside top-k / the nucleus set to ``-inf``.

    Args:
      logits: ``(..., V)`` floats.
      temperature: ``tau > 0`` (a Python number is checked; an array is not).
      top_k: keep the ``k`` largest (ties at the ``k``-th value kept); a static int
        ``1 <= k``, capped at ``V``; None for no top-k.
      top_p: nucleus mass in ``(0, 1]``; None for no nucleus filtering.

    Returns:
      ``(..., V)`` in the float dtype of ``logits`` (at least float32).
    """
    _check_options(temperature, top_k, top_p)
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError(f"logits must have shape (..., V), got {logits.shape}.")
    dtype = jnp.result_type(logits.dtype, jnp.float32)
    logits = logits.astype(dtype) / jnp.asarray(temperature, dtype)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, int(top_k))[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    if top_p is not None:
        probs = jax.nn.softmax(logits, axis=-1)
        ordered = -jnp.sort(-probs, axis=-1)  # decreasing
        cumulative = jnp.cumsum(ordered, axis=-1)
        before = jnp.concatenate([jnp.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], -1)
        in_nucleus = before < jnp.asarray(top_p, dtype)
        smallest = jnp.min(jnp.where(in_nucleus, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(probs >= smallest, logits, -jnp.inf)
    return logits


def _draw(keys: jax.Array, position: jax.Array, logits: jax.Array, options: dict) -> jax.Array:
    """Tokens (B,) int32 for one position: example ``b`` draws with ``fold_in(keys[b],
    position)`` from its own filtered logits."""
    filtered = filter_logits(logits, **options)

    def one(key, row):
        return jax.random.categorical(jax.random.fold_in(key, position), row)

    return jax.vmap(one)(keys, filtered).astype(jnp.int32)


def _check_run(shape, bos: int) -> tuple[int, int]:
    shape = check_sample_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (B, length) for token sequences, got {shape!r}.")
    if int(bos) != bos or bos < 0:
        raise ValueError(f"bos must be a non-negative integer, got {bos!r}.")
    return shape


def _check_carry(carry: Any, batch: int) -> None:
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(carry) if jnp.ndim(leaf) >= 1}
    if sizes - {batch}:
        raise ValueError(
            f"init_carry's arrays must have the batch size {batch} (shape[0]) as leading "
            f"axis, got leading axes {sorted(sizes)}."
        )


def sample_sequence(
    step_fn: StepFn,
    init_carry: Any,
    key: jax.Array,
    shape: tuple[int, int],
    *,
    bos: int,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
) -> SamplerOutput:
    """Draw ``(B, length)`` int32 tokens with an incremental ``step_fn`` in one ``lax.scan``.

    Args:
      step_fn: ``(carry, token (B,) int32, position () int32) -> (carry, logits (B, V))``,
        the logits for position ``t`` given the input token at ``t`` (``bos`` at ``t = 0``).
      init_carry: the model state of the ``B`` examples before position 0 (RNN zero state,
        empty KV cache); its arrays have ``B`` as leading axis.
      key: one key or ``(B,)`` per-example keys (module docstring).
      shape: ``(B, length)``, the batch and the number of tokens to draw.
      bos: start token fed at position 0.
      temperature, top_k, top_p: see :func:`filter_logits`.

    Returns:
      ``SamplerOutput(tokens (B, length) int32, nfe=length)`` (one ``step_fn`` call per
      token).
    """
    batch, length = _check_run(shape, bos)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    _check_options(**options)
    _check_carry(init_carry, batch)
    keys = as_example_keys(key, batch)

    def body(state, position):
        carry, token = state
        carry, logits = step_fn(carry, token, position)
        token = _draw(keys, position, logits, options)
        return (carry, token), token

    first = jnp.full((batch,), bos, jnp.int32)
    _, tokens = jax.lax.scan(body, (init_carry, first), jnp.arange(length, dtype=jnp.int32))
    return SamplerOutput(tokens.T, length)


def sample_sequence_uncached(
    logits_fn: LogitsFn,
    key: jax.Array,
    shape: tuple[int, int],
    *,
    bos: int,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
) -> SamplerOutput:
    """Draw ``(B, length)`` int32 tokens, re-running a causal ``logits_fn`` on the whole
    prefix at every position (same keys as :func:`sample_sequence`).

    Args:
      logits_fn: ``inputs (B, length) int32 -> logits (B, length, V)``, causal: the logits
        at ``t`` depend on ``inputs[:, :t + 1]`` only.
      key, shape, bos, temperature, top_k, top_p: as in :func:`sample_sequence`.

    Returns:
      ``SamplerOutput(tokens (B, length) int32, nfe=length)`` (one ``logits_fn`` call per
      token).
    """
    batch, length = _check_run(shape, bos)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    _check_options(**options)
    keys = as_example_keys(key, batch)

    def body(tokens, position):
        logits = logits_fn(shift_right(tokens, bos=bos))
        logits = jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)
        token = _draw(keys, position, logits, options)
        return jax.lax.dynamic_update_index_in_dim(tokens, token, position, axis=1), None

    placeholder = jnp.full((batch, length), bos, jnp.int32)  # positions > t: ignored
    tokens, _ = jax.lax.scan(body, placeholder, jnp.arange(length, dtype=jnp.int32))
    return SamplerOutput(tokens, length)
