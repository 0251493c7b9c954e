"""Conditioning of the networks (issue 13): the learned null class / null vector of
ConditionEmbedding, the conditional U-Net, the noisy classifier and the denoising MLP."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.nets import (
    NULL_LABEL,
    ConditionEmbedding,
    DenoisingMLP,
    NoisyClassifier,
    UNet,
    UNetConfig,
)
from jaxgen.nets.unet import ncsnpp_config

K = 3  # classes, without the null class
E = 4  # embedding width
SMALL = UNetConfig(
    channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(4,),
    dropout=0.0,
    num_groups=4,
    num_heads=2,
)
SHAPE = (8, 8, 2)
COND = dataclasses.replace(SMALL, num_classes=K, embedding_dim=E)


def _random_params(abstract_module, seed=1, scale=0.1):
    """Random parameters (not the module's init, whose zero layers hide the inputs)."""
    shapes = nnx.to_pure_dict(nnx.state(abstract_module))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), shapes
    )


def _inputs(batch=3, shape=SHAPE, seed=2):
    x = jnp.asarray(np.random.default_rng(seed).standard_normal((batch, *shape)), jnp.float32)
    return x, jnp.arange(batch, dtype=jnp.int32) * 97 + 5


def _max_diff(a, b):
    return float(jnp.max(jnp.abs(a - b)))


# ---------------------------------------------------------------------------------------------
# ConditionEmbedding


def test_condition_embedding_formula():
    # E[row(y)] + W1 SiLU(W0 where(keep, e, e_null) + b0) + b1, row(-1) = K (the null row).
    module = ConditionEmbedding(5, num_classes=K, embedding_dim=E, rngs=nnx.Rngs(0))
    p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module)))
    assert p["label_embed"]["embedding"].shape == (K + 1, 5)
    assert p["null_embedding"].shape == (E,)
    y = jnp.array([0, 2, NULL_LABEL, 1])
    e = jnp.asarray(np.random.default_rng(0).standard_normal((4, E)), jnp.float32)
    keep = jnp.array([True, False, True, False])
    e_used = np.where(np.asarray(keep)[:, None], np.asarray(e), p["null_embedding"][None])
    h = e_used @ p["embedding_dense0"]["kernel"] + p["embedding_dense0"]["bias"]
    h = h / (1 + np.exp(-h))
    mlp = h @ p["embedding_dense1"]["kernel"] + p["embedding_dense1"]["bias"]
    expected = p["label_embed"]["embedding"][[0, 2, K, 1]] + mlp
    np.testing.assert_allclose(module(y, e, keep), expected, rtol=1e-5, atol=1e-6)
    # keep=None keeps every embedding.
    np.testing.assert_allclose(module(y, e), module(y, e, jnp.ones(4, bool)), rtol=0, atol=0)


def test_traced_out_of_range_labels_select_the_null_row():
    module = ConditionEmbedding(5, num_classes=K, rngs=nnx.Rngs(0))
    rows = jax.jit(module.label_rows)(jnp.array([-1, 0, 2, 3, -5, 100]))
    np.testing.assert_array_equal(rows, [K, 0, 2, K, K, K])


@pytest.mark.parametrize(
    "kwargs, call, match",
    [
        ({}, None, "needs num_classes > 0 or embedding_dim > 0"),
        ({"num_classes": -1}, None, "num_classes must be an integer >= 0"),
        ({"num_classes": K}, {"labels": [0, 3, -2, 1]}, r"\[-1, 3\).* got \[-2, 3\]"),
        ({"num_classes": K}, {"labels": [0.0, 1.0]}, r"labels y must be integer .* \(B,\)"),
        ({"num_classes": K}, {"labels": [[0, 1]]}, r"labels y must be integer .* \(B,\)"),
        ({"num_classes": K}, {}, "class-conditional .* pass labels y"),
        ({"embedding_dim": E}, {"labels": [0]}, r"no class labels \(num_classes = 0\)"),
        ({"embedding_dim": E}, {}, r"embedding_dim = 4\); pass embedding"),
        ({"embedding_dim": E}, {"embedding": np.zeros((2, 3))}, r"shape \(B, 4\), got \(2, 3\)"),
        (
            {"embedding_dim": E},
            {"embedding": np.zeros((2, E)), "embedding_keep": [1, 0]},
            "embedding_keep must be a bool array",
        ),
        (
            {"num_classes": K, "embedding_dim": E},
            {"labels": [0, 1, 2], "embedding": np.zeros((2, E))},
            "batch sizes disagree: y has 3, embedding has 2",
        ),
        ({"num_classes": K}, {"labels": [0], "embedding": np.zeros((1, E))}, "no embedding"),
    ],
)
def test_condition_embedding_errors(kwargs, call, match):
    with pytest.raises(ValueError, match=match):
        module = ConditionEmbedding(5, **kwargs, rngs=nnx.Rngs(0))
        call = {k: jnp.asarray(v) for k, v in call.items()}
        if "embedding" in call:
            call["embedding"] = call["embedding"].astype(jnp.float32)
        module(**call)


# ---------------------------------------------------------------------------------------------
# The conditional U-Net


@pytest.fixture(scope="module")
def unet():
    abstract = nnx.eval_shape(lambda: UNet(COND, image_shape=SHAPE, rngs=nnx.Rngs(0)))
    graphdef = nnx.graphdef(abstract)
    apply = jax.jit(
        lambda p, x, t, y, e, keep: nnx.merge(graphdef, p)(
            x, t, y=y, embedding=e, embedding_keep=keep
        )
    )
    x, t = _inputs()
    e = jnp.asarray(np.random.default_rng(3).standard_normal((3, E)), jnp.float32)
    return abstract, _random_params(abstract), apply, x, t, e


def _with_table(params, table):
    cond = {**params["condition_embed"], "label_embed": {"embedding": table}}
    return {**params, "condition_embed": cond}


def test_unet_null_label_selects_the_learned_null_row(unet):
    abstract, params, apply, x, t, e = unet
    keep = jnp.ones(3, bool)
    table = params["condition_embed"]["label_embed"]["embedding"]
    assert table.shape == (K + 1, 4 * SMALL.channels)
    y = jnp.array([NULL_LABEL, 1, NULL_LABEL])
    out = apply(params, x, t, y, e, keep)
    # Label -1 is the table's last row: copy that row into row 0 and call with label 0.
    copied = _with_table(params, table.at[0].set(table[K]))
    np.testing.assert_array_equal(apply(copied, x, t, jnp.array([0, 1, 0]), e, keep), out)
    # Changing the null row changes the null-labelled examples only.
    moved = apply(_with_table(params, table.at[K].add(0.5)), x, t, y, e, keep)
    assert _max_diff(moved[0], out[0]) > 1e-3 and _max_diff(moved[2], out[2]) > 1e-3
    np.testing.assert_array_equal(moved[1], out[1])


def test_unet_classes_differ_and_examples_are_independent(unet):
    abstract, params, apply, x, t, e = unet
    keep = jnp.ones(3, bool)
    same_x, same_t = jnp.broadcast_to(x[:1], x.shape), jnp.broadcast_to(t[:1], t.shape)
    same_e = jnp.broadcast_to(e[:1], e.shape)
    out = apply(params, same_x, same_t, jnp.array([0, 1, 2]), same_e, keep)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert _max_diff(out[i], out[j]) > 1e-3
    # Changing example 1's label changes example 1 only.
    y = jnp.array([0, 1, 2])
    base = apply(params, x, t, y, e, keep)
    changed = apply(params, x, t, y.at[1].set(NULL_LABEL), e, keep)
    assert _max_diff(changed[1], base[1]) > 1e-3
    np.testing.assert_array_equal(changed[::2], base[::2])


def test_unet_embedding_keep_false_uses_the_null_vector(unet):
    abstract, params, apply, x, t, e = unet
    y = jnp.array([0, 1, 2])
    keep = jnp.array([True, False, True])
    out = apply(params, x, t, y, e, keep)
    null = params["condition_embed"]["null_embedding"]
    np.testing.assert_array_equal(
        apply(params, x, t, y, e.at[1].set(null), jnp.ones(3, bool))[1], out[1]
    )
    # A dropped example ignores its embedding; the kept ones depend on theirs.
    np.testing.assert_array_equal(apply(params, x, t, y, e.at[1].add(3.0), keep)[1], out[1])
    assert _max_diff(apply(params, x, t, y, e.at[0].add(3.0), keep)[0], out[0]) > 1e-3


def test_unet_condition_errors(unet):
    abstract, *_, x, t, e = unet

    def call(model, **kwargs):
        return nnx.eval_shape(lambda m: m(x, t, **kwargs), model)

    keep = jnp.ones(3, bool)
    with pytest.raises(ValueError, match=r"\[-1, 3\).* got \[3\]"):
        call(abstract, y=jnp.array([0, 3, 1]), embedding=e)
    with pytest.raises(ValueError, match="batch sizes disagree: x has 3, y has 2"):
        call(abstract, y=jnp.array([0, 1]), embedding=e)
    with pytest.raises(ValueError, match="pass embedding"):
        call(abstract, y=jnp.array([0, 1, 2]))
    plain = nnx.eval_shape(lambda: UNet(SMALL, image_shape=SHAPE, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"no embedding \(embedding_dim = 0\)"):
        call(plain, embedding=e, embedding_keep=keep)
    with pytest.raises(ValueError, match="unconditional"):
        call(plain, y=jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="embedding_dim must be an integer >= 0"):
        UNetConfig(embedding_dim=-2)


def test_ncsnpp_options_take_the_condition():
    # DDPM++ / NCSN++ options share the conditioning (shapes only: no compilation).
    config = ncsnpp_config(
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        num_groups=4,
        progressive_output="output_skip",
        num_classes=K,
        embedding_dim=E,
    )
    abstract = nnx.eval_shape(lambda: UNet(config, image_shape=SHAPE, rngs=nnx.Rngs(0)))
    x, _ = _inputs()
    e = jnp.zeros((3, E))
    keep = jnp.array([True, False, True])
    y = jnp.array([0, NULL_LABEL, 2])
    out = nnx.eval_shape(
        lambda m: m(x, jnp.ones(3), y=y, embedding=e, embedding_keep=keep), abstract
    )
    assert out.shape == (3, *SHAPE)


def test_unconditional_unet_parameter_tree_unchanged():
    # The unconditional network keeps the parameter names it had before conditioning (so its
    # checkpoints load); the conditional one adds only `condition_embed`.
    def tree(config):
        abstract = nnx.eval_shape(lambda: UNet(config, image_shape=SHAPE, rngs=nnx.Rngs(0)))
        return nnx.to_pure_dict(nnx.state(abstract))

    plain, cond = tree(SMALL), tree(dataclasses.replace(SMALL, num_classes=K))
    assert set(plain) == {
        "temb_dense0",
        "temb_dense1",
        "conv_in",
        "down",
        "mid_res1",
        "mid_attn",
        "mid_res2",
        "up",
        "norm_out",
        "conv_out",
    }
    assert set(cond) == {*plain, "condition_embed"}
    assert set(cond["condition_embed"]) == {"label_embed"}
    rest = {k: v for k, v in cond.items() if k != "condition_embed"}
    shapes = jax.tree.map(lambda a: a.shape, rest)
    assert shapes == jax.tree.map(lambda a: a.shape, plain)


# ---------------------------------------------------------------------------------------------
# NoisyClassifier


@pytest.fixture(scope="module")
def classifier():
    abstract = nnx.eval_shape(
        lambda: NoisyClassifier(SMALL, image_shape=SHAPE, num_classes=K, rngs=nnx.Rngs(0))
    )
    graphdef = nnx.graphdef(abstract)
    return abstract, _random_params(abstract), graphdef


def test_noisy_classifier_logits_time_dependence_and_gradient(classifier):
    abstract, params, graphdef = classifier
    assert "up" not in nnx.to_pure_dict(nnx.state(abstract))
    x, t = _inputs()
    y = jnp.array([0, 2, 1])

    def log_prob(p, x, t):  # log p_phi(y | x_t, t), summed over the batch
        logits = nnx.merge(graphdef, p)(x, t)
        return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1)), logits

    fn = jax.jit(jax.grad(log_prob, argnums=1, has_aux=True))
    grad, logits = fn(params, x, t)
    assert logits.shape == (3, K) and bool(jnp.all(jnp.isfinite(logits)))
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.max(jnp.abs(grad))) > 0
    _, later = fn(params, x, t + 300)
    assert _max_diff(later, logits) > 1e-4


def test_noisy_classifier_options_and_errors():
    config = ncsnpp_config(
        channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), num_groups=4
    )
    abstract = nnx.eval_shape(
        lambda: NoisyClassifier(config, image_shape=SHAPE, num_classes=10, rngs=nnx.Rngs(0))
    )
    x, _ = _inputs()
    out = nnx.eval_shape(lambda m: m(x, jnp.ones(3), key=jax.random.key(0)), abstract)
    assert out.shape == (3, 10)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2, got 1"):
        NoisyClassifier(SMALL, image_shape=SHAPE, num_classes=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="must be unconditional"):
        NoisyClassifier(
            dataclasses.replace(SMALL, num_classes=2),
            image_shape=SHAPE,
            num_classes=2,
            rngs=nnx.Rngs(0),
        )
    with pytest.raises(ValueError, match=r"x of shape \(B, 8, 8, 2\)"):
        nnx.eval_shape(lambda m: m(jnp.zeros((3, 8, 8, 1)), jnp.ones(3)), abstract)


# ---------------------------------------------------------------------------------------------
# DenoisingMLP


@pytest.fixture(scope="module")
def mlp():
    model = DenoisingMLP(2, (16, 16), num_classes=K, embedding_dim=E, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(4).standard_normal((3, 2)), jnp.float32)
    e = jnp.asarray(np.random.default_rng(5).standard_normal((3, E)), jnp.float32)
    return model, x, jnp.array([1.0, 500.0, 999.0]), e


def test_denoising_mlp_shapes_and_conditioning(mlp):
    model, x, t, e = mlp
    keep = jnp.ones(3, bool)
    y = jnp.array([0, NULL_LABEL, 2])
    out = model(x, t, y=y, embedding=e, embedding_keep=keep)
    assert out.shape == (3, 2) and bool(jnp.all(jnp.isfinite(out)))
    # The label matters, per example only.
    changed = model(x, t, y=y.at[0].set(1), embedding=e, embedding_keep=keep)
    assert _max_diff(changed[0], out[0]) > 1e-4
    np.testing.assert_array_equal(changed[1:], out[1:])
    # The time matters.
    assert _max_diff(model(x, t + 50, y=y, embedding=e), out) > 1e-4
    # Dropped embeddings use the null vector.
    dropped = model(x, t, y=y, embedding=e, embedding_keep=keep.at[2].set(False))
    null = model.condition_embed.null_embedding[...]
    np.testing.assert_allclose(
        dropped[2], model(x, t, y=y, embedding=e.at[2].set(null))[2], rtol=0, atol=0
    )


def test_denoising_mlp_unconditional_dropout_and_errors(mlp):
    model, x, t, e = mlp
    plain = DenoisingMLP(2, (8,), dropout=0.5, rngs=nnx.Rngs(1))
    assert plain(x, t).shape == (3, 2)
    np.testing.assert_array_equal(plain(x, t), plain(x, t))
    assert _max_diff(plain(x, t, key=jax.random.key(0)), plain(x, t)) > 0
    with pytest.raises(ValueError, match="unconditional"):
        plain(x, t, y=jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, t, embedding=e)
    with pytest.raises(ValueError, match=r"got \[3\]"):
        model(x, t, y=jnp.array([0, 3, 1]), embedding=e)
    with pytest.raises(ValueError, match=r"float x of shape \(B, 2\)"):
        model(x[:, :1], t, y=jnp.array([0, 1, 2]), embedding=e)
    with pytest.raises(ValueError, match="hidden must be a non-empty"):
        DenoisingMLP(2, (), rngs=nnx.Rngs(0))
