"""The sequence-model recipe (transformer, LSTM, GRU, causal convolution) through the engine.

* every architecture trains 2 steps on the digits and evaluates (exact bits/dim, digit FD),
  the transformer on 8 devices; the transformer also on the byte-level text;
* the recipe's loss is ``-sum_t log softmax(logits_t)[x_t]`` computed by hand in NumPy from
  the network's logits on the hand-shifted tokens (digits: levels ``round((x + 1) 8)`` in
  raster order); negative control: the unshifted inputs give another number;
* the recipe's sampler (KV cache for the transformer, ``step`` for the RNNs) draws the same
  tokens as ``sample_sequence_uncached`` over the full network for the same key; negative
  control: another key draws other tokens; 16 sequences are the first 16 of 64 for the
  same key and ``first_index`` draws the later ones (exact token equality);
* text samples decode to strings; bad configs are refused by name.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.autoregressive.sampling import sample_sequence_uncached
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data import text
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.run import build_recipe, evaluate_run, load_run, load_train_dataset, train

ROOT = pathlib.Path(__file__).resolve().parents[2]

COMMON = [
    "data.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "eval.num_samples=8",
    "eval.batch_size=8",
    "eval.max_examples=8",
    "model.dim=8",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.mlp_ratio=1",
]
EXPERIMENT = {
    "transformer": "transformer_digits",
    "lstm": "lstm_digits",
    "gru": "lstm_digits",
    "causal_conv": "causal_conv_digits",
    "text": "transformer_text",
}


def tiny_config(kind: str, *extra: str):
    config = load_experiment(str(ROOT / "experiments" / f"{EXPERIMENT[kind]}.py"))
    arch = ["model.architecture=gru"] if kind == "gru" else []
    return apply_overrides(config, [*COMMON, *arch, *extra])


def tiny_recipe(kind: str, *extra: str):
    config = tiny_config(kind, *extra)
    return build_recipe(config, load_train_dataset(config))


@pytest.mark.parametrize("kind", ["transformer", "lstm", "gru", "causal_conv", "text"])
def test_trains_and_evaluates(kind, tmp_path):
    config = tiny_config(kind, "train.num_steps=2")
    mesh = sharding.make_mesh() if kind == "transformer" else sharding.make_mesh(1)
    assert mesh.size == (8 if kind == "transformer" else 1)
    result = train(config, tmp_path, mesh=mesh)
    assert result.step == 2
    vocab = 256 if kind == "text" else 17
    # At initialisation the model is near uniform: log2(V) bits per token.
    assert abs(result.metrics["bits_per_token"] - np.log2(vocab)) < 0.2
    results = evaluate_run(load_run(tmp_path))
    assert results["num_examples"] == 8
    assert abs(results["bits_per_dim"] - np.log2(vocab)) < 0.2
    length = 128 if kind == "text" else 64
    np.testing.assert_allclose(results["nll_nats"], results["bits_per_dim"] * length * np.log(2))
    if kind == "text":
        assert "digit_fd" not in results
    else:
        assert np.isfinite(results["digit_fd"])


def numpy_params(recipe, seed: int = 0, std: float = 0.3):
    """Parameters of the recipe's shapes drawn in NumPy (no compiled initialisers):
    ``N(0, std^2)`` weights, so the logits are far from uniform."""
    shapes = jax.eval_shape(recipe.init_params, jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, std, s.shape), s.dtype), shapes)


def _log_softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("kind", ["causal_conv", "text"])
def test_loss_is_summed_token_log_softmax_by_hand(kind):
    recipe = tiny_recipe(kind)
    params = numpy_params(recipe)
    if kind == "text":
        tokens = text.load_text("test", seq_len=128)[:4]
        batch = {"tokens": jnp.asarray(tokens)}
    else:
        images, _ = load_digits("test")
        images = images[:4]
        tokens = np.rint((images.astype(np.float64) + 1.0) * 8.0).astype(np.int32).reshape(4, 64)
        batch = {"image": jnp.asarray(images)}
    vocab = recipe.vocab_size
    inputs = np.concatenate([np.full((4, 1), vocab, np.int32), tokens[:, :-1]], axis=1)

    @jax.jit  # one compilation for the three
    def logits_and_loss(params):
        return (
            recipe.logits(params, jnp.asarray(inputs)),
            recipe.logits(params, jnp.asarray(tokens)),
            recipe.loss(params, batch, jax.random.key(1)),
        )

    logits, unshifted, (got, terms) = logits_and_loss(params)
    logits, unshifted = np.asarray(logits), np.asarray(unshifted)
    picked = np.take_along_axis(_log_softmax_np(logits), tokens[..., None], axis=-1)[..., 0]
    expected = -picked.sum(axis=1)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    np.testing.assert_allclose(
        terms["bits_per_token"], expected / (tokens.shape[1] * np.log(2)), rtol=1e-5
    )
    # Negative control: the unshifted tokens as inputs score another number.
    wrong = -np.take_along_axis(_log_softmax_np(unshifted), tokens[..., None], -1)[..., 0].sum(1)
    assert np.max(np.abs(wrong - expected)) > 1e-3


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_cached_sampler_equals_uncached(kind):
    recipe = tiny_recipe(kind, "model.sample_temperature=1.5", "model.sample_top_k=12")
    params = numpy_params(recipe)
    num = 6

    def cached(p, k):
        return recipe.to_tokens(recipe.sample(p, k, num).samples)

    def uncached(p, k):
        return sample_sequence_uncached(
            lambda x: recipe.logits(p, x), k, (num, 64), bos=17, temperature=1.5, top_k=12
        ).samples

    key = jax.random.key(3)
    # One compilation; the last is the negative control (another key).
    a, b, c = jax.jit(lambda p: (cached(p, key), uncached(p, key), uncached(p, jax.random.key(4))))(
        params
    )
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    assert a.shape == (num, 64) and 0 <= a.min() and a.max() <= 16
    np.testing.assert_array_equal(a, b)
    # Negative control: another key draws other tokens.
    assert np.mean(a != c) > 0.5


def test_text_samples_decode():
    recipe = tiny_recipe("text", "model.sample_length=16")
    params = numpy_params(recipe)
    out = jax.jit(recipe.sample, static_argnums=2)(params, jax.random.key(1), 2)
    assert out.nfe == 16  # one network step per token
    samples = np.asarray(out.samples)
    assert samples.shape == (2, 16) and samples.dtype == np.int32
    decoded = recipe.decode_samples(samples)
    assert decoded == [text.decode(row) for row in samples]
    assert recipe.decode_samples(text.encode("def f(x):\n")[None]) == ["def f(x):\n"]
    with pytest.raises(ValueError, match=r"tokens \(N, T\)"):
        recipe.decode_samples(samples[0])
    with pytest.raises(ValueError, match="needs token data"):
        tiny_recipe("lstm").decode_samples(samples)


def test_samples_depend_only_on_the_seed_and_the_index():
    recipe = tiny_recipe("transformer", "model.sample_temperature=1.5")
    params = numpy_params(recipe)
    key = jax.random.key(6)

    @jax.jit  # the four draws in one compilation
    def draws(p, k, first, later):
        return (
            recipe.sample(p, k, 16, first_index=first),
            recipe.sample(p, k, 64, first_index=first),
            recipe.sample(p, k, 16, first_index=later),
            recipe.sample(p, k, 16, temperature=0.3),
        )

    small, big, later, cold = draws(params, key, 0, 48)
    assert small.nfe == 64
    np.testing.assert_array_equal(np.asarray(small.samples), np.asarray(big.samples)[:16])
    np.testing.assert_array_equal(np.asarray(later.samples), np.asarray(big.samples)[48:])
    # Negative control: the 64 samples are all different.
    assert len({np.asarray(row).tobytes() for row in big.samples}) == 64
    # The temperature is a sample option; others are refused by name.
    assert np.mean(np.asarray(cold.samples) != np.asarray(small.samples)) > 0.1
    with pytest.raises(ConfigError, match="num_steps"):
        recipe.sample(params, key, 2, num_steps=3)


@pytest.mark.parametrize(
    ("kind", "overrides", "match"),
    [
        ("lstm", ["model.architecture=rnn"], r"model.architecture must be one of \('transformer'"),
        ("transformer", ["model.dim=10", "model.num_heads=4"], "multiple of model.num_heads"),
        ("lstm", ["model.num_layers=0"], "model.num_layers must be >= 1"),
        ("transformer", ["model.sample_length=32"], r"None or 64 \(H W C\)"),
        ("text", ["model.sample_length=200"], "exceeds the transformer's context 128"),
        ("lstm", ["data.name=moons"], "needs discrete images"),
    ],
)
def test_bad_configs_are_refused(kind, overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny_recipe(kind, *overrides)
