"""Progress bars for the commands that make a planner wait (rich, on stderr).

What this shows: how far a long ``servesim run`` has got (requests ended out of those expected,
else simulated seconds out of the run's duration), and how many points of ``validate`` or variants
of ``mitigations`` are done. A bar appears only when stderr is a terminal, never with ``--quiet``,
and — for a single run — only once the run has taken more than :data:`SHOW_AFTER_S` of wall time,
so quick runs and pipes print nothing extra. stdout is never touched.

A single run is watched from a daemon thread that reads the SimPy clock and the recorder's
count of ended requests a few times a second; it never schedules anything in the simulation,
so results (and the event order) are exactly those of a run without it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SHOW_AFTER_S = 1.5
"""A single run shows its bar once it has run this long (wall seconds)."""
POLL_S = 0.2
"""How often the watcher thread reads the run's state."""


def wanted(quiet: bool = False) -> bool:
    """A bar is drawn only on a terminal and without ``--quiet``."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _bar(label: str) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


@contextmanager
def counter(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """``with counter("validate", wanted(quiet)) as tick: … tick(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    bar = _bar(label)
    task = bar.add_task("", total=None)
    bar.start()
    try:
        yield lambda done, total: bar.update(task, completed=done, total=total)
    finally:
        bar.stop()


class RunWatcher:
    """Watches one simulation (``simulate(sc, progress=RunWatcher(...))``): :meth:`started` is
    called by the run once its clock and recorder exist, :meth:`finished` when it ends."""

    def __init__(self, enabled: bool, label: str = "simulating") -> None:
        self.enabled = enabled
        self.label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, env: Any, rec: Any, expected_requests: int | None, until_s: float) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(
            target=self._watch, args=(env, rec, expected_requests, until_s), daemon=True)
        self._thread.start()

    def finished(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self, env: Any, rec: Any, expected: int | None, until_s: float) -> None:
        if self._stop.wait(SHOW_AFTER_S):
            return
        bar = _bar(self.label)
        by_requests = bool(expected) and hasattr(rec, "num_ended")
        finite = until_s == until_s and until_s != float("inf")
        unit = "requests" if by_requests else "simulated s"
        task = bar.add_task(unit, total=(expected if by_requests else
                                         (int(until_s) if finite else None)))
        bar.start()
        try:
            while True:
                done = int(rec.num_ended) if by_requests else int(env.now)
                bar.update(task, completed=done)
                if self._stop.wait(POLL_S):
                    break
        finally:
            bar.stop()
