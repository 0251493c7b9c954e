"""Evaluate a trained run: held-out likelihood numbers, figures, and a sample-quality score
chosen by dataset (:data:`SAMPLE_METRICS`)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig
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
    draws no samples. The numbers are also written to
    ``<workdir>/eval_<split>_step<N>[_<sampler><steps>].json``.
    """
    check_sample_options(run.recipe, sample_options)
    ecfg = run.config.eval
    split = split or ecfg.split
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
        results.update(run.recipe.evaluate(run.ema_params, images, jax.random.key(seed), **extra))
        figures = run.recipe.figures(run.ema_params, images, jax.random.key(seed + 1))
        if figures and jax.process_index() == 0:
            save_figures(figures, run.workdir / "figures", run.step)
    metric = SAMPLE_METRICS.get(run.config.data.name)
    if metric is not None and getattr(run.recipe, "generative", True):
        samples = draw_samples(
            run, num_samples=num_samples or ecfg.num_samples, seed=seed, **sample_options
        )
        results.update(metric(samples))
    results.update({k: v for k, v in sample_options.items() if v is not None})
    suffix = "".join(
        str(sample_options[k]) for k in ("sampler", "num_steps") if k in sample_options
    )
    path = run.workdir / f"eval_{split}_step{run.step}{'_' + suffix if suffix else ''}.json"
    if jax.process_index() == 0:
        path.write_text(json.dumps(results, indent=2))
    return results


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
