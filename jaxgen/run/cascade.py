"""Cascades (Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image
Generation"): a base model at low resolution followed by super-resolution stages, each its
own trained run.

A cascade is an experiment file whose ``get_cascade()`` returns a :class:`CascadeConfig`:
the stages in order, each a run directory (and the experiment file that trains it) with its
sampling settings (sampler, steps, augmentation level, guidance scale). The chain samples
``p(x_K) = int p(x_1) prod_k p(x_k | x_{k-1})`` ancestrally: stage ``k`` draws with key
``fold_in(key, k)`` (as :func:`jaxgen.superres.cascade_sample`) given stage ``k - 1``'s
samples (``condition={"low_resolution": ...}``), so example ``i`` of every stage depends
only on the seed and ``i``. A class-conditional cascade gives every stage the same labels.

* :func:`load_cascade` reads the file; :func:`check_cascade` loads every stage's run and
  refuses, by name, a missing or unfinished run, a first stage that is a super-resolution
  model or a later one that is not, resolutions that do not chain, stages trained on
  different datasets or class sets, and an augmentation level outside a stage's trained
  range.
* :func:`train_cascade` trains (or resumes) every stage from its experiment file, in order.
* :func:`sample_cascade` draws the chain; :func:`evaluate_cascade` scores the last stage's
  samples (digit FD on the digits) at one or several augmentation levels of the
  super-resolution stages.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, load_experiment
from jaxgen.engine import distributed
from jaxgen.engine.sampling import ChunkedSampler
from jaxgen.run.evaluate import SAMPLE_METRICS
from jaxgen.run.families import model_config_class
from jaxgen.run.inference import LoadedRun, load_run, write_samples
from jaxgen.run.train import train

__all__ = [
    "CascadeConfig",
    "CascadeStage",
    "check_cascade",
    "evaluate_cascade",
    "is_cascade_file",
    "load_cascade",
    "sample_cascade",
    "train_cascade",
]


@dataclasses.dataclass(frozen=True)
class CascadeStage:
    """One stage: a trained run and how to sample it.

    Attributes:
      workdir: the stage's run directory.
      config: the experiment file that trains it (``jaxgen train <cascade file>`` trains
        every stage that names one).
      sampler, num_steps: the stage's sample options (None: its config's).
      augmentation_level: the noise-conditioning augmentation level of a super-resolution
        stage's condition (None: its config's default); must lie in its trained range.
      guidance_scale: classifier-free guidance ``s`` of a class-conditional stage.
    """

    workdir: str
    config: str | None = None
    sampler: str | None = None
    num_steps: int | None = None
    augmentation_level: float | None = None
    guidance_scale: float | None = None

    def options(self, *, augmentation_level: float | None = None) -> dict[str, Any]:
        """The stage's sample options (``augmentation_level`` overrides the stage's own)."""
        level = self.augmentation_level if augmentation_level is None else augmentation_level
        named = {
            "sampler": self.sampler,
            "num_steps": self.num_steps,
            "guidance_scale": self.guidance_scale,
            "augmentation_level": level,
        }
        return {k: v for k, v in named.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class CascadeConfig:
    """A cascade: its name (outputs go to ``runs/<name>``), stages from the lowest
    resolution up, and the result it should reach."""

    name: str
    stages: tuple[CascadeStage, ...]
    num_samples: int = 360
    expected: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if len(self.stages) < 2:
            raise ConfigError(
                f"cascade {self.name!r} needs at least two stages (a base and a "
                f"super-resolution stage), got {len(self.stages)}"
            )
        for k, stage in enumerate(self.stages):
            if not isinstance(stage, CascadeStage):
                raise ConfigError(
                    f"cascade {self.name!r}: stage {k} must be a CascadeStage, got "
                    f"{type(stage).__name__}"
                )


def _module(path: str | pathlib.Path) -> Any:
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"cascade file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxgen_cascade_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_cascade_file(path: str | pathlib.Path) -> bool:
    """Whether ``path`` is a Python experiment file defining ``get_cascade()``."""
    path = pathlib.Path(path)
    if path.suffix != ".py" or not path.is_file():
        return False
    return "def get_cascade(" in path.read_text()


def load_cascade(path: str | pathlib.Path) -> CascadeConfig:
    """``get_cascade()`` of a cascade file (``ConfigError`` if it has none)."""
    module = _module(path)
    if not hasattr(module, "get_cascade"):
        raise ConfigError(f"{str(path)!r} defines no get_cascade() function (not a cascade)")
    cascade = module.get_cascade()
    if not isinstance(cascade, CascadeConfig):
        raise ConfigError(
            f"{path}: get_cascade() returned {type(cascade).__name__}, not CascadeConfig"
        )
    return cascade


def _stage_name(k: int, stage: CascadeStage) -> str:
    return f"stage {k} ({stage.workdir})"


def _load_stage(k: int, stage: CascadeStage) -> LoadedRun:
    train_hint = (
        f"train it: jaxgen train {stage.config} --workdir {stage.workdir}"
        if stage.config
        else "train it first"
    )
    if not (pathlib.Path(stage.workdir) / "config.json").is_file():
        raise ConfigError(
            f"{_stage_name(k, stage)} is not a jaxgen run (no config.json); {train_hint}"
        )
    run = load_run(stage.workdir)
    total = run.config.train.num_steps
    if run.step < total:
        raise ConfigError(
            f"{_stage_name(k, stage)} is unfinished: its newest checkpoint is step {run.step} "
            f"of {total}; resume it: jaxgen train {stage.config or run.workdir / 'config.json'} "
            f"--workdir {stage.workdir}"
        )
    return run


def _conditioning(run: LoadedRun) -> Any:
    return getattr(run.recipe, "image_conditioning", None)


def _classes(run: LoadedRun) -> int:
    return int(getattr(run.recipe, "classes", 0) or 0)


def check_cascade(cascade: CascadeConfig) -> list[LoadedRun]:
    """Every stage's run, loaded and checked against the others (see the module doc);
    ``ConfigError`` naming the stage and the mismatch."""
    runs = [_load_stage(k, s) for k, s in enumerate(cascade.stages)]
    base_data = runs[0].config.data.name
    classes = {_classes(r) for r in runs} - {0}
    for k, (stage, run) in enumerate(zip(cascade.stages, runs, strict=True)):
        name = _stage_name(k, stage)
        if not getattr(run.recipe, "generative", True):
            raise ConfigError(f"{name} is a {run.config.family!r} run, which does not sample")
        conditioning = _conditioning(run)
        if k == 0 and conditioning is not None:
            raise ConfigError(
                f"{name} is a super-resolution model; the first stage of a cascade must be a "
                "base model (no model.super_resolution)"
            )
        if k > 0 and conditioning is None:
            raise ConfigError(
                f"{name} is a {run.config.family!r} model without super-resolution; stages "
                "after the first must be ddpm, score_sde or flow_matching runs with "
                "model.super_resolution.factor > 1"
            )
        if run.config.data.name != base_data:
            raise ConfigError(
                f"{name} was trained on {run.config.data.name!r} but stage 0 on "
                f"{base_data!r}: every stage must model the same dataset"
            )
        if len(classes) > 1:
            raise ConfigError(
                f"the stages are conditioned on different class sets "
                f"({', '.join(f'{_classes(r)} classes' for r in runs)}); a class-conditional "
                "cascade needs the same classes at every stage"
            )
        if k > 0:
            made = tuple(runs[k - 1].recipe.data_shape)
            wanted = tuple(conditioning.low_resolution_shape)
            if made != wanted:
                raise ConfigError(
                    f"the resolutions do not chain: {name} enlarges "
                    f"{'x'.join(map(str, wanted))} images but stage {k - 1} makes "
                    f"{'x'.join(map(str, made))}"
                )
            conditioning.check_level(stage.augmentation_level)
        elif stage.augmentation_level is not None:
            raise ConfigError(f"{name}: augmentation_level applies to super-resolution stages")
    return runs


def _labels(runs: Sequence[LoadedRun], num_samples: int, label: int | None) -> np.ndarray | None:
    k = max(_classes(r) for r in runs)
    if not k:
        if label is not None:
            raise ConfigError(f"--class {label}: the cascade's stages are unconditional")
        return None
    if label is not None and not 0 <= label < k:
        raise ConfigError(f"--class {label} is outside the cascade's classes [0, {k})")
    if label is not None:
        return np.full((num_samples,), label, np.int32)
    return (np.arange(num_samples) % k).astype(np.int32)


def sample_cascade(
    runs: Sequence[LoadedRun],
    cascade: CascadeConfig,
    *,
    num_samples: int,
    seed: int = 0,
    label: int | None = None,
    augmentation_level: float | None = None,
    batch_size: int = 360,
    base_samples: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Every stage's samples (the last is the cascade's) and the labels asked for (None for
    an unconditional cascade). ``augmentation_level`` overrides every super-resolution
    stage's level. ``base_samples``: stage 0's samples of the same draw (same seed, count
    and labels), reused instead of drawn again (they do not depend on the level)."""
    labels = _labels(runs, num_samples, label)
    key = jax.random.key(seed)
    outputs: list[np.ndarray] = []
    for k, (stage, run) in enumerate(zip(cascade.stages, runs, strict=True)):
        if k == 0 and base_samples is not None:
            outputs.append(np.asarray(base_samples))
            continue
        options = stage.options(augmentation_level=augmentation_level if k else None)
        if k:
            _conditioning(run).check_level(options.get("augmentation_level"))
        previous = outputs[-1] if k else None
        keep_labels = labels if _classes(run) else None

        def condition(indices: np.ndarray, previous=previous, keep_labels=keep_labels):
            # (indices past the end pad the last chunk to the devices: any row will do)
            indices = np.asarray(indices) % num_samples
            rows: dict[str, np.ndarray] = {}
            if previous is not None:
                rows["low_resolution"] = previous[indices]
            if keep_labels is not None:
                rows["label"] = keep_labels[indices]
            return rows

        needs = previous is not None or keep_labels is not None
        traced = {}
        if "augmentation_level" in options:  # traced: a sweep over levels compiles once
            traced["augmentation_level"] = np.float32(options.pop("augmentation_level"))
        sampler = ChunkedSampler(
            run.recipe,
            num_samples=num_samples,
            batch_size=min(batch_size, num_samples),
            condition=condition if needs else None,
            traced_options=traced,
            **options,
        )
        outputs.append(np.asarray(sampler(run.ema_params, jax.random.fold_in(key, k))))
    return outputs, labels


def write_cascade_samples(
    runs: Sequence[LoadedRun],
    outputs: Sequence[np.ndarray],
    out: pathlib.Path,
    stem: str,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Each stage's grid and ``.npy`` as ``<stem>_stage<k>_<H>x<W>``; the record of paths."""
    record: dict[str, Any] = {}
    for k, (run, samples) in enumerate(zip(runs, outputs, strict=True)):
        h, w = samples.shape[1:3]
        name = f"{stem}_stage{k}_{h}x{w}"
        record[f"stage{k}"] = write_samples(run, samples, out, name, labels=labels)
    return record


def train_cascade(cascade: CascadeConfig, *, restart: bool = False) -> list[dict[str, Any]]:
    """Train (or resume) every stage that names its experiment file, in order; a stage
    without one must already be trained."""
    results = []
    for k, stage in enumerate(cascade.stages):
        if stage.config is None:
            _load_stage(k, stage)
            results.append({"stage": k, "workdir": stage.workdir, "trained": "before"})
            continue
        config = load_experiment(stage.config, resolve_model=model_config_class)
        result = train(config, stage.workdir, restart=restart)
        results.append({"stage": k, "workdir": str(result.workdir), "step": result.step})
    check_cascade(cascade)
    return results


def evaluate_cascade(
    cascade: CascadeConfig,
    *,
    levels: Sequence[float] | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    out: pathlib.Path | None = None,
) -> dict[str, Any]:
    """The sample-quality score (by dataset, :data:`jaxgen.run.SAMPLE_METRICS`) of the
    cascade's final samples at each augmentation level in ``levels`` (default: the stages'
    own), written to ``<out>/cascade_eval.{json,md}`` (default ``runs/<name>/eval``)."""
    runs = check_cascade(cascade)
    last = runs[-1]
    metric = SAMPLE_METRICS.get(last.config.data.name)
    if metric is None or last.config.data.resolution is not None:
        raise ConfigError(
            f"no sample-quality score for {last.config.data.name!r} at this resolution "
            f"(scores exist for: {', '.join(SAMPLE_METRICS)})"
        )
    n = num_samples or cascade.num_samples
    rows, base = [], None
    for level in levels if levels else [None]:
        start = time.perf_counter()
        outputs, _ = sample_cascade(
            runs, cascade, num_samples=n, seed=seed, augmentation_level=level, base_samples=base
        )
        base = outputs[0]  # the same at every level
        scores = metric(outputs[-1])
        shown = level if level is not None else cascade.stages[-1].augmentation_level
        rows.append(
            {
                "augmentation_level": shown,
                **scores,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    out = out or pathlib.Path("runs") / cascade.name / "eval"
    result = {"cascade": cascade.name, "seed": seed, "num_samples": n, "rows": rows}
    if distributed.is_main_process():  # one writer in a multi-process job
        out.mkdir(parents=True, exist_ok=True)
        (out / "cascade_eval.json").write_text(json.dumps(result, indent=2))
        (out / "cascade_eval.md").write_text(cascade_table(rows))
    return result


def cascade_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate_cascade`'s rows."""
    keys = [k for k in rows[0] if k != "seconds"] + ["seconds"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [
            "default"
            if row.get(k) is None
            else f"{row[k]:.4g}"
            if isinstance(row[k], float)
            else str(row[k])
            for k in keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
