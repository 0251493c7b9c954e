"""Evaluate a trained run: held-out likelihood numbers, figures, and a sample-quality score
chosen by dataset (:data:`SAMPLE_METRICS`)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig
from jaxgen.engine import progress
from jaxgen.engine.trainer import TrainResult
from jaxgen.run.data import held_out_rows
from jaxgen.run.inference import (
    LoadedRun,
    check_sample_options,
    draw_samples,
    load_run,
    save_figures,
)
from jaxgen.run.train import train


def _digit_fd(samples: np.ndarray) -> dict[str, float]:
    from jaxgen.evaluation.digit_fd import digit_fd

    return {"digit_fd": float(digit_fd(samples)), "digit_fd_num_samples": float(len(samples))}


# dataset name -> sample-quality metric ``metric(samples) -> {name: value}``.
SAMPLE_METRICS: dict[str, Callable[[np.ndarray], dict[str, float]]] = {
    "digits": _digit_fd,
}

# dataset name -> (fewest samples whose score means anything, what the score is at fewer).
# Digits, measured with ``digit_fd`` on n real training digits against the 360 test digits
# (20 random subsets each, seed 0): n = 64: 28.6 +- 10.6, 128: 14.8 +- 4.5, 256: 10.2 +-
# 3.0, 360: 10.0 +- 2.1, all 1437: 6.6. Below 256 even real digits score like visibly
# flawed samples; the README's and the configs' numbers use 360.
SAMPLE_METRIC_MIN_SAMPLES: dict[str, tuple[int, str]] = {
    "digits": (256, "real digits score 28.6 +- 10.6 at 64 samples and 10.0 +- 2.1 at 360"),
}


def sample_score_note(dataset: str, num_samples: int) -> str | None:
    """A note when ``num_samples`` samples are too few for ``dataset``'s sample-quality score
    (:data:`SAMPLE_METRIC_MIN_SAMPLES`) to mean anything, else None."""
    if dataset not in SAMPLE_METRIC_MIN_SAMPLES:
        return None
    needed, why = SAMPLE_METRIC_MIN_SAMPLES[dataset]
    if num_samples >= needed:
        return None
    return (
        f"note: {num_samples} samples are too few for a {dataset} sample-quality score: it "
        f"needs at least {needed} ({why}); jaxgen eval draws 360"
    )


def evaluate_run(
    run: LoadedRun,
    *,
    split: str | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    likelihood: bool = True,
    **sample_options: Any,
) -> dict[str, float]:
    """Likelihood numbers on a held-out split and the dataset's sample-quality score.

    ``sample_options`` (e.g. ``sampler=..., num_steps=...``, as the recipe declares) choose
    the sampler for the quality score; ``likelihood=False`` skips the likelihood (sampler
    comparisons). A recipe with ``evaluate_labels = True`` (a classifier) is also given
    the held-out labels (``evaluate(..., labels=...)``); one with ``generative = False``
    draws no samples. The numbers, with each metric's wall time in seconds
    (``seconds_likelihood``, ``seconds_figures``, ``seconds_digit_fd``: compilation
    included), are also written to ``<workdir>/eval_<split>_step<N>[_<sampler><steps>].json``.
    Each metric shows its progress on stderr (:mod:`jaxgen.engine.progress`; an ETA for the
    likelihood from the time the same file recorded last time).
    """
    check_sample_options(run.recipe, sample_options)
    ecfg = run.config.eval
    split = split or ecfg.split
    suffix = "".join(
        str(sample_options[k]) for k in ("sampler", "num_steps") if k in sample_options
    )
    path = run.workdir / f"eval_{split}_step{run.step}{'_' + suffix if suffix else ''}.json"
    before = _previous_seconds(path)
    timer = progress.Timer()
    results: dict[str, Any] = {"step": float(run.step)}
    if likelihood:
        held_out = held_out_rows(run.config, split)
        images = held_out[run.dataset.data_key]
        extra = {}
        if getattr(run.recipe, "evaluate_labels", False):
            if "label" not in held_out:
                raise ConfigError(
                    f"family {run.config.family!r} is evaluated against labels; the {split!r} "
                    f"split of {run.config.data.name!r} has none"
                )
            extra["labels"] = held_out["label"]
        with timer("likelihood"):
            results.update(
                progress.ticker(
                    lambda: run.recipe.evaluate(
                        run.ema_params, images, jax.random.key(seed), **extra
                    ),
                    f"held-out likelihood ({len(images)} examples)",
                    estimate_s=before.get("likelihood"),
                )
            )
        with timer("figures"):
            figures = run.recipe.figures(run.ema_params, images, jax.random.key(seed + 1))
            if figures and jax.process_index() == 0:
                save_figures(figures, run.workdir / "figures", run.step)
    # The metrics are made for the dataset's own resolution (a cascade's base stage, trained
    # at data.resolution, is scored through the cascade: jaxgen.run.cascade).
    metric = (
        SAMPLE_METRICS.get(run.config.data.name) if run.config.data.resolution is None else None
    )
    if metric is not None and getattr(run.recipe, "generative", True):
        count = num_samples or ecfg.num_samples
        name = getattr(metric, "__name__", "sample quality").lstrip("_")
        with timer(name):
            samples = draw_samples(
                run,
                num_samples=count,
                seed=seed,
                batch_size=_chunk_for_progress(count, ecfg.batch_size),
                progress_desc=f"{name}: sampling",
                **sample_options,
            )
            progress.status(f"{name}: scoring {count} samples")
            results.update(metric(samples))
        note = sample_score_note(run.config.data.name, count)
        if note and jax.process_index() == 0:
            print(note, file=sys.stderr)
    results.update({k: v for k, v in sample_options.items() if v is not None})
    results.update(timer.as_metrics())
    if jax.process_index() == 0:
        path.write_text(json.dumps(results, indent=2))
    return results


SECONDS_PREFIX = "seconds_"
"""Keys ``seconds_<metric>``: each metric's wall time (compilation included) in the results."""


def _previous_seconds(path: pathlib.Path) -> dict[str, float]:
    """The wall times an earlier evaluation recorded in ``path`` (for the bars' ETAs)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {
        k[len(SECONDS_PREFIX) :]: float(v)
        for k, v in saved.items()
        if k.startswith(SECONDS_PREFIX) and isinstance(v, (int, float))
    }


def _chunk_for_progress(num_samples: int, batch_size: int, *, min_chunks: int = 4) -> int:
    """A chunk size of at most ``batch_size`` that splits ``num_samples`` into at least
    ``min_chunks`` equal chunks when it is large enough (>= 64 samples per chunk), so the
    sampling bar has an ETA after its first chunk. Not slower: on 2 shared CPU cores the
    main job's 360 ancestral samples took 108 s in chunks of 90, 125 s in one chunk of 360
    and 165 s in chunks of 256 (512 drawn, 152 cut)."""
    chunks = max(-(-num_samples // batch_size), min(min_chunks, num_samples // 64), 1)
    return -(-num_samples // chunks)


@dataclasses.dataclass
class TrainAndEvalResult:
    """What :func:`train_and_evaluate` returns: the training result and the evaluation."""

    train: TrainResult
    eval: dict[str, Any]


def train_and_evaluate(
    config: ExperimentConfig, workdir: str | pathlib.Path, **eval_options: Any
) -> TrainAndEvalResult:
    """Train (or resume) ``config`` in ``workdir``, then evaluate the newest checkpoint
    (:func:`evaluate_run` with ``eval_options``)."""
    result = train(config, workdir)
    return TrainAndEvalResult(result, evaluate_run(load_run(workdir), **eval_options))
