"""Deterministic, stateless batching into globally sharded ``jax.Array`` batches.

The batch at step ``s`` is a pure function of (source, seed, step), so resuming a killed
run needs only the step number, never an iterator state:

* ``steps_per_epoch = len(source) // global_batch_size`` (the remainder of each epoch is
  dropped; a different remainder is dropped each epoch because the order changes).
* epoch ``e = s // steps_per_epoch`` uses ``np.random.default_rng([seed, e]).permutation``
  and step ``s`` takes the slice ``s % steps_per_epoch`` of it: within an epoch every
  example is used at most once (shuffling without replacement).
* With ``P`` processes, process ``p`` reads only rows ``[p B / P, (p + 1) B / P)`` of the
  global batch of size ``B`` and ``batch_at`` assembles the global array with
  ``jax.make_array_from_process_local_data`` (sharded over the mesh's data axis).
* A host-side ``transform(batch, rng)`` gets ``rng`` seeded by (seed, step, process).

``iterate(start)`` prefetches ``prefetch`` batches ahead on a background thread (device
transfer included); errors in that thread are re-raised in the caller.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxgen.data.source import Source

Batch = dict[str, np.ndarray]
Transform = Callable[[Batch, np.random.Generator], Batch]

# First word of the transform generator's seed: keeps its stream apart from the
# permutation stream ([seed, epoch]). numpy's SeedSequence treats trailing zero words as
# absent (default_rng([1, 2]) == default_rng([1, 2, 0])), so a leading tag is used
# rather than a trailing one.
_TRANSFORM_STREAM = 0x6A617867


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class BatchLoader:
    """Stateless shuffled batches of a ``Source``, optionally sharded over a mesh.

    Args:
      source: a ``Source`` (or a ``Dataset``, whose ``.source`` is used).
      global_batch_size: examples per step over all processes and devices.
      seed: non-negative integer; with the step it fixes every batch.
      mesh: if given, ``batch_at`` returns global arrays sharded over ``data_axis``;
        otherwise arrays on the default device (this process's rows only).
      data_axis: mesh axis name (or tuple of names) the batch dimension is split over.
      transform: ``transform(batch, rng) -> batch`` applied on the host to this process's
        rows; ``rng`` depends only on (seed, step, process_index).
      process_index, process_count: default to ``jax.process_index()`` and
        ``jax.process_count()``; overriding them simulates other processes'
        ``host_batch_at`` on one machine (``batch_at`` then refuses to run).
      prefetch: batches ``iterate`` prepares ahead on a background thread (0: none).
    """

    def __init__(
        self,
        source: Source,
        *,
        global_batch_size: int,
        seed: int,
        mesh: Mesh | None = None,
        data_axis: str | tuple[str, ...] = "data",
        transform: Transform | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
        prefetch: int = 2,
    ):
        if not hasattr(source, "get") and hasattr(source, "source"):
            source = source.source  # a registry Dataset
        self.source = source
        self.global_batch_size = _check_int("global_batch_size", global_batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.prefetch = _check_int("prefetch", prefetch, 0)
        self.transform = transform
        self.num_examples = len(source)
        if self.num_examples < self.global_batch_size:
            raise ValueError(
                f"the dataset has {self.num_examples} examples, fewer than one global batch "
                f"of {self.global_batch_size}; lower global_batch_size"
            )
        self.steps_per_epoch = self.num_examples // self.global_batch_size

        self._real_process = process_index is None and process_count is None
        count = jax.process_count() if process_count is None else process_count
        index = jax.process_index() if process_index is None else process_index
        self.process_count = _check_int("process_count", count, 1)
        self.process_index = _check_int("process_index", index, 0)
        if self.process_index >= self.process_count:
            raise ValueError(
                f"process_index {self.process_index} out of range for "
                f"process_count {self.process_count}"
            )
        if self.global_batch_size % self.process_count:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not divisible by the "
                f"process count {self.process_count}"
            )
        self.host_batch_size = self.global_batch_size // self.process_count
        start = self.process_index * self.host_batch_size
        self._host_rows = slice(start, start + self.host_batch_size)

        self.mesh = mesh
        self.data_axis = data_axis
        self.sharding: NamedSharding | None = None
        if mesh is not None:
            axes = (data_axis,) if isinstance(data_axis, str) else tuple(data_axis)
            missing = [a for a in axes if a not in mesh.axis_names]
            if missing:
                raise ValueError(
                    f"data axis {missing[0]!r} is not an axis of the mesh {mesh.axis_names}"
                )
            num_shards = math.prod(mesh.shape[a] for a in axes)
            if self.global_batch_size % num_shards:
                raise ValueError(
                    f"global_batch_size {self.global_batch_size} is not divisible by the "
                    f"{num_shards} devices on mesh axis {data_axis!r}"
                )
            self.sharding = NamedSharding(mesh, PartitionSpec(data_axis))
        self._layout_checked = False
        self._perm_lock = threading.Lock()
        self._perms: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ indices

    def epoch_of(self, step: int) -> int:
        return _check_int("step", step, 0) // self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch`` (read-only; the last two epochs are cached)."""
        epoch = _check_int("epoch", epoch, 0)
        with self._perm_lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
                perm.flags.writeable = False
                if len(self._perms) >= 2:
                    self._perms.pop(max(self._perms, key=lambda e: abs(e - epoch)))
                self._perms[epoch] = perm
            return perm

    def indices_at(self, step: int) -> np.ndarray:
        """Source indices of the whole global batch at ``step`` (``(global_batch_size,)``)."""
        step = _check_int("step", step, 0)
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.global_batch_size
        return self.permutation(epoch)[start : start + self.global_batch_size]

    def host_indices_at(self, step: int) -> np.ndarray:
        """Source indices of this process's rows of the batch at ``step``."""
        return self.indices_at(step)[self._host_rows]

    def transform_rng(self, step: int) -> np.random.Generator:
        """The generator ``transform`` gets at ``step`` on this process."""
        step = _check_int("step", step, 0)
        return np.random.default_rng([_TRANSFORM_STREAM, self.seed, step, self.process_index])

    # ------------------------------------------------------------------ batches

    def host_batch_at(self, step: int) -> Batch:
        """This process's rows of the batch at ``step`` as numpy arrays, transformed."""
        idx = self.host_indices_at(step)
        batch = self.source.get(idx)
        if self.transform is not None:
            batch = self.transform(batch, self.transform_rng(step))
        for key, value in batch.items():
            if np.shape(value)[:1] != (self.host_batch_size,):
                raise ValueError(
                    f"batch entry {key!r} has shape {np.shape(value)}; expected leading "
                    f"dimension {self.host_batch_size} (check the source and transform)"
                )
        return batch

    def _check_layout(self) -> None:
        """Each process's devices must hold exactly its contiguous block of rows."""
        if self._layout_checked:
            return
        if not self._real_process and (
            self.process_count != jax.process_count() or self.process_index != jax.process_index()
        ):
            raise RuntimeError(
                f"batch_at needs the real process layout, but the loader was made with "
                f"process_index={self.process_index}, process_count={self.process_count} "
                f"while JAX runs process {jax.process_index()} of {jax.process_count()}; "
                f"the overrides are only for simulating host_batch_at"
            )
        assert self.sharding is not None
        rows: set[int] = set()
        for index in self.sharding.addressable_devices_indices_map(
            (self.global_batch_size,)
        ).values():
            rows.update(range(*index[0].indices(self.global_batch_size)))
        expected = set(range(self._host_rows.start, self._host_rows.stop))
        if rows != expected:
            raise ValueError(
                f"the mesh gives process {self.process_index} batch rows "
                f"{min(rows)}..{max(rows)} ({len(rows)} rows) but the loader reads rows "
                f"{self._host_rows.start}..{self._host_rows.stop - 1}; order the mesh "
                f"devices by process (jax.make_mesh does) so each process owns a "
                f"contiguous block of the data axis"
            )
        self._layout_checked = True

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        """The batch at ``step`` as global arrays sharded over the data axis.

        Without a mesh: this process's rows on the default device.
        """
        if self.sharding is not None:
            self._check_layout()
        host = self.host_batch_at(step)
        if self.sharding is None:
            return {k: jax.device_put(v) for k, v in host.items()}
        return {
            k: jax.make_array_from_process_local_data(
                self.sharding, v, (self.global_batch_size, *np.shape(v)[1:])
            )
            for k, v in host.items()
        }

    # ------------------------------------------------------------------ iteration

    def iterate(
        self, start_step: int = 0, *, num_steps: int | None = None
    ) -> Iterator[tuple[int, dict[str, jax.Array]]]:
        """Yield ``(step, batch_at(step))`` from ``start_step`` on (forever by default).

        With ``prefetch > 0`` a daemon thread prepares batches ahead. Closing the
        iterator (or dropping it) stops and joins the thread; an exception raised while
        preparing a batch is re-raised here when that batch is due.
        """
        start = _check_int("start_step", start_step, 0)
        stop = None if num_steps is None else start + _check_int("num_steps", num_steps, 0)
        if self.prefetch == 0:
            return self._iterate_sync(start, stop)
        return self._iterate_prefetch(start, stop)

    def _iterate_sync(self, start: int, stop: int | None) -> Iterator[tuple[int, Any]]:
        step = start
        while stop is None or step < stop:
            yield step, self.batch_at(step)
            step += 1

    def _iterate_prefetch(self, start: int, stop: int | None) -> Iterator[tuple[int, Any]]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        halt = threading.Event()

        def put(item: Any) -> bool:
            while not halt.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            step = start
            try:
                while stop is None or step < stop:
                    if halt.is_set():
                        return
                    if not put((step, self.batch_at(step))):
                        return
                    step += 1
                put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(_Failure(exc))

        thread = threading.Thread(target=produce, name="BatchLoader-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            halt.set()
            thread.join()

    def __repr__(self) -> str:
        return (
            f"BatchLoader(num_examples={self.num_examples}, "
            f"global_batch_size={self.global_batch_size}, seed={self.seed}, "
            f"steps_per_epoch={self.steps_per_epoch}, process {self.process_index}/"
            f"{self.process_count}, sharded={self.sharding is not None})"
        )
