"""Two-stage runs (:mod:`jaxgen.run.first_stage`): one ``train`` call trains the first stage
and then latent diffusion over it, resuming whichever stage was interrupted, bit for bit; the
first stage is recorded with the latent scale and checked at every resume; a first stage
that is missing, unfinished or of another family is refused by name."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
import pytest

from jaxgen.config import ConfigError, apply_overrides, config_to_json, load_experiment
from jaxgen.engine.checkpointing import Checkpointer
from jaxgen.recipes.first_stage import FirstStageConfig
from jaxgen.recipes.latent_diffusion import LatentDiffusionConfig
from jaxgen.run import train
from jaxgen.run.first_stage import RECORD_NAME

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_TRAIN = [
    "data.batch_size=8",
    "train.num_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=1",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]
TINY_AE = [
    "model.channels=8",
    "model.residual_channels=4",
    "model.num_residual_blocks=1",
    "model.latent_channels=2",
]
TINY_DDPM = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.num_timesteps=8",
    "model.clip_denoised=false",
]


def _first_stage_file(tmp: pathlib.Path) -> pathlib.Path:
    path = tmp / "tiny_ae.py"
    path.write_text(
        "from jaxgen.config import apply_overrides, load_experiment\n\n\n"
        "def get_config():\n"
        f"    config = load_experiment({str(ROOT / 'experiments/kl_autoencoder_digits.py')!r})\n"
        f"    return apply_overrides(config, {[*TINY_TRAIN, *TINY_AE]!r})\n"
    )
    return path


def _latent_config(first_workdir: pathlib.Path, first_file: pathlib.Path | None):
    pixel = apply_overrides(
        load_experiment(str(ROOT / "experiments/ddpm_digits.py")),
        [*TINY_TRAIN, "train.num_steps=4", "train.checkpoint_every=2", *TINY_DDPM],
    )
    model = LatentDiffusionConfig(
        first_stage=FirstStageConfig(
            workdir=str(first_workdir), config=str(first_file) if first_file else ""
        ),
        denoiser="ddpm",
        ddpm=pixel.model,
    )
    return dataclasses.replace(pixel, family="latent_diffusion", model=model)


def _leaves(state) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(state)]


def _assert_same(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    """An uninterrupted two-stage run, and one interrupted in each stage and resumed."""
    tmp = tmp_path_factory.mktemp("two_stage")
    first_file = _first_stage_file(tmp)
    whole = train(_latent_config(tmp / "ae_whole", first_file), tmp / "ld_whole")
    first_config = load_experiment(str(first_file))
    cut = train(first_config, tmp / "ae_cut", stop_at_step=1)  # the first stage interrupted
    config = _latent_config(tmp / "ae_cut", first_file)
    half = train(config, tmp / "ld_cut", stop_at_step=2)  # resumes it, then stops the second
    resumed = train(config, tmp / "ld_cut")
    return tmp, whole, cut, half, resumed


def test_resuming_either_stage_is_bit_identical(two_stage):
    tmp, whole, cut, half, resumed = two_stage
    assert cut.stopped_early and cut.step == 1 and half.stopped_early and half.step == 2
    assert not resumed.stopped_early and resumed.step == whole.step == 4
    _assert_same(resumed.state, whole.state)
    assert Checkpointer(tmp / "ae_cut" / "checkpoints", read_only=True).latest_step() == 2
    whole_record = json.loads((tmp / "ld_whole" / RECORD_NAME).read_text())
    cut_record = json.loads((tmp / "ld_cut" / RECORD_NAME).read_text())
    assert whole_record["latent_scale"] == cut_record["latent_scale"]  # the same first stage
    assert whole_record["step"] == 2 and whole_record["family"] == "kl_autoencoder"
    scale = float(resumed.state.params["latent"]["scale"])
    assert scale == pytest.approx(cut_record["latent_scale"], rel=1e-6)
    # the frozen first stage and its EMA are the first stage's EMA parameters, bit for bit
    _assert_same(resumed.state.params["first_stage"], resumed.state.ema_params["first_stage"])


def test_a_changed_first_stage_is_refused_at_resume(two_stage):
    tmp, *_ = two_stage
    config = _latent_config(tmp / "ae_cut", None)
    record = tmp / "ld_cut" / RECORD_NAME
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "config_hash": "0123456789abcdef"}))
    try:
        with pytest.raises(ConfigError, match="changed since .* started"):
            train(apply_overrides(config, ["train.num_steps=6"]), tmp / "ld_cut")
    finally:
        record.write_text(json.dumps(saved))
    other = _latent_config(tmp / "ae_whole", None)
    with pytest.raises(ConfigError, match="was trained on first stage"):
        train(apply_overrides(other, ["train.num_steps=6"]), tmp / "ld_cut")


def test_bad_first_stages_are_refused_by_name(two_stage, tmp_path):
    tmp, *_ = two_stage
    other = tmp_path / "other_ae.py"  # the first stage's file, now with 3 latent channels
    other.write_text(
        (tmp / "tiny_ae.py")
        .read_text()
        .replace("'model.latent_channels=2'", "'model.latent_channels=3'")
    )
    with pytest.raises(
        ConfigError, match=r"holds a run of another config .*model\.latent_channels"
    ):
        train(_latent_config(tmp / "ae_whole", other), tmp_path / "z")
    with pytest.raises(ConfigError, match="not a jaxgen run"):
        train(_latent_config(tmp_path / "missing", None), tmp_path / "a")
    first_config = load_experiment(str(tmp / "tiny_ae.py"))
    train(first_config, tmp_path / "unfinished", stop_at_step=1)
    with pytest.raises(ConfigError, match=r"unfinished \(step 1 of 2\)"):
        train(_latent_config(tmp_path / "unfinished", None), tmp_path / "b")
    ddpm = tmp_path / "a_ddpm_run"
    ddpm.mkdir()
    ddpm_config = load_experiment(str(ROOT / "experiments/ddpm_digits.py"))
    (ddpm / "config.json").write_text(config_to_json(ddpm_config))
    with pytest.raises(ConfigError, match="is a 'ddpm' run.*kl_autoencoder, vqvae"):
        train(_latent_config(ddpm, None), tmp_path / "c")
