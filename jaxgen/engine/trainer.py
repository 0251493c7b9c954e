"""The training loop shared by every model family.

``train_loop(config, workdir, recipe=..., dataset=...)`` takes a built recipe and its
training data (the application floor, :mod:`jaxgen.run`, builds both from the config),
creates or resumes the sharded train state, and runs the compiled step until
``train.num_steps``:

* resume: the newest restorable checkpoint in ``<workdir>/checkpoints`` (damaged ones,
  including a checksum mismatch, are quarantined with a warning; a workdir whose every
  checkpoint is quarantined refuses to start over unless ``restart``); the batch and PRNG
  key of a step depend only on the seed and the step, so a resumed run ends with the same
  parameters as an uninterrupted one;
* checkpoints every ``train.checkpoint_every`` steps, at the end, and on SIGTERM/SIGINT;
* a non-finite loss or gradient, or non-finite parameters before a save, stop the run
  with ``NonFiniteLossError`` naming the step, before anything computed from it is saved;
* ``config.json`` is written just before the first checkpoint (data, model and steps have
  worked), so a start that failed leaves nothing that blocks the corrected command;
* metrics to ``metrics.jsonl`` and TensorBoard, a progress bar with loss and images/s on
  stderr (after a ``compiling the train step...`` line; none with ``JAXGEN_QUIET``, see
  :mod:`jaxgen.engine.progress`), and EMA sample grids in ``<workdir>/samples``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError, ExperimentConfig, config_to_json, diff_configs
from jaxgen.data import checks
from jaxgen.data.loader import BatchLoader, Transform
from jaxgen.data.registry import Dataset
from jaxgen.engine import distributed, progress, sharding
from jaxgen.engine.checkpointing import Checkpointer, CheckpointError
from jaxgen.engine.metrics_writer import MetricsWriter
from jaxgen.engine.optimizer import learning_rate_schedule
from jaxgen.engine.recipe import Recipe
from jaxgen.engine.sampling import ChunkedSampler, ConditionFn
from jaxgen.engine.state import TrainState
from jaxgen.engine.step import Optimizer, init_train_state
from jaxgen.images import make_grid, save_png

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN or Inf; the run stopped without saving it."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    metrics: dict[str, float]
    workdir: pathlib.Path
    stopped_early: bool


# ----------------------------------------------------------------------------- set-up


def abstract_train_state(
    recipe: Recipe,
    config: ExperimentConfig,
    mesh: jax.sharding.Mesh,
    *,
    init_batch: Mapping[str, Any] | None = None,
) -> tuple[Optimizer, Callable[..., TrainState], Any, Any]:
    """(optimizer, init function, abstract state with shardings, sharding tree) for a recipe.

    ``init_fn(init_batch=None)`` builds a fresh state; ``init_batch`` (the recipe's
    initialisation examples, when ``recipe.init_batch_size > 0``) is its *argument*, so
    ``jax.jit(init_fn, out_shardings=...)(init_batch)`` does not bake the data into the
    compiled program. The abstract state is planned from ``init_batch``'s shapes."""
    tx = recipe.make_optimizer(config.train.num_steps)

    def init_fn(batch: Mapping[str, Any] | None = None) -> TrainState:
        return init_train_state(recipe.init_params, tx, seed=config.train.seed, init_batch=batch)

    shapes = jax.eval_shape(init_fn, init_batch)
    shardings = sharding.state_shardings(
        shapes,
        mesh,
        shard_params=config.train.shard_params,
        min_size=config.train.shard_params_min_size,
    )
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    return tx, init_fn, abstract, shardings


def _check_workdir_config(workdir: pathlib.Path, config: ExperimentConfig) -> None:
    """Refuse to resume a run whose model, data or optimizer config changed (writes nothing:
    ``config.json`` is written by :func:`_write_workdir_config` before the first save)."""
    path = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is a file; give a directory")
    if path.exists():
        saved = json.loads(path.read_text())  # compared as plain dicts: no family needed
        changed = diff_configs(saved, json.loads(config_to_json(config)))
        fatal = [k for k in changed if not k.startswith(("train.", "eval.", "expected", "name"))]
        if fatal:
            raise ConfigError(
                f"{workdir} holds a run with a different config ({', '.join(fatal)} changed); "
                "use a new --workdir, or the saved config (jaxgen train "
                f"{path} --workdir {workdir})"
            )
        if "train.num_steps" in changed and config.optim.decay != "constant":
            raise ConfigError(
                f"{workdir} was trained for train.num_steps={saved['train']['num_steps']} with "
                f"optim.decay={config.optim.decay!r}, whose learning rate depends on num_steps; "
                f"resuming with num_steps={config.train.num_steps} would not continue that run. "
                "Use a new --workdir, or optim.decay=constant for runs you intend to extend"
            )
        if changed:
            warnings.warn(
                f"resuming {workdir} with changed settings: {', '.join(changed)}", stacklevel=3
            )


def _write_workdir_config(workdir: pathlib.Path, config: ExperimentConfig) -> None:
    """Write ``config.json`` (atomically), just before the first checkpoint is saved."""
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / ".config.json.tmp"
        tmp.write_text(config_to_json(config))
        tmp.replace(workdir / "config.json")


def _restore_or_refuse(checkpointer: Checkpointer, abstract: Any, restart: bool):
    """The newest good checkpoint, or None to start at step 0; a workdir whose every
    checkpoint is quarantined starts over only with ``restart``."""
    try:
        restored = checkpointer.restore_latest(abstract)
    except CheckpointError as err:
        if not restart:
            raise CheckpointError(
                f"{err}; to start this run over from step 0, use --restart"
            ) from None
        restored = None
    quarantined = checkpointer.quarantined_steps()
    if restored is None and quarantined:
        if not restart:
            raise CheckpointError(
                f"every checkpoint in {checkpointer.directory} was found damaged and "
                f"quarantined ({', '.join(quarantined)}); refusing to start over silently: "
                "to start this run over from step 0 (keeping them aside), use --restart"
            )
        warnings.warn(
            f"starting over from step 0 (--restart); the damaged checkpoints "
            f"{', '.join(quarantined)} stay in {checkpointer.directory}",
            RuntimeWarning,
            stacklevel=3,
        )
    return restored


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and returns. A second signal
    stops at once (``KeyboardInterrupt``), except once ``finishing`` (the final save is being
    written): that save is completed first, then the run returns."""

    def __init__(self):
        self.requested = False
        self.finishing = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.finishing:  # the final save is being written: finish it, then exit
            log.warning("received signal %s: finishing the checkpoint save first", signum)
            return
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("received signal %s: saving a checkpoint and stopping", signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _host_metrics(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _check_finite(
    step: int, metrics: dict[str, float], checkpointer: Checkpointer, *, what: str = ""
) -> None:
    """``NonFiniteLossError`` naming ``step`` when its metrics (or ``what``) are not finite."""
    if metrics["finite"] < 1.0:
        checkpointer.wait()
        last = checkpointer.latest_step()
        where = f"step {last}" if last is not None else "none saved yet"
        if not what and metrics.get("batch_finite", 1.0) < 1.0:
            what = "training data (a NaN or Inf in the batch)"
        if not what:
            what = f"training loss, gradient or update at step {step} (loss={metrics['loss']}, "
            what += f"grad_norm={metrics['grad_norm']}"
            what += f", update_norm={metrics['update_norm']})" if "update_norm" in metrics else ")"
        else:
            what = f"{what} at step {step}"
        raise NonFiniteLossError(
            f"non-finite {what}; the run stopped and nothing from this step was "
            f"saved. Last good checkpoint: {where} in {checkpointer.directory}. "
            "Try a lower optim.learning_rate or check the data."
        )


def _state_is_finite(state: Any) -> bool:
    """Whether every floating value of ``state`` is finite, in every process: each process
    checks the shards it holds on the host (no compiled program per state shape, which
    every run would otherwise compile once), and the processes agree."""
    bad = False
    for leaf in jax.tree.leaves(state):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            continue
        shards = leaf.addressable_shards if isinstance(leaf, jax.Array) else None
        parts = [s.data for s in shards if s.replica_id == 0] if shards else [leaf]
        if any(not np.isfinite(np.asarray(part)).all() for part in parts):
            bad = True
            break
    return not distributed.any_process(bad)


def _check_finite_state(step: int, state: TrainState, checkpointer: Checkpointer) -> None:
    """Stop before saving a state with a NaN or Inf in its parameters, EMA or moments."""
    if not _state_is_finite(state):
        what = "parameters or optimizer state (the loss was still finite)"
        _check_finite(step, {"finite": 0.0}, checkpointer, what=what)


# ----------------------------------------------------------------------------- the loop


def train_loop(
    config: ExperimentConfig,
    workdir: str | pathlib.Path,
    *,
    recipe: Recipe,
    dataset: Dataset,
    mesh: jax.sharding.Mesh | None = None,
    stop_at_step: int | None = None,
    init_batch: Mapping[str, Any] | None = None,
    sample_condition: ConditionFn | None = None,
    transform: Transform | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train (or resume) ``recipe`` on ``dataset`` in ``workdir``; see the module docstring.

    Args:
      config: the experiment (its ``train``, ``optim`` and ``data.batch_size`` settings).
      workdir: the run directory.
      recipe: the built recipe.
      dataset: the training data (its ``source``, ``data_key`` and shapes).
      mesh: the device mesh (default: all devices).
      stop_at_step: behave like a SIGTERM arriving after that step (a checkpoint is saved
        and the function returns); tests use it to interrupt and resume runs.
      init_batch: the recipe's initialisation examples (``recipe.init_batch_size > 0``).
      sample_condition: ``condition(indices)`` for the sample grids of recipes conditioned
        on held-out data (``recipe.sample_condition_split``).
      transform: a per-batch host augmentation ``transform(batch, rng)`` for the loader.
      restart: start over from step 0 when every checkpoint was found damaged (they stay
        aside as ``*.corrupt``); without it such a workdir raises ``CheckpointError``.
    """
    workdir = pathlib.Path(workdir)
    distributed.check_same_on_every_process(config_to_json(config), what="config")
    _check_workdir_config(workdir, config)
    mesh = mesh or sharding.mesh_for(config)
    examples_per_step = config.data.batch_size * recipe.minibatches_per_step
    loader = BatchLoader(
        dataset.source,
        global_batch_size=examples_per_step,
        seed=config.train.seed,
        mesh=mesh,
        data_axis=sharding.batch_axes(mesh),
        transform=transform,
    )
    first = loader.host_batch_at(0)
    if dataset.image_shape is not None:
        checks.check_images(
            first[dataset.data_key], expected_shape=dataset.image_shape, name="training images"
        )

    tx, init_fn, abstract, shardings = abstract_train_state(
        recipe, config, mesh, init_batch=init_batch
    )
    checkpointer = Checkpointer(
        workdir / "checkpoints",
        max_to_keep=config.train.keep_checkpoints,
        use_async=config.train.async_checkpoints,
    )
    try:
        return _run(
            config, workdir, recipe, loader, checkpointer, mesh, examples_per_step,
            restart=restart, stop_at_step=stop_at_step, init_batch=init_batch,
            sample_condition=sample_condition, tx=tx, init_fn=init_fn, abstract=abstract,
            shardings=shardings,
        )  # fmt: skip
    finally:
        checkpointer.close()  # also on errors: no Orbax thread outlives the interpreter


def _run(
    config, workdir, recipe, loader, checkpointer, mesh, examples_per_step, *, restart,
    stop_at_step, init_batch, sample_condition, tx, init_fn, abstract, shardings,
) -> TrainResult:  # fmt: skip
    restored = _restore_or_refuse(checkpointer, abstract, restart)
    if restored is None:
        if config.train.progress_bar:
            progress.status("initialising the model...")
        state = jax.jit(init_fn, out_shardings=shardings)(init_batch)
        start = 0
    else:
        state, start = restored
        log.info("resumed from step %d", start)

    step_fn = jax.jit(
        recipe.make_train_step(tx),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    sample_fn = None
    if config.train.sample_every:
        sample_fn = ChunkedSampler(
            recipe,
            num_samples=config.train.num_grid_samples,
            batch_size=config.train.num_grid_samples,
            mesh=mesh,
            condition=sample_condition,
        )
    tcfg = config.train
    total = tcfg.num_steps
    lr_schedule = learning_rate_schedule(config.optim, total)
    last_metrics: dict[str, float] = {}
    stopped_early = False
    done = start
    config_written = False

    writer = MetricsWriter(workdir)
    if start < total and tcfg.progress_bar:
        progress.status("compiling the train step (once; the first step waits for it)...")
    pbar = progress.bar(total, "train", unit="step", initial=start, show=tcfg.progress_bar)
    window = _MetricsWindow(checkpointer)
    batches = loader.iterate(start, num_steps=max(total - start, 0))
    try:
        with _StopRequest() as stop:
            try:
                for step, batch in batches:
                    state, metrics = step_fn(state, batch)
                    window.read_pending()  # the previous step's metrics, while this one runs
                    checkpointer.poll()
                    done = step + 1
                    window.push(done, metrics)
                    pbar.update(done - pbar.n)
                    # Every process must stop at the same step (else one waits forever in the
                    # next step's collectives): a signal to any process stops them all.
                    interrupt = distributed.any_process(stop.requested) or (
                        stop_at_step is not None and done >= stop_at_step
                    )
                    checkpoint = done % tcfg.checkpoint_every == 0 or done == total or interrupt
                    if checkpoint or done % tcfg.log_every == 0:
                        window.read_pending()  # nothing unchecked may reach a checkpoint
                        last_metrics = window.flush(examples_per_step)
                        last_metrics["learning_rate"] = float(lr_schedule(done - 1))
                        if done % tcfg.log_every == 0 or done == total:
                            writer.write_scalars(done, last_metrics)
                        pbar.set_postfix(
                            loss=f"{last_metrics['loss']:.4f}",
                            img_s=f"{last_metrics['images_per_sec']:.0f}",
                        )
                    if checkpoint:
                        _check_finite_state(done, state, checkpointer)
                        if interrupt or done == total:  # the final save: see it through
                            stop.finishing = True
                        if not config_written:  # data, model and steps worked: lock it now
                            _write_workdir_config(workdir, config)
                            config_written = True
                        checkpointer.save(done, state)
                    if sample_fn and (done % tcfg.sample_every == 0 or done == total):
                        _write_samples(sample_fn, state, done, config, workdir, writer)
                    if interrupt and done < total:
                        stopped_early = True
                        break
            finally:
                stop.finishing = True  # a further Ctrl-C no longer abandons the save
                checkpointer.wait()
    finally:
        batches.close()
        pbar.close()
        writer.close()
    return TrainResult(state, done, last_metrics, workdir, stopped_early)


class _MetricsWindow:
    """Step metrics since the last log, read from the device one step late.

    ``push`` keeps a step's metrics on the device; ``read_pending`` copies them to the host
    and stops the run if they are not finite; ``flush`` returns the means (with images/s)
    and starts a new window.
    """

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer
        self.pending: tuple[int, Any] | None = None
        self.sums: dict[str, float] = {}
        self.count = 0
        self.t0 = time.perf_counter()

    def push(self, step: int, metrics: Any) -> None:
        self.pending = (step, metrics)

    def read_pending(self) -> None:
        if self.pending is None:
            return
        step, metrics = self.pending
        self.pending = None
        values = _host_metrics(metrics)
        _check_finite(step, values, self.checkpointer)
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def flush(self, batch_size: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        out = {k: v / self.count for k, v in self.sums.items() if k != "finite"}
        out["images_per_sec"] = self.count * batch_size / elapsed
        self.sums, self.count, self.t0 = {}, 0, time.perf_counter()
        return out


def sample_key(config: ExperimentConfig, step: int) -> jax.Array:
    """The fixed key of the sample grid at ``step`` (same seed: same pictures)."""
    return jax.random.fold_in(jax.random.key(config.train.seed + 1), step)


def _write_samples(
    sample_fn: ChunkedSampler, state: TrainState, step: int, config, workdir, writer
) -> None:
    if config.train.progress_bar:
        progress.status(f"step {step}: drawing the sample grid ({sample_fn.num_samples} samples)")
    samples = sample_fn(state.ema_params, sample_key(config, step))
    if samples.ndim != 4 or jax.process_index() != 0:
        return
    grid = make_grid(samples)
    upscale = max(1, 256 // max(grid.shape[:2]))
    save_png(workdir / "samples" / f"step_{step:07d}.png", grid, upscale=upscale)
    save_png(workdir / "samples" / "latest.png", grid, upscale=upscale)
    writer.write_image(step, "samples/ema", grid)
