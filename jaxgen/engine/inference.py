"""Load a trained run from its workdir, draw samples, and evaluate it."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig, apply_overrides, config_from_json
from jaxgen.data.registry import Dataset
from jaxgen.engine import sharding
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.trainer import abstract_train_state, build_recipe, load_train_dataset
from jaxgen.images import save_png
from jaxgen.recipes.base import Recipe


@dataclasses.dataclass
class LoadedRun:
    config: ExperimentConfig
    recipe: Recipe
    dataset: Dataset
    params: Any
    ema_params: Any
    step: int
    workdir: pathlib.Path


# Settings that do not change what was trained, so they may differ at evaluation time.
EVAL_TIME_KEYS: tuple[str, ...] = (
    "eval.",
    "model.likelihood_",
    "model.sample",
    "model.predictor",
    "model.corrector",
    "model.snr",
    "model.num_corrector_steps",
    "model.solver_order",
    "model.denoise",
    "model.ddim_",
    "model.clip_denoised",
    "model.eval_",
)


def load_run(
    workdir: str | pathlib.Path,
    *,
    step: int | None = None,
    overrides: Sequence[str] = (),
) -> LoadedRun:
    """The config, recipe and (EMA) parameters of the newest good checkpoint (or ``step``).

    ``overrides`` (``key=value``) may change evaluation and sampling settings only (keys
    starting with one of :data:`EVAL_TIME_KEYS`); the trained model stays as it was."""
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise ConfigError(f"{workdir} is not a jaxgen run directory (no config.json); train first")
    config = config_from_json(config_path.read_text())
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not key.startswith(EVAL_TIME_KEYS):
            raise ConfigError(
                f"{key!r} cannot be changed after training; at evaluation time only keys "
                f"starting with {', '.join(EVAL_TIME_KEYS)} can be overridden"
            )
    config = apply_overrides(config, overrides)
    dataset = load_train_dataset(config, split="train")
    recipe = build_recipe(config, dataset)
    mesh = sharding.make_mesh()
    _, _, abstract, _ = abstract_train_state(recipe, config, mesh)
    checkpointer = Checkpointer(workdir / "checkpoints", use_async=False)
    try:
        if step is None:
            restored = checkpointer.restore_latest(abstract)
            if restored is None:
                raise CheckpointError(f"no checkpoint in {checkpointer.directory}; train first")
            state, step = restored
        else:
            if step not in checkpointer.all_steps():
                raise CheckpointError(
                    f"no checkpoint for step {step} in {checkpointer.directory} "
                    f"(available: {checkpointer.all_steps()})"
                )
            state = checkpointer.restore(step, abstract)
    finally:
        checkpointer.close()
    return LoadedRun(config, recipe, dataset, state.params, state.ema_params, int(step), workdir)


def draw_samples(
    run: LoadedRun, *, num_samples: int, seed: int = 0, batch_size: int = 256, **sample_kwargs: Any
) -> np.ndarray:
    """``num_samples`` samples from the EMA parameters, in jitted chunks of one size (the last
    chunk is drawn whole and cut, so the sampler compiles once)."""
    chunk = min(batch_size, num_samples)
    mesh = sharding.make_mesh()
    chunk = -(-chunk // mesh.size) * mesh.size  # a multiple of the devices: each draws a slice
    fn = jax.jit(
        lambda params, key: run.recipe.sample(params, key, chunk, **sample_kwargs),
        out_shardings=sharding.output_sharding(chunk, mesh),
    )
    key = jax.random.key(seed)
    chunks = [
        np.asarray(fn(run.ema_params, jax.random.fold_in(key, i)))
        for i in range(-(-num_samples // chunk))
    ]
    return np.concatenate(chunks, axis=0)[:num_samples]


def save_figures(figures: dict[str, np.ndarray], directory: pathlib.Path, step: int) -> None:
    """Write each named (H, W, C) picture as ``<directory>/<name>_step<N>.png`` (enlarged to
    about 512 pixels so 8x8 digits are visible)."""
    for name, picture in figures.items():
        upscale = max(1, 512 // max(picture.shape[:2]))
        save_png(directory / f"{name}_step{step}.png", picture, upscale=upscale)


def evaluate_run(
    run: LoadedRun,
    *,
    split: str | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    likelihood: bool = True,
    **sample_kwargs: Any,
) -> dict[str, float]:
    """Likelihood numbers on a held-out split and, for digits, the digit Frechet distance.

    ``sample_kwargs`` (e.g. ``sampler=..., num_steps=...``) choose the sampler for the
    quality score; ``likelihood=False`` skips the likelihood (sampler comparisons). The
    numbers are also written to ``<workdir>/eval_<split>_step<N>[_<sampler><steps>].json``.
    """
    from jaxgen.data.registry import load_dataset

    ecfg = run.config.eval
    split = split or ecfg.split
    results: dict[str, Any] = {"step": float(run.step)}
    if likelihood:
        held_out = load_dataset(
            run.config.data.name,
            split,
            data_dir=run.config.data.data_dir,
            download=run.config.data.download,
        )
        n = (
            len(held_out.source)
            if ecfg.max_examples is None
            else min(ecfg.max_examples, len(held_out.source))
        )
        images = held_out.source.get(np.arange(n))[held_out.data_key]
        results.update(run.recipe.evaluate(run.ema_params, images, jax.random.key(seed)))
        figures = run.recipe.figures(run.ema_params, images, jax.random.key(seed + 1))
        if figures and jax.process_index() == 0:
            save_figures(figures, run.workdir / "figures", run.step)
    if run.config.data.name == "digits":
        from jaxgen.evaluation.digit_fd import digit_fd

        samples = draw_samples(
            run, num_samples=num_samples or ecfg.num_samples, seed=seed, **sample_kwargs
        )
        results["digit_fd"] = float(digit_fd(samples))
        results["digit_fd_num_samples"] = float(len(samples))
    results.update({k: v for k, v in sample_kwargs.items() if v is not None})
    suffix = "".join(str(sample_kwargs[k]) for k in ("sampler", "num_steps") if k in sample_kwargs)
    path = run.workdir / f"eval_{split}_step{run.step}{'_' + suffix if suffix else ''}.json"
    if jax.process_index() == 0:
        path.write_text(json.dumps(results, indent=2))
    return results
