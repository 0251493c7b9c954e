"""``jaxgen sample --class/--class-grid/--guidance-*`` and ``jaxgen eval --guidance-scales``.

One tiny class-conditional DDPM run (U-Net with 8 channels, 10 noise levels, 3 steps) is
trained once for the module; every sampling call draws chunks of 16 with the guidance scale
traced, so they share one compiled program (and the sweep compiles once for all scales).
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.data.digits import load_digits
from jaxgen.engine import sharding
from jaxgen.evaluation.digit_fd import digit_fd
from jaxgen.run import (
    class_accuracy,
    label_condition,
    load_classifier,
    load_run,
    parse_scales,
    predict_digit_labels,
    sweep_table,
    train,
)
from tests.engine.test_trainer import tiny_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY_CFG = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.unet.num_classes=10",
    "model.guidance.p_uncond=0.2",
    "model.num_timesteps=10",
    "optim.learning_rate=1e-2",  # three steps that move the (zero-initialised) output away
    "optim.warmup_steps=0",  # from 0, so that the guidance scale changes the samples
    "optim.ema_decay=0",
    "data.batch_size=16",
    "train.num_steps=3",
    "train.sample_every=0",
    "train.progress_bar=false",
]
N = ["--num-samples", "16"]


@pytest.fixture(scope="module")
def cfg_run(tmp_path_factory) -> pathlib.Path:
    """Three steps of a tiny class-conditional DDPM on the digits."""
    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "ddpm_digits.py")), TINY_CFG
    )
    workdir = tmp_path_factory.mktemp("cfg") / "run"
    train(config, workdir, mesh=sharding.make_mesh(1))
    return workdir


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> pathlib.Path:
    """Two steps of the small VAE: a model without class labels."""
    workdir = tmp_path_factory.mktemp("vae") / "run"
    train(tiny_config("train.num_steps=2"), workdir, mesh=sharding.make_mesh(1))
    return workdir


def _record(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _png_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


# ------------------------------------------------------------------ labels (no network)


def test_labels_depend_on_the_index_only():
    idx = np.arange(35)
    np.testing.assert_array_equal(label_condition(10)(idx)["label"], idx % 10)
    np.testing.assert_array_equal(label_condition(10, label=7)(idx)["label"], np.full(35, 7))
    grid = label_condition(10, per_row=3)(idx)["label"]
    np.testing.assert_array_equal(grid[:30], np.repeat(np.arange(10), 3))
    assert (grid[30:] == 9).all()  # the padding of a last chunk stays a valid class
    # a chunk of indices gets the same labels as the whole draw
    np.testing.assert_array_equal(label_condition(10, per_row=3)(idx[16:32])["label"], grid[16:32])


def test_the_digit_label_predictor_reads_real_digits():
    images, labels = load_digits("test")
    accuracy = class_accuracy(predict_digit_labels(images), labels)
    assert 0.97 <= accuracy <= 1.0  # the shipped classifier: 98.9% on the test split
    assert class_accuracy(predict_digit_labels(images), (labels + 1) % 10) < 0.05


def test_scales_parse_and_non_finite_samples_count_as_misclassified():
    from jaxgen.run.guidance_sweep import _score

    assert parse_scales("0, 1,2.5") == (0.0, 1.0, 2.5)
    for bad, message in (("1,1", "distinct"), ("1,x", "comma-separated"), ("nan", "finite")):
        with pytest.raises(ConfigError, match=message):
            parse_scales(bad)
    samples = np.zeros((4, 8, 8, 1), np.float32)
    samples[1, 0, 0, 0] = np.nan
    samples[2] = 5.0  # scored clipped to [-1, 1]
    seen = []

    def metric(x):
        seen.append(x)
        return {"m": float(len(x)), "m_num_samples": float(len(x))}

    row = _score(samples, np.array([0, 0, 1, 0]), metric, lambda x: np.zeros(len(x), int))
    assert row == {
        "num_nonfinite": 1,
        "m": 3.0,
        "class_accuracy": 0.5,
        "class_accuracy_per_class": [2 / 3, 0.0],
    }
    assert seen[0].max() == 1.0
    assert sweep_table([{"guidance_scale": 2.0, **row, "seconds": 1.25}]).splitlines()[2] == (
        "| 2 | 3 | 50.0% | 1.2 |"  # (the JSON keeps num_nonfinite)
    )


# ------------------------------------------------------------------ sample


def test_sample_one_class_writes_the_grid_and_its_labels(cfg_run, capsys):
    capsys.readouterr()
    assert (
        main(["sample", "--workdir", str(cfg_run), "--class", "3", "--guidance-scale", "2", *N])
        == 0
    )
    record = _record(capsys)
    samples = np.load(record["npy"])
    assert samples.shape == (16, 8, 8, 1) and np.isfinite(samples).all()
    np.testing.assert_array_equal(np.load(record["labels"]), np.full(16, 3))
    assert "class3_scale2" in record["npy"]
    assert _png_size(record["png"]) == (222, 222)  # 4 x 4 of 9 px + 1, upscaled 6 times


def test_class_grid_has_one_row_per_class(cfg_run, capsys):
    capsys.readouterr()
    args = ["--class-grid", "--guidance-scale", "2", "--num-samples", "16"]
    assert main(["sample", "--workdir", str(cfg_run), *args]) == 0
    record = _record(capsys)
    # 16 // 10 = 1 sample per class: 10 rows of one
    assert np.load(record["npy"]).shape == (10, 8, 8, 1)
    np.testing.assert_array_equal(np.load(record["labels"]), np.arange(10))
    # 10 rows x 1 column: (9 + 1) x (10 * 9 + 1) px, upscaled twice
    assert _png_size(record["png"]) == (20, 182)


def test_guidance_sweep_writes_json_table_and_plot_with_one_compile(cfg_run, capsys, monkeypatch):
    from jaxgen.recipes.ddpm import DDPMRecipe

    # the sweep's samples at s = 2 are those of ``sample --guidance-scale 2`` (cyclic labels)
    capsys.readouterr()
    assert main(["sample", "--workdir", str(cfg_run), "--guidance-scale", "2", *N]) == 0
    record = _record(capsys)
    samples = np.clip(np.load(record["npy"]), -1, 1)
    np.testing.assert_array_equal(np.load(record["labels"]), np.arange(16) % 10)

    traces = []
    sample = DDPMRecipe.sample

    def counting(self, *args, **kwargs):
        traces.append(kwargs.get("guidance_scale"))
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(DDPMRecipe, "sample", counting)
    argv = ["eval", "--workdir", str(cfg_run), "--guidance-scales", "0,1,2", *N]
    assert main(argv) == 0
    assert len(traces) == 1  # one compiled sampler served the three scales
    out = capsys.readouterr().out
    assert len(re.findall(r"^guidance scale [012]: .*\(\d+\.\d s\)$", out, re.M)) == 3

    directory = cfg_run / "eval"
    saved = json.loads((directory / "guidance_sweep.json").read_text())
    rows = saved["rows"]
    assert [r["guidance_scale"] for r in rows] == [0.0, 1.0, 2.0]
    assert saved["num_samples"] == 16 and saved["step"] == 3
    two = rows[2]
    assert two["digit_fd"] == pytest.approx(digit_fd(samples), rel=1e-4)
    expected = class_accuracy(predict_digit_labels(samples), np.arange(16) % 10)
    assert two["class_accuracy"] == pytest.approx(expected)
    per_class = two["class_accuracy_per_class"]
    assert len(per_class) == 10 and np.dot(per_class, [2] * 6 + [1] * 4) / 16 == pytest.approx(
        expected
    )
    assert rows[0]["digit_fd"] != rows[2]["digit_fd"]  # the scale did reach the sampler
    table = (directory / "guidance_sweep.md").read_text().splitlines()
    assert table[0].startswith("| guidance scale | digit FD | class accuracy")
    assert len(table) == 2 + 3 and table[4].startswith("| 2 |")
    assert "\n".join(table) in out  # printed too
    assert (directory / "guidance_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["sample", "--workdir", "RUN", "--class", "10"], r"class 10 is outside .* 0\.\.9"),
        (["sample", "--workdir", "RUN", "--class", "-1"], r"--class: must be an integer >= 0"),
        (["sample", "--workdir", "RUN", "--class", "x"], r"--class: expected an integer"),
        (["sample", "--workdir", "RUN", "--guidance-scale", "nan"], r"must be a finite number"),
        (["sample", "--workdir", "RUN", "--guidance-scale", "inf"], r"must be a finite number"),
        (["sample", "--workdir", "RUN", "--guidance-interval", "1"], r"LO,HI"),
        (["sample", "--workdir", "RUN", "--guidance-interval", "a,b"], r"LO,HI"),
        (["sample", "--workdir", "RUN", "--guidance-interval", "5,1"], r"0 <= LO < HI"),
        (["sample", "--workdir", "RUN", "--guidance-interval", "1,2,3"], r"LO,HI"),
        (["sample", "--workdir", "RUN", "--guidance-interval=-1,2"], r"0 <= LO < HI"),
        (["sample", "--workdir", "RUN", "--guidance-interval", "0,inf"], r"finite"),
        (["sample", "--workdir", "RUN", "--guidance-rescale", "2"], r"in \[0, 1\]"),
        (
            ["sample", "--workdir", "RUN", "--guidance-interval", "500,1000"],
            r"guidance_interval=\(500\.0, 1000\.0\): .* outside the sampler's noise range",
        ),
        (
            ["sample", "--workdir", "RUN", "--classifier", "CLF", "--guidance-rescale", "0.5"],
            r"guidance rescale apply to classifier-free guidance",
        ),
        (["sample", "--workdir", "CLF"], r"'noisy_classifier' does not sample"),
        (
            ["sample", "--workdir", "RUN", "--class", "3", "--class-grid"],
            r"not allowed with argument",
        ),
        (
            ["sample", "--workdir", "VAE", "--guidance-scale", "2"],
            r"guidance scale asked of .*, an unconditional 'vae' model",
        ),
        (["sample", "--workdir", "VAE", "--class", "3"], r"a class asked of .* unconditional"),
        (["sample", "--workdir", "RUN", "--classifier", "RUN"], r"is a 'ddpm' run; .*noisy_c"),
        (["eval", "--workdir", "RUN", "--guidance-scales", "0,x"], r"comma-separated numbers"),
        (["eval", "--workdir", "RUN", "--guidance-scales", ""], r"comma-separated numbers"),
        (["eval", "--workdir", "RUN", "--guidance-scales", "0,inf"], r"finite"),
        (["eval", "--workdir", "RUN", "--guidance-scales", "1,1"], r"distinct"),
        (["eval", "--workdir", "RUN", "--guidance-rescale", "0.5"], r"--guidance-scales"),
        (
            ["eval", "--workdir", "VAE", "--guidance-scales", "0,1"],
            r"unconditional 'vae' model",
        ),
    ],
)
def test_bad_guidance_input_is_one_line_and_exit_code_2(argv, pattern, request, capfd):
    places = {"RUN": "cfg_run", "VAE": "vae_run", "CLF": "clf_run"}
    argv = [str(request.getfixturevalue(places[a])) if a in places else a for a in argv]
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"jaxgen {argv[0]}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


class _FakeRecipe:
    def __init__(self, process, num_classes=10):
        self._process = process
        self.num_classes = num_classes

    def noise_process(self):
        return self._process

    def log_prob_fn(self, params):
        return lambda x, t, labels: x.sum(axis=(1, 2, 3)) * params


def test_a_classifier_of_another_noise_process_or_classes_is_refused(cfg_run, monkeypatch):
    """``load_classifier`` compares the classifier's ``noise_process()`` and classes with the
    run's (a stand-in classifier run: only those are read)."""
    import types

    import jaxgen.run.guidance as guidance

    run = load_run(cfg_run)
    ours = run.recipe.noise_process()
    fake = {}

    def fake_load_run(workdir):
        return types.SimpleNamespace(
            config=types.SimpleNamespace(family="noisy_classifier"),
            recipe=fake["recipe"],
            ema_params=2.0,
            workdir=pathlib.Path(workdir),
        )

    monkeypatch.setattr(guidance, "load_run", fake_load_run)
    fake["recipe"] = _FakeRecipe(("ddpm", "linear", 1000, 1e-4, 0.02))
    assert ours != fake["recipe"].noise_process()
    with pytest.raises(ConfigError, match=r"noise process \('ddpm', 'linear', 1000.*same one"):
        load_classifier(run, "clf")
    fake["recipe"] = _FakeRecipe(ours, num_classes=5)
    with pytest.raises(ConfigError, match="has 5 classes, the run .* 10"):
        load_classifier(run, "clf")
    fake["recipe"] = _FakeRecipe(ours)
    classifier = load_classifier(run, "clf")
    assert classifier.num_classes == 10 and classifier.params == 2.0
    x = np.ones((2, 8, 8, 1), np.float32)
    log_prob, params = classifier.option()
    np.testing.assert_allclose(log_prob(params, x, None, None), [128.0, 128.0])


# ------------------------------------------------------------------ classifier guidance

CLF_CFG = [
    "model.unet.channels=8",
    "model.unet.channel_mult=(1,)",
    "model.unet.num_res_blocks=1",
    "model.unet.attention_resolutions=()",
    "model.unet.num_groups=4",
    "model.num_timesteps=10",  # the forward process of ``cfg_run``
    "model.eval_levels=(0.0, 0.5)",
    "data.batch_size=16",
    "train.num_steps=2",
    "train.progress_bar=false",
    "eval.max_examples=16",
    "eval.batch_size=16",
]


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory) -> pathlib.Path:
    """Two steps of a tiny noisy classifier on ``cfg_run``'s DDPM forward process."""
    path = ROOT / "experiments" / "noisy_classifier_digits.py"
    config = apply_overrides(load_experiment(str(path)), CLF_CFG)
    workdir = tmp_path_factory.mktemp("clf") / "run"
    train(config, workdir, mesh=sharding.make_mesh(1))
    return workdir


def test_classifier_guided_sampling_from_the_command_line(cfg_run, clf_run, capsys, tmp_path):
    argv = ["sample", "--workdir", str(cfg_run), "--classifier", str(clf_run), "--class", "7"]
    drawn = {}
    for scale in ("0", "3"):  # one program: the scale and the classifier's params are traced
        capsys.readouterr()
        assert main([*argv, "--guidance-scale", scale, *N, "--out", str(tmp_path)]) == 0
        record = _record(capsys)
        drawn[scale] = np.load(record["npy"])
        assert drawn[scale].shape == (16, 8, 8, 1) and np.isfinite(drawn[scale]).all()
        np.testing.assert_array_equal(np.load(record["labels"]), np.full(16, 7))
    assert not np.allclose(drawn["0"], drawn["3"])  # the classifier's gradient moved them

    # the classifier's own evaluation: accuracy at each noise level on labelled data
    assert main(["eval", "--workdir", str(clf_run)]) == 0
    out = capsys.readouterr().out
    results = json.loads(out[out.index("{") :])
    assert set(results) >= {"ce", "accuracy_t0", "accuracy_t0.5"}
    assert results["num_examples"] == 16 and "digit_fd" not in results  # it draws nothing


def test_a_classifier_of_another_schedule_is_refused(cfg_run, clf_run, tmp_path, capsys):
    """A copy of the classifier run whose config says T = 20 (the parameters fit either)."""
    import shutil

    other = tmp_path / "clf_T20"
    shutil.copytree(clf_run, other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["num_timesteps"] = 20
    (other / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    argv = ["sample", "--workdir", str(cfg_run), "--classifier", str(other), "--class", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(
        r"noise process \('ddpm', 'linear', 20, .* samples \('ddpm', 'linear', 10", err
    )
