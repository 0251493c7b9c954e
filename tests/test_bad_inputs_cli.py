"""Bad input at the command line: every case is ONE line ``jaxgen <cmd>: error: ...`` naming
the problem, exit code 2, and no traceback.

The cases run in process (``jaxgen.cli.main``); those that need a trained run share one
two-step run of the small digits VAE, made once for the module.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from jaxgen.cli import main
from jaxgen.engine import sharding
from jaxgen.run import train
from tests.engine.test_trainer import EXPERIMENT as _EXPERIMENT
from tests.engine.test_trainer import TINY, tiny_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = str(_EXPERIMENT)
DDPM = str(ROOT / "experiments" / "ddpm_digits.py")

# Placeholders filled per case: RUN (the trained run), WORK (a fresh workdir under tmp_path),
# FILE (an existing plain file), EMPTY (an existing empty directory), DAMAGED (a copy of the
# run whose step-2 checkpoint is garbled), TMP (tmp_path).
T = ["train", EXPERIMENT, "--workdir", "WORK", *TINY]
S = ["sample", "--workdir", "RUN"]
E = ["eval", "--workdir", "RUN", "--no-likelihood"]

CASES = [
    # --- config value ranges (checked when the config is built) -------------------------
    (
        "train.log_every=0",
        [*T, "train.log_every=0"],
        r"train\.log_every must be an integer >= 1, got 0",
    ),
    (
        "checkpoint_every=0",
        [*T, "train.checkpoint_every=0"],
        r"train\.checkpoint_every .*>= 1, got 0",
    ),
    ("num_steps=0", [*T, "train.num_steps=0"], r"train\.num_steps must be an integer >= 1, got 0"),
    ("num_steps=-5", [*T, "train.num_steps=-5"], r"train\.num_steps .*>= 1, got -5"),
    (
        "num_steps=1.5",
        [*T, "train.num_steps=1.5"],
        r"'train\.num_steps': expected an integer, got 1\.5",
    ),
    (
        "num_steps=abc",
        [*T, "train.num_steps=abc"],
        r"'train\.num_steps': expected an integer, got 'abc'",
    ),
    ("seed=-1", [*T, "train.seed=-1"], r"train\.seed must be an integer >= 0, got -1"),
    ("sample_every=-1", [*T, "train.sample_every=-1"], r"train\.sample_every .*>= 0, got -1"),
    ("num_grid_samples=0", [*T, "train.num_grid_samples=0"], r"train\.num_grid_samples .*>= 1"),
    ("keep_checkpoints=0", [*T, "train.keep_checkpoints=0"], r"train\.keep_checkpoints .*>= 1"),
    (
        "shard_min=-1",
        [*T, "train.shard_params_min_size=-1"],
        r"train\.shard_params_min_size .*>= 0",
    ),
    ("mesh_fsdp=0", [*T, "train.mesh_fsdp=0"], r"train\.mesh_fsdp must be an integer >= 1, got 0"),
    ("mesh_fsdp=3", [*T, "train.mesh_fsdp=3"], r"train\.mesh_fsdp=3 must be a positive divisor"),
    ("mesh_slices=2", [*T, "train.mesh_slices=2"], r"train\.mesh_slices=2 but the devices"),
    ("compute_dtype", [*T, "train.compute_dtype=float16"], r"train\.compute_dtype.*bfloat16"),
    # --- multi-process flags (checked before jax.distributed starts) ---------------------
    (
        "coordinator without a port",
        [*T, "--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
        r"coordinator address must be HOST:PORT .*'localhost'",
    ),
    (
        "coordinator without the processes",
        [*T, "--coordinator", "127.0.0.1:1234"],
        r"needs the number of processes and this process's id",
    ),
    (
        "process id out of range",
        [*T, "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
        r"process id must be in \[0, 2\)",
    ),
    (
        "processes without a coordinator",
        [*T, "--num-processes", "2", "--process-id", "0"],
        r"given with a coordinator address",
    ),
    ("batch_size=0", [*T, "data.batch_size=0"], r"data\.batch_size must be an integer >= 1, got 0"),
    ("batch_size=-8", [*T, "data.batch_size=-8"], r"data\.batch_size .*got -8"),
    (
        "lr=-1",
        [*T, "optim.learning_rate=-1"],
        r"optim\.learning_rate must be a positive finite .*-1",
    ),
    ("lr=0", [*T, "optim.learning_rate=0"], r"optim\.learning_rate must be a positive .*got 0"),
    ("lr=1e400", [*T, "optim.learning_rate=1e400"], r"optim\.learning_rate .*finite.*got inf"),
    ("warmup=-1", [*T, "optim.warmup_steps=-1"], r"optim\.warmup_steps .*>= 0, got -1"),
    ("b1=1", [*T, "optim.b1=1"], r"optim\.b1 must be a number in \[0, 1\), got 1\.0"),
    ("b2=-0.1", [*T, "optim.b2=-0.1"], r"optim\.b2 must be a number in \[0, 1\)"),
    ("eps=0", [*T, "optim.eps=0"], r"optim\.eps must be a positive"),
    ("weight_decay<0", [*T, "optim.weight_decay=-0.1"], r"optim\.weight_decay .*>= 0, got -0\.1"),
    ("clip=0", [*T, "optim.grad_clip_norm=0"], r"optim\.grad_clip_norm must be None or a positive"),
    (
        "ema_decay=1.5",
        [*T, "optim.ema_decay=1.5"],
        r"optim\.ema_decay must be a number in \[0, 1\]",
    ),
    ("decay", [*T, "optim.decay=cosin"], r"optim\.decay must be one of constant, cosine.*'cosine'"),
    ("optimizer", [*T, "optim.optimizer=sgd"], r"optim\.optimizer must be one of adam, adamw"),
    ("eval.num_samples=0", [*T, "eval.num_samples=0"], r"eval\.num_samples .*>= 1, got 0"),
    ("eval.batch_size=0", [*T, "eval.batch_size=0"], r"eval\.batch_size .*>= 1, got 0"),
    ("max_examples=0", [*T, "eval.max_examples=0"], r"eval\.max_examples .*>= 1 or None, got 0"),
    # --- config keys and override syntax -----------------------------------------------
    (
        "unknown key",
        [*T, "train.num_step=3"],
        r"unknown config key 'train\.num_step'.*'train\.num_steps'",
    ),
    ("unknown section", [*T, "trian.num_steps=3"], r"unknown config key 'trian\.num_steps'"),
    (
        "renamed key",
        ["train", DDPM, "--workdir", "WORK", "model.ddim_steps=5"],
        r"'model\.ddim_steps' was renamed to 'model\.sample_steps'",
    ),
    ("no '='", [*T, "train.num_steps"], r"not of the form key=value"),
    ("section as value", [*T, "train=3"], r"'train' is a section"),
    ("value as section", [*T, "train.num_steps.x=1"], r"'num_steps' is a value, not a section"),
    ("bool", [*T, "train.progress_bar=maybe"], r"expected true or false, got 'maybe'"),
    ("unknown dataset", [*T, "data.name=digitz"], r"unknown dataset 'digitz'.*'digits'"),
    ("VAE beta < 0", [*T, "model.beta=-1"], r"model\.beta, .* must be >= 0, got -1\.0"),
    (
        "VE sigma_min > sigma_max",
        ["train", str(ROOT / "experiments" / "sde_ve_digits.py"), "--workdir", "WORK"]
        + ["model.sigma_min=100.0", "train.num_steps=1"],
        r"score_sde model config: .*sigma_min.*sigma_max",
    ),
    # --- files and the workdir ----------------------------------------------------------
    ("missing config", ["train", "nosuch.py", "--workdir", "WORK"], r"'nosuch\.py' does not exist"),
    ("config is a dir", ["train", "TMP", "--workdir", "WORK"], r"is not a file"),
    ("bad json", ["train", "BADJSON", "--workdir", "WORK"], r"not valid JSON"),
    ("no get_config", ["train", "NOGETCONFIG", "--workdir", "WORK"], r"defines no get_config"),
    (
        "workdir is a file",
        ["train", EXPERIMENT, "--workdir", "FILE", *TINY],
        r"--workdir .* is a file",
    ),
    ("workdir below a file", ["train", EXPERIMENT, "--workdir", "FILE/run", *TINY], r"is a file"),
    (
        "unknown option",
        [*T, "--frobnicate"],
        r"jaxgen train: error: unrecognized arguments: --frobnicate",
    ),
    ("no config", ["train"], r"the following arguments are required: config"),
    ("unknown command", ["fly"], r"invalid choice: 'fly'"),
    ("no command", [], r"the following arguments are required"),
    # --- sample -------------------------------------------------------------------------
    ("num-samples 0", [*S, "--num-samples", "0"], r"--num-samples: must be an integer >= 1, got 0"),
    (
        "num-samples -3",
        [*S, "--num-samples", "-3"],
        r"--num-samples: must be an integer >= 1, got -3",
    ),
    (
        "num-samples x",
        [*S, "--num-samples", "x"],
        r"--num-samples: expected an integer >= 1, got 'x'",
    ),
    ("steps 0", [*S, "--steps", "0"], r"--steps: must be an integer >= 1, got 0"),
    ("seed -1", [*S, "--seed", "-1"], r"--seed: must be an integer >= 0, got -1"),
    ("step -1", [*S, "--step", "-1"], r"--step: must be an integer >= 0, got -1"),
    ("eta nan", [*S, "--eta", "nan"], r"--eta: must be a finite number"),
    ("missing step", [*S, "--step", "7"], r"no checkpoint for step 7 .*available: \[2\]"),
    ("damaged step", ["sample", "--workdir", "DAMAGED", "--step", "2"], r"step 2|checkpoint"),
    ("missing workdir", ["sample", "--workdir", "TMP/nosuch"], r"not a jaxgen run directory"),
    ("empty workdir", ["sample", "--workdir", "EMPTY"], r"not a jaxgen run directory"),
    ("sample workdir is a file", ["sample", "--workdir", "FILE"], r"not a jaxgen run directory"),
    ("no --workdir", ["sample"], r"one of --workdir RUN or --cascade FILE is required"),
    ("sampler on a VAE", [*S, "--sampler", "ddim"], r"'vae'.*sampler"),
    ("steps on a VAE", [*S, "--steps", "5"], r"'vae'.*num_steps"),
    (
        "model override",
        [*S, "model.hidden=(32,)"],
        r"'model\.hidden' cannot be changed after training",
    ),
    ("train override", [*S, "train.num_steps=3"], r"'train\.num_steps' cannot be changed"),
    ("out is a file", [*S, "--out", "FILE"], r"--out .* is a file"),
    # --- eval ---------------------------------------------------------------------------
    (
        "unknown split",
        ["eval", "--workdir", "RUN", "--split", "nosuch"],
        r"unknown digits split 'nosuch'",
    ),
    ("eval num-samples 0", [*E, "--num-samples", "0"], r"--num-samples: must be an integer >= 1"),
    ("eval seed -1", [*E, "--seed", "-1"], r"--seed: must be an integer >= 0"),
    ("eval max_examples", [*E, "eval.max_examples=0"], r"eval\.max_examples .*>= 1 or None, got 0"),
    ("eval batch_size", [*E, "eval.batch_size=-1"], r"eval\.batch_size .*>= 1, got -1"),
    ("eval unknown key", [*E, "eval.max_example=3"], r"unknown config key 'eval\.max_example'"),
    ("eval missing step", [*E, "--step", "9"], r"no checkpoint for step 9"),
    ("eval damaged step", ["eval", "--workdir", "DAMAGED", "--step", "2"], r"step 2|checkpoint"),
    ("eval missing workdir", ["eval", "--workdir", "TMP/nosuch"], r"not a jaxgen run directory"),
    ("eval eta on a VAE", [*E, "--eta", "0.5"], r"'vae'.*eta"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> pathlib.Path:
    """One two-step run of the small VAE (checkpoint at step 2), shared by the cases."""
    workdir = tmp_path_factory.mktemp("bad_inputs") / "run"
    train(tiny_config("train.num_steps=2"), workdir, mesh=sharding.make_mesh(1))
    return workdir


def _damaged_copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of ``run`` whose step-2 checkpoint has every data file overwritten with junk."""
    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    step = copy / "checkpoints" / "2"
    for path in sorted(p for p in step.rglob("*") if p.is_file()):
        if path.name not in ("_CHECKPOINT_METADATA",) and path.stat().st_size:
            path.write_bytes(b"\x00garbage" * 8)
    return copy


def _fill(argv: list[str], tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> list[str]:
    places = {
        "WORK": lambda: tmp_path / "work",
        "FILE": lambda: _write(tmp_path / "a_file", "not a directory"),
        "EMPTY": lambda: _mkdir(tmp_path / "empty"),
        "BADJSON": lambda: _write(tmp_path / "config.json", "{not json"),
        "NOGETCONFIG": lambda: _write(tmp_path / "exp.py", "X = 1\n"),
        "RUN": lambda: request.getfixturevalue("trained_run"),
        "DAMAGED": lambda: _damaged_copy(request.getfixturevalue("trained_run"), tmp_path),
        "TMP": lambda: tmp_path,
    }
    out = []
    for arg in argv:
        head, _, rest = arg.partition("/")
        if head in places:
            arg = str(places[head]()) + ("/" + rest if rest else "")
        out.append(arg)
    return out


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def _mkdir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_and_exit_code_2(argv, pattern, tmp_path, request, capfd):
    argv = _fill(argv, tmp_path, request)
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    command = argv[0] if argv and argv[0] in ("train", "sample", "eval") else None
    prefix = f"jaxgen {command}: error: " if command else "jaxgen: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "work" / "config.json").exists()  # a refused start leaves nothing


def test_the_table_is_large_enough():
    assert len(CASES) >= 45
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_workdir_that_is_not_writable_is_refused(tmp_path, monkeypatch, capfd):
    # (root may write anywhere, so the permission check itself is stubbed)
    import jaxgen.cli

    workdir = tmp_path / "ro"
    workdir.mkdir()
    monkeypatch.setattr(jaxgen.cli.os, "access", lambda path, mode: False)
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY]) == 2
    err = capfd.readouterr().err.strip()
    assert err == f"jaxgen train: error: --workdir {workdir}: {workdir} is not writable"


@pytest.mark.parametrize("flag, expected", [([], False), (["--restart"], True)])
def test_train_restart_flag_reaches_run_train(flag, expected, tmp_path, monkeypatch, capsys):
    import jaxgen.run

    seen = {}

    def fake_train(config, workdir, **kwargs):
        seen.update(kwargs)
        raise jaxgen.run.CheckpointError("stop here")

    monkeypatch.setattr(jaxgen.run, "train", fake_train)
    assert main(["train", EXPERIMENT, "--workdir", str(tmp_path / "w"), *flag]) == 2
    assert seen == {"restart": expected}
    assert capsys.readouterr().err.strip() == "jaxgen train: error: stop here"


def test_a_checkpoint_error_exit_is_one_line_in_a_real_process(trained_run, tmp_path):
    """Outside pytest's log capture: no Orbax log lines, nothing printed at interpreter
    shutdown (``cannot schedule new futures``), one line and exit code 2."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    damaged = _damaged_copy(trained_run, tmp_path)
    argv = ["sample", "--workdir", str(damaged), "--step", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "jaxgen.cli", *argv], env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("jaxgen sample: error: "), done.stderr
    assert "checkpoint step 2" in lines[0] and "damaged" in lines[0]
