"""User errors are found before the heavy imports (issue 20): a bad config key or value, a
missing config file, a missing or empty workdir are each ONE line ``jaxgen <cmd>: error:
...`` with exit code 2, reported while ``sys.modules`` holds none of JAX, Flax, Orbax or
TensorFlow Datasets (so they appear in well under two seconds on a cold machine; nothing
here is timed: the modules loaded are the measure).

All cases run in ONE fresh interpreter (``jaxgen.cli.main`` per case, stderr captured per
case), which then reports the heavy modules loaded by all of them together.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEAVY = ("jax", "flax", "orbax", "tensorflow_datasets", "tensorflow", "optax")

_RUNNER = """
import contextlib, io, json, sys
from jaxgen.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "err": err.getvalue()})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
print(json.dumps({"results": results, "heavy": heavy}))
"""


def _cases(tmp: pathlib.Path) -> list[tuple[str, list[str], str]]:
    """(name, argv, regex the one error line must match)."""
    ddpm = "experiments/ddpm_digits.py"
    work = str(tmp / "work")
    run = tmp / "runs" / "ddpm_digits"  # a run directory: only its config.json matters here
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"family": "ddpm", "name": "ddpm_digits"}))
    (tmp / "empty").mkdir()
    bad = tmp / "runs" / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"family": "ddpm", "trian": {}}))
    return [
        (
            "bad key",
            ["train", ddpm, "--workdir", work, "train.num_step=3"],
            r"unknown config key 'train\.num_step'; did you mean 'train\.num_steps'",
        ),
        ("bad section", ["train", ddpm, "--workdir", work, "trian.seed=1"], r"'trian\.seed'"),
        (
            "bad value",
            ["train", ddpm, "--workdir", work, "optim.learning_rate=-1"],
            r"optim\.learning_rate must be a positive finite number",
        ),
        ("no '='", ["train", ddpm, "train.num_steps"], r"not of the form key=value"),
        (
            "missing config, nearest suggested",
            ["train", "experiments/ddpm_digit.py", "--workdir", work],
            r"'experiments/ddpm_digit\.py' does not exist; did you mean "
            r"'experiments/ddpm_digits\.py'\?",
        ),
        ("missing config", ["train", str(tmp / "nosuch.py")], r"does not exist$"),
        (
            "workdir is a file",
            ["train", ddpm, "--workdir", str(ROOT / "README.md")],
            r"--workdir .* is a file",
        ),
        (
            "missing workdir (eval)",
            ["eval", "--workdir", str(tmp / "nosuch")],
            r"not a jaxgen run directory \(no config\.json\); train first$",
        ),
        (
            "missing workdir (sample)",
            ["sample", "--workdir", str(tmp / "nosuch")],
            r"not a jaxgen run directory",
        ),
        (
            "mistyped workdir, nearest suggested",
            ["eval", "--workdir", str(tmp / "runs" / "ddpm_digit")],
            rf"did you mean '{tmp / 'runs' / 'ddpm_digits'}'\?",
        ),
        (
            "workdir without config.json",
            ["sample", "--workdir", str(tmp / "empty")],
            r"not a jaxgen run directory",
        ),
        (
            "saved config with an unknown key",
            ["eval", "--workdir", str(bad)],
            r"unknown config key 'trian' in .*config\.json; did you mean 'train'\?",
        ),
        (
            "bad eval key",
            ["eval", "--workdir", str(run), "eval.max_example=3"],
            r"unknown config key 'eval\.max_example'; did you mean 'eval\.max_examples'",
        ),
        (
            "bad eval value",
            ["eval", "--workdir", str(run), "eval.num_samples=0"],
            r"eval\.num_samples must be an integer >= 1, got 0",
        ),
        (
            "guidance flags without scales",
            ["eval", "--workdir", str(run), "--guidance-rescale", "0.5"],
            r"need --guidance-scales",
        ),
        ("bad flag value", ["sample", "--workdir", str(run), "--steps", "0"], r"--steps"),
    ]


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> tuple[list[tuple[str, list[str], str]], dict]:
    cases = _cases(tmp_path_factory.mktemp("fast_errors"))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps([c[1] for c in cases]), json.dumps(HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return cases, json.loads(done.stdout.strip().splitlines()[-1])


def test_every_error_is_one_line_exit_code_2(reported):
    cases, out = reported
    assert len(out["results"]) == len(cases)
    for (name, argv, pattern), result in zip(cases, out["results"], strict=True):
        lines = [line for line in result["err"].splitlines() if line.strip()]
        assert result["code"] == 2, (name, result)
        assert len(lines) == 1, (name, result["err"])
        assert lines[0].startswith(f"jaxgen {argv[0]}: error: "), (name, lines[0])
        assert re.search(pattern, lines[0]), (name, pattern, lines[0])


def test_no_heavy_module_was_imported_for_any_of_them(reported):
    _, out = reported
    assert out["heavy"] == [], f"imported before the errors were reported: {out['heavy']}"


def test_the_runner_does_see_heavy_imports():
    """The check can fail: a module loaded under a heavy name is listed (a stand-in, not
    the real Orbax, to keep this fast)."""
    runner = "import sys, types\nsys.modules['orbax.checkpoint'] = types.ModuleType('o')\n"
    runner += _RUNNER
    done = subprocess.run(
        [sys.executable, "-c", runner, "[]", json.dumps(HEAVY)],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        check=True,
    )
    heavy = json.loads(done.stdout.strip().splitlines()[-1])["heavy"]
    assert heavy == ["orbax.checkpoint"]
