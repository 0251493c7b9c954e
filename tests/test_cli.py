"""The ``jaxgen`` command: train / sample / eval, clear errors, and kill-safety.

The command and the engine behind it do not depend on the model family, so these tests
run the small MLP VAE of the engine tests; the sampler options of ``jaxgen sample`` are
DDPM's, and are tested on the DDPM paper config (with a small U-Net) at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxgen.cli import build_parser, main
from jaxgen.config import ConfigError, apply_overrides, load_experiment
from jaxgen.engine import sharding
from jaxgen.run import families, get_recipe, load_run, train
from tests.engine.test_trainer import EXPERIMENT as _EXPERIMENT
from tests.engine.test_trainer import TINY, leaves_close, tiny_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = str(_EXPERIMENT)


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    # The subprocesses get their own cache (next to the suite's when JAXGEN_TEST_CACHE is set).
    test_cache = os.environ.get("JAXGEN_TEST_CACHE")
    env["JAXGEN_COMPILATION_CACHE"] = (
        f"{test_cache}-cli" if test_cache else str(ROOT / ".cache" / "jax-cli")
    )
    return env


def test_train_sample_eval_from_the_command_line(tmp_path, capsys, monkeypatch):
    # Bars are drawn after 1 s by default: at once here, so what is shown does not depend on
    # this machine's speed.
    monkeypatch.setenv("JAXGEN_PROGRESS_DELAY", "0")
    workdir = tmp_path / "run"
    args = ["train", EXPERIMENT, "--workdir", str(workdir), *TINY]
    assert (
        main(
            [
                *args,
                "train.num_steps=4",
                "train.sample_every=4",
                "eval.max_examples=24",
                "eval.batch_size=12",
            ]
        )
        == 0
    )
    assert (workdir / "samples" / "latest.png").exists()
    capsys.readouterr()

    assert (
        main(
            [
                "sample",
                "--workdir",
                str(workdir),
                "--num-samples",
                "6",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    samples = np.load(out["npy"])
    assert samples.shape == (6, 8, 8, 1) and np.isfinite(samples).all()
    assert pathlib.Path(out["png"]).exists()

    assert main(["eval", "--workdir", str(workdir), "--num-samples", "24"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    saved = json.loads((workdir / "eval_test_step4.json").read_text())
    assert 0 < saved["bits_per_dim"] < 20 and saved["num_examples"] == 24
    assert saved["digit_fd"] > 0 and saved["digit_fd_num_samples"] == 24
    assert json.loads(printed[printed.index("{") :]) == saved
    # each metric's wall time, progress on stderr (stdout is the JSON alone), the FD note
    assert saved["seconds_likelihood"] >= 0 and saved["seconds_digit_fd"] > 0
    assert printed.lstrip().startswith("{")
    for shown in ("held-out likelihood (24 examples)", "digit_fd: sampling", "too few"):
        assert shown in captured.err, captured.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["train.num_step=3"],
            "unknown config key 'train.num_step'; did you mean 'train.num_steps'",
        ),
        (["data.name=mnist", "data.data_dir=__EMPTY__"], "mnist"),
        (["data.name=digitz"], "did you mean 'digits'"),
    ],
)
def test_bad_input_gives_a_clear_error_not_a_traceback(tmp_path, capsys, extra, message):
    extra = [e.replace("__EMPTY__", str(tmp_path / "tfds")) for e in extra]
    code = main(["train", EXPERIMENT, "--workdir", str(tmp_path / "run"), *TINY, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_sample_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--workdir", str(tmp_path)]) == 2
    assert "not a jaxgen run directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> pathlib.Path:
    """A two-step run of the small VAE (the family declares no sampler steps)."""
    workdir = tmp_path_factory.mktemp("vae") / "run"
    train(tiny_config("train.num_steps=2"), workdir, mesh=sharding.make_mesh(1))
    return workdir


def test_a_sample_option_the_family_lacks_is_a_one_line_error(vae_run, capsys):
    recipe = get_recipe("vae")
    assert "num_steps" not in recipe.sample_options
    capsys.readouterr()
    assert main(["sample", "--workdir", str(vae_run), "--steps", "5"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'vae'" in err and "num_steps" in err
    assert f"its sample options: {', '.join(recipe.sample_options) or 'none'}" in err
    assert not captured.out  # nothing was drawn
    assert main(["eval", "--workdir", str(vae_run), "--steps", "5", "--no-likelihood"]) == 2


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_steps_below_one_are_refused_not_ignored(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--workdir", str(tmp_path), "--steps", value])
    assert info.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_eval_time_overrides_only_for_declared_fields(vae_run, monkeypatch):
    from jaxgen.recipes.vae import VAERecipe

    # eval.* is always allowed; model fields only if the family declares them
    run = load_run(vae_run, overrides=["eval.max_examples=7"])
    assert run.config.eval.max_examples == 7
    with pytest.raises(ConfigError, match="'model.hidden' cannot be changed after training"):
        load_run(vae_run, overrides=["model.hidden=(32,)"])
    monkeypatch.setattr(VAERecipe, "eval_time_fields", ("eval_importance_samples",))
    run = load_run(vae_run, overrides=["model.eval_importance_samples=16"])
    assert run.config.model.eval_importance_samples == 16
    with pytest.raises(ConfigError, match="only eval.\\*, model.eval_importance_samples"):
        load_run(vae_run, overrides=["model.latent_dim=3"])


def test_samples_do_not_depend_on_chunk_size_or_devices(vae_run):
    from jaxgen.run import draw_samples

    run = load_run(vae_run)
    reference = draw_samples(run, num_samples=64, seed=3, batch_size=64)
    assert reference.shape == (64, 8, 8, 1)
    np.testing.assert_array_equal(
        draw_samples(run, num_samples=64, seed=3, batch_size=16), reference
    )
    one_device = draw_samples(
        run, num_samples=24, seed=3, batch_size=16, mesh=sharding.make_mesh(1)
    )
    np.testing.assert_allclose(one_device, reference[:24], rtol=1e-5, atol=1e-6)
    assert not np.allclose(draw_samples(run, num_samples=8, seed=4), reference[:8])


def test_sampler_help_lists_the_recipes_samplers():
    sample = build_parser()._subparsers._group_actions[0].choices["sample"]
    text = " ".join(sample.format_help().split())
    declared = {f: get_recipe(f).samplers for f in families() if get_recipe(f).samplers}
    assert declared, "some family declares its samplers"
    for family, samplers in declared.items():
        assert f"{family}: {', '.join(samplers)}" in text


def _start(workdir: pathlib.Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "jaxgen.cli",
        "train",
        EXPERIMENT,
        "--workdir",
        str(workdir),
        *TINY,
        *extra,
    ]
    return subprocess.Popen(
        cmd, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for(
    path: pathlib.Path, proc: subprocess.Popen, timeout: float = 180.0, nonempty: bool = False
) -> None:
    deadline = time.time() + timeout
    while not path.exists() or (nonempty and path.stat().st_size == 0):
        if proc.poll() is not None:
            raise AssertionError(f"training exited early:\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)


def _checkpoint_steps(directory: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    """kill -9 after the step-8 checkpoint, often in the middle of writing a later one;
    the run resumes from the newest complete checkpoint and ends bit-for-bit where a
    straight run ends. All runs are subprocesses, so they share one XLA set-up."""
    extra = ("train.checkpoint_every=4", "optim.decay=constant")
    proc = _start(tmp_path / "killed", *extra, "train.num_steps=100000")
    _wait_for(tmp_path / "killed" / "checkpoints" / "8", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The small model steps fast, so the run may have got past step 8 before the kill:
    # both runs end 8 steps after its newest checkpoint (a constant learning rate, so
    # num_steps changes nothing else).
    end = _checkpoint_steps(tmp_path / "killed" / "checkpoints")[-1] + 8
    for workdir in ("killed", "straight"):
        done = _start(tmp_path / workdir, *extra, f"train.num_steps={end}")
        out, _ = done.communicate(timeout=300)
        assert done.returncode == 0, out
    resumed, straight = load_run(tmp_path / "killed"), load_run(tmp_path / "straight")
    assert resumed.step == straight.step == end
    assert leaves_close(resumed.params, straight.params, rtol=0, atol=0)
    assert leaves_close(resumed.ema_params, straight.ema_params, rtol=0, atol=0)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    # Periodic checkpoints only every 10^6 steps (the small model steps fast): the one
    # checkpoint found is the one SIGTERM asked for.
    proc = _start(tmp_path / "run", "train.num_steps=10000000", "train.checkpoint_every=1000000")
    _wait_for(tmp_path / "run" / "metrics.jsonl", proc, nonempty=True)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    summary = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert summary["stopped_early"] is True
    steps = _checkpoint_steps(tmp_path / "run" / "checkpoints")
    assert steps and steps[-1] == summary["step"] and 0 < summary["step"] < 1_000_000


def test_ddpm_paper_config_trains_then_samples_with_ddim_from_the_command_line(tmp_path, capsys):
    """DDPM's CIFAR-10 config end to end (TFDS source, flips, dropout) with a small U-Net,
    then ``jaxgen sample --sampler ddim --steps 5`` from the trained run. (One DDPM run
    serves both checks: a U-Net costs tens of seconds to compile on 2 cores.)"""
    import tensorflow_datasets as tfds

    config = apply_overrides(
        load_experiment(str(ROOT / "experiments" / "ddpm_cifar10.py")),
        [
            "model.unet.channels=8",
            "model.unet.channel_mult=(1,)",
            "model.unet.num_res_blocks=1",
            "model.unet.attention_resolutions=()",
            "model.unet.num_groups=4",
            "model.num_timesteps=20",
            "data.batch_size=8",
            "train.num_steps=2",
            "train.sample_every=0",
            "train.progress_bar=false",
            f"data.data_dir={tmp_path / 'tfds'}",
        ],
    )
    assert config.data.random_flip and config.model.unet.dropout == 0.1
    assert config.model.sampler == "ancestral"  # so --sampler does change the sampler
    workdir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=16):
        result = train(config, workdir, mesh=sharding.make_mesh(1))
        assert result.step == 2 and np.isfinite(result.metrics["loss"])
        assert result.metrics["loss"] > 0
        capsys.readouterr()
        args = ["--num-samples", "6", "--sampler", "ddim", "--steps", "5"]
        assert main(["sample", "--workdir", str(workdir), *args]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    samples = np.load(out["npy"])
    assert samples.shape == (6, 32, 32, 3) and np.isfinite(samples).all()
    assert pathlib.Path(out["png"]).exists()


@pytest.mark.parametrize("flag, quiet", [([], None), (["--quiet"], "1")])
def test_quiet_holds_while_the_command_runs(flag, quiet, tmp_path, monkeypatch, capsys):
    """``--quiet`` sets JAXGEN_QUIET (read by jaxgen.engine.progress) for the command only."""
    import jaxgen.run
    from jaxgen.engine import progress

    monkeypatch.delenv("JAXGEN_QUIET", raising=False)
    seen = {}

    def fake_evaluate(run, **kwargs):
        seen["env"] = os.environ.get("JAXGEN_QUIET")
        progress.status("a progress line")
        with progress.bar(2, "a bar", delay=0) as pbar:
            pbar.update(2)
        return {"ok": 1.0}

    monkeypatch.setattr(jaxgen.run, "load_run", lambda *a, **k: None)
    monkeypatch.setattr(jaxgen.run, "evaluate_run", fake_evaluate)
    (tmp_path / "config.json").write_text(json.dumps({"family": "vae"}))
    assert main(["eval", "--workdir", str(tmp_path), *flag]) == 0
    captured = capsys.readouterr()
    assert seen["env"] == quiet and "JAXGEN_QUIET" not in os.environ
    assert json.loads(captured.out) == {"ok": 1.0}  # stdout: the JSON alone
    shown = "a progress line" in captured.err and "a bar" in captured.err
    assert shown == (quiet is None), captured.err


def test_progress_is_stderr_only_quiet_when_asked_and_silent_on_a_quick_error(monkeypatch, capsys):
    from jaxgen.engine import progress

    monkeypatch.delenv("JAXGEN_QUIET", raising=False)
    with progress.bar(3, "shown", delay=0) as pbar:
        pbar.update(3)
    assert progress.ticker(lambda: 7, "quick") == 7  # under the 1 s delay: nothing drawn
    with pytest.raises(ZeroDivisionError):
        progress.ticker(lambda: 1 / 0, "failing")
    captured = capsys.readouterr()
    assert captured.out == "" and "shown" in captured.err and "3/3" in captured.err
    assert "quick" not in captured.err and "failing" not in captured.err
    timer = progress.Timer()
    with timer("metric"):
        pass
    assert set(timer.as_metrics()) == {"seconds_metric"}
    monkeypatch.setenv("JAXGEN_QUIET", "1")
    progress.status("hidden")
    with progress.bar(3, "hidden", delay=0) as pbar:
        assert pbar.disable
    assert capsys.readouterr().err == ""
