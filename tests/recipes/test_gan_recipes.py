"""The GAN recipes through the shared engine, tiny networks.

* every GAN experiment trains with the two-player step, checkpoints and evaluates (digit
  FD, discriminator outputs, mode counts on the ring, super-resolution scores);
* the spectral-norm vectors are state the discriminator's loss updates: after a step they
  hold the loss's power iteration, not the optimizer's value;
* batch norm sees the global batch: a step on 8 devices equals the step on one;
* a run with k = 2 discriminator steps and spectral norm, interrupted and resumed, ends
  exactly where an uninterrupted run ends;
* the players' losses are the pure objectives applied to the recipe's networks;
* a sample depends only on the seed and its index: batch 16 equals the first 16 of batch
  64 for the MLP and DCGAN generators, conditional or not (DCGAN through its reference
  batch; the negative control without it differs); pix2pix samples are conditioned on
  the held-out rows it is given, and refuse to run without them;
* bad configs are refused by name.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgen import gan
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.core import SamplerOutput, example_keys
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.engine.step import init_train_state
from jaxgen.gan import losses
from jaxgen.nets.spectral_norm import SpectralVector
from jaxgen.run import build_recipe, evaluate_run, load_run, load_train_dataset, train

ROOT = pathlib.Path(__file__).resolve().parents[2]

COMMON = [
    "data.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.num_grid_samples=8",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "eval.num_samples=16",
    "eval.batch_size=16",
    "eval.max_examples=16",
]
DCGAN_TINY = ["model.generator_features=4", "model.discriminator_features=4", "model.latent_dim=4"]
TINY = {
    "gan_digits": DCGAN_TINY,
    "wgan_gp_digits": [*DCGAN_TINY, "model.discriminator_steps=2"],
    "wgan_digits": [*DCGAN_TINY, "model.discriminator_steps=2"],
    "sngan_digits": DCGAN_TINY,
    "cgan_digits": DCGAN_TINY,
    "cgan_mlp_digits": ["model.generator_hidden=(8,)", "model.discriminator_hidden=(8,)"],
    "gan_ring": [
        "model.generator_hidden=(8,)",
        "model.discriminator_hidden=(8,)",
        "model.eval_num_samples=64",
    ],
    "pix2pix_digits": [
        "model.generator_features=(4, 8, 8)",
        "model.discriminator_features=(4, 8)",
    ],
}
EXPECTED_KEYS = {
    "gan_ring": ("modes_covered", "high_quality_fraction", "d_real", "d_input_grad_norm"),
    "pix2pix_digits": ("psnr_db", "bilinear_psnr_db", "nearest_l1", "d_real", "digit_fd"),
    "cgan_digits": ("d_fake", "digit_fd"),
    "cgan_mlp_digits": ("d_fake", "digit_fd"),
}


def tiny_config(name: str, *extra: str):
    config = load_experiment(str(ROOT / "experiments" / f"{name}.py"))
    return apply_overrides(config, [*COMMON, *TINY[name], *extra])


def tiny_recipe(name: str, *extra: str):
    config = tiny_config(name, *extra)
    return config, build_recipe(config, load_train_dataset(config))


def _batch(n: int = 16):
    images, labels = load_digits("train")
    return {"image": jnp.asarray(images[:n], jnp.float32), "label": jnp.asarray(labels[:n])}


TRAINED = (
    "gan_digits",
    "wgan_gp_digits",
    "sngan_digits",
    "cgan_digits",
    "gan_ring",
    "pix2pix_digits",
)


@pytest.mark.parametrize("name", list(TINY))
def test_every_experiment_builds_a_step(name):
    """Each config's two-player step traces with its optimizers (shapes only, no compile)."""
    config, recipe = tiny_recipe(name)
    tx = recipe.make_optimizer(10)
    state = jax.eval_shape(lambda: init_train_state(recipe.init_params, tx, seed=0))
    n = config.data.batch_size * recipe.minibatches_per_step
    batch = _batch(n) if recipe.data_shape != (2,) else {"x": jnp.zeros((n, 2))}
    new_state, metrics = jax.eval_shape(recipe.make_train_step(tx), state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert {"discriminator_loss", "generator_loss", "d_real", "d_fake"} <= set(metrics)


@pytest.mark.parametrize("name", TRAINED)
def test_experiment_trains_and_evaluates(name, tmp_path):
    config = tiny_config(name, "train.num_steps=2")
    result = train(config, tmp_path, mesh=sharding.make_mesh(1))
    assert result.step == 2
    for key in ("discriminator_loss", "generator_loss", "d_real", "d_fake", "grad_norm"):
        assert np.isfinite(result.metrics[key]), key
    results = evaluate_run(load_run(tmp_path))
    keys = EXPECTED_KEYS.get(name, ("d_real", "d_fake", "d_input_grad_norm", "digit_fd"))
    for key in keys:
        assert np.isfinite(results[key]), key
    if name == "gan_ring":
        assert 0 <= results["modes_covered"] <= 8 and results["num_samples"] == 64
        assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
            "data_step2.png",
            "samples_step2.png",
        ]


def test_spectral_vectors_hold_the_losss_power_iteration():
    config, recipe = tiny_recipe("sngan_digits")
    tx = recipe.make_optimizer(10)
    state = init_train_state(recipe.init_params, tx, seed=0)
    step = jax.jit(recipe.make_train_step(tx))
    batch = _batch()
    new_state, _ = step(state, batch)
    # By hand: the discriminator's loss at the old parameters with the step's key.
    d_key = jax.random.split(state.step_key())[0]
    round_key = jax.random.split(d_key, 1)[0]
    _, _, updates = jax.jit(recipe.discriminator_loss)(  # one compile, not op by op
        state.params, batch, round_key, state.step
    )
    expected = jax.tree.leaves(updates["discriminator"])
    assert len(expected) > 0
    module = recipe.modules.bind(new_state.params, "discriminator")
    got = jax.tree.leaves(nnx.to_pure_dict(nnx.state(module, SpectralVector)))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    old = jax.tree.leaves(
        nnx.to_pure_dict(
            nnx.state(recipe.modules.bind(state.params, "discriminator"), SpectralVector)
        )
    )
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(got, old, strict=True)) > 1e-3


def test_batch_norm_uses_the_global_batch_on_eight_devices():
    config, recipe = tiny_recipe("gan_digits")
    tx = recipe.make_optimizer(10)
    state = init_train_state(recipe.init_params, tx, seed=0)
    step = recipe.make_train_step(tx)
    batch = _batch()
    one, _ = jax.jit(step)(state, batch)
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    many, _ = jax.jit(step)(state, jax.device_put(batch, sharding.batch_sharding(mesh)))
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_interrupted_run_resumes_exactly(tmp_path):
    config = tiny_config("sngan_digits", "train.num_steps=4", "model.discriminator_steps=2")
    mesh = sharding.make_mesh(1)
    straight = train(config, tmp_path / "straight", mesh=mesh)
    first = train(config, tmp_path / "resumed", mesh=mesh, stop_at_step=2)
    assert first.stopped_early and first.step == 2
    resumed = train(config, tmp_path / "resumed", mesh=mesh)
    assert resumed.step == 4
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    ("game", "d_kind", "g_kind"),
    [
        ("saturating", "minimax", "saturating"),
        ("non_saturating", "minimax", "non_saturating"),
        ("wasserstein", "wasserstein", "wasserstein"),
        ("hinge", "hinge", "hinge"),
    ],
)
def test_players_losses_are_the_games(game, d_kind, g_kind):
    """The recipe's losses equal the pure losses applied to its own networks' logits."""
    _, recipe = tiny_recipe("gan_ring", f"model.game={game}")
    params = recipe.init_params(jax.random.key(0))
    batch = {"x": jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)}
    key = jax.random.key(1)
    latent_dim = recipe.config.model.latent_dim
    d_loss, _, _ = recipe.discriminator_loss(params, batch, key, 0)
    # the discriminator's latents: example i from fold_in(split(key)[0], i)
    z = gan.latents(example_keys(jax.random.split(key)[0], 8), latent_dim)
    critic = recipe.discriminator_fn(params)
    expected, _ = losses.discriminator_loss(
        critic(batch["x"]), critic(recipe.generate(params, z)), kind=d_kind
    )
    np.testing.assert_allclose(d_loss, expected, rtol=1e-6)
    g_loss, _, _ = recipe.generator_loss(params, batch, key, 0)
    fake_logits = critic(recipe.generate(params, gan.latents(example_keys(key, 8), latent_dim)))
    np.testing.assert_allclose(
        g_loss, losses.generator_loss(fake_logits, kind=g_kind)[0], rtol=1e-6
    )


def test_conditional_samples_cycle_through_classes():
    _, recipe = tiny_recipe("cgan_digits")
    params = recipe.init_params(jax.random.key(0))
    np.testing.assert_array_equal(recipe.sample_labels(12), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    # the class follows the example's index in the draw, not its place in the batch
    np.testing.assert_array_equal(recipe.sample_labels(4, first_index=8), [8, 9, 0, 1])
    z = gan.latents(example_keys(jax.random.key(1), 4), recipe.config.model.latent_dim)
    generate = jax.jit(recipe.generate)  # one compile for both, not op by op
    a = generate(params, z, jnp.array([0, 0, 0, 0]))
    b = generate(params, z, jnp.array([3, 3, 3, 3]))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4  # the label reaches the generator


@pytest.mark.parametrize("name", ["gan_ring", "cgan_mlp_digits", "gan_digits", "cgan_digits"])
def test_samples_do_not_depend_on_the_batch(name):
    """Batch 16 is the first 16 of batch 64 (same key), and a chunk drawn from
    ``first_index=16`` is rows 16..31: MLP and DCGAN generators, conditional or not."""
    _, recipe = tiny_recipe(name)
    params = recipe.init_params(jax.random.key(0))
    key = jax.random.key(3)

    @jax.jit  # the three draws in one compilation
    def draws(params, key, first_index):
        return (
            recipe.sample(params, key, 64),
            recipe.sample(params, key, 16),
            recipe.sample(params, key, 16, first_index=first_index),
        )

    big, small, chunk = draws(params, key, jnp.int32(16))
    assert isinstance(big, SamplerOutput) and big.nfe == 1
    assert big.samples.shape == (64, *recipe.data_shape)
    np.testing.assert_allclose(small.samples, big.samples[:16], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunk.samples, big.samples[16:32], rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(small.samples - chunk.samples))) > 1e-3


def test_dcgan_samples_without_a_reference_batch_depend_on_the_batch():
    """Negative control of the test above: each batch's own statistics."""
    _, recipe = tiny_recipe("gan_digits", "model.reference_batch_size=0")
    params = recipe.init_params(jax.random.key(0))
    key = jax.random.key(3)
    big, small = jax.jit(  # one compilation, not op by op
        lambda params: (
            recipe.sample(params, key, 64).samples,
            recipe.sample(params, key, 16).samples,
        )
    )(params)
    assert float(jnp.max(jnp.abs(small - big[:16]))) > 1e-3


def test_pix2pix_samples_super_resolve_the_condition_it_is_given():
    _, recipe = tiny_recipe("pix2pix_digits")
    assert recipe.sample_condition_split == "test" and recipe.init_batch_size > 0
    train_images = _batch(32)["image"]
    params = recipe.init_params(jax.random.key(0), {"image": train_images})
    np.testing.assert_array_equal(params["reference"]["condition"], recipe.condition(train_images))
    images = _batch(40)["image"][32:]  # 8 images that are not in the reference batch
    with pytest.raises(ValueError, match="condition"):
        recipe.sample(params, jax.random.key(0), 8)
    with pytest.raises(ValueError, match=r"must have shape \(4,"):
        recipe.sample(params, jax.random.key(0), 4, condition={"image": images})
    out = recipe.sample(params, jax.random.key(0), 8, condition={"image": images})
    assert isinstance(out, SamplerOutput) and out.nfe == 1
    # one generator pass over [reference; conditions], normalized by the reference rows
    g = recipe.generator_fn(params)
    both = jnp.concatenate([params["reference"]["condition"], recipe.condition(images)])
    np.testing.assert_allclose(
        out.samples, g(both, None, num_reference=32)[32:], rtol=1e-5, atol=1e-6
    )
    # example i's output depends on its own condition only: a chunk equals its rows
    part = recipe.sample(
        params, jax.random.key(0), 2, first_index=3, condition={"image": images[3:5]}
    )
    np.testing.assert_allclose(part.samples, out.samples[3:5], rtol=1e-5, atol=1e-6)
    # negative control: without a reference the batch's own statistics make them differ
    bare = recipe.init_params(jax.random.key(0))
    assert "reference" not in bare
    whole = recipe.sample(bare, jax.random.key(0), 8, condition={"image": images}).samples
    rows = recipe.sample(bare, jax.random.key(0), 2, condition={"image": images[3:5]}).samples
    assert float(jnp.max(jnp.abs(rows - whole[3:5]))) > 1e-4


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("gan_ring", "model.game=minmax", "model.game"),
        ("gan_ring", "model.spectral_norm=true", "spectral_norm"),
        ("gan_ring", "model.discriminator_steps=0", "discriminator_steps"),
        ("gan_ring", "model.architecture=dcgan", "image data"),
        ("gan_ring", "model.num_classes=10", "conditioning"),
        ("gan_digits", "model.penalty=gp", "model.penalty"),
        ("pix2pix_digits", "model.factor=3", "model.factor"),
    ],
)
def test_bad_config_is_refused_by_name(name, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_recipe(name, override)


def test_conditional_gan_needs_labels():
    _, recipe = tiny_recipe("cgan_mlp_digits")
    params = recipe.init_params(jax.random.key(0))
    with pytest.raises(ConfigError, match="label"):
        recipe.discriminator_loss(params, {"image": _batch()["image"]}, jax.random.key(0), 0)


def test_wgan_gp_cifar10_config_trains_on_mock_tfds_data(tmp_path):
    """The 32x32 DCGAN networks with k = 5 critic steps, end to end on a TFDS source."""
    import tensorflow_datasets as tfds

    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "wgan_gp_cifar10.py")),
        [
            *DCGAN_TINY,
            "data.batch_size=4",
            "train.num_steps=1",
            "train.sample_every=0",
            "train.progress_bar=false",
            f"data.data_dir={tmp_path / 'tfds'}",
        ],
    )
    assert config.model.discriminator_steps == 5
    with tfds.testing.mock_data(num_examples=24):
        result = train(config, tmp_path / "run", mesh=sharding.make_mesh(1))
    assert result.step == 1 and np.isfinite(result.metrics["gradient_penalty"])
