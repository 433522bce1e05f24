"""Work on a GUI thread in bounded steps, and a record of how long the GUI thread was held.

Inside Slicer the logic runs on the GUI thread (PythonQt holds the GIL there, so Python threads
barely move: heavy work goes to a process). What must happen in the Slicer process (copying a
volume node's voxels to a file, building a node from a file) is cut into steps by a generator;
:class:`StepRunner` runs steps until its time budget per call is spent and returns, so a GUI timer
calling it keeps the application responsive.

:class:`BlockMonitor` records how long each call into the logic held the calling thread: the
logic's own instrumentation, which ``make bench`` reads (the longest block, and where).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: Time a GUI tick may spend on steps before it returns (the tick's own bookkeeping comes on top).
STEP_BUDGET_S = 0.02


class _Wait:
    """Yielded by a step that can do nothing more until the next tick (e.g. a process is busy)."""

    def __repr__(self) -> str:
        return "WAIT"


#: A step yields this when it waits on something outside the thread: the runner returns at once.
WAIT = _Wait()


@dataclass(frozen=True)
class Progress:
    """What a step reports: the stage it is in and the fraction of that stage done (0..1)."""

    stage: str
    fraction: float = 0.0


@dataclass
class BlockMonitor:
    """The longest time any measured call held its thread, and per call site.

    ``with monitor.measure("poll"):`` around each entry point of a logic that a GUI thread calls.
    Wall time is what a user feels; the thread's CPU time is the logic's own work (on a busy
    machine the wall time also holds the time the system gave other processes).
    """

    longest_s: float = 0.0
    longest_where: str = ""
    longest_cpu_s: float = 0.0
    longest_cpu_where: str = ""
    by_site_s: dict[str, float] = field(default_factory=dict)
    calls: int = 0

    @contextmanager
    def measure(self, where: str) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            held, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            self.calls += 1
            self.by_site_s[where] = max(self.by_site_s.get(where, 0.0), held)
            if held > self.longest_s:
                self.longest_s, self.longest_where = held, where
            if cpu > self.longest_cpu_s:
                self.longest_cpu_s, self.longest_cpu_where = cpu, where

    def to_dict(self) -> dict[str, Any]:
        return {"longest_ms": round(1000 * self.longest_s, 2), "longest_where": self.longest_where,
                "longest_cpu_ms": round(1000 * self.longest_cpu_s, 2), "longest_cpu_where": self.longest_cpu_where,
                "calls": self.calls, "by_site_ms": {k: round(1000 * v, 2) for k, v in sorted(self.by_site_s.items())}}


class StepRunner:
    """Runs a generator's steps within a time budget per :meth:`advance` call.

    Args:
        steps: a generator; each ``next()`` is one bounded piece of work; it yields its progress
            (kept in :attr:`last`), or :data:`WAIT` to end the call early; its ``return`` value is
            :attr:`result`.
        budget_s: time per :meth:`advance` call; at least one step always runs.
        on_done: called with :attr:`result` once the generator is exhausted; its value replaces it.
    """

    def __init__(self, steps: Iterator[Any], budget_s: float = STEP_BUDGET_S,
                 on_done: Callable[[Any], Any] | None = None) -> None:
        self._steps = steps
        self._budget_s = budget_s
        self._on_done = on_done
        self.last: Any = None
        self.done = False
        self.waiting = False
        self.result: Any = None

    def advance(self) -> bool:
        """Run steps until the budget is spent or the work is done; returns ``done``.

        An exception of a step propagates (the runner is then done, with nothing finished).
        """
        if self.done:
            return True
        deadline = time.perf_counter() + self._budget_s
        while True:
            try:
                value = next(self._steps)
            except StopIteration as stop:
                self.done = True
                self.result = stop.value
                if self._on_done is not None:
                    self.result = self._on_done(self.result)
                return True
            except BaseException:
                self.done = True
                raise
            self.waiting = value is WAIT
            if self.waiting:
                return False
            self.last = value
            if time.perf_counter() >= deadline:
                return False

    def close(self) -> None:
        """Abandon the remaining steps (the generator's cleanup runs: partial files are removed)."""
        if not self.done:
            self._steps.close()
            self.done = True

    def run_to_end(self, pause_s: float = 0.01) -> Any:
        """Every remaining step (scripts and tests), pausing ``pause_s`` on a wait; returns :attr:`result`."""
        while not self.advance():
            if self.waiting:
                time.sleep(pause_s)
        return self.result
