"""A two-host job on one machine: two ``jaxgen`` processes (4 CPU devices each) joined by
``jax.distributed`` over localhost, against the same run in one 8-device process.

For a diffusion and a GAN recipe, the two-process job trains, checkpoints, is stopped by a
SIGTERM sent to ONE of its processes (both stop at the same step with one checkpoint), is
resumed, samples and evaluates from the command line. Its parameters, sample files and
evaluation numbers equal the one-process run's, to a tolerance:

* parameters: ``rtol = 1e-4, atol = 1e-6`` -- the two jobs compute the same maths on the same
  global batches; only the order in which the gradient all-reduce adds the 8 per-device
  partial sums differs (in-process vs. gloo between processes), a float32 rounding change
  of ~1e-7 relative per step that Adam's normalised update carries over a few steps (the
  same tolerance as the 1- vs 8-device test in tests/engine/test_trainer.py);
* samples: ``atol = 1e-4`` (a few sampler steps through those parameters);
* evaluation numbers: ``rtol = 1e-3`` (the digit FD of 16 samples and a held-out bound).

A negative control: the one-process run with another seed is NOT within these tolerances.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxgen.config import apply_overrides, load_experiment
from jaxgen.run import draw_samples, evaluate_run, load_run, model_config_class, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMON = [
    "data.batch_size=16",
    "optim.decay=constant",
    "optim.warmup_steps=0",
    "optim.eps=1e-3",  # see the module docstring
    "train.log_every=1",
    "train.checkpoint_every=1000000",
    "train.sample_every=0",
    "train.progress_bar=false",
    "train.async_checkpoints=false",
    "eval.max_examples=16",
    "eval.batch_size=16",
    "eval.num_samples=16",
]
RECIPES = {
    "ddpm_digits": [
        "model.unet.channels=4",
        "model.unet.channel_mult=(1,)",
        "model.unet.num_res_blocks=1",
        "model.unet.attention_resolutions=()",
        "model.unet.num_groups=4",
        "model.num_timesteps=8",
        "model.sampler=ancestral",
    ],
    "gan_digits": [
        "model.generator_features=4",
        "model.discriminator_features=4",
        "model.latent_dim=4",
        "model.reference_batch_size=16",
    ],
}
EXTRA_STEPS = 3  # steps trained after the resume
NUM_SAMPLES = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4", PYTHONUNBUFFERED="1")
    test_cache = os.environ.get("JAXGEN_TEST_CACHE")
    env["JAXGEN_COMPILATION_CACHE"] = (
        f"{test_cache}-cli" if test_cache else str(ROOT / ".cache" / "jax-cli")
    )
    return env


def _launch(argv: list[str]) -> list[subprocess.Popen]:
    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxgen.cli",
                *argv,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(pid),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
            cwd=ROOT,
        )  # fmt: skip
        for pid in range(2)
    ]


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for pid, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"process {pid}:\n{out[-4000:]}"
    return outputs


def _last_json(out: str) -> dict:
    return json.loads(out[out.rindex("\n{") + 1 : out.rindex("}") + 1])


def _config(name: str, *extra: str):
    config = load_experiment(
        str(ROOT / "experiments" / f"{name}.py"), resolve_model=model_config_class
    )
    return apply_overrides(config, [*COMMON, *RECIPES[name], *extra])


@pytest.mark.parametrize("name", list(RECIPES))
def test_two_process_job_matches_one_process(name, tmp_path):
    overrides = [*COMMON, *RECIPES[name]]
    experiment = str(ROOT / "experiments" / f"{name}.py")
    workdir = tmp_path / "job"
    train_argv = ["train", experiment, "--workdir", str(workdir), *overrides]

    # Train until a SIGTERM reaches process 1 only: both processes stop at the same step.
    procs = _launch([*train_argv, "train.num_steps=1000000"])
    deadline = time.monotonic() + 180
    metrics = workdir / "metrics.jsonl"
    while not (metrics.exists() and metrics.stat().st_size > 0):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (
            procs[0].communicate()[0][-3000:] if procs[0].poll() is not None else "timeout"
        )
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    outs = _finish(procs)
    summaries = [_last_json(out) for out in outs]
    stop = summaries[0]["step"]
    assert all(s["stopped_early"] and s["step"] == stop for s in summaries), summaries
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [stop]  # one checkpoint, the agreed step

    # Resume to the end, then sample and evaluate, all as two processes.
    end = stop + EXTRA_STEPS
    _finish(_launch([*train_argv, f"train.num_steps={end}"]))
    sample_out = _finish(
        _launch(["sample", "--workdir", str(workdir), "--num-samples", str(NUM_SAMPLES)])
    )
    records = [_last_json(out) for out in sample_out]
    assert records[0] == records[1]
    eval_out = _finish(_launch(["eval", "--workdir", str(workdir)]))
    evals = [
        {k: v for k, v in _last_json(out).items() if not k.startswith("seconds_")}
        for out in eval_out
    ]
    assert evals[0] == evals[1]  # every process reports the same numbers (not timings)

    # The same run straight through in this process, on its 8 devices.
    reference = tmp_path / "one_process"
    train(_config(name, f"train.num_steps={end}"), reference)
    one, job = load_run(reference), load_run(workdir)
    assert one.step == job.step == end
    for tree in ("params", "ema_params"):
        close, worst = _agreement(getattr(job, tree), getattr(one, tree))
        assert close == 1.0, (tree, close, worst)
    samples = np.load(records[0]["npy"])
    expected = draw_samples(one, num_samples=NUM_SAMPLES, seed=0)
    np.testing.assert_allclose(samples, expected, atol=1e-4)
    numbers = evaluate_run(one)
    for key, value in numbers.items():
        if not key.startswith("seconds_"):
            np.testing.assert_allclose(evals[0][key], value, rtol=1e-3, err_msg=key)

    # Negative control: another seed's run is outside the tolerance.
    other = train(_config(name, f"train.num_steps={end}", "train.seed=1"), tmp_path / "other")
    close, worst = _agreement(other.state.params, one.params)
    assert close < 0.5, (close, worst)


def _agreement(a, b) -> tuple[float, float]:
    """(fraction of coordinates within rtol 1e-4 / atol 1e-6, largest absolute difference)."""
    x = np.concatenate([np.ravel(v) for v in jax.tree.leaves(a)])
    y = np.concatenate([np.ravel(v) for v in jax.tree.leaves(b)])
    return float(np.mean(np.isclose(x, y, rtol=1e-4, atol=1e-6))), float(np.abs(x - y).max())
