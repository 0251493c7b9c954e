"""A text-to-digit prior from the command line (``experiments/text_to_digit.py`` at a tiny
size): one ``jaxgen train`` trains the VQ-VAE and then the prior; ``jaxgen sample --text``
draws for a caption; a caption the tokenizer cannot encode, one longer than the context, and
a first stage that is missing or of the wrong kind are each answered in one line with exit
code 2."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from jaxgen.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_TRAIN = [
    "data.batch_size=8",
    "train.num_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]
TINY_VQVAE = [
    "model.channels=8",
    "model.residual_channels=4",
    "model.num_residual_blocks=1",
    "model.num_codes=8",
    "model.embedding_dim=4",
]
TINY_PRIOR = ["model.dim=16", "model.num_layers=1", "model.num_heads=2", "model.eval_samples=20"]


def _experiment(path: pathlib.Path, source: str, overrides: list[str]) -> pathlib.Path:
    path.write_text(
        "from jaxgen.config import apply_overrides, load_experiment\n\n\n"
        "def get_config():\n"
        f"    config = load_experiment({str(ROOT / 'experiments' / source)!r})\n"
        f"    return apply_overrides(config, {overrides!r})\n"
    )
    return path


def _one_line_error(argv: list[str], capfd) -> str:
    capfd.readouterr()
    code = main(argv)
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def text_prior(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text_prior")
    first = _experiment(tmp / "vq.py", "vqvae_digits.py", [*TINY_TRAIN, *TINY_VQVAE])
    prior = _experiment(
        tmp / "prior.py",
        "text_to_digit.py",
        [
            *TINY_TRAIN,
            *TINY_PRIOR,
            f"model.first_stage.workdir={str(tmp / 'vq')!r}",
            f"model.first_stage.config={str(first)!r}",
        ],
    )
    assert main(["train", str(prior), "--workdir", str(tmp / "prior")]) == 0
    return tmp


def test_one_command_trains_both_stages_and_samples_for_a_caption(text_prior, capfd):
    run = text_prior / "prior"
    record = json.loads((run / "first_stage.json").read_text())
    assert record["family"] == "vqvae" and record["step"] == 2
    assert "latent_scale" not in record  # a code prior has no latent scale
    out = text_prior / "samples"
    capfd.readouterr()
    argv = ["sample", "--workdir", str(run), "--text", "A handwritten Seven", "--num-samples", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    written = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    samples = np.load(written["npy"])
    assert samples.shape == (4, 8, 8, 1) and np.all(np.abs(samples) <= 1.0)


def test_captions_the_tokenizer_cannot_take_are_refused(text_prior, capfd):
    run = str(text_prior / "prior")
    line = _one_line_error(["sample", "--workdir", run, "--text", "a handwritten ü"], capfd)
    assert line.startswith("jaxgen sample: error: ") and "'ü'" in line, line
    line = _one_line_error(["sample", "--workdir", run, "--text", "seven " * 10], capfd)
    assert "context of 32 characters" in line, line
    line = _one_line_error(["sample", "--workdir", run, "--text", "a one", "--class", "2"], capfd)
    assert "--text sets every sample's caption" in line, line


def test_bad_first_stages_from_the_command_line(text_prior, tmp_path, capfd):
    prior = _experiment(
        tmp_path / "p.py",
        "text_to_digit.py",
        [
            *TINY_TRAIN,
            *TINY_PRIOR,
            f"model.first_stage.workdir={str(tmp_path / 'none')!r}",
            "model.first_stage.config=''",
        ],
    )
    line = _one_line_error(["train", str(prior), "--workdir", str(tmp_path / "a")], capfd)
    assert "model.first_stage.workdir" in line and "not a jaxgen run" in line, line
    latent = _experiment(
        tmp_path / "l.py",
        "latent_diffusion_digits.py",
        [f"model.first_stage.workdir={str(text_prior / 'prior')!r}", "model.first_stage.config=''"],
    )
    line = _one_line_error(["train", str(latent), "--workdir", str(tmp_path / "b")], capfd)
    assert "is a 'code_prior' run" in line and "kl_autoencoder, vqvae" in line, line


def test_resuming_the_prior_is_bit_identical(text_prior, tmp_path):
    import jax

    from jaxgen.config import apply_overrides, load_experiment
    from jaxgen.run import model_config_class, train

    config = apply_overrides(
        load_experiment(str(text_prior / "prior.py"), resolve_model=model_config_class),
        ["train.num_steps=4", "train.checkpoint_every=1"],
    )
    whole = train(config, tmp_path / "whole")
    cut = train(config, tmp_path / "cut", stop_at_step=2)
    resumed = train(config, tmp_path / "cut")
    assert cut.stopped_early and cut.step == 2 and resumed.step == whole.step == 4
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
