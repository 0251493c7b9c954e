"""Progress on stderr for everything a user waits on: compiling, training, sampling, metrics.

Every message and bar goes to stderr (stdout keeps the commands' JSON), only from process 0,
and nothing is shown when the environment variable ``JAXGEN_QUIET`` is set to a non-empty
value other than ``0`` (``jaxgen ... --quiet`` sets it) or when a caller passes
``enabled=False``.

* :func:`status` prints one line (``compiling the train step...``);
* :func:`bar` is a ``tqdm`` bar with a rate and an ETA (disabled when quiet);
* :func:`ticker` runs a blocking call (one compiled program that cannot report its own
  progress) while a bar counts the seconds, with an ETA when the caller can estimate the
  duration (e.g. from the time of a first, smaller call);
* :class:`Timer` records named wall times (each metric's time in ``jaxgen eval``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

QUIET_ENV = "JAXGEN_QUIET"
DELAY_ENV = "JAXGEN_PROGRESS_DELAY"  # seconds before a bar is drawn (default 1; tests set 0)


def enabled() -> bool:
    """True unless ``JAXGEN_QUIET`` is set (and not ``0``) or this is not process 0."""
    if os.environ.get(QUIET_ENV, "") not in ("", "0"):
        return False
    jax = sys.modules.get("jax")  # only ask jax when it is loaded anyway
    return jax is None or jax.process_index() == 0


def status(message: str) -> None:
    """Print ``message`` as one line on stderr (unless quiet), above any open bar."""
    if enabled():
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)


def bar(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    initial: int = 0,
    show: bool = True,
    delay: float | None = None,
    bar_format: str | None = None,
) -> Any:
    """A ``tqdm`` progress bar on stderr with rate and ETA; disabled when quiet or not
    ``show``. Nothing is drawn before ``delay`` seconds (a command that fails at once prints
    only its error line); ``None`` reads ``JAXGEN_PROGRESS_DELAY`` (default 1)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not (show and enabled()),
        dynamic_ncols=True,
        file=sys.stderr,
        delay=float(os.environ.get(DELAY_ENV, "1")) if delay is None else delay,
        bar_format=bar_format,
    )


@contextlib.contextmanager
def ticking(pbar: Any, *, count_seconds: bool = False) -> Iterator[Any]:
    """Redraw ``pbar`` every second while the body runs (its elapsed time, and with
    ``count_seconds`` its count = the seconds passed, kept below its total), so a bar over
    long blocking calls never looks hung; on an error the bar is cleared, not left."""
    done = threading.Event()
    start = time.perf_counter()

    def tick() -> None:
        while not done.wait(1.0):
            step = 0
            if count_seconds:
                seconds = int(time.perf_counter() - start)
                if pbar.total is not None:
                    seconds = min(seconds, pbar.total - 1)
                step = max(seconds - pbar.n, 0)
            pbar.update(step)

    thread = threading.Thread(target=tick, daemon=True)
    if not pbar.disable:
        thread.start()
    try:
        yield pbar
    except BaseException:
        pbar.leave = False
        raise
    finally:
        done.set()
        if thread.is_alive():
            thread.join()


def ticker(fn: Callable[[], T], desc: str, *, estimate_s: float | None = None) -> T:
    """``fn()``, while a bar on stderr counts seconds (out of ``estimate_s``, if given, so
    the bar shows an ETA). For one compiled call that cannot report its own progress."""
    total = None if estimate_s is None else max(1, round(estimate_s))
    shape = "{desc}: {elapsed} elapsed" if total is None else "{l_bar}{bar}| {elapsed}<{remaining}"
    pbar = bar(total, desc, unit="s", bar_format=shape)
    with pbar, ticking(pbar, count_seconds=True):
        result = fn()
        if total is not None:
            pbar.update(total - pbar.n)
    return result


class Timer:
    """Named wall times: ``with timer("digit_fd"): ...`` adds ``seconds["digit_fd"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_metrics(self, prefix: str = "seconds_") -> dict[str, Any]:
        """``{prefix + name: seconds}``, rounded to 0.1 s."""
        return {prefix + k: round(v, 1) for k, v in self.seconds.items()}
