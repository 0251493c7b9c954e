"""Cascades from trained runs (issue 17): ``jaxgen.run.cascade`` and ``jaxgen ... --cascade``.

Tiny stages are trained here (a 4x4 base DDPM on area-downsampled digits, a 4x4 -> 8x8
super-resolution DDPM, both a few steps):

* the chain samples: stage 0 at 4x4, stage 1 at 8x8; a draw of 8 begins with the draw of 4
  (a sample depends only on the seed and its index, at every stage); the augmentation
  level changes the final samples and level 0 takes the base samples as they are;
* the base stage trains on 65-level 4x4 digits (``data.resolution``);
* the CLI trains every stage of a cascade file, samples the chain and scores it at several
  augmentation levels; a user's mistake is one line and exit code 2;
* ``check_cascade`` refuses by name: a missing or unfinished stage, a super-resolution
  first stage, a later stage without super-resolution, resolutions that do not chain,
  another dataset or class set, and a level outside a stage's trained range.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import textwrap
import types

import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.config import (
    ConfigError,
    apply_overrides,
    config_from_json,
    config_to_json,
    load_experiment,
)
from jaxgen.core.resize import downsample_mean
from jaxgen.run import cascade as cascade_lib
from jaxgen.run import load_train_dataset, model_config_class, train
from jaxgen.run.cascade import CascadeConfig, CascadeStage

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "model.unet.channels=4",
    "model.unet.channel_mult=(1,)",  # one level, one block: compile time grows with depth
    "model.unet.num_res_blocks=1",
    "model.unet.num_groups=4",
    "model.unet.attention_resolutions=()",
    "model.unet.init_scale=1.0",  # (not zero: after two steps the condition shows)
    "model.num_timesteps=8",
    "data.batch_size=8",
    "train.num_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
]


def _config(name: str, *extra: str):
    config = load_experiment(str(ROOT / "experiments" / name), resolve_model=model_config_class)
    return apply_overrides(config, [*TINY, *extra])


def _cascade_file(directory: pathlib.Path, base: str, sr: str, level: float = 0.2) -> pathlib.Path:
    path = directory / "tiny_cascade.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from jaxgen.run.cascade import CascadeConfig, CascadeStage


            def get_cascade():
                return CascadeConfig(
                    name="tiny_cascade",
                    stages=(
                        CascadeStage(workdir={base!r}),
                        CascadeStage(workdir={sr!r}, augmentation_level={level!r}),
                    ),
                    num_samples=8,
                )
            """
        )
    )
    return path


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    base, sr = root / "base", root / "sr"
    train(_config("cascade_digits_base.py"), base)
    train(_config("sr3_digits.py"), sr)
    return root, str(base), str(sr)


def test_base_stage_trains_on_area_downsampled_digits():
    data = load_train_dataset(_config("cascade_digits_base.py"))
    full = load_train_dataset(_config("sr3_digits.py"))
    assert data.event_shape == (4, 4, 1) and data.num_levels == 65
    rows = data.source.get(np.arange(16))["image"]
    np.testing.assert_allclose(
        rows, downsample_mean(full.source.get(np.arange(16))["image"], 2), atol=1e-6
    )
    assert len(np.unique(np.round((rows + 1) * 32, 4))) > 17  # finer than the 17 levels
    np.testing.assert_allclose((rows + 1) * 32, np.round((rows + 1) * 32), atol=1e-4)


def test_the_chain_samples_by_index_and_level(stages):
    root, base, sr = stages
    cascade = cascade_lib.load_cascade(_cascade_file(root, base, sr))
    runs = cascade_lib.check_cascade(cascade)
    outputs, labels = cascade_lib.sample_cascade(runs, cascade, num_samples=8, seed=3)
    assert labels is None
    assert [o.shape for o in outputs] == [(8, 4, 4, 1), (8, 8, 8, 1)]
    first, _ = cascade_lib.sample_cascade(runs, cascade, num_samples=4, seed=3)
    for whole, part in zip(outputs, first, strict=True):
        np.testing.assert_allclose(part, whole[:4], atol=1e-5)
    other, _ = cascade_lib.sample_cascade(
        runs, cascade, num_samples=8, seed=3, augmentation_level=0.0
    )
    np.testing.assert_array_equal(other[0], outputs[0])  # same base samples
    assert not np.allclose(other[1], outputs[1], atol=1e-4)  # another condition


def test_cli_trains_samples_and_scores_a_cascade(stages, tmp_path, capsys):
    root, base, sr = stages
    path = _cascade_file(tmp_path, base, sr)
    argv = ["sample", "--cascade", str(path), "--num-samples", "4", "--out", str(tmp_path)]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.load(record["stage0"]["npy"]).shape == (4, 4, 4, 1)
    assert np.load(record["stage1"]["npy"]).shape == (4, 8, 8, 1)
    assert pathlib.Path(record["stage1"]["png"]).exists()
    result = cascade_lib.evaluate_cascade(
        cascade_lib.load_cascade(path), levels=(0.0, 0.3), num_samples=8, out=tmp_path / "eval"
    )
    assert [r["augmentation_level"] for r in result["rows"]] == [0.0, 0.3]
    assert all(np.isfinite(r["digit_fd"]) for r in result["rows"])
    assert "| augmentation_level | digit_fd" in (tmp_path / "eval" / "cascade_eval.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--cascade", "{path}", "--workdir", "{sr}"], "either --workdir"),
        (["sample", "--num-samples", "4"], "one of --workdir RUN or --cascade FILE"),
        (["sample", "--cascade", "{sr}/config.json"], "defines no get_cascade"),
        (["sample", "--cascade", "{path}", "--steps", "3"], "--steps apply to one run"),
        (["sample", "--cascade", "{path}", "--augmentation-level", "0.9"], "outside the range"),
        (["eval", "--workdir", "{sr}", "--augmentation-levels", "0,1"], "applies to --cascade"),
        (["sample", "--cascade", "{path}", "--class", "3"], "stages are unconditional"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_code_2(stages, tmp_path, capsys, argv, message):
    root, base, sr = stages
    path = _cascade_file(tmp_path, base, sr)
    argv = [a.format(path=path, sr=sr) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def _fake_run(shape=(4, 4, 1), low=None, *, name="digits", classes=0):
    """A stand-in for a loaded run: what ``check_cascade`` reads of one."""
    conditioning = None
    if low is not None:
        conditioning = types.SimpleNamespace(low_resolution_shape=low, check_level=lambda s: s)
    config = types.SimpleNamespace(
        family="ddpm",
        data=types.SimpleNamespace(name=name, resolution=None),
        train=types.SimpleNamespace(num_steps=2),
    )
    recipe = types.SimpleNamespace(
        data_shape=shape, image_conditioning=conditioning, classes=classes, generative=True
    )
    return types.SimpleNamespace(config=config, recipe=recipe, step=2, workdir="w")


@pytest.mark.parametrize(
    "runs, message",
    [
        ([_fake_run(low=(2, 2, 1)), _fake_run((8, 8, 1), (4, 4, 1))], "first stage of a cascade"),
        ([_fake_run(), _fake_run((8, 8, 1))], "without super-resolution"),
        ([_fake_run((2, 2, 1)), _fake_run((8, 8, 1), (4, 4, 1))], "do not chain: stage 1"),
        ([_fake_run(), _fake_run((8, 8, 1), (4, 4, 1), name="mnist")], "trained on 'mnist'"),
        (
            [_fake_run(classes=10), _fake_run((8, 8, 1), (4, 4, 1), classes=5)],
            "different class sets",
        ),
    ],
)
def test_check_cascade_refuses_stages_that_do_not_fit(monkeypatch, runs, message):
    monkeypatch.setattr(cascade_lib, "_load_stage", lambda k, stage: runs[k])
    cascade = CascadeConfig("c", (CascadeStage("a"), CascadeStage("b")))
    with pytest.raises(ConfigError, match=message):
        cascade_lib.check_cascade(cascade)


def test_missing_and_unfinished_stages_are_refused(stages, tmp_path):
    root, base, sr = stages
    missing = CascadeConfig(
        "c", (CascadeStage(base), CascadeStage(str(tmp_path / "nope"), config="x.py"))
    )
    with pytest.raises(ConfigError, match=r"stage 1 .*nope.*no config.json.*jaxgen train x.py"):
        cascade_lib.check_cascade(missing)
    # an unfinished run: the trained super-resolution stage (newest checkpoint step 2) with
    # its config asking for 4 steps, as a run stopped halfway leaves it (no training here)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(sr, unfinished)
    config = config_from_json(
        (unfinished / "config.json").read_text(), resolve_model=model_config_class
    )
    assert config.train.num_steps == 2
    config = apply_overrides(config, ["train.num_steps=4"])
    (unfinished / "config.json").write_text(config_to_json(config))
    cascade = CascadeConfig("c", (CascadeStage(base), CascadeStage(str(unfinished))))
    with pytest.raises(ConfigError, match="unfinished: its newest checkpoint is step 2 of 4"):
        cascade_lib.check_cascade(cascade)
