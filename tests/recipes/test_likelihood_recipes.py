"""The exact-likelihood recipes (flows, PixelCNNs) through the shared engine, tiny networks.

* every digits experiment trains, checkpoints and evaluates (test bits/dim, digit FD);
* the recipes' losses are the discrete likelihoods computed by hand from their networks:
  the flow's dequantized bound ``log p((k + u) / L) - D log L`` and the PixelCNN's sum of
  log-softmax values at the observed levels;
* Glow's data-dependent ActNorm init happens inside ``init_params`` from the init batch it
  is given (``init_batch_size`` examples, an argument of the jitted init, not read from
  disk): its first step maps that batch to zero mean and unit variance per channel, also
  when the init runs jitted over 8 devices with the batch sharded; another batch gives
  other ActNorm parameters without a new trace;
* samples depend only on the seed and the example's index: 16 flow / PixelCNN samples are
  the first 16 of 64 for the same key, and ``first_index`` draws the later ones;
* the 2-D flow trains on the two moons and reports an exact test NLL.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.core import SamplerOutput
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.flows import actnorm_forward, images_to_levels, squeeze, uniform_dequantize
from jaxgen.run import build_recipe, evaluate_run, load_run, load_train_dataset, train

ROOT = pathlib.Path(__file__).resolve().parents[2]

COMMON = [
    "data.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "eval.num_samples=16",
    "eval.batch_size=16",
    "eval.max_examples=16",
]
TINY = {
    "realnvp_digits": [
        "model.hidden_channels=4",
        "model.num_res_blocks=1",
        "model.num_couplings=2",
    ],
    "glow_digits": ["model.hidden_channels=4", "model.num_couplings=1", "model.data_init_size=32"],
    "pixelcnn_digits": ["model.hidden_channels=4", "model.num_layers=1"],
    "gated_pixelcnn_digits": ["model.hidden_channels=4", "model.num_layers=2"],
}


def tiny_config(name: str, *extra: str):
    config = load_experiment(str(ROOT / "experiments" / f"{name}.py"))
    return apply_overrides(config, [*COMMON, *TINY.get(name, []), *extra])


def tiny_recipe(name: str, *extra: str):
    config = tiny_config(name, *extra)
    return config, build_recipe(config, load_train_dataset(config))


def _images(n: int = 8) -> jax.Array:
    return jnp.asarray(load_digits("train")[0][:n], jnp.float32)


@pytest.mark.parametrize("name", list(TINY))
def test_digits_experiment_trains_and_evaluates(name, tmp_path):
    config = tiny_config(name, "train.num_steps=2")
    result = train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert result.step == 2 and np.isfinite(result.metrics["loss"])
    results = evaluate_run(load_run(tmp_path))
    # An untrained model on 17 levels: worse than uniform (4.09) is possible, absurd is not.
    assert 0.5 < results["bits_per_dim"] < 30.0
    assert results["num_examples"] == 16
    assert np.isfinite(results["digit_fd"])


@pytest.mark.parametrize("name", ["realnvp_digits", "glow_digits"])
def test_flow_loss_is_the_dequantized_discrete_bound(name):
    _, recipe = tiny_recipe(name)
    params = recipe.init_params(jax.random.key(0))
    x, key = _images(), jax.random.key(1)

    @jax.jit  # one compilation, not op by op
    def losses_and_log_prob(params):
        loss, terms = recipe.loss(params, {"image": x}, key)
        other, _ = recipe.loss(params, {"image": x}, jax.random.key(2))
        y = uniform_dequantize(images_to_levels(x, num_levels=17), key, num_levels=17)
        return loss, terms, other, recipe.modules.bind(params, "flow").log_prob(y)

    loss, terms, other, log_prob = losses_and_log_prob(params)
    by_hand = -(log_prob - 64 * np.log(17.0))
    np.testing.assert_allclose(loss, by_hand, rtol=1e-5)
    np.testing.assert_allclose(
        terms["base_log_prob"] + terms["log_det"], 64 * np.log(17.0) - by_hand, rtol=1e-5
    )
    np.testing.assert_allclose(terms["bits_per_dim"], by_hand / (64 * np.log(2.0)), rtol=1e-5)
    # Negative control: another dequantization draw is another number.
    assert not np.allclose(other, loss)


@pytest.mark.parametrize("name", ["pixelcnn_digits", "gated_pixelcnn_digits"])
def test_pixelcnn_loss_is_the_sum_of_log_softmax_at_the_levels(name):
    _, recipe = tiny_recipe(name)
    params = recipe.init_params(jax.random.key(0))
    x = _images()
    levels = np.rint((np.asarray(x) + 1.0) * 8).astype(int)

    @jax.jit  # one compile, not op by op
    def loss_and_logits(params):
        loss, terms = recipe.loss(params, {"image": x}, jax.random.key(1))
        return loss, terms, recipe.logits(params, jnp.asarray(levels))

    loss, terms, logits = loss_and_logits(params)
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    b, h, w, c = np.indices(levels.shape)
    by_hand = -logp[b, h, w, c, levels].reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(loss, by_hand, rtol=1e-5)
    np.testing.assert_allclose(terms["bits_per_dim"], by_hand / (64 * np.log(2.0)), rtol=1e-5)
    shifted = -logp[b, h, w, c, np.clip(levels + 1, 0, 16)].reshape(len(x), -1).sum(axis=1)
    assert not np.allclose(loss, shifted, rtol=1e-3)  # negative control: wrong levels


def test_glow_actnorm_is_initialized_from_data_over_eight_devices():
    config, recipe = tiny_recipe("glow_digits")
    assert recipe.init_batch_size == 32  # model.data_init_size
    assert tiny_recipe("realnvp_digits")[1].init_batch_size == 0
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    traces = []

    def init(key, batch):
        traces.append(1)
        return recipe.init_params(key, batch)

    jitted = jax.jit(init, out_shardings=sharding.replicated(mesh))
    images = _images(64)
    batch = {"image": jax.device_put(images[:32], sharding.batch_sharding(mesh))}
    params = jitted(jax.random.key(0), batch)
    flow = recipe.modules.bind(params, "flow")
    step = flow.levels[0][0]
    y = recipe.dequantize(images[:32], jax.random.key(0))
    h, _ = flow._preprocess(y)
    h = squeeze(h)
    out, _ = actnorm_forward(h, step.actnorm_log_scale[...], step.actnorm_bias[...])
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    plain = recipe.modules.init(jax.random.key(0))
    assert not np.allclose(
        plain["flow"]["levels"][0][0]["actnorm_bias"],
        params["flow"]["levels"][0][0]["actnorm_bias"],
    )
    # The batch is an argument of the compiled init: another batch, other statistics, and
    # no second trace (nothing was baked into the program).
    other = jitted(
        jax.random.key(0), {"image": jax.device_put(images[32:], sharding.batch_sharding(mesh))}
    )
    assert len(traces) == 1
    assert not np.allclose(
        other["flow"]["levels"][0][0]["actnorm_bias"],
        params["flow"]["levels"][0][0]["actnorm_bias"],
    )
    # Without an init batch (shape planning, restoring) ActNorm keeps its plain init.
    unset = recipe.init_params(jax.random.key(0))
    np.testing.assert_array_equal(
        unset["flow"]["levels"][0][0]["actnorm_bias"], plain["flow"]["levels"][0][0]["actnorm_bias"]
    )


@pytest.mark.parametrize("name", ["glow_digits", "gated_pixelcnn_digits"])
def test_samples_depend_only_on_the_seed_and_the_index(name):
    """16 samples are the first 16 of 64 for the same key (exact: the images are levels),
    and ``first_index=16`` draws samples 16..31; the draw counts its network passes."""
    extra = ["model.num_classes=10"] if name.startswith("gated") else []
    _, recipe = tiny_recipe(name, *extra)
    params = recipe.init_params(jax.random.key(0))
    key = jax.random.key(5)

    @jax.jit  # the three draws in one compilation
    def draws(params, key, first_index):
        return (
            recipe.sample(params, key, 16),
            recipe.sample(params, key, 64),
            recipe.sample(params, key, 16, first_index=first_index),
        )

    small, big, later = draws(params, key, 16)
    assert isinstance(small, SamplerOutput)
    assert small.nfe == (1 if name.startswith("glow") else 64)
    np.testing.assert_array_equal(np.asarray(small.samples), np.asarray(big.samples)[:16])
    np.testing.assert_array_equal(np.asarray(later.samples), np.asarray(big.samples)[16:32])
    # Negative control: the samples are not all alike.
    assert len({np.asarray(row).tobytes() for row in big.samples}) > 32
    with pytest.raises(ConfigError, match="num_steps"):
        recipe.sample(params, key, 2, num_steps=3)


def test_2d_flow_trains_on_the_moons(tmp_path):
    config = load_experiment(str(ROOT / "experiments" / "realnvp_2d_moons.py"))
    config = apply_overrides(
        config,
        [*COMMON, "model.hidden=(8,)", "model.num_couplings=2", "train.num_steps=2"],
    )
    train(config, tmp_path, mesh=sharding.make_mesh(1))
    results = evaluate_run(load_run(tmp_path))
    assert np.isfinite(results["nll_nats"]) and "bits_per_dim" not in results


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("realnvp_digits", "model.architecture=nice", "model.architecture"),
        ("realnvp_digits", "model.architecture=realnvp2d", "does not fit"),
        ("glow_digits", "model.num_scales=4", "model:"),
        ("pixelcnn_digits", "model.architecture=gated_pixelcnn", "model.architecture"),
        ("pixelcnn_digits", "model.num_classes=10", "gated"),
    ],
)
def test_bad_config_is_refused_by_name(name, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_recipe(name, override)


def test_pixelcnn_cifar10_config_trains_on_mock_tfds_data(tmp_path):
    """Three colour channels (R before G before B) and 256 levels, end to end on TFDS."""
    import tensorflow_datasets as tfds

    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "pixelcnn_cifar10.py")),
        [
            "model.hidden_channels=6",
            "model.num_layers=1",
            "data.batch_size=4",
            "train.num_steps=1",
            "train.sample_every=0",
            "train.progress_bar=false",
            f"data.data_dir={tmp_path / 'tfds'}",
        ],
    )
    with tfds.testing.mock_data(num_examples=8):
        result = train(config, tmp_path / "run", mesh=sharding.make_mesh(1))
    # Untrained: close to uniform over 256 levels (8 bits/dim), and finite.
    assert result.step == 1 and 6.0 < result.metrics["bits_per_dim"] < 10.0
