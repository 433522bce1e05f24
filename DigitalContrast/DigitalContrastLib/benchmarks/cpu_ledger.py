"""What else ran while the benchmark measured: CPU time of other processes, per stage and per run.

The development machines are shared (2 cores, other sessions' tests and benchmarks beside ours).
A stage made of many short parallel regions slows down far more than its share when another
process takes a core (issue 31: a 0.4 s postprocess took 3 s while others used 3-3.5 s of CPU in
the same window), so a figure measured then says little about the code. This module measures it:

* :func:`snapshot` reads the machine's busy CPU time (all processes, the hypervisor's steal
  included: ``psutil.cpu_times``, i.e. ``/proc/stat`` on Linux) and this process's own (its threads
  included); the CPU time of *others* between two snapshots is the first's growth minus the second's;
* :class:`StageLedger` takes snapshots at the start and end of each engine stage through the
  engine's progress callback;
* :func:`is_contended`: others used more than :data:`CONTENDED_SHARE` of the machine's CPU time;
* :func:`busy_core`: a one-core busy loop in a child process, for the bench's contention mode;
* :func:`reset_peak_rss` / :func:`peak_rss_mb`: this process's peak RSS per path (Linux resets the
  high-water mark through ``/proc/self/clear_refs``; elsewhere the peak is the process's so far).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: A run is contended when other processes used more than this share of the machine's CPU time
#: (cores x wall seconds) while it ran: 0.2 s of 2 cores over a 1 s run. A quiet machine stays
#: near 0.01 (kernel threads, the shell); the issue's slow runs saw 0.75-0.9.
CONTENDED_SHARE = 0.10

#: ... and more than this many CPU seconds: the counters tick in 10 ms steps per core, so a run of
#: a few tens of milliseconds would otherwise count as contended on a tick or two.
CONTENDED_FLOOR_S = 0.05

#: The busy loop of the contention mode: one core's worth of pure Python spinning.
BUSY_LOOP_CODE = "while True:\n    pass\n"


@dataclass(frozen=True)
class CpuSnapshot:
    """At one instant: the wall clock, the machine's busy CPU seconds (every core), this process's own,
    and those of a process left out of "others" (the contention mode's busy loop; 0 without one)."""

    wall_s: float
    machine_busy_s: float
    own_s: float
    excluded_s: float = 0.0


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def snapshot(process: psutil.Process | None = None, excluded: psutil.Process | None = None) -> CpuSnapshot:
    """The machine's, this process's (its threads included) and ``excluded``'s CPU time now."""
    times = psutil.cpu_times()
    busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    return CpuSnapshot(time.perf_counter(), busy, _cpu_s(process or psutil.Process()),
                       _cpu_s(excluded) if excluded is not None else 0.0)


def others_cpu_s(start: CpuSnapshot, end: CpuSnapshot) -> float:
    """CPU seconds other processes (not this one, not the excluded one) used between two snapshots,
    at least 0 (the counters tick in 10 ms steps)."""
    used = ((end.machine_busy_s - start.machine_busy_s) - (end.own_s - start.own_s)
            - (end.excluded_s - start.excluded_s))
    return max(0.0, round(used, 3))


def is_contended(others_s: float, wall_s: float, cores: int) -> bool:
    """Whether others' CPU time exceeds :data:`CONTENDED_SHARE` of ``cores`` x ``wall_s`` (and
    :data:`CONTENDED_FLOOR_S`)."""
    return others_s > max(CONTENDED_SHARE * max(cores, 1) * wall_s, CONTENDED_FLOOR_S)


@dataclass
class StageLedger:
    """A progress callback (``ledger(stage, done, total)``) that notes when each stage starts and ends.

    :meth:`others_by_stage` then gives the CPU seconds other processes used during each stage
    (``excluded``: a process whose CPU time does not count, the contention mode's busy loop).
    """

    excluded: psutil.Process | None = None
    process: psutil.Process = field(default_factory=psutil.Process)
    starts: dict[str, CpuSnapshot] = field(default_factory=dict)
    ends: dict[str, CpuSnapshot] = field(default_factory=dict)

    def snapshot(self) -> CpuSnapshot:
        return snapshot(self.process, self.excluded)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.starts:
            self.starts[stage] = self.snapshot()
        if done >= total:
            self.ends[stage] = self.snapshot()

    def others_by_stage(self) -> dict[str, float]:
        """Others' CPU seconds during each finished stage."""
        return {stage: others_cpu_s(self.starts[stage], end) for stage, end in self.ends.items() if stage in self.starts}


@contextmanager
def busy_core() -> Iterator[psutil.Process]:
    """Run a one-core busy loop (a child Python process spinning) for the duration; yields it.

    Its CPU time is what it takes from the measured process: read it with ``cpu_times()``.
    """
    child = subprocess.Popen([sys.executable, "-c", BUSY_LOOP_CODE], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)  # let it reach the scheduler's steady state
        yield psutil.Process(child.pid)
    finally:
        child.kill()
        child.wait()


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux, ``/proc/self/clear_refs``); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: since the last :func:`reset_peak_rss` on Linux, else ever."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return round(psutil.Process().memory_info().peak_wset / 2**20, 1)  # type: ignore[attr-defined]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024.0, 1)
