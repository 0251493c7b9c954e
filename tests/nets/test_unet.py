"""Tests for the DDPM U-Net."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.nets import UNet, UNetConfig
from jaxgen.nets.unet import AttentionBlock

# A small network that still has every part: two levels, a skip-width change, attention
# at one level with two heads, and the middle block.
SMALL = UNetConfig(
    channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(4,),
    dropout=0.0,
    num_groups=4,
    num_heads=2,
)
SMALL_SHAPE = (8, 8, 2)
DIGITS = UNetConfig(
    channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(4,),
    num_groups=8,
    dropout=0.0,
)


def _abstract(config, image_shape):
    """The module with ShapeDtypeStruct parameters: no initialisation, no compilation."""
    return nnx.eval_shape(lambda: UNet(config, image_shape=image_shape, rngs=nnx.Rngs(0)))


def _count(config, image_shape):
    return sum(
        math.prod(a.shape) for a in jax.tree.leaves(nnx.state(_abstract(config, image_shape)))
    )


def _init(config, image_shape, seed=0):
    """(graphdef, pure-dict params) from the module's own initialisers, built under jit.

    Eager init is slow on CPU. The init key is an ``unsafe_rbg`` key only because its
    generator compiles about 3x faster than threefry; the module does not care.
    """

    def make(key):
        return UNet(config, image_shape=image_shape, rngs=nnx.Rngs(key))

    key = jax.random.key(seed, impl="unsafe_rbg")
    params = jax.jit(lambda k: nnx.to_pure_dict(nnx.state(make(k))))(key)
    return nnx.graphdef(_abstract(config, image_shape)), params


def _perturb(params, seed=1, scale=0.1):
    """Add noise to every parameter (so that the zero-initialised layers are switched on)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(np.asarray(p) + scale * rng.standard_normal(p.shape), p.dtype),
        params,
    )


def _random_params(abstract_module, seed=1, scale=0.1):
    """Random parameters (not the module's init) for an abstract module, made in numpy."""
    shapes = nnx.to_pure_dict(nnx.state(abstract_module))
    return _perturb(jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes), seed, scale)


def _apply(graphdef):
    return jax.jit(lambda p, x, t, y=None, key=None: nnx.merge(graphdef, p)(x, t, y=y, key=key))


def _inputs(batch=3, shape=SMALL_SHAPE, seed=2):
    x = jnp.asarray(np.random.default_rng(seed).standard_normal((batch, *shape)), jnp.float32)
    t = jnp.arange(batch, dtype=jnp.int32) * 97 + 5
    return x, t


@pytest.fixture(scope="module")
def small():
    graphdef, params = _init(SMALL, SMALL_SHAPE)
    return graphdef, params, _perturb(params), _apply(graphdef)


def test_cifar10_parameter_count():
    # Ho et al. (2020), appendix B: the CIFAR-10 model has 35.7M parameters.
    config = UNetConfig()
    assert (config.channels, config.channel_mult, config.num_res_blocks) == (128, (1, 2, 2, 2), 2)
    assert (config.attention_resolutions, config.dropout) == ((16,), 0.1)
    n = _count(config, (32, 32, 3))
    assert abs(n - 35.7e6) < 0.05e6, n
    assert n == 35_746_307  # the count of the paper's released TF model


def test_digits_config_forward():
    abstract = _abstract(DIGITS, (8, 8, 1))
    x, t = _inputs(batch=4, shape=(8, 8, 1))
    out = _apply(nnx.graphdef(abstract))(_random_params(abstract), x, t)
    assert out.shape == (4, 8, 8, 1) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_state_holds_only_params():
    abstract = _abstract(SMALL, SMALL_SHAPE)
    variables = jax.tree.leaves(nnx.state(abstract), is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert variables and all(type(v) is nnx.Param for v in variables)


def test_zero_output_at_init_then_depends_on_x_and_t(small):
    graphdef, params, perturbed, apply = small
    x, t = _inputs()
    out = apply(params, x, t)
    assert out.shape == (3, *SMALL_SHAPE)
    np.testing.assert_array_equal(np.asarray(out), 0.0)

    out = apply(perturbed, x, t)
    assert float(jnp.min(jnp.abs(out).reshape(3, -1).max(axis=1))) > 1e-3
    assert float(jnp.max(jnp.abs(apply(perturbed, x, t + 50) - out))) > 1e-3
    assert float(jnp.max(jnp.abs(apply(perturbed, x + 0.5, t) - out))) > 1e-3
    # Float timesteps are accepted; an integer t and the same float t agree.
    np.testing.assert_allclose(apply(perturbed, x, t.astype(jnp.float32)), out, atol=1e-6)


def test_examples_do_not_interact(small):
    # GroupNorm and attention act within one example: changing example 1 leaves 0 and 2 alone.
    graphdef, params, perturbed, apply = small
    x, t = _inputs()
    out = apply(perturbed, x, t)
    out2 = apply(perturbed, x.at[1].add(1.0), t.at[1].add(7))
    np.testing.assert_allclose(out2[jnp.array([0, 2])], out[jnp.array([0, 2])], atol=1e-6)
    assert float(jnp.max(jnp.abs(out2[1] - out[1]))) > 1e-3


def _perturbed_attention(ch, num_heads):
    block = nnx.eval_shape(
        lambda: AttentionBlock(ch, num_heads=num_heads, num_groups=4, rngs=nnx.Rngs(0))
    )
    return nnx.graphdef(block), _random_params(block, scale=0.3)


def test_attention_block_matches_reference(x64):
    ch, heads = 8, 2
    graphdef, params = _perturbed_attention(ch, heads)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, ch))
    out = np.asarray(nnx.merge(graphdef, params)(jnp.asarray(x)))

    p = jax.tree.map(np.asarray, params)
    # GroupNorm over (H, W, channels of the group), per example.
    xg = x.reshape(2, 15, 4, ch // 4)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    var = xg.var(axis=(1, 3), keepdims=True)
    hn = ((xg - mean) / np.sqrt(var + 1e-6)).reshape(2, 15, ch)
    hn = hn * p["norm"]["scale"] + p["norm"]["bias"]
    qkv = hn @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    d = ch // heads
    q, k, v = (qkv[..., i * ch : (i + 1) * ch].reshape(2, 15, heads, d) for i in range(3))
    heads_out = []
    for h in range(heads):
        logits = q[:, :, h] @ k[:, :, h].transpose(0, 2, 1) / np.sqrt(d)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        heads_out.append(w @ v[:, :, h])
    attn = np.stack(heads_out, axis=2).reshape(2, 15, ch)
    ref = x + (attn @ p["proj_out"]["kernel"] + p["proj_out"]["bias"]).reshape(x.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_attention_block_is_permutation_equivariant():
    ch = 16
    graphdef, params = _perturbed_attention(ch, num_heads=2)
    block = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    b, h, w = 2, 4, 6
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((b, h, w, ch)), jnp.float32)
    perm = rng.permutation(h * w)

    def permute(a):
        return a.reshape(b, h * w, ch)[:, perm].reshape(b, h, w, ch)

    out = block(params, x)
    assert float(jnp.max(jnp.abs(out - x))) > 1e-2  # not the identity
    np.testing.assert_allclose(block(params, permute(x)), permute(out), rtol=1e-5, atol=1e-5)


def test_dropout(small):
    # Same parameters as SMALL; only the (static) dropout rate differs.
    _, _, params, _ = small
    apply = _apply(nnx.graphdef(_abstract(dataclasses.replace(SMALL, dropout=0.5), SMALL_SHAPE)))
    x, t = _inputs()
    det = apply(params, x, t)
    np.testing.assert_array_equal(apply(params, x, t), det)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    a = apply(params, x, t, key=k1)
    np.testing.assert_array_equal(apply(params, x, t, key=k1), a)
    assert float(jnp.max(jnp.abs(apply(params, x, t, key=k2) - a))) > 1e-3
    assert float(jnp.max(jnp.abs(a - det))) > 1e-3
    # Without a key the dropout model is the deterministic network: the same as rate 0.
    np.testing.assert_allclose(det, small[3](params, x, t), rtol=1e-6, atol=1e-6)


def test_no_dropout_ignores_key(small):
    graphdef, params, perturbed, apply = small
    x, t = _inputs()
    det = apply(perturbed, x, t)
    np.testing.assert_array_equal(apply(perturbed, x, t, key=jax.random.key(5)), det)


def test_pure_function_matches_eager_module():
    # A one-level network keeps the op-by-op eager call cheap.
    config = UNetConfig(
        channels=8, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(), num_groups=4
    )
    abstract = _abstract(config, (4, 4, 1))
    model = nnx.merge(nnx.graphdef(abstract), _random_params(abstract))
    x, t = _inputs(shape=(4, 4, 1))
    eager = model(x, t)  # op by op
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    assert isinstance(params, dict)
    jitted = jax.jit(lambda p, x, t: nnx.merge(graphdef, p)(x, t))(params, x, t)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)


def test_grads_through_pure_function(small):
    graphdef, params, perturbed, _ = small
    x, t = _inputs()

    @jax.jit
    def grad(p):
        return jax.grad(lambda p: jnp.mean((nnx.merge(graphdef, p)(x, t) - x) ** 2))(p)

    grads = jax.tree.map(np.asarray, grad(perturbed))
    assert jax.tree.structure(grads) == jax.tree.structure(perturbed)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.max(np.abs(g)) > 0 for g in leaves)

    # At init only the zero-initialised head gets a gradient: the output is zero and every
    # other path to the loss goes through conv_out's zero kernel.
    grads0 = jax.tree.map(np.asarray, grad(params))
    assert np.max(np.abs(grads0["conv_out"]["kernel"])) > 0
    assert np.max(np.abs(grads0["conv_in"]["kernel"])) == 0


def test_class_conditional(small):
    # num_classes counts the classes without the null class: the table has one more row,
    # the learned null class (label -1); tests/nets/test_conditioning.py tests it.
    config = dataclasses.replace(SMALL, num_classes=10)
    abstract = _abstract(config, SMALL_SHAPE)
    table = nnx.to_pure_dict(nnx.state(abstract))["condition_embed"]["label_embed"]["embedding"]
    assert table.shape == (11, 4 * SMALL.channels)
    params = {**small[2], "condition_embed": _random_params(abstract)["condition_embed"]}
    apply = _apply(nnx.graphdef(abstract))
    x, t = _inputs()
    y = jnp.array([0, 3, 9])
    out = apply(params, x, t, y)
    assert out.shape == (3, *SMALL_SHAPE)
    assert float(jnp.max(jnp.abs(apply(params, x, t, y.at[0].set(4))[0] - out[0]))) > 1e-3
    # The class embedding is added to the timestep embedding: label row 0 set to zero
    # gives the unconditional network's output.
    zeroed = {
        **params,
        "condition_embed": {"label_embed": {"embedding": _table_of(params).at[0].set(0.0)}},
    }
    np.testing.assert_allclose(
        apply(zeroed, x, t, jnp.zeros(3, jnp.int32)), small[3](small[2], x, t), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="class-conditional"):
        nnx.eval_shape(lambda m: m(x, t), abstract)
    with pytest.raises(ValueError, match=r"labels y must be integer class labels of shape \(B,\)"):
        nnx.eval_shape(lambda m: m(x, t, y=jnp.array([0.0, 1.0, 2.0])), abstract)


def _table_of(params):
    return params["condition_embed"]["label_embed"]["embedding"]


def test_out_channels():
    config = dataclasses.replace(SMALL, out_channels=4)
    abstract = _abstract(config, SMALL_SHAPE)
    x, t = _inputs()
    out = nnx.eval_shape(lambda m: m(x, t), abstract)
    assert out.shape == (3, 8, 8, 4)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"30x32 is not divisible by .* = 8"):
        UNet(UNetConfig(), image_shape=(30, 32, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"attention_resolutions \[16\] match no level"):
        UNet(UNetConfig(), image_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
        UNet(UNetConfig(), image_shape=(32, 32), rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 48}, r"48 \* 1 = 48 is not divisible by num_groups = 32"),
        ({"channel_mult": ()}, "at least one level"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"num_heads": 3}, "not divisible by num_heads = 3"),
        ({"num_res_blocks": 0}, "num_res_blocks must be an integer >= 1"),
        ({"num_classes": -1}, "num_classes must be an integer >= 0"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)


def test_config_is_hashable_with_list_input():
    config = UNetConfig(channel_mult=[1, 2], attention_resolutions=[16])
    assert config.channel_mult == (1, 2) and hash(config) == hash(UNetConfig(channel_mult=(1, 2)))


def test_call_errors():
    model = _abstract(SMALL, SMALL_SHAPE)
    x, t = _inputs()

    def call(*args, **kwargs):
        return nnx.eval_shape(lambda m: m(*args, **kwargs), model)

    with pytest.raises(ValueError, match=r"x of shape \(B, 8, 8, 2\), got \(3, 8, 8, 3\)"):
        call(jnp.zeros((3, 8, 8, 3)), t)
    with pytest.raises(ValueError, match=r"x of shape \(B, 8, 8, 2\), got \(8, 8, 2\)"):
        call(jnp.zeros((8, 8, 2)), t)
    with pytest.raises(ValueError, match="float x, got dtype int32"):
        call(jnp.zeros((3, 8, 8, 2), jnp.int32), t)
    with pytest.raises(ValueError, match=r"t of shape \(3,\) for x of batch 3, got \(3, 1\)"):
        call(x, t.reshape(3, 1))
    with pytest.raises(ValueError, match=r"t of shape \(3,\) for x of batch 3, got \(\)"):
        call(x, jnp.array(5))
    with pytest.raises(ValueError, match="unconditional"):
        call(x, t, y=jnp.zeros(3, jnp.int32))
