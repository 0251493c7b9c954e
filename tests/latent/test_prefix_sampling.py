"""A DALL-E-style prior: one causal transformer over ``[condition; codes]``
(``jaxgen.autoregressive.prefix``).

* ``prefix_sequence_nll`` equals a NumPy hand computation (log-softmax over the codes'
  sub-range, summed over ``t >= P``); its gradient with respect to the logits is exactly 0
  at condition positions and outside the sub-range. Negative control: the full-vocabulary
  cross-entropy differs.
* Gradient test on the real ``CausalTransformer`` over ``[condition tokens; codes]``:
  ``d logits[i] / d embedding[j]`` is exactly 0 for every ``j > i`` (no condition token
  sees a code, no code a later code) and non-zero for every ``j <= i``. Negative control:
  the transformer without its causal mask leaks.
* ``sample_with_prefix`` (cached, ``decode_step``) draws exactly the tokens of
  ``sample_with_prefix_uncached`` (full forward passes), plain and with temperature /
  top-k / top-p, with ``nfe = P + N`` and ``N``; only ids in ``vocab_range`` are drawn
  (negative control: without the range others are); example ``i`` alone equals row ``i``
  of a batch; ``shape = (B, N)`` must match the prefix's batch (ValueError naming
  both). A deterministic "running sum" model shows that every forced prefix token
  conditions the draw (hand oracle; another prefix draws otherwise).
* Logit CFG at scale ``s = 1`` (``w = 0``): the guided step's logits and the guided draws
  are the conditional model's, bit for bit (Python and traced ``s``). At ``s = 3`` the
  guided step's logits, teacher-forced through the two caches, equal ``c + (s - 1)(c - u)``
  from two full-sequence passes on ``[prefix; codes]`` and ``[null; codes]``. Negative
  control: the null branch fed the condition (``u = c``) is rejected.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.autoregressive import sample_sequence, shift_right, token_cross_entropy
from jaxgen.autoregressive.prefix import (
    guided_step_fn,
    logit_guidance,
    prefix_sequence_nll,
    sample_with_prefix,
    sample_with_prefix_uncached,
)
from jaxgen.core import example_keys
from jaxgen.nets import transformer
from jaxgen.nets.transformer import CausalTransformer

TEXT_VOCAB = 4  # condition ids 0..3 (0 = pad: the null caption)
CODES = (TEXT_VOCAB, TEXT_VOCAB + 5)  # code ids 4..8
VOCAB = CODES[1]
BOS = VOCAB
P, N = 3, 5
T = P + N


def _build(seed: int = 0, std: float = 0.6):
    """``(graphdef, params)`` of a tiny transformer, NumPy weights (no compiled init)."""
    ctor = functools.partial(CausalTransformer, VOCAB, max_len=T, dim=16, num_heads=2, num_layers=2)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: ctor(rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "scale":
            return (1.0 + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
        return (std * rng.normal(size=leaf.shape)).astype(np.float32)

    return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(abstract))


@functools.cache
def _net():
    return _build()


@pytest.fixture(scope="module")
def net():
    return _net()


def _prefixes(batch: int, seed: int = 3) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(1, TEXT_VOCAB, (batch, P)), jnp.int32)


# ---------------------------------------------------------------------------- the loss


def test_prefix_nll_equals_hand_computation_and_ignores_the_condition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, T, VOCAB)).astype(np.float32)
    tokens = np.concatenate(
        [rng.integers(0, TEXT_VOCAB, (2, P)), rng.integers(*CODES, (2, N))], axis=1
    )
    nll = np.asarray(prefix_sequence_nll(logits, tokens, target_start=P, vocab_range=CODES))
    lo, hi = CODES
    hand = np.zeros(2)
    for b in range(2):
        for t in range(P, T):
            sub = logits[b, t, lo:hi].astype(np.float64)
            hand[b] -= sub[tokens[b, t] - lo] - np.log(np.exp(sub).sum())
    np.testing.assert_allclose(nll, hand, rtol=1e-5)
    grad = np.asarray(
        jax.grad(lambda z: prefix_sequence_nll(z, tokens, target_start=P, vocab_range=CODES).sum())(
            jnp.asarray(logits)
        )
    )
    assert np.all(grad[:, :P] == 0.0)  # condition positions: inputs only
    assert np.all(grad[:, :, :lo] == 0.0) and np.all(grad[:, :, hi:] == 0.0)
    assert np.all(grad[:, P:, lo:hi] != 0.0)
    # Negative control: the full-vocabulary cross-entropy over the same positions differs.
    mask = np.arange(T)[None] >= P
    full, _ = token_cross_entropy(logits, tokens, mask=np.broadcast_to(mask, tokens.shape))
    assert np.all(np.asarray(full) > nll + 0.1)


def test_prefix_nll_bad_inputs():
    logits = jnp.zeros((1, T, VOCAB))
    tokens = jnp.full((1, T), CODES[0], jnp.int32)
    with pytest.raises(ValueError, match=r"vocabulary range \[4, 9\)"):
        prefix_sequence_nll(logits, tokens.at[0, P].set(1), target_start=P, vocab_range=CODES)
    with pytest.raises(ValueError, match="target_start"):
        prefix_sequence_nll(logits, tokens, target_start=T, vocab_range=CODES)
    with pytest.raises(ValueError, match="vocab_range"):
        prefix_sequence_nll(logits, tokens, target_start=P, vocab_range=(4, 10))
    with pytest.raises(ValueError, match="logits must have shape"):
        prefix_sequence_nll(logits[:, 1:], tokens, target_start=P, vocab_range=CODES)


# ---------------------------------------------------------------------------- causality


def _embedding_jacobian(graphdef, params) -> np.ndarray:
    """``J[i, j] = sum |d logits[i] / d embedding[j]|`` over ``[condition; codes]``."""
    model = nnx.merge(graphdef, params)
    x = jnp.concatenate([_prefixes(1), jnp.asarray([[4, 8, 5, 7, 6]], jnp.int32)], axis=1)
    emb = model.embed_tokens(shift_right(x, bos=BOS))[0]

    def logits(e):
        return nnx.merge(graphdef, params).from_embeddings(e[None])[0]

    return np.abs(np.asarray(jax.jit(jax.jacrev(logits))(emb))).sum(axis=(1, 3))


def test_no_condition_token_sees_a_code_and_no_code_a_later_one(net):
    jac = _embedding_jacobian(*net)
    later = np.triu(np.ones((T, T), bool), k=1)
    print(f"max |J| for j > i: {jac[later].max():.1e}; min for j <= i: {jac[~later].min():.1e}")
    assert np.all(jac[later] == 0.0)
    assert np.all(jac[:P, P:] == 0.0)  # the condition block never sees a code
    assert np.all(jac[~later] > 1e-6)


def test_negative_control_without_the_causal_mask_codes_leak(net, monkeypatch):
    monkeypatch.setattr(transformer, "_causal_mask", lambda n: jnp.ones((n, n), bool))
    jac = _embedding_jacobian(*net)
    assert jac[:P, P:].max() > 1e-3


# ---------------------------------------------------------------------------- sampling

BATCH = 12
FILTERED = {"temperature": 0.8, "top_k": 3, "top_p": 0.9}


@functools.partial(jax.jit, static_argnames="batch")
def _draws(params, key, prefix, *, batch):
    """The cached draws (plain and filtered, in the code range), and for ``batch > 1`` the
    uncached ones and an unrestricted cached draw; one compilation per batch size."""
    model = nnx.merge(_build_graphdef(), params)

    def cached(**options):
        out = sample_with_prefix(
            model.decode_step,
            model.init_cache(batch),
            key,
            (batch, N),
            prefix=prefix,
            bos=BOS,
            **options,
        )
        assert out.nfe == P + N
        return out.samples

    if batch == 1:
        return {"filtered": cached(vocab_range=CODES, **FILTERED)}
    out = {"unrestricted": cached()}
    for name, options in (("plain", {}), ("filtered", FILTERED)):
        out[name] = cached(vocab_range=CODES, **options)
        uncached = sample_with_prefix_uncached(
            model, key, (batch, N), prefix=prefix, bos=BOS, vocab_range=CODES, **options
        )
        assert uncached.nfe == N
        out[name + "_uncached"] = uncached.samples
    return out


def _build_graphdef():
    return _net()[0]


def test_cached_equals_uncached_within_the_vocabulary_range(net):
    _, params = net
    key = jax.random.key(7)
    draws = {
        k: np.asarray(v) for k, v in _draws(params, key, _prefixes(BATCH), batch=BATCH).items()
    }
    for name in ("plain", "filtered"):
        np.testing.assert_array_equal(draws[name], draws[name + "_uncached"])
        assert draws[name].shape == (BATCH, N) and draws[name].dtype == np.int32
        assert np.all((draws[name] >= CODES[0]) & (draws[name] < CODES[1]))
        assert len(np.unique(draws[name])) >= 3  # not a constant draw
    # Negative control: without vocab_range the same model draws condition ids too.
    outside = np.mean(draws["unrestricted"] < CODES[0])
    print(f"unrestricted draws outside the code range: {outside:.0%}")
    assert outside > 0.05
    # Example i alone (its own key, its own prefix) is row i of the batch.
    keys = example_keys(key, BATCH)
    for i in (0, 5):
        one = _draws(params, keys[i : i + 1], _prefixes(BATCH)[i : i + 1], batch=1)
        np.testing.assert_array_equal(np.asarray(one["filtered"])[0], draws["filtered"][i])


def _running_sum_step(carry, token, position):
    """Deterministic model: the next token is ``(sum of the inputs so far) mod V``."""
    total = carry + token
    return total, jnp.where(jnp.arange(VOCAB)[None] == (total % VOCAB)[:, None], 0.0, -jnp.inf)


def _running_sum_logits(inputs):
    total = jnp.cumsum(inputs, axis=1)
    return jnp.where(jnp.arange(VOCAB)[None, None] == (total % VOCAB)[..., None], 0.0, -jnp.inf)


def test_every_forced_prefix_token_conditions_the_draw():
    prefix = jnp.asarray([[1, 2, 3], [2, 3, 3], [1, 2, 2]], jnp.int32)
    key = jax.random.key(0)

    @jax.jit
    def both(key, prefix):
        carry = jnp.zeros(3, jnp.int32)
        cached = sample_with_prefix(_running_sum_step, carry, key, (3, N), prefix=prefix, bos=BOS)
        uncached = sample_with_prefix_uncached(
            _running_sum_logits, key, (3, N), prefix=prefix, bos=BOS
        )
        unforced = sample_sequence(_running_sum_step, carry, key, (3, P + N), bos=BOS)
        return cached, uncached, unforced.samples[:, P:]

    cached, uncached, unforced = both(key, prefix)
    hand = []
    for row in np.asarray(prefix):
        total, codes = BOS + row.sum(), []
        for _ in range(N):
            codes.append(total % VOCAB)
            total += codes[-1]
        hand.append(codes)
    np.testing.assert_array_equal(np.asarray(cached.samples), hand)
    np.testing.assert_array_equal(np.asarray(uncached.samples), hand)
    assert cached.nfe == P + N and uncached.nfe == N
    # Negative controls: the same model with the prefix positions drawn, not forced, draws
    # other codes; prefixes that differ in their last token only (rows 0, 2) or in their
    # first ones (rows 0, 1) draw different codes.
    assert np.all(np.asarray(unforced) != np.asarray(hand))
    assert np.all(np.asarray(cached.samples)[0] != np.asarray(cached.samples)[2])
    assert np.all(np.asarray(cached.samples)[0] != np.asarray(cached.samples)[1])


def test_sampler_shape_must_match_the_prefix():
    prefix, carry, key = _prefixes(2), jnp.zeros(2, jnp.int32), jax.random.key(0)
    with pytest.raises(ValueError, match=r"shape\[0\] \(B = 3.*prefix.shape\[0\] = 2"):
        sample_with_prefix(_running_sum_step, carry, key, (3, N), prefix=prefix, bos=BOS)
    with pytest.raises(ValueError, match=r"shape\[0\] \(B = 1.*prefix.shape\[0\] = 2"):
        sample_with_prefix_uncached(_running_sum_logits, key, (1, N), prefix=prefix, bos=BOS)
    with pytest.raises(ValueError, match=r"shape must be \(B, N\)"):
        sample_with_prefix_uncached(_running_sum_logits, key, (2, N, 1), prefix=prefix, bos=BOS)
    with pytest.raises(ValueError, match="positive"):
        sample_with_prefix(_running_sum_step, carry, key, (2, 0), prefix=prefix, bos=BOS)


# ---------------------------------------------------------------------------- guidance

NULL = jnp.zeros((P,), jnp.int32)  # the all-pad (empty) caption


def test_logit_guidance_formula():
    c, u = jnp.array([[1.0, 2.0], [0.5, -1.0]]), jnp.array([[0.0, 3.0], [1.5, -1.0]])
    assert logit_guidance(c, u, 1) is c and logit_guidance(c, u, 1.0) is c
    np.testing.assert_allclose(logit_guidance(c, u, 3.0), c + 2.0 * (c - u))
    np.testing.assert_allclose(logit_guidance(c, u, 0.0), u)  # s = 0: unconditional
    per_example = logit_guidance(c, u, jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(per_example, jnp.stack([c[0], 2 * c[1] - u[1]]))
    with pytest.raises(ValueError, match="finite"):
        logit_guidance(c, u, float("nan"))


def _teacher_forced(step_fn, carry, inputs):
    """Logits (B, T, V) of a step function fed ``inputs`` (B, T) through its cache."""

    def body(carry, position):
        token = jax.lax.dynamic_index_in_dim(inputs, position, axis=1, keepdims=False)
        return step_fn(carry, token, position)

    _, logits = jax.lax.scan(body, carry, jnp.arange(inputs.shape[1], dtype=jnp.int32))
    return jnp.moveaxis(logits, 0, 1)


@jax.jit
def _guided_logits(params, x, scale):
    model = nnx.merge(_build_graphdef(), params)
    batch = x.shape[0]
    inputs = shift_right(x, bos=BOS)
    carry = (model.init_cache(batch), model.init_cache(batch))
    traced = _teacher_forced(
        guided_step_fn(model.decode_step, NULL, guidance_scale=scale), carry, inputs
    )
    python_one = _teacher_forced(
        guided_step_fn(model.decode_step, NULL, guidance_scale=1), carry, inputs
    )
    plain = _teacher_forced(model.decode_step, model.init_cache(batch), inputs)
    null_x = jnp.concatenate([jnp.broadcast_to(NULL, (batch, P)), x[:, P:]], axis=1)
    null_inputs = shift_right(null_x, bos=BOS)
    return traced, python_one, plain, model(inputs), model(null_inputs)


def test_logit_cfg_scale_one_is_the_conditional_model_and_three_the_formula(net):
    _, params = net
    x = jnp.concatenate(
        [_prefixes(4), jnp.asarray(np.random.default_rng(1).integers(*CODES, (4, N)))], 1
    )
    # s = 1 (w = 0), traced and as a Python number: the conditional model bit for bit.
    guided_one, python_one, plain, _, _ = (np.asarray(a) for a in _guided_logits(params, x, 1.0))
    np.testing.assert_array_equal(guided_one, plain)
    np.testing.assert_array_equal(python_one, plain)
    # s = 3: c + 2 (c - u) with c, u from two full passes on [prefix; codes], [null; codes].
    guided, _, _, cond, uncond = (np.asarray(a) for a in _guided_logits(params, x, 3.0))
    expected = cond + 2.0 * (cond - uncond)
    err = np.abs(guided - expected).max()
    control = np.abs(guided - (cond + 2.0 * (cond - cond))).max()
    print(f"|guided - (c + 2 (c - u))| {err:.1e}; with u = c {control:.1e}")
    assert err < 1e-4
    assert control > 1e-2  # negative control: the null condition matters


@jax.jit
def _guided_draws(params, key, prefix, scale):
    model = nnx.merge(_build_graphdef(), params)
    batch = prefix.shape[0]
    step_fn = guided_step_fn(model.decode_step, NULL, guidance_scale=scale)
    carry = (model.init_cache(batch), model.init_cache(batch))
    out = sample_with_prefix(
        step_fn, carry, key, (batch, N), prefix=prefix, bos=BOS, vocab_range=CODES, **FILTERED
    )
    assert out.nfe == P + N  # a guided step counts as one evaluation
    return out.samples


def test_guided_draws_at_scale_one_are_the_conditional_draws(net):
    _, params = net
    key, prefix = jax.random.key(11), _prefixes(BATCH, seed=4)
    conditional = np.asarray(_draws(params, key, prefix, batch=BATCH)["filtered"])
    at_one = np.asarray(_guided_draws(params, key, prefix, 1.0))
    np.testing.assert_array_equal(at_one, conditional)
    # Negative control: a strong guidance scale changes some draws.
    at_five = np.asarray(_guided_draws(params, key, prefix, 5.0))
    print(f"s = 5 changes {np.mean(at_five != conditional):.0%} of the draws")
    assert np.any(at_five != conditional)
