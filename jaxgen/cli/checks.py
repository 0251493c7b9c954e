"""The checks ``jaxgen`` makes before it imports anything heavy.

Everything here needs only :mod:`jaxgen.config` (no JAX, Flax, Orbax or TFDS), so a user's
mistake in a path, a config file or an override of a shared section (``data``, ``optim``,
``train``, ``eval``) is reported in well under a second; ``model.*`` keys need the family's
recipe and are checked after the imports. A mistyped experiment path or run directory gets
the nearest existing one as a suggestion (:mod:`difflib`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import pathlib
import typing


class UsageError(Exception):
    """A command-line mistake found after parsing (printed as one line, exit code 2)."""


def check_train_workdir(workdir: str) -> None:
    """``UsageError`` for a workdir that cannot hold a run: a file, or not writable."""
    path = pathlib.Path(workdir)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--workdir {workdir} is a file, not a directory")
    if existing is not None and not existing.is_dir():
        raise UsageError(f"--workdir {workdir}: {existing} is a file, not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--workdir {workdir}: {existing} is not writable")


def _check_out_dir(out: str | None) -> None:
    if out is not None and pathlib.Path(out).exists() and not pathlib.Path(out).is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")


SHARED_SECTIONS = ("data", "optim", "train", "eval")


def _nearest(text: str, candidates: list[str]) -> str:
    """``; did you mean 'X'?`` for the candidate closest to ``text`` (by file name), or ''."""
    names = {pathlib.Path(c).name: c for c in candidates}
    close = difflib.get_close_matches(pathlib.Path(text).name, list(names), n=1, cutoff=0.6)
    return f"; did you mean {names[close[0]]!r}?" if close else ""


def _experiment_files(spec: str) -> list[str]:
    """Experiment files next to ``spec`` and under ``./experiments`` (as the user would type
    them), for suggestions."""
    folders = {pathlib.Path(spec).parent, pathlib.Path("experiments")}
    return sorted(str(p) for d in folders if d.is_dir() for p in d.glob("*.py"))


def _check_config_file(spec: str) -> None:
    """``ConfigError`` for a missing config path (suggesting the nearest experiment) or a
    saved ``config.json`` whose shared sections are bad."""
    from jaxgen.config import ConfigError

    path = pathlib.Path(spec)
    if not path.exists():
        hint = _nearest(spec, _experiment_files(spec))
        raise ConfigError(f"experiment config {spec!r} does not exist{hint}")
    if path.is_file() and path.suffix == ".json":
        _check_saved_sections(path)


def _check_saved_sections(path: pathlib.Path) -> dict[str, typing.Any]:
    """The JSON of a saved config, its top-level keys and shared sections checked."""
    from jaxgen.config import ConfigError, ExperimentConfig, from_dict

    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"config is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {path}{hint}")
        if key in SHARED_SECTIONS:
            from_dict(fields[key].default_factory, value, path=key + ".")  # type: ignore[misc]
    return data


def _check_shared_overrides(overrides: list[str], *, eval_only: bool) -> None:
    """``ConfigError`` for a malformed override, an unknown key or a bad value in a shared
    section (``data``, ``optim``, ``train``, ``eval``); ``model.*`` is left to the recipe.
    ``eval_only``: after training only ``eval.*`` (and ``model.*``) may change."""
    from jaxgen.config import ConfigError, ExperimentConfig, apply_overrides

    shared = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. train.num_steps=100)"
            )
        section = item.split("=", 1)[0].strip().split(".")[0]
        if section != "model" and section != "family" and not (eval_only and section != "eval"):
            shared.append(item)
    apply_overrides(ExperimentConfig(family="", model=None), shared)  # checks keys and values


def _check_run_dir(workdir: str) -> None:
    """``ConfigError`` unless ``workdir`` holds a run (a ``config.json``), suggesting the
    nearest run directory beside it."""
    from jaxgen.config import ConfigError

    path = pathlib.Path(workdir)
    if not (path / "config.json").is_file():
        parent = path.parent if path.parent.is_dir() else pathlib.Path(".")
        runs = [str(p) for p in parent.iterdir() if (p / "config.json").is_file()]
        hint = _nearest(workdir, runs) if not path.is_dir() else ""
        raise ConfigError(
            f"{workdir} is not a jaxgen run directory (no config.json); train first{hint}"
        )
    _check_saved_sections(path / "config.json")


def check_before_imports(args: argparse.Namespace) -> None:
    """The user errors found from the arguments, the files and ``jaxgen.config`` alone."""
    if args.command == "train":
        _check_config_file(args.config)
        _check_shared_overrides(args.overrides, eval_only=False)
        if args.workdir:
            check_train_workdir(args.workdir)
        return
    guided = args.command == "eval" and (
        args.guidance_interval is not None or args.guidance_rescale is not None or args.classifier
    )
    if guided and args.guidance_scales is None:
        raise UsageError(
            "--guidance-interval, --guidance-rescale and --classifier need --guidance-scales"
        )
    if args.command == "sample":
        _check_out_dir(args.out)
    if _check_cascade_args(args):
        return
    _check_run_dir(args.workdir)
    _check_shared_overrides(args.overrides, eval_only=True)


def is_cascade_file(spec: str) -> bool:
    """Whether ``spec`` is an experiment file defining ``get_cascade()`` (read as text: no
    import)."""
    path = pathlib.Path(spec)
    return path.suffix == ".py" and path.is_file() and "def get_cascade(" in path.read_text()


def _check_cascade_args(args: argparse.Namespace) -> bool:
    """Whether a cascade command was asked for; ``UsageError`` for both or neither of
    ``--workdir`` and ``--cascade``, a cascade file that is not one, or run-only flags."""
    if args.workdir and args.cascade:
        raise UsageError("give either --workdir (one run) or --cascade (a cascade file), not both")
    if not args.workdir and not args.cascade:
        raise UsageError("one of --workdir RUN or --cascade FILE is required")
    levels = getattr(args, "augmentation_levels", None)
    if not args.cascade:
        if levels is not None:
            raise UsageError("--augmentation-levels applies to --cascade")
        return False
    _check_config_file(args.cascade)
    if not is_cascade_file(args.cascade):
        raise UsageError(f"--cascade {args.cascade}: the file defines no get_cascade()")
    run_only = {
        "--step": args.step,
        "--sampler": args.sampler,
        "--steps": args.steps,
        "--eta": args.eta,
        "--temperature": args.temperature,
        "--top-k": getattr(args, "top_k", None),
        "--top-p": getattr(args, "top_p", None),
        "--text": getattr(args, "text", None),
        "overrides": args.overrides or None,
        "--guidance-scales": getattr(args, "guidance_scales", None),
        "--class-grid": getattr(args, "class_grid", None) or None,
        "--guidance-scale": getattr(args, "guidance_scale", None),
        "--classifier": args.classifier,
    }
    given = [name for name, value in run_only.items() if value is not None]
    if given:
        raise UsageError(
            f"{', '.join(given)} apply to one run; a cascade's per-stage sampler, steps and "
            "guidance are set in its file"
        )
    if args.command == "eval" and args.augmentation_level is not None:
        raise UsageError("jaxgen eval --cascade takes --augmentation-levels (a list)")
    return True
