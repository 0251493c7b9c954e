"""Training data a recipe gets from the run floor instead of its data set: a teacher's
(source, sample) pairs (reflow and one-step distillation, Liu et al. 2023) and paired
source data sets.

**Reflow** (Liu et al. 2023, Alg. 1; convention data at t = 0, source at t = 1): a trained
flow carries source samples ``z`` to ``x = Flow(z)``; the next (``k+1``-rectified) flow is
trained on the coupled pairs ``(z, x)`` with the paired coupling, which straightens it and
lowers the transport cost ``E||x - z||^2``; **distillation** trains ``f(z, 1) = z - x``, so
that one Euler step reproduces the teacher.

A config names its teacher (``model.teacher_workdir``, a finished ``flow_matching`` run with a
Gaussian source). Before training, :func:`training_dataset` draws ``model.num_pairs`` pairs
with the teacher's sampler (``model.teacher_sampler`` / ``model.teacher_steps`` override it;
pair ``i`` from ``core.example_keys(key, n)[i]`` with ``key = train.seed``, in chunks) and
caches them in ``<workdir>/teacher_pairs.npz`` with the teacher's workdir, config hash and
checkpoint step. A resumed run reuses the cache; a cache made from another teacher, or a
teacher whose config or checkpoint changed since, is refused with a ``ConfigError`` naming
both.

A data-to-data model with ``model.coupling = "paired"`` and a source data set pairs source
row ``i`` with data row ``i``; the counts must be equal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import jax
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig, config_from_json
from jaxgen.data.registry import Dataset
from jaxgen.data.source import ArraySource
from jaxgen.engine.checkpointing import CheckpointError
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.restore import restore_train_state
from jaxgen.run.data import init_batch_for, load_train_dataset
from jaxgen.run.families import get_recipe, model_config_class

CACHE_NAME = "teacher_pairs.npz"
TEACHER_FAMILY = "flow_matching"
CHUNK = 256  # pairs drawn per compiled call
ODE_SAMPLERS = ("euler", "midpoint", "heun", "rk4", "adaptive")


def config_hash(workdir: str | pathlib.Path) -> str:
    """SHA-256 of a run's ``config.json`` read as JSON with sorted keys (formatting-free)."""
    text = (pathlib.Path(workdir) / "config.json").read_text()
    canonical = json.dumps(json.loads(text), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Teacher:
    """A loaded teacher run: its config, recipe, EMA parameters, step and config hash."""

    workdir: pathlib.Path
    config: ExperimentConfig
    recipe: Recipe
    params: Any
    step: int
    config_hash: str


def load_teacher(workdir: str | pathlib.Path) -> Teacher:
    """The newest checkpoint of a finished ``flow_matching`` run (``ConfigError``, one line,
    for a missing or unfinished workdir or another family)."""
    path = pathlib.Path(workdir)
    if not (path / "config.json").exists():
        raise ConfigError(
            f"model.teacher_workdir={str(workdir)!r} is not a jaxgen run (no config.json); "
            "train the teacher first"
        )
    config = config_from_json((path / "config.json").read_text(), resolve_model=model_config_class)
    if config.family != TEACHER_FAMILY:
        raise ConfigError(
            f"model.teacher_workdir={str(workdir)!r} is a {config.family!r} run; a teacher must "
            f"be a {TEACHER_FAMILY!r} run"
        )
    if config.model.source != "gaussian" or config.model.objective != "flow_matching":
        raise ConfigError(
            f"model.teacher_workdir={str(workdir)!r}: the teacher must be a flow with a Gaussian "
            f"source (its source {config.model.source!r}, objective {config.model.objective!r})"
        )
    dataset = load_train_dataset(config)
    recipe = get_recipe(config.family)(
        config,
        data_shape=dataset.event_shape,
        num_levels=dataset.num_levels,
        data_key=dataset.data_key,
        num_classes=dataset.num_classes,
    )
    if getattr(recipe, "classes", 0):
        raise ConfigError(
            f"model.teacher_workdir={str(workdir)!r} is class-conditional; reflow from a "
            "conditional teacher is not supported"
        )
    try:
        state, step = restore_train_state(
            recipe, config, path, init_batch=init_batch_for(recipe, dataset)
        )
    except CheckpointError as err:
        raise ConfigError(f"model.teacher_workdir={str(workdir)!r}: {err}") from None
    if step < config.train.num_steps:
        raise ConfigError(
            f"model.teacher_workdir={str(workdir)!r} is unfinished (step {step} of "
            f"{config.train.num_steps}); finish training the teacher first"
        )
    return Teacher(path, config, recipe, state.ema_params, step, config_hash(path))


def generate_pairs(
    teacher: Teacher, num_pairs: int, seed: int, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(source, sample)`` arrays of ``num_pairs`` teacher pairs: pair ``i`` from
    ``core.example_keys(key(seed), num_pairs)[i]`` alone, drawn in compiled chunks."""
    recipe, chunk = teacher.recipe, min(CHUNK, num_pairs)

    @jax.jit
    def draw(params, key, first_index):
        source, out = recipe.sample_pairs(params, key, chunk, first_index=first_index, **options)
        return source, out.samples

    key = jax.random.key(seed)
    sources, samples = [], []
    for start in range(0, num_pairs, chunk):
        source, sample = draw(teacher.params, key, np.int32(start))
        sources.append(np.asarray(source))
        samples.append(np.asarray(sample))
    return np.concatenate(sources)[:num_pairs], np.concatenate(samples)[:num_pairs]


def teacher_pairs(
    config: ExperimentConfig,
    workdir: str | pathlib.Path,
    *,
    event_shape: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, ...]:
    """The ``(source, sample)`` pairs of ``config.model.teacher_workdir``: from
    ``<workdir>/teacher_pairs.npz`` if it was made from the same teacher (workdir, config
    hash, checkpoint step), else drawn and cached (module doc). ``event_shape``: the
    student's data shape, which the teacher's must equal."""
    m = config.model
    named = str(pathlib.Path(m.teacher_workdir).resolve())
    teacher = load_teacher(m.teacher_workdir)
    if event_shape is not None and tuple(teacher.recipe.data_shape) != tuple(event_shape):
        raise ConfigError(
            f"model.teacher_workdir={m.teacher_workdir!r} models data of shape "
            f"{tuple(teacher.recipe.data_shape)}, this run's data {config.data.name!r} has "
            f"{tuple(event_shape)}"
        )
    cache = pathlib.Path(workdir) / CACHE_NAME
    if cache.exists():
        with np.load(cache) as f:
            meta = {k: str(f[k]) for k in ("teacher_workdir", "config_hash", "step")}
            source, sample = f["source"], f["sample"]
        if meta["teacher_workdir"] != named:
            raise ConfigError(
                f"{cache} holds pairs of teacher {meta['teacher_workdir']!r}, but "
                f"model.teacher_workdir names {named!r}; use a fresh workdir"
            )
        if (meta["config_hash"], meta["step"]) != (teacher.config_hash, str(teacher.step)):
            raise ConfigError(
                f"{cache} was made from teacher {named!r} with config {meta['config_hash']} at "
                f"step {meta['step']}; the teacher now has config {teacher.config_hash} at step "
                f"{teacher.step}; use a fresh workdir"
            )
        if len(source) != m.num_pairs:
            raise ConfigError(
                f"{cache} holds {len(source)} pairs, model.num_pairs={m.num_pairs}; use a fresh "
                "workdir"
            )
        return source, sample
    sampler = m.teacher_sampler or teacher.config.model.sampler
    if sampler not in ODE_SAMPLERS:
        raise ConfigError(
            f"teacher sampler {sampler!r} draws its own prior; reflow pairs need an ODE sampler "
            f"from the given source ({', '.join(ODE_SAMPLERS)}): set model.teacher_sampler"
        )
    options: dict[str, Any] = {"sampler": sampler}
    if m.teacher_steps is not None:
        options["num_steps"] = m.teacher_steps
    source, sample = generate_pairs(teacher, m.num_pairs, config.train.seed, **options)
    if jax.process_index() == 0:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            source=source,
            sample=sample,
            teacher_workdir=np.asarray(named),
            config_hash=np.asarray(teacher.config_hash),
            step=np.asarray(str(teacher.step)),
        )
        tmp.replace(cache)
    return source, sample


def _paired(dataset: Dataset, data: np.ndarray, source: np.ndarray, split: str) -> Dataset:
    arrays = {dataset.data_key: np.asarray(data, np.float32), "source": source.astype(np.float32)}
    return dataclasses.replace(dataset, split=split, source=ArraySource(arrays), num_classes=None)


def training_dataset(
    config: ExperimentConfig, workdir: str | pathlib.Path, recipe: Recipe, dataset: Dataset
) -> Dataset:
    """What ``recipe`` trains on: ``dataset``, or (flow matching) the teacher's pairs, the
    rows of one target class (``model.target_class``), or a paired source data set."""
    m = config.model
    if config.family != TEACHER_FAMILY:
        return dataset
    if m.teacher_workdir is not None:
        source, sample = teacher_pairs(config, workdir, event_shape=dataset.event_shape)
        return _paired(dataset, sample, source, "teacher_pairs")
    if m.target_class is None and m.coupling != "paired":
        return dataset
    rows = dataset.source.get(np.arange(len(dataset.source)))
    if m.target_class is not None:
        if "label" not in rows:
            raise ConfigError(f"model.target_class: {config.data.name!r} has no labels")
        rows = {k: v[rows["label"] == m.target_class] for k, v in rows.items()}
        if not len(rows[dataset.data_key]):
            raise ConfigError(f"model.target_class={m.target_class!r}: no such examples")
    if m.coupling != "paired":
        return dataclasses.replace(dataset, source=ArraySource(rows))
    source = recipe.source_rows(m.source_split)
    data = rows[dataset.data_key]
    if len(source) != len(data):
        raise ConfigError(
            f"model.coupling='paired' pairs source row i with data row i: {m.source!r} has "
            f"{len(source)} examples, {config.data.name!r} {len(data)}; the counts must be equal"
        )
    return _paired(dataset, data, source, "paired")
