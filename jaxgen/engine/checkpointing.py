"""Orbax checkpoints that survive crashes, kills and damaged files.

* Writes are atomic (Orbax writes a temporary directory and renames it on commit), so a
  kill during a save leaves the previous checkpoints untouched.
* ``restore_latest`` tries steps from newest to oldest. A step that fails to restore
  (truncated, zeroed or missing files) is renamed to ``<step>.corrupt`` (kept for
  inspection, never deleted), a warning names it, and the step before is tried with a
  fresh manager (Orbax managers can be unusable after a failed restore).
* ``max_to_keep`` is at least 2, so a bad newest step always has a predecessor.
"""

from __future__ import annotations

import logging
import pathlib
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required."""


class Checkpointer:
    """Save and restore train states in ``directory`` (one sub-directory per step)."""

    def __init__(
        self, directory: str | pathlib.Path, *, max_to_keep: int = 3, use_async: bool = True
    ):
        self.directory = pathlib.Path(directory).absolute()
        self.max_to_keep = max(int(max_to_keep), 2)
        self.use_async = use_async
        self._manager = self._new_manager()

    def _new_manager(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep,
            enable_async_checkpointing=self.use_async,
            cleanup_tmp_directories=True,
            create=True,
        )
        return ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any) -> None:
        """Start saving ``state`` as ``step`` (asynchronous unless disabled)."""
        self._manager.save(int(step), args=ocp.args.StandardSave(state), force=True)

    def wait(self) -> None:
        """Block until pending saves are committed to disk."""
        self._manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Restore one step onto the shardings given by ``abstract_state``'s leaves."""
        return self._manager.restore(int(step), args=ocp.args.StandardRestore(abstract_state))

    def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | None:
        """The newest restorable state and its step, or None when there is no checkpoint.

        Damaged steps are quarantined as ``<step>.corrupt`` with a warning; if every step
        is damaged a ``CheckpointError`` says so (nothing is deleted).
        """
        self.wait()
        failures = []
        for step in reversed(self.all_steps()):
            try:
                state = self.restore(step, abstract_state)
                return state, step
            except Exception as err:  # noqa: BLE001 - any failure means "damaged"
                failures.append(f"step {step}: {type(err).__name__}: {err}")
                target = self._quarantine(step)
                warnings.warn(
                    f"checkpoint step {step} in {self.directory} could not be restored "
                    f"({type(err).__name__}: {str(err)[:200]}); moved it to {target.name} "
                    "and falling back to the previous checkpoint",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._manager.close()
                self._manager = self._new_manager()
        if failures:
            raise CheckpointError(
                f"no checkpoint in {self.directory} could be restored; the damaged ones were "
                "kept as *.corrupt:\n  " + "\n  ".join(failures)
            )
        return None

    def _quarantine(self, step: int) -> pathlib.Path:
        source = self.directory / str(step)
        target = self.directory / f"{step}.corrupt"
        k = 1
        while target.exists():
            target = self.directory / f"{step}.corrupt{k}"
            k += 1
        if jax.process_index() == 0 and source.exists():
            source.rename(target)
        return target

    def close(self) -> None:
        self.wait()
        self._manager.close()
