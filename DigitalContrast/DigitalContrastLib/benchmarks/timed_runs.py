"""Timing one benchmark path on a shared machine: repeat until enough runs were uncontended.

Each run is timed as a whole and per engine stage, with the CPU time other processes used meanwhile
(:mod:`.cpu_ledger`). A run during which others used more than :data:`.cpu_ledger.CONTENDED_SHARE`
of the machine is *contended*: it is listed, never the figure. :func:`time_path` runs until it has
``repeats`` uncontended runs (or ``max_runs`` in all); :func:`path_figures` reports the median of
the uncontended ones, or, when every run was contended, the median of all with ``contended: true``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from DigitalContrastLib.benchmarks.cpu_ledger import StageLedger, is_contended, others_cpu_s, peak_rss_mb, reset_peak_rss
from DigitalContrastLib.common.hardware import available_cpu_cores

#: Runs of a path beyond the wanted uncontended ones, at most, before it gives up waiting for calm.
EXTRA_RUNS = 4


@dataclass
class TimedRun:
    """One timed run of a path."""

    seconds: float
    timings_s: dict[str, float]  # the path's own stage timings
    others_cpu_s: float  # CPU seconds other processes used during the run
    stage_others_cpu_s: dict[str, float]  # the same, per engine stage
    contended: bool

    def as_dict(self) -> dict[str, Any]:
        return {"s": round(self.seconds, 3), "others_cpu_s": self.others_cpu_s, "contended": self.contended,
                "stage_others_cpu_s": self.stage_others_cpu_s,
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()}}


def time_path(run: Callable[[StageLedger], Any], timings_of: Callable[[Any], dict[str, float]], repeats: int,
              max_runs: int | None = None, excluded: Any = None) -> tuple[Any, list[TimedRun], float]:
    """Call ``run(ledger)`` until ``repeats`` runs were uncontended or ``max_runs`` (default
    ``repeats + EXTRA_RUNS``) ran. ``run`` passes ``ledger`` to the engine as its progress callback.

    ``excluded``: a process whose CPU time is not "others" (the contention mode's busy loop).
    Returns ``(the last result, the runs, the path's peak RSS in MiB over its timed runs)``.
    """
    cores = available_cpu_cores()
    limit = max_runs or repeats + EXTRA_RUNS
    runs: list[TimedRun] = []
    result = None
    reset_peak_rss()
    while len(runs) < limit and sum(not r.contended for r in runs) < repeats:
        result = None  # free the previous output (hundreds of MB) before the next call
        ledger = StageLedger(excluded=excluded)
        before = ledger.snapshot()
        started = time.perf_counter()
        result = run(ledger)
        seconds = time.perf_counter() - started
        after = ledger.snapshot()
        others = others_cpu_s(before, after)
        runs.append(TimedRun(seconds, dict(timings_of(result)), others, ledger.others_by_stage(),
                             is_contended(others, seconds, cores)))
    return result, runs, peak_rss_mb()


def median_run(runs: list[TimedRun]) -> TimedRun:
    """The median run (by seconds) of the uncontended runs, or of all when every one was contended."""
    chosen = [r for r in runs if not r.contended] or runs
    return sorted(chosen, key=lambda r: r.seconds)[len(chosen) // 2]


def path_figures(runs: list[TimedRun], peak_rss: float, **about: Any) -> dict[str, Any]:
    """A path's figures: its median (uncontended) run's seconds and stage timings, whether that figure
    is contended, every run, the CPU others used, the peak RSS, and ``about`` (backend, precision...)."""
    figure = median_run(runs)
    return {
        **about,
        "s": round(figure.seconds, 3),
        "timings_s": {k: round(v, 3) for k, v in figure.timings_s.items()},
        "contended": figure.contended,
        "contended_runs": sum(r.contended for r in runs),
        "runs": [r.as_dict() for r in runs],
        "peak_rss_mb": peak_rss,
    }
