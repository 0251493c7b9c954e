"""Orbax checkpoints that survive crashes, kills and damaged files.

* Writes are atomic (Orbax writes a temporary directory and renames it on commit), so a
  kill during a save leaves the previous checkpoints untouched.
* Checksums: once Orbax has committed a step (an asynchronous save is known finished at
  the next ``save``, ``poll``, ``wait`` or ``close``), the SHA-256 of each of its files is
  written next to it as ``<step>.sha256.json`` (temporary file + rename, never inside the
  step directory). A restore verifies them first: a changed, missing or extra file is
  damage. ``checksums.json`` records the first step saved with checksums; a step from
  before it (an older jaxgen), or the newest step when the run stopped before its
  checksums were written, is restored with a warning.
* ``restore_latest`` tries steps from newest to oldest. A step that fails to verify or to
  restore (flipped bits, truncated, zeroed or missing files) is renamed to
  ``<step>.corrupt`` (kept for inspection, never deleted), a warning names it, and the
  step before is tried with a fresh manager (Orbax managers can be unusable after a failed
  restore). A ``read_only`` checkpointer (evaluation, sampling) skips a damaged step with
  a warning instead and never writes or renames anything.
* ``max_to_keep`` is at least 2, so a bad newest step always has a predecessor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxgen.engine import distributed

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".sha256.json"
MARKER = "checksums.json"
_QUARANTINED = re.compile(r"^(\d+)\.corrupt\d*$")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required."""


def hash_files(step_dir: str | pathlib.Path) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of every file under ``step_dir``."""
    root = pathlib.Path(step_dir)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            out[path.relative_to(root).as_posix()] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def _write_json_atomic(path: pathlib.Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _quiet_read_only(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not msg.startswith(
        ("Given directory is read only", "CheckpointManagerOptions.read_only")
    )


class Checkpointer:
    """Save and restore train states in ``directory`` (one sub-directory per step)."""

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        max_to_keep: int = 3,
        use_async: bool = True,
        read_only: bool = False,
    ):
        self.directory = pathlib.Path(directory).absolute()
        self.max_to_keep = max(int(max_to_keep), 2)
        self.use_async = use_async
        self.read_only = read_only
        self._unhashed: list[int] = []  # saved steps whose checksums are not written yet
        self._manager = self._new_manager()

    def _new_manager(self) -> ocp.CheckpointManager:
        if self.read_only:  # Orbax warns about every read-only manager: here it is intended
            logging.getLogger("absl").addFilter(_quiet_read_only)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep,
            enable_async_checkpointing=self.use_async,
            cleanup_tmp_directories=not self.read_only,
            create=not self.read_only,
            read_only=self.read_only,
        )
        return ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def quarantined_steps(self) -> list[str]:
        """The names of the steps moved aside as damaged (``<step>.corrupt``)."""
        if not self.directory.is_dir():
            return []
        names = [p.name for p in self.directory.iterdir() if _QUARANTINED.match(p.name)]
        return sorted(names, key=lambda n: (int(_QUARANTINED.match(n).group(1)), n))

    # ------------------------------------------------------------------------- saving

    def save(self, step: int, state: Any) -> None:
        """Start saving ``state`` as ``step`` (asynchronous unless disabled)."""
        if self.read_only:
            raise CheckpointError(f"{self.directory} was opened read-only; cannot save")
        self.wait()  # the previous save is committed and its checksums written
        step = int(step)
        if jax.process_index() == 0:
            if not (self.directory / MARKER).exists():
                self.directory.mkdir(parents=True, exist_ok=True)
                _write_json_atomic(self.directory / MARKER, {"format": 1, "first_step": step})
            self._manifest(step).unlink(missing_ok=True)  # a stale one from a quarantined step
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._unhashed.append(step)
        if not self.use_async:
            self.wait()

    def poll(self) -> None:
        """Write the checksums of saves that finished in the background (cheap if none)."""
        if self._unhashed and not self._manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Block until pending saves are committed to disk, then record their checksums."""
        self._manager.wait_until_finished()
        if not self._unhashed:
            return
        pending, self._unhashed = self._unhashed, []
        if jax.process_index() != 0:
            return
        for step in pending:
            if (self.directory / str(step)).is_dir():
                self._write_manifest(step)
        kept = {str(s) for s in self.all_steps()}
        for path in self.directory.glob(f"*{MANIFEST_SUFFIX}"):
            name = path.name[: -len(MANIFEST_SUFFIX)]
            if name.isdigit() and name not in kept:  # Orbax deleted the step (max_to_keep)
                path.unlink(missing_ok=True)

    def _manifest(self, step: int | str) -> pathlib.Path:
        return self.directory / f"{step}{MANIFEST_SUFFIX}"

    def _write_manifest(self, step: int) -> None:
        files = hash_files(self.directory / str(step))
        _write_json_atomic(self._manifest(step), {"step": step, "sha256": files})

    # ------------------------------------------------------------------------- restoring

    def _requires_manifest(self, step: int) -> bool:
        """A step saved with checksums, followed by a later save (kept or quarantined), must
        have them: the checksums of a step are written before the next save starts."""
        try:
            first = int(json.loads((self.directory / MARKER).read_text())["first_step"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        quarantined = [int(_QUARANTINED.match(n).group(1)) for n in self.quarantined_steps()]
        return first <= step and any(s > step for s in [*self.all_steps(), *quarantined])

    def verify(self, step: int) -> bool:
        """Check ``step``'s files against its checksums: True if verified, False (with a
        warning) for a step without them that may legitimately lack them.

        Raises:
          CheckpointError: a file changed, is missing or was added, or the checksums of a
            step that must have them are missing or unreadable.
        """
        path = self._manifest(step)
        if not path.exists():
            if self._requires_manifest(step):
                raise CheckpointError(f"checkpoint step {step} has lost its checksums ({path})")
            warnings.warn(
                f"checkpoint step {step} in {self.directory} has no checksums (written by an "
                "older jaxgen, or the run stopped before they were recorded); restoring it "
                "unverified",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        try:
            recorded = json.loads(path.read_text())["sha256"]
            assert isinstance(recorded, dict)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
            raise CheckpointError(f"checksums of step {step} are unreadable ({err})") from None
        actual = hash_files(self.directory / str(step))
        bad = sorted(k for k in recorded.keys() | actual.keys() if recorded.get(k) != actual.get(k))
        if bad:
            raise CheckpointError(
                f"checksum mismatch in checkpoint step {step}: {len(bad)} file(s) changed, "
                f"missing or added ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
            )
        return True

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Verify and restore one step onto the shardings given by ``abstract_state``."""
        verified = self.verify(step)
        state = self._manager.restore(int(step), args=ocp.args.StandardRestore(abstract_state))
        if not verified and not self.read_only and jax.process_index() == 0:
            self._write_manifest(int(step))  # it restored: checksum it from now on
        return state

    def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | None:
        """The newest restorable state and its step, or None when there is no checkpoint.

        Damaged steps are quarantined as ``<step>.corrupt`` with a warning (skipped, left
        in place, when read-only); if every step is damaged a ``CheckpointError`` says so
        (nothing is deleted).
        """
        self.wait()
        failures = []
        for step in reversed(self.all_steps()):
            try:
                state = self.restore(step, abstract_state)
                return state, step
            except Exception as err:  # noqa: BLE001 - any failure means "damaged"
                failures.append(f"step {step}: {type(err).__name__}: {str(err)[:300]}")
                if self.read_only:
                    action = "skipped it (left in place: this command never changes checkpoints)"
                else:
                    action = f"moved it to {self._quarantine(step).name}"
                warnings.warn(
                    f"checkpoint step {step} in {self.directory} could not be restored "
                    f"({type(err).__name__}: {str(err)[:200]}); {action} and falling back to "
                    "the previous checkpoint",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._manager.close()
                self._manager = self._new_manager()
        if failures:
            kept = "left in place" if self.read_only else "kept as *.corrupt"
            raise CheckpointError(
                f"no checkpoint in {self.directory} could be restored (the damaged ones were "
                f"{kept}): " + "; ".join(failures)
            )
        return None

    def _quarantine(self, step: int) -> pathlib.Path:
        # Every process found the step damaged (the same files); process 0 renames it, and
        # no process lists the steps again before the rename is done.
        distributed.barrier(f"jaxgen-quarantine-{self.directory}-{step}-before")
        source = self.directory / str(step)
        target = self.directory / f"{step}.corrupt"
        k = 1
        while target.exists():
            target = self.directory / f"{step}.corrupt{k}"
            k += 1
        if jax.process_index() == 0 and source.exists():
            source.rename(target)
            manifest = self._manifest(step)
            if manifest.exists():
                manifest.rename(self._manifest(target.name))
        distributed.barrier(f"jaxgen-quarantine-{self.directory}-{step}-after")
        return target

    def close(self) -> None:
        try:
            self.wait()
            # Orbax starts a cleanup of temporary folders when the manager is made and its
            # close() does not wait for it; a process that exits right after (a refused
            # start) would otherwise print "cannot schedule new futures after interpreter
            # shutdown" from that thread.
            pending = getattr(self._manager, "_cleanup_tmp_directory_future", None)
            if pending is not None:
                pending.result()
        finally:
            self._manager.close()
