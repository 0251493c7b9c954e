"""SRGAN's maths (``jaxgen.gan.srgan``), networks (``jaxgen.nets.srgan``) and the VGG19
feature extractor (``jaxgen.nets.vgg``) against closed forms.

* pixel shuffle: ``out[r h + i, r w + j, c] = in[h, w, (r i + j) C + c]`` on a hand-computed
  example and against a loop; ``space_to_depth`` is its exact inverse (both ways);
* the SRResNet generator enlarges by exactly the factor (2 and 4); with a reference batch
  an output depends only on its own input (a mean-subtracting generator as the oracle;
  negative control: without a reference it does not);
* content loss: with the identity feature map it is the pixel MSE (0 at ``G(y) = x``), a
  linear feature map gives ``s^2 mean (A (x - x_hat))^2``, the truth's features get no
  gradient and the estimate's gradient is the closed form;
* the adversarial and discriminator losses equal ``softplus`` closed forms on given logits;
* VGG19: an ``.npz`` of random weights round-trips exactly; a missing or ill-shaped entry is
  refused by name; the converters map torchvision's OIHW and Keras' names exactly; the
  input normalizations are the stated affine maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen.core import SamplerOutput
from jaxgen.gan import srgan
from jaxgen.nets import vgg
from jaxgen.nets.srgan import SRGANDiscriminator, SRResNetGenerator, pixel_shuffle, space_to_depth


def softplus(x):
    return np.logaddexp(0.0, x)


# ----------------------------------------------------------------------------- pixel shuffle


def test_pixel_shuffle_matches_a_hand_computed_example():
    # one 1x1 position, r = 2, C = 2: channel (2 i + j) * 2 + c goes to pixel (i, j), channel c
    x = jnp.arange(8.0).reshape(1, 1, 1, 8)
    expected = np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], np.float32)[None]
    np.testing.assert_array_equal(pixel_shuffle(x, 2), expected)
    # two positions along H, C = 1: each becomes its own 2x2 block
    x = jnp.asarray([[[[1.0, 2.0, 3.0, 4.0]]], [[[5.0, 6.0, 7.0, 8.0]]]]).reshape(1, 2, 1, 4)
    expected = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32).reshape(1, 4, 2, 1)
    np.testing.assert_array_equal(pixel_shuffle(x, 2), expected)


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_is_the_exact_inverse_of_space_to_depth(r):
    rng = np.random.default_rng(r)
    b, h, w, c = 2, 3, 2, 2
    x = rng.normal(size=(b, h, w, r * r * c)).astype(np.float32)
    out = np.asarray(pixel_shuffle(jnp.asarray(x), r))
    loop = np.zeros((b, r * h, r * w, c), np.float32)
    for hh in range(h):
        for ww in range(w):
            for i in range(r):
                for j in range(r):
                    loop[:, r * hh + i, r * ww + j, :] = x[
                        :, hh, ww, (r * i + j) * c : (r * i + j + 1) * c
                    ]
    np.testing.assert_array_equal(out, loop)
    np.testing.assert_array_equal(space_to_depth(jnp.asarray(out), r), x)
    z = rng.normal(size=(b, r * h, r * w, c)).astype(np.float32)
    np.testing.assert_array_equal(pixel_shuffle(space_to_depth(jnp.asarray(z), r), r), z)
    with pytest.raises(ValueError, match="pixel_shuffle needs"):
        pixel_shuffle(jnp.zeros((1, 2, 2, r * r * c + 1)), r)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("factor", [2, 4])
def test_generator_enlarges_by_the_factor(factor):
    blocks = []

    def run(y):
        g = SRResNetGenerator(1, factor=factor, features=4, num_blocks=1, rngs=nnx.Rngs(0))
        blocks.append(len(g.upsampling))
        return g(y)

    out = jax.eval_shape(run, jax.ShapeDtypeStruct((2, 3, 2, 1), jnp.float32))
    assert out.shape == (2, 3 * factor, 2 * factor, 1) and blocks == [{2: 1, 4: 2}[factor]]


def test_bad_factor_and_discriminator_sizes_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        SRResNetGenerator(1, factor=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by 2"):
        SRGANDiscriminator(1, image_size=(8, 8), features=(4, 4, 4, 4), rngs=nnx.Rngs(0))
    d = SRGANDiscriminator(
        1, image_size=(8, 8), features=(4, 8), dense_features=8, rngs=nnx.Rngs(0)
    )
    assert d(jnp.zeros((3, 8, 8, 1))).shape == (3,)


def _normalizing_generator(y, num_reference=0):
    """``G(y) = upsample(y - mean(stats))``: a batch norm's dependence on its statistics."""
    stats = y[:num_reference] if num_reference else y
    return jnp.repeat(jnp.repeat(y - jnp.mean(stats), 2, axis=1), 2, axis=2)


def test_reference_batch_makes_an_output_depend_on_its_own_input_only():
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.uniform(-1, 1, (6, 4, 4, 1)), jnp.float32)
    ref = jnp.asarray(rng.uniform(0, 2, (5, 4, 4, 1)), jnp.float32)
    whole = srgan.super_resolve(_normalizing_generator, y, reference=ref)
    expected = np.repeat(np.repeat(np.asarray(y) - np.mean(np.asarray(ref)), 2, 1), 2, 2)
    np.testing.assert_allclose(whole, expected, rtol=1e-6, atol=1e-6)
    part = srgan.super_resolve(_normalizing_generator, y[2:4], reference=ref)
    np.testing.assert_array_equal(part, whole[2:4])
    out = srgan.sample(
        _normalizing_generator, jax.random.key(0), (6, 8, 8, 1), condition=y, reference=ref
    )
    assert isinstance(out, SamplerOutput) and out.nfe == 1
    np.testing.assert_array_equal(out.samples, whole)
    with pytest.raises(ValueError, match="expected"):
        srgan.sample(_normalizing_generator, jax.random.key(0), (6, 4, 4, 1), condition=y)
    # negative control: the batch's own statistics tie the rows together
    bare_whole = srgan.super_resolve(_normalizing_generator, y)
    bare_part = srgan.super_resolve(_normalizing_generator, y[2:4])
    assert float(jnp.max(jnp.abs(bare_whole[2:4] - bare_part))) > 1e-4


# ----------------------------------------------------------------------------- losses

B, H, W, C = 3, 4, 4, 2


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.uniform(-1, 1, (B, H, W, C))) for _ in range(2))


def test_content_loss_with_the_identity_is_the_pixel_mse(x64):
    x, x_hat = _images()
    mse = np.mean((np.asarray(x) - np.asarray(x_hat)) ** 2, axis=(1, 2, 3))
    pixels, terms = srgan.content_loss(x_hat, x)
    identity, _ = srgan.content_loss(x_hat, x, feature_fn=lambda v: v, feature_scale=1.0)
    np.testing.assert_allclose(pixels, mse, rtol=1e-12)
    np.testing.assert_allclose(identity, mse, rtol=1e-12)
    np.testing.assert_allclose(terms["pixel_mse"], mse, rtol=1e-12)
    zero, _ = srgan.content_loss(x, x, feature_fn=lambda v: v)
    np.testing.assert_array_equal(zero, np.zeros(B))
    assert float(jnp.min(pixels)) > 0  # negative control: the loss sees a difference


def test_feature_content_loss_of_a_linear_map_and_its_gradients(x64):
    x, x_hat = _images(1)
    a = jnp.asarray(np.random.default_rng(2).normal(size=(H * W * C, 5)))
    phi = lambda v: v.reshape(v.shape[0], -1) @ a  # noqa: E731
    s = 1 / 12.75
    loss, _ = srgan.content_loss(x_hat, x, feature_fn=phi, feature_scale=s)
    diff = (np.asarray(x) - np.asarray(x_hat)).reshape(B, -1) @ np.asarray(a)
    np.testing.assert_allclose(loss, s**2 * np.mean(diff**2, axis=1), rtol=1e-12)

    def total(estimate, truth):
        return jnp.sum(srgan.content_loss(estimate, truth, feature_fn=phi, feature_scale=s)[0])

    g_est, g_truth = jax.grad(total, argnums=(0, 1))(x_hat, x)
    np.testing.assert_array_equal(g_truth, np.zeros_like(g_truth))  # phi(x) is a constant
    # d/dx_hat of s^2 / K sum_k ((x - x_hat) A)_k^2 = -2 s^2 / K (x - x_hat) A A^T
    expected = -2 * s**2 / 5 * diff @ np.asarray(a).T
    np.testing.assert_allclose(g_est.reshape(B, -1), expected, rtol=1e-10)


ALPHA = np.array([0.3, -0.7])


def _discriminator(images):
    alpha = jnp.asarray(ALPHA).reshape(1, 1, 1, C)
    return jnp.sum(images * alpha, axis=(1, 2, 3))  # one logit per image


@pytest.mark.parametrize("pixel_weight", [0.0, 2.0])
def test_generator_and_discriminator_losses_are_the_closed_forms(pixel_weight, x64):
    x, fake = _images(3)
    y = x[:, ::2, ::2]  # any low-resolution input: the generator below ignores it
    generator = lambda low: fake  # noqa: E731
    l_real = np.sum(np.asarray(x) * ALPHA, axis=(1, 2, 3))
    l_fake = np.sum(np.asarray(fake) * ALPHA, axis=(1, 2, 3))
    mse = np.mean((np.asarray(x) - np.asarray(fake)) ** 2, axis=(1, 2, 3))

    d_loss, d_terms, updates = srgan.discriminator_objective(generator, _discriminator, y, x)
    np.testing.assert_allclose(d_loss, softplus(-l_real) + softplus(l_fake), rtol=1e-12)
    np.testing.assert_allclose(d_terms["d_real"], 1 / (1 + np.exp(-l_real)), rtol=1e-12)
    np.testing.assert_allclose(d_terms["d_fake"], 1 / (1 + np.exp(-l_fake)), rtol=1e-12)
    assert updates == {}

    scale = 0.5
    phi = lambda v: jnp.tanh(v)  # noqa: E731
    feature = scale**2 * np.mean(
        (np.tanh(np.asarray(x)) - np.tanh(np.asarray(fake))) ** 2, (1, 2, 3)
    )
    g_loss, g_terms, _ = srgan.generator_objective(
        generator,
        _discriminator,
        y,
        x,
        feature_fn=phi,
        feature_scale=scale,
        pixel_weight=pixel_weight,
        adversarial_weight=1e-3,
    )
    adversarial = softplus(-l_fake)
    np.testing.assert_allclose(
        g_loss, feature + pixel_weight * mse + 1e-3 * adversarial, rtol=1e-12
    )
    np.testing.assert_allclose(g_terms["adversarial"], adversarial, rtol=1e-12)
    np.testing.assert_allclose(g_terms["content"], feature, rtol=1e-12)
    np.testing.assert_allclose(g_terms["pixel_mse"], mse, rtol=1e-12)
    # SRResNet / SRGAN-MSE: no feature network, the content loss is the MSE
    g_mse, _, _ = srgan.generator_objective(generator, _discriminator, y, x, adversarial_weight=0.0)
    np.testing.assert_allclose(g_mse, mse, rtol=1e-12)
    with pytest.raises(ValueError, match="adversarial_weight"):
        srgan.generator_objective(generator, _discriminator, y, x, adversarial_weight=-1.0)


# ----------------------------------------------------------------------------- VGG19


def _random_vgg(layer, seed=0):
    rng = np.random.default_rng(seed)
    return {
        name: {
            "kernel": rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32),
            "bias": rng.normal(size=(c_out,)).astype(np.float32),
        }
        for name, c_in, c_out in vgg.vgg19_convolutions(layer)
    }


def test_vgg19_weights_round_trip_exactly_and_bad_files_are_refused(tmp_path):
    params = _random_vgg("relu2_1")
    path = tmp_path / "vgg.npz"
    vgg.save_vgg19_weights(path, params)
    loaded = vgg.load_vgg19_weights(path, layer="relu2_1")
    assert set(loaded) == {"conv1_1", "conv1_2", "conv2_1"}
    for name, entry in params.items():
        for leaf, value in entry.items():
            np.testing.assert_array_equal(loaded[name][leaf], value)
    # a shallower layer reads a subset; extra entries are ignored
    assert set(vgg.load_vgg19_weights(path, layer="pool1")) == {"conv1_1", "conv1_2"}
    with pytest.raises(ValueError, match="missing VGG19 weight 'conv2_2/kernel'"):
        vgg.load_vgg19_weights(path, layer="relu2_2")
    bad = {**params, "conv1_2": {**params["conv1_2"], "bias": np.zeros(3, np.float32)}}
    vgg.save_vgg19_weights(tmp_path / "bad.npz", bad)
    with pytest.raises(ValueError, match=r"'conv1_2/bias' has shape \(3,\), expected \(64,\)"):
        vgg.load_vgg19_weights(tmp_path / "bad.npz", layer="relu1_2")
    with pytest.raises(ValueError, match="unknown VGG19 layer 'relu6_1'"):
        vgg.load_vgg19_weights(path, layer="relu6_1")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        vgg.load_vgg19_weights(tmp_path / "nope.npz")


def test_vgg19_converters_map_names_and_layouts_exactly():
    rng = np.random.default_rng(0)
    # torchvision: features.{k} is the k-th layer of conv, relu, ..., pool; kernels OIHW
    index = {name: k for k, name in enumerate(vgg.vgg19_layers())}
    assert index["conv2_1"] == 5 and index["conv3_1"] == 10 and index["conv5_4"] == 34
    state = {}
    for name, c_in, c_out in vgg.vgg19_convolutions("relu2_1"):
        state[f"features.{index[name]}.weight"] = rng.normal(size=(c_out, c_in, 3, 3))
        state[f"features.{index[name]}.bias"] = rng.normal(size=(c_out,))
    out = vgg.from_torchvision_state_dict(state)
    assert set(out) == {"conv1_1", "conv1_2", "conv2_1"}
    w = state["features.5.weight"]
    np.testing.assert_array_equal(out["conv2_1"]["kernel"][1, 2, 7, 9], w[9, 7, 1, 2])
    np.testing.assert_array_equal(out["conv2_1"]["bias"], state["features.5.bias"])
    keras = {"block1_conv2": [np.ones((3, 3, 64, 64)), np.arange(64.0)]}
    assert set(vgg.from_keras_layers(keras)) == {"conv1_2"}
    np.testing.assert_array_equal(vgg.from_keras_layers(keras)["conv1_2"]["bias"], np.arange(64.0))


@pytest.mark.parametrize("preprocessing", ["imagenet", "caffe"])
def test_vgg19_input_normalization_is_the_stated_affine_map(preprocessing):
    # conv1_1 with a centre-tap identity kernel and zero bias returns its (normalized) input
    kernel = np.zeros((3, 3, 3, 64), np.float32)
    for c in range(3):
        kernel[1, 1, c, c] = 1.0
    params = {"conv1_1": {"kernel": kernel, "bias": np.zeros(64, np.float32)}}
    fn = vgg.vgg19_feature_fn(params, layer="conv1_1", preprocessing=preprocessing)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    out = np.asarray(fn(jnp.asarray(x)))[..., :3]
    if preprocessing == "imagenet":
        expected = ((x + 1) / 2 - np.array(vgg.IMAGENET_MEAN)) / np.array(vgg.IMAGENET_STD)
    else:
        expected = 127.5 * (x[..., ::-1] + 1) - np.array(vgg.CAFFE_MEAN_BGR)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    # one grey channel is read as three equal ones; relu / pool layers have the stated sizes
    grey = fn(jnp.asarray(x[..., :1]))
    np.testing.assert_allclose(grey, fn(jnp.asarray(np.repeat(x[..., :1], 3, -1))), atol=1e-6)
    pooled = vgg.vgg19_feature_fn(_random_vgg("pool1"), layer="pool1")(jnp.asarray(x))
    assert pooled.shape == (2, 2, 2, 64) and float(jnp.min(pooled)) >= 0
