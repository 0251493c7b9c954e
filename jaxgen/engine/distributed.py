"""Running one job over several processes (hosts): start-up and host-side agreement.

A multi-host JAX job runs the same program in every process; each process drives its own
devices and all of them take part in every compiled collective (Bradbury et al., JAX; the
"multi-controller" model). Four things then need care on the host side, and live here:

* **start-up**: :func:`initialize` calls ``jax.distributed.initialize`` before any JAX
  computation, from explicit flags (coordinator address, process count and id) or from the
  cluster's environment (JAX detects Slurm, Open MPI and Cloud TPU);
* **host copies**: an array sharded over devices of several processes is not fully
  addressable, so ``np.asarray`` on it fails; :func:`to_host` gathers it first;
* **decisions**: anything that changes the control flow (stop on SIGTERM, quarantine a
  checkpoint) must be the same in every process, or one process waits forever in a
  collective the others never enter: :func:`any_process` agrees on a flag and
  :func:`barrier` waits for all processes;
* **one config**: :func:`check_same_on_every_process` refuses to train when processes were
  started with different configs (a stale file on one host).

With one process every function here is the trivial local operation, so single-host code
pays nothing for it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = [
    "any_process",
    "barrier",
    "check_same_on_every_process",
    "initialize",
    "is_main_process",
    "to_host",
]


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: list[int] | None = None,
) -> tuple[int, int]:
    """Join a multi-process job; returns ``(process_index, process_count)``.

    With ``coordinator_address`` (``host:port`` of process 0), ``num_processes`` and
    ``process_id`` are required: the explicit start for a local or hand-written launch.
    Without it, JAX reads the cluster's environment (Slurm's ``SLURM_*``, Open MPI's
    ``OMPI_*``, Cloud TPU's metadata); ``ValueError`` when it finds none. Must run before
    any other JAX call of the process; calling it again is a no-op.
    """
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    explicit = (num_processes, process_id)
    if coordinator_address is not None:
        host, sep, port = coordinator_address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(
                f"coordinator address must be HOST:PORT (e.g. 10.0.0.1:1234), got "
                f"{coordinator_address!r}"
            )
        if num_processes is None or process_id is None:
            raise ValueError(
                "a coordinator address needs the number of processes and this process's id "
                f"(got num_processes={num_processes}, process_id={process_id})"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(
                f"process id must be in [0, {num_processes}) and the number of processes "
                f">= 1, got process_id={process_id}, num_processes={num_processes}"
            )
    elif any(v is not None for v in explicit):
        raise ValueError(
            "the number of processes and the process id are given with a coordinator "
            "address (HOST:PORT of process 0); without one, the cluster's environment is read"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
        )
    except ValueError as err:  # auto-detection found no cluster
        raise ValueError(
            f"could not start a multi-process job: {err}. Give --coordinator HOST:PORT "
            "--num-processes N --process-id I, or launch under Slurm, Open MPI or on a TPU pod"
        ) from None
    return jax.process_index(), jax.process_count()


def is_main_process() -> bool:
    """True in process 0, the one that writes logs, configs, grids and summaries."""
    return jax.process_index() == 0


def to_host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array in this process: a local copy when every shard is here, else
    an all-gather over processes (the whole global array, the same in every process).
    Every process must call it for the same arrays in the same order."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true in at least one process, in every process (a host-side
    all-reduce OR). With one process, ``flag`` itself."""
    if jax.process_count() == 1:
        return bool(flag)
    flags = multihost_utils.process_allgather(np.asarray(flag, dtype=np.int32))
    return bool(np.any(flags))


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _digest(text: str) -> np.ndarray:
    return np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint32).copy()


def check_same_on_every_process(text: str, *, what: str) -> None:
    """``ValueError`` in every process when ``text`` (e.g. the config as JSON) differs
    between processes; ``what`` names it in the message."""
    if jax.process_count() == 1:
        return
    digests = multihost_utils.process_allgather(_digest(text))
    differ = [i for i in range(digests.shape[0]) if not np.array_equal(digests[i], digests[0])]
    if differ:
        raise ValueError(
            f"the {what} differs between processes (process {differ[0]} has another one than "
            "process 0); start every process with the same config and overrides"
        )
