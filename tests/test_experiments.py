"""Every experiment config loads, names a known family and dataset, states its expected
result and its run command; the digits ones build their recipe; the score-SDE CIFAR-10
config trains a step on mock TFDS data (with a small network). Every family in the table
declares its sampling and evaluation-time settings consistently."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data.registry import DATASET_NAMES
from jaxgen.engine import sharding
from jaxgen.engine.recipe import SAMPLE_OPTIONS, Recipe
from jaxgen.run import build_recipe, families, get_recipe, load_train_dataset, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(
    p
    for p in (ROOT / "experiments").glob("*.py")
    if not p.name.startswith("_") and "def get_cascade(" not in p.read_text()
)  # (cascade files list runs, not one config: tests/test_cascade.py)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_config_is_complete(path):
    config = load_experiment(str(path))
    assert config.family in families()
    assert config.data.name in DATASET_NAMES
    assert config.expected, "each experiment states the result it should reach"
    doc = path.read_text().split('"""')[1]
    assert f"jaxgen train experiments/{path.name}" in doc, "the docstring gives the command"
    if config.data.name == "digits":
        recipe = build_recipe(config, load_train_dataset(config))
        side = config.data.resolution or 8
        assert recipe.data_shape == (side, side, 1)
        assert recipe.num_classes == 10  # the run floor passes the dataset's classes


@pytest.mark.parametrize("family", families())
def test_family_table_entry_declares_its_settings(family):
    cls = get_recipe(family)
    assert issubclass(cls, Recipe) and cls.family == family
    assert set(cls.sample_options) <= set(SAMPLE_OPTIONS), cls.sample_options
    assert bool(cls.samplers) == ("sampler" in cls.sample_options), (
        "a family that takes sampler= names its samplers, and only then"
    )
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    # a field or a dotted path into a nested config (``ddpm.sample_steps``)
    assert {f.split(".")[0] for f in cls.eval_time_fields} <= fields, (
        "eval-time fields are model-config fields"
    )
    assert cls.init_batch_size >= 0
    assert cls.sample_condition_split in (None, "train", "test")


def test_unknown_family_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown model family 'vea'; did you mean 'vae'"):
        get_recipe("vea")


def test_sde_cifar10_config_trains_on_mock_tfds_data(tmp_path):
    """The NCSN++ VE paper config end to end (TFDS source, flips, FIR, Fourier features,
    residual input pyramid) with a small network."""
    import tensorflow_datasets as tfds

    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "sde_ncsnpp_deep_ve_cifar10.py")),
        [
            "model.unet.channels=8",
            "model.unet.channel_mult=(1, 2)",
            "model.unet.num_res_blocks=1",
            "model.unet.attention_resolutions=()",
            "model.unet.num_groups=4",
            "data.batch_size=8",
            "train.num_steps=2",
            "train.sample_every=0",
            "train.progress_bar=false",
            f"data.data_dir={tmp_path / 'tfds'}",
        ],
    )
    unet = config.model.unet
    assert unet.resample_filter == "fir" and unet.time_embedding == "fourier"
    with tfds.testing.mock_data(num_examples=16):
        result = train(config, tmp_path / "run", mesh=sharding.make_mesh(1))
    assert result.step == 2 and np.isfinite(result.metrics["loss"]) and result.metrics["loss"] > 0


@pytest.mark.parametrize(
    "name,tiny",
    [
        (
            "iwae_binarized_mnist",
            [
                "model.hidden=(16,)",
                "model.latent_dim=4",
                "model.eval_importance_samples=20",
                "model.eval_chunk_size=10",
            ],
        ),
        (
            "vqvae_cifar10",
            [
                "model.channels=8",
                "model.residual_channels=4",
                "model.num_residual_blocks=1",  # (two in the paper config)
                "model.num_codes=8",
                "model.embedding_dim=4",
            ],
        ),
    ],
)
def test_vae_paper_configs_train_and_evaluate_on_mock_tfds_data(name, tiny, tmp_path):
    """Binarized MNIST (IWAE, Bernoulli decoder, dynamic binarization; trained and evaluated)
    and the CIFAR-10 VQ-VAE (trained) on mock TFDS data with small networks."""
    import tensorflow_datasets as tfds

    from jaxgen.run import evaluate_run, load_run

    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / f"{name}.py")),
        [
            *tiny,
            "data.batch_size=8",
            "train.num_steps=2",
            "train.sample_every=0",
            "train.progress_bar=false",
            "eval.max_examples=8",
            "eval.batch_size=8",
            f"data.data_dir={tmp_path / 'tfds'}",
        ],
    )
    with tfds.testing.mock_data(num_examples=16):
        result = train(config, tmp_path / "run", mesh=sharding.make_mesh(1))
        assert result.step == 2 and np.isfinite(result.metrics["loss"])
        if name == "vqvae_cifar10":  # its evaluation path is tested on the digits
            return
        results = evaluate_run(load_run(tmp_path / "run"))
    assert np.isfinite(results["bits_per_dim"]) and results["bits_per_dim"] > 0
