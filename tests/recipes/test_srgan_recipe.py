"""The SRGAN recipe on digits with tiny networks.

* The parameter tree holds the two players and the reference batch, nothing of the frozen
  feature network; after training steps the digit classifier's weights are bit-identical
  to the shipped file. During the SRResNet steps the discriminator does not move (its
  optimizer is masked) and the generator's loss is the pixel MSE; after them it moves.
* The condition is the area-downsampled image; samples super-resolve the condition given
  (shape, one generator pass on ``[reference; y]``, deterministic for the key, a row
  independent of its batch).
* ``evaluate`` returns PSNR against the truth and the baselines (the model's and the
  bilinear one recomputed here). (``jaxgen train`` / ``eval`` of ``srgan_digits.py`` end to
  end are the run floor's, shared with every family.)
* The VGG19 content loss runs with a user ``.npz``; a missing file, an unknown layer, a file
  lacking an entry and a bad factor are ``ConfigError`` naming them.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.core import SamplerOutput
from jaxgen.core.resize import downsample_mean, upsample
from jaxgen.data.digits import load_digits
from jaxgen.engine.adversarial_step import DISCRIMINATOR, GENERATOR
from jaxgen.engine.step import init_train_state
from jaxgen.evaluation.digit_fd import WEIGHTS_PATH, flatten_params
from jaxgen.gan.pix2pix import psnr
from jaxgen.nets import vgg
from jaxgen.run import build_recipe, load_train_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = [
    "model.generator_features=4",
    "model.generator_blocks=1",
    "model.generator_kernel_size=3",
    "model.discriminator_features=(4, 8)",
    "model.discriminator_dense=8",
    "model.pretrain_steps=2",
    "data.batch_size=8",
    "train.num_steps=4",
    "train.log_every=2",
    "train.checkpoint_every=4",
    "train.sample_every=0",
    "train.progress_bar=false",
    "eval.num_samples=64",
    "eval.batch_size=64",
    "eval.max_examples=64",
]


def tiny(*extra: str):
    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "srgan_digits.py")), [*TINY, *extra]
    )
    return config, build_recipe(config, load_train_dataset(config))


def _images(n: int, start: int = 0) -> jax.Array:
    return jnp.asarray(load_digits("train")[0][start : start + n], jnp.float32)


@pytest.fixture(scope="module")
def recipe():
    return tiny()[1]


@pytest.fixture(scope="module")
def trained(recipe):
    """Four jitted steps (2 SRResNet, 2 adversarial) on the digit-classifier content loss:
    ``(final state, [(params before, params after, batch, metrics)])``."""
    tx = recipe.make_optimizer(4)
    state = jax.jit(
        lambda batch: init_train_state(lambda key: recipe.init_params(key, batch), tx, seed=0)
    )({"image": _images(16)})
    step = jax.jit(recipe.make_train_step(tx))
    history = []
    for i in range(4):
        batch = {"image": _images(8, start=16 + 8 * i)}
        before = state.params
        state, metrics = step(state, batch)
        history.append((before, state.params, batch, metrics))
    return state, history


def _unchanged(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_feature_network_is_frozen_and_outside_the_parameters(recipe, trained):
    assert recipe.feature_fn is not None and recipe.condition(_images(2)).shape == (2, 4, 4, 1)
    state, history = trained
    assert set(state.params) == {GENERATOR, DISCRIMINATOR, "reference"}
    assert set(state.params["reference"]) == {"condition"}
    for i, (before, after, batch, metrics) in enumerate(history):
        if i < 2:  # SRResNet steps: D frozen, G's loss is the pixel MSE of G(y)
            assert _unchanged(before[DISCRIMINATOR], after[DISCRIMINATOR])
            assert float(metrics["pretraining"]) == 1.0
            out = recipe.generator_fn(before)(recipe.condition(batch["image"]))
            mse = jnp.mean((out - batch["image"]) ** 2)
            np.testing.assert_allclose(metrics["generator_loss"], mse, rtol=1e-5)
        else:  # adversarial steps: D moves, the losses are the game's
            assert not _unchanged(before[DISCRIMINATOR], after[DISCRIMINATOR])
            assert float(metrics["pretraining"]) == 0.0
            # the perceptual loss: content + pixel MSE + 1e-3 adversarial (digits config)
            expected = metrics["content"] + metrics["pixel_mse"] + 1e-3 * metrics["adversarial"]
            np.testing.assert_allclose(metrics["generator_loss"], expected, rtol=1e-5)
        assert not _unchanged(before[GENERATOR], after[GENERATOR])
    # the discriminator's Adam (and schedule) started at step 2: their counts are 2, not 4
    leaves = jax.tree_util.tree_leaves_with_path(state.opt_state[DISCRIMINATOR])
    named = [(jax.tree_util.keystr(path), int(leaf)) for path, leaf in leaves if leaf.ndim == 0]
    counts = [v for name, v in named if "count" in name]
    assert counts and set(counts) == {2}
    assert [v for name, v in named if "step" in name] == [4]  # the mask saw every step
    # the classifier's weights are the shipped ones, bit for bit, after training
    with np.load(WEIGHTS_PATH) as shipped:
        flat = flatten_params(jax.tree.map(np.asarray, recipe.feature_params))
        assert set(flat) == set(shipped.files)
        for name, value in flat.items():
            np.testing.assert_array_equal(value, shipped[name])
    n_params = sum(x.size for x in jax.tree.leaves(state.params[GENERATOR]))
    assert n_params < 2000  # the tiny generator; the classifier (65k) is not in it


def test_samples_super_resolve_the_condition_they_are_given(recipe, trained):
    assert recipe.sample_condition_split == "test" and recipe.init_batch_size > 0
    params = trained[0].ema_params
    # the low-resolution training conditions (the EMA of a constant, to float rounding)
    reference = downsample_mean(_images(16), 2)
    np.testing.assert_allclose(params["reference"]["condition"], reference, rtol=1e-6, atol=1e-6)
    images = _images(6, start=100)
    with pytest.raises(ValueError, match="condition"):
        recipe.sample(params, jax.random.key(0), 6)
    sample = jax.jit(recipe.sample, static_argnums=2)
    out = sample(params, jax.random.key(0), 6, condition={"image": images})
    assert isinstance(out, SamplerOutput) and out.samples.shape == (6, 8, 8, 1) and out.nfe == 1
    g = recipe.generator_fn(params)
    both = jnp.concatenate([params["reference"]["condition"], downsample_mean(images, 2)])
    np.testing.assert_allclose(out.samples, g(both, num_reference=16)[16:], rtol=1e-5, atol=1e-6)
    again = sample(params, jax.random.key(0), 6, condition={"image": images})
    np.testing.assert_array_equal(again.samples, out.samples)
    part = recipe.sample(
        params, jax.random.key(0), 2, first_index=3, condition={"image": images[3:5]}
    )
    np.testing.assert_allclose(part.samples, out.samples[3:5], rtol=1e-5, atol=1e-6)
    # negative control: another condition gives another super-resolution
    assert float(jnp.max(jnp.abs(out.samples[0] - out.samples[1]))) > 1e-3


def test_evaluate_reports_psnr_against_the_truth_and_the_baselines(recipe, trained):
    params = trained[0].ema_params
    truth = jnp.asarray(load_digits("test")[0][:64], jnp.float32)
    results = recipe.evaluate(params, np.asarray(truth), jax.random.key(0))
    keys = ("psnr_db", "l1", "bilinear_psnr_db", "nearest_psnr_db", "bicubic_psnr_db", "d_real")
    for key in keys:
        assert np.isfinite(results[key]), key
    bilinear = upsample(downsample_mean(truth, 2), 2, "bilinear")
    expected = float(jnp.mean(psnr(bilinear, truth)))
    np.testing.assert_allclose(results["bilinear_psnr_db"], expected, rtol=1e-5)
    out = recipe.translate(params, downsample_mean(truth, 2))
    np.testing.assert_allclose(results["psnr_db"], float(jnp.mean(psnr(out, truth))), rtol=1e-4)
    assert results["num_examples"] == 64


def test_vgg19_content_loss_and_bad_configs_are_refused_by_name(tmp_path):
    rng = np.random.default_rng(0)
    params = {
        name: {
            "kernel": rng.normal(size=(3, 3, a, b)).astype(np.float32) * 0.1,
            "bias": np.zeros(b, np.float32),
        }
        for name, a, b in vgg.vgg19_convolutions("relu1_1")
    }
    weights = tmp_path / "vgg.npz"
    vgg.save_vgg19_weights(weights, params)
    vgg_options = [
        "model.content_loss=vgg19",
        f"model.vgg19_weights={weights}",
        "model.vgg_layer=relu1_1",
    ]
    _, recipe = tiny(*vgg_options)
    batch = {"image": _images(8)}
    p = recipe.init_params(jax.random.key(0))
    loss, terms, _ = recipe.generator_loss(p, batch, jax.random.key(0), jnp.asarray(2))
    assert loss.shape == (8,) and bool(jnp.all(jnp.isfinite(loss)))
    np.testing.assert_array_equal(
        recipe.feature_params["conv1_1"]["kernel"], params["conv1_1"]["kernel"]
    )
    with pytest.raises(ConfigError, match="nope.npz"):
        tiny(*vgg_options, f"model.vgg19_weights={tmp_path / 'nope.npz'}")
    with pytest.raises(ConfigError, match="model.vgg_layer"):
        tiny(*vgg_options, "model.vgg_layer=relu9_9")
    with pytest.raises(ConfigError, match="model.vgg_layer='relu5_4' follows 4 2x2 poolings"):
        tiny(*vgg_options, "model.vgg_layer=relu5_4")  # 8x8 digits
    with pytest.raises(ConfigError, match="conv1_2/kernel"):
        tiny(*vgg_options, "model.vgg_layer=relu1_2")
    with pytest.raises(ConfigError, match="model.factor"):
        tiny("model.factor=3")
    with pytest.raises(ConfigError, match="model.content_loss"):
        tiny("model.content_loss=lpips")
