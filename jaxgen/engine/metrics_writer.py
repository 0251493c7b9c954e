"""Metrics as JSON lines (``metrics.jsonl``, non-finite values as ``null``) and TensorBoard
event files, from process 0."""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping

import jax
import numpy as np


def _finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None (JSON ``null``) for NaN and +-Inf: JSON has no literal
    for them, and ``metrics.jsonl`` must stay readable by strict parsers."""
    value = float(value)
    return value if math.isfinite(value) else None


class MetricsWriter:
    """Append scalars to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard``."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.active = jax.process_index() == 0
        self._tb = None
        if self.active:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write_scalars(
        self, step: int, scalars: Mapping[str, float], *, kind: str = "train"
    ) -> None:
        if not self.active:
            return
        record = {"step": int(step), "kind": kind, "time": round(time.time(), 3)}
        record.update({k: _finite_or_none(v) for k, v in scalars.items()})
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(f"{kind}/{name}", float(value), int(step))

    def write_image(self, step: int, name: str, image_uint8: np.ndarray) -> None:
        if self.active and self._tb is not None:
            self._tb.add_image(name, np.asarray(image_uint8), int(step), dataformats="HWC")

    def flush(self) -> None:
        if self.active:
            self._jsonl.flush()
            if self._tb is not None:
                self._tb.flush()

    def close(self) -> None:
        if self.active:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()
