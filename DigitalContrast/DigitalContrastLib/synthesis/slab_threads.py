"""Slab-by-slab CPU work on a few threads, torch at one thread each: a stage other processes cannot stall.

A stage made of many small torch operations (the postprocess: about 75 slabs of 4 slices, a few
operations each) is, with torch's own threads, hundreds of short OpenMP regions, each ending at a
barrier. When another process takes one of the cores, the thread it pauses holds up every barrier
and the other threads spin there: on a 2-core machine with one core busy the postprocess went from
0.45 s to a median of 1.04 s and up to 3.8 s (measured on an Intel Xeon, issue 31). Here each
slab is one task on a thread pool, torch runs one thread per task, and a worker takes the next
slab as soon as it is free: a paused thread delays only its own slab, nobody spins for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

from DigitalContrastLib.common.hardware import available_cpu_cores


@contextmanager
def torch_single_threaded() -> Iterator[None]:
    """torch's intra-op pool at one thread for the duration (restored afterwards).

    The setting is process-wide: the engine holds its lock while a stage runs, so no other
    synthesis of that engine runs torch meanwhile.
    """
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def run_slabs(work: Callable[[range], None], slabs: Sequence[range], workers: int | None = None) -> None:
    """Call ``work(slab)`` for every slab, on ``workers`` threads (default: the cores this process may use).

    Slabs are handed out in order as threads free up; ``work`` must write disjoint parts of its
    output. The first exception raised by a slab is raised here after the running slabs finish
    (the slabs not started are dropped).
    """
    workers = max(1, min(len(slabs), workers or available_cpu_cores()))
    if workers == 1:
        for slab in slabs:
            work(slab)
        return
    with torch_single_threaded():
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dc-slab")
        try:
            for _ in pool.map(work, slabs):
                pass
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
