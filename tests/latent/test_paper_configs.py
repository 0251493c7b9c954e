"""A two-stage paper config runs end to end from TFDS (``tfds.testing.mock_data``) at a tiny
size: LDM-4 on CelebA-HQ (its VQ-f4 first stage, then a DDPM on the latents), one ``train``
call on the second stage training the first. (VQ-VAE-2 on ImageNet 256 runs the same
machinery with a code prior: its data are tested in ``tests/data/test_tfds_paper_datasets.py``,
its priors in ``tests/latent/test_code_prior*.py``.)"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from jaxgen.config import load_experiment
from jaxgen.engine import sharding
from jaxgen.run import model_config_class, train

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN = [
    "data.batch_size=4",
    "data.resolution=16",
    "train.num_steps=1",
    "train.log_every=1",
    "train.checkpoint_every=1",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]
CASES = {
    "ldm_celebahq256": (
        [
            "model.channels=8",
            "model.residual_channels=4",
            "model.num_residual_blocks=1",
            "model.num_codes=8",
        ],
        [
            "model.ddpm.unet.channels=8",
            "model.ddpm.unet.channel_mult=(1,)",
            "model.ddpm.unet.attention_resolutions=()",
            "model.ddpm.unet.num_groups=4",
            "model.ddpm.unet.num_heads=1",
        ],
        ("vqvae", "latent_scale"),
    ),
}


def _experiment(path: pathlib.Path, source: str, overrides: list[str]) -> pathlib.Path:
    path.write_text(
        "from jaxgen.config import apply_overrides, load_experiment\n\n\n"
        "def get_config():\n"
        f"    config = load_experiment({str(ROOT / 'experiments' / source)!r})\n"
        f"    return apply_overrides(config, {overrides!r})\n"
    )
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_two_stage_paper_config_trains_on_mock_tfds_data(name, tmp_path):
    import tensorflow_datasets as tfds

    first_tiny, second_tiny, (first_family, recorded) = CASES[name]
    data = [f"data.data_dir={str(tmp_path / 'tfds')!r}"]
    source = load_experiment(
        str(ROOT / "experiments" / f"{name}.py"), resolve_model=model_config_class
    )
    first_source = pathlib.Path(source.model.first_stage.config).name
    first = _experiment(tmp_path / "first.py", first_source, [*TRAIN, *data, *first_tiny])
    second = _experiment(
        tmp_path / "second.py",
        f"{name}.py",
        [
            *TRAIN,
            *data,
            *second_tiny,
            f"model.first_stage.workdir={str(tmp_path / 'first')!r}",
            f"model.first_stage.config={str(first)!r}",
        ],
    )
    config = load_experiment(str(second), resolve_model=model_config_class)
    with tfds.testing.mock_data(num_examples=8):
        result = train(config, tmp_path / "second", mesh=sharding.make_mesh(1))
    assert result.step == 1 and np.isfinite(result.metrics["loss"])
    record = json.loads((tmp_path / "second" / "first_stage.json").read_text())
    assert record["family"] == first_family and record["step"] == 1
    assert (recorded in record) if recorded else ("latent_scale" not in record)
