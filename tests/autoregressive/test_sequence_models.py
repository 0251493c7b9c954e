"""Sequence models (causal conv, LSTM / GRU language models, causal transformer).

* Causality by gradients (conv, LSTM, transformer), at the level of the data: with
  ``inputs = shift_right(x)``, ``d logits[t] / d onehot(x_{t'})`` is exactly 0 for every
  ``t' >= t`` and non-zero for ``t' < t`` (within the receptive field for the convolution).
  Negative controls: the transformer without its causal mask, and the convolution padded on
  the right, leak.
* The causal convolution's receptive field at the input-embedding level is exactly
  ``t - R + 1 .. t`` with ``R = 1 + (k - 1) sum_l d_l``.
* LSTM / GRU cells equal their gate equations computed in NumPy (float64).
* The RNN's ``step`` equals the full-sequence call at every position; the transformer's
  ``decode_step`` with its key-value cache equals the full forward pass at every position.
* Cached sampling (``sample_sequence`` over ``decode_step`` / ``step``) draws the same
  tokens as uncached sampling (``sample_sequence_uncached`` over the full model) for the
  same key: the issue's oracle for the cache; both count one evaluation per token, and a
  cached draw of 16 sequences is exactly the first 16 rows of a draw of 64 (per-example
  keys).

Parameters are drawn in NumPy on an abstract (``nnx.eval_shape``) graph: generic weights,
no compiled initialisers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.autoregressive.sampling import sample_sequence, sample_sequence_uncached
from jaxgen.nets import causal_conv, transformer
from jaxgen.nets.causal_conv import CausalConvNet
from jaxgen.nets.rnn import RNNLM, GRUCell, LSTMCell
from jaxgen.nets.transformer import CausalTransformer

VOCAB = 5
BOS = VOCAB
LENGTH = 8

CONSTRUCTORS = {
    "conv": lambda: CausalConvNet(VOCAB, channels=8, num_layers=2, rngs=nnx.Rngs(0)),
    "lstm": lambda: RNNLM(VOCAB, cell="lstm", hidden=8, num_layers=2, rngs=nnx.Rngs(0)),
    "gru": lambda: RNNLM(VOCAB, cell="gru", hidden=8, num_layers=2, rngs=nnx.Rngs(0)),
    "transformer": lambda: CausalTransformer(
        VOCAB, max_len=LENGTH, dim=16, num_heads=2, num_layers=2, rngs=nnx.Rngs(0)
    ),
}
EMBEDDING_PATH = {
    "conv": ("embed", "embedding"),
    "lstm": ("embed", "embedding"),
    "transformer": ("token_embed", "embedding"),
}


def build(ctor, seed: int = 0, std: float = 0.4, dtype=np.float32):
    """``(graphdef, params)``: abstract graph, NumPy ``N(0, std^2)`` weights (norm scales
    ``1 + N(0, 0.1^2)``), so no random initialiser is compiled."""
    graphdef, abstract = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "scale":
            return (1.0 + 0.1 * rng.normal(size=leaf.shape)).astype(dtype)
        return (std * rng.normal(size=leaf.shape)).astype(dtype)

    return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(abstract))


def data_jacobian(name: str, graphdef, params) -> np.ndarray:
    """``J[t, t'] = sum |d logits[t] / d onehot(x_{t'})|`` through ``inputs = shift_right(x)``
    (the one-hot of the start token prepended, the last data token dropped)."""
    table = params[EMBEDDING_PATH[name][0]][EMBEDDING_PATH[name][1]]  # (V + 1, D)
    start = jax.nn.one_hot(jnp.array([BOS]), VOCAB + 1)

    def logits(onehot):  # (T, V) one-hot data tokens -> (T, V) logits
        padded = jnp.pad(onehot, ((0, 0), (0, 1)))  # data ids never use the start id
        inputs = jnp.concatenate([start, padded[:-1]], axis=0)
        model = nnx.merge(graphdef, params)
        return model.from_embeddings((inputs @ table)[None])[0]

    x = np.random.default_rng(1).integers(0, VOCAB, size=LENGTH)
    jac = jax.jit(jax.jacrev(logits))(jax.nn.one_hot(jnp.asarray(x), VOCAB))
    return np.abs(np.asarray(jac)).sum(axis=(1, 3))


def _allowed(receptive_field: int | None) -> np.ndarray:
    """Where ``J[t, t']`` may be non-zero: ``t' < t`` (and ``t' >= t - R`` when finite)."""
    t, s = np.meshgrid(np.arange(LENGTH), np.arange(LENGTH), indexing="ij")
    allowed = s < t
    if receptive_field is not None:
        allowed &= s >= t - receptive_field
    return allowed


@pytest.mark.parametrize("name", ["conv", "lstm", "transformer"])
def test_logits_at_t_depend_only_on_earlier_tokens(name):
    graphdef, params = build(CONSTRUCTORS[name])
    jac = data_jacobian(name, graphdef, params)
    field = nnx.merge(graphdef, params).receptive_field if name == "conv" else None
    allowed = _allowed(field)
    print(
        f"{name}: max |J| at t' >= t {jac[~allowed].max():.1e}, min on t' < t "
        f"{jac[allowed].min():.1e}"
    )
    assert np.all(jac[~allowed] == 0.0)
    assert np.all(jac[allowed] > 1e-6)


def test_negative_control_transformer_without_mask_leaks(monkeypatch):
    graphdef, params = build(CONSTRUCTORS["transformer"])
    monkeypatch.setattr(transformer, "_causal_mask", lambda n: jnp.ones((n, n), bool))
    jac = data_jacobian("transformer", graphdef, params)
    future = jac[~_allowed(None)]
    print(f"unmasked transformer: max |J| at t' >= t {future.max():.1e}")
    assert future.max() > 1e-3


def embedding_jacobian(graphdef, params, length: int) -> np.ndarray:
    """``J[t, s] = sum |d logits[t] / d embedding[s]|`` at the input-embedding level."""
    model = nnx.merge(graphdef, params)
    emb = np.random.default_rng(2).normal(size=(length, model.channels)).astype(np.float32)

    def logits(e):
        return nnx.merge(graphdef, params).from_embeddings(e[None])[0]

    return np.abs(np.asarray(jax.jit(jax.jacrev(logits))(jnp.asarray(emb)))).sum(axis=(1, 3))


def test_causal_conv_receptive_field(monkeypatch):
    """Output t sees exactly the inputs t - R + 1 .. t, R = 1 + (k - 1)(1 + 2 + ... + 2^{L-1}),
    here 1 + 2 * 7 = 15 for k = 3, L = 3 (the causality test checks k = 2, L = 2: R = 4)."""
    kernel_size, num_layers = 3, 3
    ctor = lambda: CausalConvNet(  # noqa: E731
        VOCAB, channels=8, num_layers=num_layers, kernel_size=kernel_size, rngs=nnx.Rngs(0)
    )
    graphdef, params = build(ctor)
    field = 1 + (kernel_size - 1) * (2**num_layers - 1)
    assert nnx.merge(graphdef, params).receptive_field == field == 15
    length = field + 4
    t, s = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    inside = (s <= t) & (s > t - field)
    jac = embedding_jacobian(graphdef, params, length)
    assert np.all(jac[~inside] == 0.0) and np.all(jac[inside] > 1e-6)
    # Negative controls: without dilation the field would be 1 + L (k - 1), a different set;
    # padded on the right (the future), the convolution leaks.
    undilated = 1 + num_layers * (kernel_size - 1)
    assert np.any(jac[(s <= t) & (s == t - undilated)] > 0.0)
    monkeypatch.setattr(causal_conv, "_causal_padding", lambda amount: (0, amount))
    leaky = embedding_jacobian(graphdef, params, length)
    assert leaky[s > t].max() > 1e-3


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def test_lstm_and_gru_cells_equal_their_gate_equations(x64):
    rng = np.random.default_rng(3)
    x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))

    graphdef, p = build(lambda: LSTMCell(3, 4, rngs=nnx.Rngs(0)), dtype=np.float64)
    (h_new, c_new), out = nnx.merge(graphdef, p)((jnp.asarray(h), jnp.asarray(c)), jnp.asarray(x))
    w, u, b = p["input_kernel"], p["hidden_kernel"], p["bias"]
    pre = [
        x @ w[:, 4 * j : 4 * j + 4] + h @ u[:, 4 * j : 4 * j + 4] + b[4 * j : 4 * j + 4]
        for j in range(4)
    ]  # gates i, f, g, o
    i, f, g, o = _sigmoid(pre[0]), _sigmoid(pre[1]), np.tanh(pre[2]), _sigmoid(pre[3])
    c_hand = f * c + i * g
    h_hand = o * np.tanh(c_hand)
    err = max(np.abs(np.asarray(c_new) - c_hand).max(), np.abs(np.asarray(h_new) - h_hand).max())
    assert err < 1e-12, err
    np.testing.assert_array_equal(np.asarray(out), np.asarray(h_new))
    swapped = _sigmoid(pre[0]) * c + _sigmoid(pre[1]) * g  # control: input / forget swapped
    assert np.abs(swapped - c_hand).max() > 1e-2

    graphdef, p = build(lambda: GRUCell(3, 4, rngs=nnx.Rngs(0)), dtype=np.float64)
    (h_gru,), _ = nnx.merge(graphdef, p)((jnp.asarray(h),), jnp.asarray(x))
    w, u, b = p["input_kernel"], p["hidden_kernel"], p["bias"]

    def gate(j, hidden):
        return x @ w[:, 4 * j : 4 * j + 4] + hidden @ u[:, 4 * j : 4 * j + 4] + b[4 * j : 4 * j + 4]

    r, z = _sigmoid(gate(0, h)), _sigmoid(gate(1, h))
    n = np.tanh(gate(2, r * h))
    h_hand_gru = z * h + (1.0 - z) * n
    err_gru = np.abs(np.asarray(h_gru) - h_hand_gru).max()
    print(f"LSTM |cell - hand| {err:.1e}, GRU {err_gru:.1e}")
    assert err_gru < 1e-12, err_gru
    # Control: the cuDNN / PyTorch variant, r * (h U_n + b_n), is a different cell.
    n_after = np.tanh(x @ w[:, 8:] + b[8:] + r * (h @ u[:, 8:]))
    assert np.abs(z * h + (1.0 - z) * n_after - h_hand_gru).max() > 1e-3


def _tokens(batch: int, seed: int = 4) -> jnp.ndarray:
    x = np.random.default_rng(seed).integers(0, VOCAB, size=(batch, LENGTH))
    return jnp.asarray(np.concatenate([np.full((batch, 1), BOS), x[:, :-1]], 1), jnp.int32)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_step_equals_full_sequence(name):
    graphdef, params = build(CONSTRUCTORS[name])
    inputs = _tokens(3)
    full = np.asarray(jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, inputs))
    step = jax.jit(lambda p, c, t: nnx.merge(graphdef, p).step(c, t))
    zero = nnx.merge(graphdef, params).initial_carry(3)
    carry, stepped, restarted = zero, [], []
    for t in range(LENGTH):
        carry, logits = step(params, carry, inputs[:, t])
        stepped.append(np.asarray(logits))
        restarted.append(np.asarray(step(params, zero, inputs[:, t])[1]))
    err = np.abs(np.stack(stepped, 1) - full).max()
    control = np.abs(np.stack(restarted, 1) - full)[:, 1:].max()
    print(f"{name}: |step - full| {err:.1e}; without the carry {control:.1e}")
    assert err < 1e-5, err
    assert control > 1e-2, control


def test_transformer_decode_step_equals_full_forward():
    graphdef, params = build(CONSTRUCTORS["transformer"])
    inputs = _tokens(3)
    full = np.asarray(jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, inputs))
    decode = jax.jit(lambda p, c, tok, pos: nnx.merge(graphdef, p).decode_step(c, tok, pos))
    empty = nnx.merge(graphdef, params).init_cache(3)
    cache, cached, uncached = empty, [], []
    for t in range(LENGTH):
        cache, logits = decode(params, cache, inputs[:, t], t)
        cached.append(np.asarray(logits))
        uncached.append(np.asarray(decode(params, empty, inputs[:, t], t)[1]))
    err = np.abs(np.stack(cached, 1) - full).max()
    control = np.abs(np.stack(uncached, 1) - full)[:, 1:].max()
    print(f"|decode_step - forward| {err:.1e}; with an empty cache {control:.1e}")
    assert err < 1e-5, err
    assert control > 1e-2, control


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_cached_sampling_equals_uncached_sampling(name):
    graphdef, params = build(CONSTRUCTORS[name], std=0.6)
    batch = 16
    options = {"temperature": 0.8, "top_k": 4, "top_p": 0.9}  # unfiltered: test_sampling.py

    @jax.jit
    def both(p, key):
        model = nnx.merge(graphdef, p)
        if name == "transformer":
            step_fn, carry = model.decode_step, model.init_cache(batch)
        else:
            step_fn, carry = model.step, model.initial_carry(batch)
        cached = sample_sequence(step_fn, carry, key, (batch, LENGTH), bos=BOS, **options)
        uncached = sample_sequence_uncached(model, key, (batch, LENGTH), bos=BOS, **options)
        assert cached.nfe == uncached.nfe == LENGTH
        return cached.samples, uncached.samples

    cached, uncached = (np.asarray(a) for a in both(params, jax.random.key(5)))
    np.testing.assert_array_equal(cached, uncached)
    assert len(np.unique(cached)) >= 3  # not a degenerate, constant draw
    # Negative control: another key draws other tokens.
    other = np.asarray(both(params, jax.random.key(6))[0])
    print(f"{name}: cached == uncached; other key differs at {np.mean(other != cached):.0%}")
    assert np.mean(other != cached) > 0.1


def test_cached_sampling_batch_of_16_is_the_first_16_rows_of_64():
    """The transformer's cached sampler with per-example keys: the same key draws the same
    first 16 sequences at batch 16 and 64 (exact token equality)."""
    graphdef, params = build(CONSTRUCTORS["transformer"], std=0.6)

    @functools.partial(jax.jit, static_argnums=2)
    def draw(p, key, batch):
        model = nnx.merge(graphdef, p)
        return sample_sequence(
            model.decode_step, model.init_cache(batch), key, (batch, LENGTH), bos=BOS
        ).samples

    key = jax.random.key(12)
    small, big = np.asarray(draw(params, key, 16)), np.asarray(draw(params, key, 64))
    np.testing.assert_array_equal(small, big[:16])
    # Negative control: the rows differ from each other (per-example noise).
    assert len({row.tobytes() for row in big}) > 32


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        RNNLM(VOCAB, cell="rnn", hidden=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        CausalTransformer(VOCAB, max_len=4, dim=6, num_heads=4, num_layers=1, rngs=nnx.Rngs(0))
    graphdef, params = build(CONSTRUCTORS["transformer"])
    model = nnx.merge(graphdef, params)
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(jnp.zeros((1, LENGTH + 1), jnp.int32))
    with pytest.raises(ValueError, match="integer tokens"):
        model(jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="outside the cache"):
        model.decode_step(model.init_cache(1, 4), jnp.zeros((1,), jnp.int32), 4)
