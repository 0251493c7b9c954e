"""One causal transformer over ``[condition tokens; image codes]`` (DALL-E's prior).

Ramesh et al. (2021, sec. 2.2) model text and image tokens as one sequence with a single
decoder-only transformer. Here the sequence of example ``b`` is ``x = [c; z]``: ``P``
condition tokens ``c`` (a caption, :mod:`jaxgen.data.captions`) then ``N`` image codes
``z`` (a VQ-VAE's), ``T = P + N``. It is run with teacher forcing on ``shift_right(x,
bos=bos)`` (the convention of :mod:`jaxgen.autoregressive.losses`), so ``logits[:, t]``
sees ``x_{<t}`` only; the causal mask makes the condition positions blind to the codes and
each code blind to the later ones.

**Loss** (:func:`prefix_sequence_nll`). Only the codes are modelled; the condition is an
input. With ``[lo, hi)`` the codes' id range in the model's output vocabulary::

    nll[b] = - sum_{t >= P} log softmax(logits[b, t, lo:hi])[x[b, t] - lo],

the negative log-likelihood ``-log p(z | c)`` of the codes under the softmax restricted to
their own vocabulary (DALL-E trains the text part too, with a small weight; modelling only
the image is its ``1/8 : 7/8`` weighting taken to ``0 : 1``).

**Sampling** (:func:`sample_with_prefix`; the size ``shape = (B, N)`` right after ``key``,
the library's sampler convention). One ``lax.scan`` over the ``P + N`` positions
with a cached ``step_fn`` (the contract of :func:`jaxgen.autoregressive.sample_sequence`):
at ``t < P`` the drawn token is replaced by the prefix (forced, but fed through the cache),
at ``t >= P`` it is drawn from ``filter_logits`` of the logits restricted to ``[lo, hi)``.
Code ``j`` (0-based after the prefix) of example ``b`` uses ``fold_in(k_b, j)``, with
``k_b = fold_in(key, b)`` (:func:`jaxgen.core.example_keys`), so the draw depends on
neither the prefix length nor the batch. :func:`sample_with_prefix_uncached` makes the same
draws re-running the full model on the whole buffer (the oracle of the cached sampler).

**Classifier-free guidance on the logits** (:func:`logit_guidance`,
:func:`guided_step_fn`), with the convention of :mod:`jaxgen.guidance.classifier_free`:
the guidance *scale* ``s = 1 + w`` (Ho and Salimans 2022, eq. 6, weight ``w``)::

    guided = u + s (c - u) = c + (s - 1)(c - u),

``c`` the logits given the condition, ``u`` those given the null condition (the all-pad
caption, on which the prior is trained by condition dropout). ``s = 1`` (``w = 0``) is the
conditional model, exactly; ``s = 0`` the unconditional one. Guidance on the logits is the
guided distribution ``p(z_t | z_<t) ∝ p(z_t | z_<t, c)^s p(z_t | z_<t)^(1 - s)`` of each
token (Gafni et al. 2022 use it for a text-to-image transformer).

**nfe.** As everywhere in jaxgen, ``nfe`` counts network evaluations made by the sampler:
one call of ``step_fn`` (one position of the whole batch through the cache) is one; a
guided ``step_fn`` (two branches, conditional and unconditional) also counts as one, as a
guided model does for the diffusion samplers (:mod:`jaxgen.guidance`). So the cached
sampler reports ``nfe = P + N`` (the ``P`` prefix positions are fed through the network
too) and the uncached one ``nfe = N`` (one full-sequence pass per drawn code).

References:
  Ramesh, Pavlov, Goh, Gray, Voss, Radford, Chen, Sutskever. Zero-Shot Text-to-Image
  Generation. ICML 2021.
  Ho, Salimans. Classifier-Free Diffusion Guidance. arXiv 2207.12598, 2022.
  Gafni, Polyak, Ashual, Sheynin, Parikh, Taigman. Make-A-Scene: Scene-Based Text-to-Image
  Generation with Human Priors. ECCV 2022.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.autoregressive.losses import check_tokens, shift_right
from jaxgen.autoregressive.sampling import (
    LogitsFn,
    StepFn,
    _check_carry,
    _check_options,
    filter_logits,
)
from jaxgen.core.sampling import SamplerOutput, as_example_keys
from jaxgen.core.validation import check_sample_shape, is_concrete

__all__ = [
    "guided_step_fn",
    "logit_guidance",
    "prefix_sequence_nll",
    "sample_with_prefix",
    "sample_with_prefix_uncached",
]


def _check_range(vocab_range: Any, vocab: int | None, name: str = "vocab_range") -> tuple[int, int]:
    """``(lo, hi)`` with ``0 <= lo < hi`` (``hi <= vocab`` when known), else ValueError."""
    try:
        lo, hi = vocab_range
        ok = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi)
        ) and (0 <= lo < hi)
    except (TypeError, ValueError):
        ok = False
    if not ok or (vocab is not None and hi > vocab):
        limit = "" if vocab is None else f" <= V = {vocab}"
        raise ValueError(
            f"{name} must be integers (lo, hi) with 0 <= lo < hi{limit}, got {vocab_range!r}"
        )
    return int(lo), int(hi)


def _check_in_range(tokens: jax.Array, lo: int, hi: int, name: str) -> None:
    if is_concrete(tokens) and tokens.size:
        values = np.asarray(tokens)
        if values.min() < lo or values.max() >= hi:
            raise ValueError(
                f"{name} must lie in the vocabulary range [{lo}, {hi}), got values in "
                f"{values.min()}..{values.max()}"
            )


def prefix_sequence_nll(
    logits: jax.Array, tokens: jax.Array, *, target_start: int, vocab_range: tuple[int, int]
) -> jax.Array:
    """``-log p(x_{>=P} | x_{<P})`` per example, nats, with targets in their own id range.

    ``nll[b] = -sum_{t >= P} log softmax(logits[b, t, lo:hi])[tokens[b, t] - lo]`` with
    ``P = target_start`` (module docstring). The logits at ``t < P`` and those outside
    ``[lo, hi)`` do not enter (their gradient is exactly 0).

    Args:
      logits: ``(B, T, V)`` from teacher forcing on ``shift_right(tokens, bos=...)``.
      tokens: ``(B, T)`` integers; ``tokens[:, P:]`` must lie in ``[lo, hi)`` (checked when
        concrete; the condition tokens are inputs only and not checked).
      target_start: ``P``, an integer in ``0..T-1``.
      vocab_range: ``(lo, hi)``, ``0 <= lo < hi <= V``.

    Returns:
      ``(B,)`` in the float dtype of ``logits`` (at least float32).
    """
    logits = jnp.asarray(logits)
    tokens = check_tokens(tokens)
    if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(
            f"logits must have shape (B, T, V) = {tokens.shape} + (V,), got {logits.shape}"
        )
    length = tokens.shape[1]
    if (
        isinstance(target_start, bool)
        or not isinstance(target_start, (int, np.integer))
        or not 0 <= target_start < length
    ):
        raise ValueError(
            f"target_start must be an integer in 0..{length - 1}, got {target_start!r}"
        )
    lo, hi = _check_range(vocab_range, logits.shape[-1])
    targets = tokens[:, target_start:]
    _check_in_range(targets, lo, hi, "the target tokens (tokens[:, target_start:])")
    dtype = jnp.result_type(logits.dtype, jnp.float32)
    log_probs = jax.nn.log_softmax(logits[:, target_start:, lo:hi].astype(dtype), axis=-1)
    index = jnp.clip(targets.astype(jnp.int32) - lo, 0, hi - lo - 1)[..., None]
    picked = jnp.take_along_axis(log_probs, index, axis=-1)[..., 0]
    return -jnp.sum(picked, axis=1)


def _is_one(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and value == 1


def logit_guidance(
    cond_logits: jax.Array, uncond_logits: jax.Array, guidance_scale: Any
) -> jax.Array:
    """Classifier-free guidance on logits: ``c + (s - 1)(c - u) = u + s (c - u)``.

    ``s = guidance_scale = 1 + w`` as in :func:`jaxgen.guidance.classifier_free_guidance`
    (Ho and Salimans 2022, eq. 6): ``s = 1`` returns ``cond_logits`` itself (bit for bit)
    when ``s`` is a Python/NumPy number; a traced ``s = 1`` gives ``c + 0 (c - u) = c``
    for finite logits. ``s`` may be a scalar or per-example ``(B,)`` (broadcast over the
    trailing axes).

    Args:
      cond_logits: ``(B, ..., V)`` logits given the condition.
      uncond_logits: same shape, given the null condition.
      guidance_scale: ``s`` (finite; may be traced).

    Returns:
      The guided logits, shape and dtype of ``cond_logits``.
    """
    cond = jnp.asarray(cond_logits)
    uncond = jnp.asarray(uncond_logits)
    if cond.shape != uncond.shape:
        raise ValueError(
            f"cond_logits and uncond_logits must have the same shape, got {cond.shape} and "
            f"{uncond.shape}"
        )
    if is_concrete(guidance_scale) and not np.all(np.isfinite(np.asarray(guidance_scale))):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale!r}")
    if _is_one(guidance_scale):
        return cond_logits
    weight = jnp.asarray(guidance_scale, cond.dtype) - 1
    if weight.ndim:
        if weight.ndim != 1 or weight.shape[0] != cond.shape[0]:
            raise ValueError(
                f"guidance_scale must be a scalar or (B,) = ({cond.shape[0]},), got shape "
                f"{weight.shape}"
            )
        weight = weight.reshape(weight.shape + (1,) * (cond.ndim - 1))
    return (cond + weight * (cond - uncond)).astype(cond.dtype)


def guided_step_fn(step_fn: StepFn, null_prefix: jax.Array, *, guidance_scale: Any) -> StepFn:
    """A step function over ``carry = (carry_cond, carry_uncond)`` whose logits are
    :func:`logit_guidance` of a conditional and an unconditional branch of ``step_fn``.

    The conditional branch is fed the token given; the unconditional branch is fed
    ``null_prefix[:, t - 1]`` at input positions ``1 <= t <= P`` (``P =
    null_prefix.shape[1]``; the inputs that carry the condition under the shift) and the
    given token elsewhere (``bos`` at 0, the codes after). With ``s`` a Python ``1`` the
    unconditional branch is not run (its carry is passed through) and the logits are the
    conditional branch's exactly. Counted as one evaluation by the samplers (module
    docstring).

    Args:
      step_fn: ``(carry, token (B,), position ()) -> (carry, logits (B, V))``.
      null_prefix: ``(B, P)`` or ``(P,)`` integer null condition (e.g. all pad ids).
      guidance_scale: ``s = 1 + w`` (scalar or ``(B,)``; may be traced).

    Returns:
      ``guided(carry, token, position) -> (carry, logits)``; initialise its carry with
      ``(init_cond, init_uncond)`` (e.g. two empty caches).
    """
    null_prefix = jnp.asarray(null_prefix)
    if null_prefix.ndim == 1:
        null_prefix = null_prefix[None]
    null_prefix = check_tokens(null_prefix, name="null_prefix")
    if null_prefix.shape[1] < 1:
        raise ValueError(f"null_prefix must hold P >= 1 tokens, got shape {null_prefix.shape}")
    if is_concrete(guidance_scale) and not np.all(np.isfinite(np.asarray(guidance_scale))):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale!r}")
    num_prefix = null_prefix.shape[1]
    unguided = _is_one(guidance_scale)

    def guided(carry, token, position):
        carry_cond, carry_uncond = carry
        carry_cond, cond = step_fn(carry_cond, token, position)
        if unguided:
            return (carry_cond, carry_uncond), cond
        index = jnp.clip(position - 1, 0, num_prefix - 1)
        null = jax.lax.dynamic_index_in_dim(null_prefix, index, axis=1, keepdims=False)
        null = jnp.broadcast_to(null, token.shape).astype(token.dtype)
        in_prefix = (position >= 1) & (position <= num_prefix)
        carry_uncond, uncond = step_fn(carry_uncond, jnp.where(in_prefix, null, token), position)
        return (carry_cond, carry_uncond), logit_guidance(cond, uncond, guidance_scale)

    return guided


def _restrict(logits: jax.Array, vocab_range: tuple[int, int] | None) -> jax.Array:
    """Logits with the ids outside ``[lo, hi)`` set to ``-inf``."""
    if vocab_range is None:
        return logits
    lo, hi = _check_range(vocab_range, logits.shape[-1])
    ids = jnp.arange(logits.shape[-1])
    return jnp.where((ids >= lo) & (ids < hi), logits, -jnp.inf)


def _draw(keys, index, logits, vocab_range, options) -> jax.Array:
    """Tokens (B,): example ``b`` draws with ``fold_in(keys[b], index)``."""
    filtered = filter_logits(_restrict(logits, vocab_range), **options)

    def one(key, row):
        return jax.random.categorical(jax.random.fold_in(key, index), row)

    return jax.vmap(one)(keys, filtered).astype(jnp.int32)


def _check_prefix(prefix: jax.Array, shape: Any, bos: int, vocab_range) -> tuple[jax.Array, int]:
    """The checked ``prefix (B, P)`` and ``N`` from ``shape = (B, N)``, else ValueError."""
    prefix = check_tokens(prefix, name="prefix")
    shape = check_sample_shape(shape)
    if len(shape) != 2:
        raise ValueError(
            f"shape must be (B, N): the batch and the number of tokens to draw, got {shape!r}"
        )
    if isinstance(bos, bool) or not isinstance(bos, (int, np.integer)) or bos < 0:
        raise ValueError(f"bos must be a non-negative integer, got {bos!r}")
    if vocab_range is not None:
        _check_range(vocab_range, None)
    if prefix.shape[0] != shape[0]:
        raise ValueError(
            f"shape[0] (B = {shape[0]}, shape {shape!r}) must equal the prefix's batch "
            f"prefix.shape[0] = {prefix.shape[0]} (prefix shape {prefix.shape})"
        )
    return prefix, shape[1]


def sample_with_prefix(
    step_fn: StepFn,
    init_carry: Any,
    key: jax.Array,
    shape: tuple[int, int],
    *,
    prefix: jax.Array,
    bos: int,
    vocab_range: tuple[int, int] | None = None,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
) -> SamplerOutput:
    """Draw ``N`` tokens (``shape = (B, N)``) after a forced prefix, in one ``lax.scan`` over
    ``P + N`` positions of a cached ``step_fn``.

    Inputs: ``bos`` at ``t = 0``, then ``prefix[:, t - 1]`` for ``1 <= t <= P``, then the
    drawn tokens. The logits at ``t >= P`` give token ``j = t - P``:
    ``categorical(fold_in(k_b, j), filter_logits(restrict(logits[b], [lo, hi))))``
    (module docstring). The logits at ``t < P`` are computed and ignored.

    Args:
      step_fn: ``(carry, token (B,) int32, position () int32) -> (carry, logits (B, V))``,
        as for :func:`jaxgen.autoregressive.sample_sequence` (a transformer's
        ``decode_step``, or :func:`guided_step_fn`); its cache must hold ``P + N``
        positions.
      init_carry: the state of the ``B`` examples before position 0 (empty cache).
      key: one key or ``(B,)`` per-example keys.
      shape: ``(B, N)``: the batch (``B = prefix.shape[0]``) and the number ``N >= 1`` of
        tokens to draw.
      prefix: ``(B, P)`` integer condition tokens (``P >= 0``).
      bos: the start token fed at position 0.
      vocab_range: ``(lo, hi)``: only ids in ``[lo, hi)`` can be drawn; None for all.
      temperature, top_k, top_p: see :func:`jaxgen.autoregressive.filter_logits` (applied
        after the restriction, so top-k / top-p act within ``[lo, hi)``).

    Returns:
      ``SamplerOutput(tokens (B, N) int32, nfe=P + N)`` (one ``step_fn`` call per position).
    """
    prefix, length = _check_prefix(prefix, shape, bos, vocab_range)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    _check_options(**options)
    batch, num_prefix = prefix.shape
    _check_carry(init_carry, batch)
    keys = as_example_keys(key, batch)
    prefix = prefix.astype(jnp.int32)
    padded = jnp.pad(prefix, ((0, 0), (0, 1)))  # a column to index at t >= P (unused)

    def body(state, position):
        carry, token = state
        carry, logits = step_fn(carry, token, position)
        index = jnp.maximum(position - num_prefix, 0)  # the code's index j (t < P: unused)
        drawn = _draw(keys, index, logits, vocab_range, options)
        forced = jax.lax.dynamic_index_in_dim(
            padded, jnp.minimum(position, num_prefix), axis=1, keepdims=False
        )
        token = jnp.where(position < num_prefix, forced, drawn)
        return (carry, token), token

    first = jnp.full((batch,), bos, jnp.int32)
    steps = jnp.arange(num_prefix + length, dtype=jnp.int32)
    _, tokens = jax.lax.scan(body, (init_carry, first), steps)
    return SamplerOutput(tokens.T[:, num_prefix:], num_prefix + length)


def sample_with_prefix_uncached(
    logits_fn: LogitsFn,
    key: jax.Array,
    shape: tuple[int, int],
    *,
    prefix: jax.Array,
    bos: int,
    vocab_range: tuple[int, int] | None = None,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
) -> SamplerOutput:
    """The draws of :func:`sample_with_prefix`, re-running a causal ``logits_fn`` on the
    whole ``(B, P + N)`` buffer for every drawn token (the oracle for the cache).

    Args:
      logits_fn: ``inputs (B, P + N) int32 -> logits (B, P + N, V)``, causal.
      key, shape, prefix, bos, vocab_range, temperature, top_k, top_p: as in
        :func:`sample_with_prefix`.

    Returns:
      ``SamplerOutput(tokens (B, N) int32, nfe=N)`` (one ``logits_fn`` call per token).
    """
    prefix, length = _check_prefix(prefix, shape, bos, vocab_range)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    _check_options(**options)
    batch, num_prefix = prefix.shape
    keys = as_example_keys(key, batch)
    placeholder = jnp.full((batch, length), bos, jnp.int32)  # later positions: ignored
    buffer = jnp.concatenate([prefix.astype(jnp.int32), placeholder], axis=1)

    def body(buffer, index):
        position = num_prefix + index
        logits = logits_fn(shift_right(buffer, bos=bos))
        logits = jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)
        token = _draw(keys, index, logits, vocab_range, options)
        return jax.lax.dynamic_update_index_in_dim(buffer, token, position, axis=1), None

    buffer, _ = jax.lax.scan(body, buffer, jnp.arange(length, dtype=jnp.int32))
    return SamplerOutput(buffer[:, num_prefix:], length)
