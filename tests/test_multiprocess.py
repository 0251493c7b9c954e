"""A two-host job on one machine: two ``jaxgen`` processes (4 CPU devices each) joined by
``jax.distributed`` over localhost, against the same run in one 8-device process.

For a diffusion and a GAN recipe, the two-process job trains, checkpoints, is stopped by a
SIGTERM sent to ONE of its processes (both stop at the same step with one checkpoint), is
resumed, samples and evaluates, through the command line's ``main`` (each process runs a
driver that calls ``jaxgen.cli.main`` for every command in turn, so the processes start
once: ``jax.distributed`` joins a process to one job for its lifetime). Its parameters,
sample files and evaluation numbers equal the one-process run's, to a tolerance:

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


# Each process: for every recipe, train until a SIGTERM (sent by the test to one process),
# resume to EXTRA_STEPS more steps, sample, evaluate; outputs are framed by marker lines.
DRIVER = """
import json, pathlib, sys
from jaxgen.cli import main

flags, jobs, extra = sys.argv[1:7], json.loads(sys.argv[7]), int(sys.argv[8])
for job in jobs:
    workdir = pathlib.Path(job["workdir"])
    for phase, argv in (("stopped", ["train.num_steps=1000000"]), ("resumed", None)):
        if argv is None:
            steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
            argv = [f"train.num_steps={max(steps) + extra}"]
        print(f"@@ {job['name']} {phase}", flush=True)
        assert main(["train", job["experiment"], "--workdir", str(workdir), *job["overrides"],
                     *argv, *flags]) == 0
    print(f"@@ {job['name']} sample", flush=True)
    assert main(["sample", "--workdir", str(workdir), "--num-samples", job["samples"],
                 *flags]) == 0
    print(f"@@ {job['name']} eval", flush=True)
    assert main(["eval", "--workdir", str(workdir), *flags]) == 0
print("@@ done", flush=True)
"""


def _sections(out: str) -> dict[str, dict]:
    """``{"<name> <phase>": the last JSON object printed in that phase}``."""
    found = {}
    for part in out.split("@@ ")[1:]:
        title, _, text = part.partition("\n")
        if "{" in text:
            found[title.strip()] = json.loads(text[text.index("{") : text.rindex("}") + 1])
    return found


def _config(name: str, *extra: str):
    config = load_experiment(
        str(ROOT / "experiments" / f"{name}.py"), resolve_model=model_config_class
    )
    return apply_overrides(config, [*COMMON, *RECIPES[name], *extra])


def _wait_for(path: pathlib.Path, procs: list[subprocess.Popen], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 0):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise AssertionError(f"no {path}: " + procs[0].communicate()[0][-4000:])
        time.sleep(0.2)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The two-process job over both recipes; SIGTERM goes to process 1 during the DDPM's
    training and to process 0 during the GAN's. Returns (root, per-process sections)."""
    root = tmp_path_factory.mktemp("two_processes")
    jobs = [
        {
            "name": name,
            "experiment": str(ROOT / "experiments" / f"{name}.py"),
            "workdir": str(root / name),
            "overrides": [*COMMON, *RECIPES[name]],
            "samples": str(NUM_SAMPLES),
        }
        for name in RECIPES
    ]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(pid),
                json.dumps(jobs),
                str(EXTRA_STEPS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
            cwd=ROOT,
        )  # fmt: skip
        for pid in range(2)
    ]
    try:
        for name, signalled in zip(RECIPES, (1, 0), strict=True):
            _wait_for(root / name / "metrics.jsonl", procs)
            procs[signalled].send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=400)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for pid, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0 and "@@ done" in out, f"process {pid}:\n{out[-4000:]}"
    return root, [_sections(out) for out in outputs]


@pytest.mark.parametrize("name", list(RECIPES))
def test_two_process_job_matches_one_process(name, job, tmp_path):
    root, sections = job
    workdir = root / name
    # The SIGTERM to one process stopped both at the same step, with one checkpoint then.
    stopped = [s[f"{name} stopped"] for s in sections]
    stop = stopped[0]["step"]
    assert all(s["stopped_early"] and s["step"] == stop for s in stopped), stopped
    resumed = [s[f"{name} resumed"] for s in sections]
    end = stop + EXTRA_STEPS
    assert all(s["step"] == end and "stopped_early" not in s for s in resumed), resumed
    records = [s[f"{name} sample"] for s in sections]
    assert records[0] == records[1]
    evals = [
        {k: v for k, v in s[f"{name} eval"].items() if not k.startswith("seconds_")}
        for s in sections
    ]
    assert evals[0] == evals[1]  # every process reports the same numbers (not timings)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [stop, end]  # keep_checkpoints=3: the agreed stop and the end

    # The same run straight through in this process, on its 8 devices.
    reference = tmp_path / "one_process"
    train(_config(name, f"train.num_steps={end}"), reference)
    one, two = load_run(reference), load_run(workdir)
    assert one.step == two.step == end
    for tree in ("params", "ema_params"):
        close, worst = _agreement(getattr(two, tree), getattr(one, tree))
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
