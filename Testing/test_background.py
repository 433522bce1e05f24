"""Background tasks: computation in a thread, results and the finishing step in the polling thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from DigitalContrastLib.common.background import BackgroundTask


def _slow_sum(values, progress, steps=5, pause_s=0.05):
    total = 0.0
    for step in range(steps):
        time.sleep(pause_s)
        total += float(np.sum(values))
        progress("sum", step + 1, steps)
    return total, threading.get_ident()


def test_progress_then_the_result_made_by_finish_in_the_polling_thread():
    finished_in = []
    task = BackgroundTask("sum", _slow_sum, np.ones(10),
                          finish=lambda value: (finished_in.append(threading.get_ident()), value)[1]).start()
    events, polls = [], 0
    while not task.finished:
        events += task.poll()
        polls += 1
        time.sleep(0.01)
    total, computed_in = task.result
    assert total == 50.0 and computed_in != threading.get_ident(), "computed in another thread"
    assert finished_in == [threading.get_ident()], "finish ran in the polling thread"
    assert [e.done for e in events if e.type == "progress"] == [1, 2, 3, 4, 5]
    assert events[-1].type == "done" and events[-1].result == task.result
    assert polls > 5 and task.seconds >= 0.25


def test_errors_of_the_computation_and_of_finish_come_back_as_the_task_error():
    def broken(progress):
        raise ValueError("no overlap")

    task = BackgroundTask("broken", broken).start()
    with pytest.raises(ValueError, match="no overlap"):
        task.wait(timeout=10)
    assert isinstance(task.error, ValueError)

    def bad_finish(value):
        raise RuntimeError("node could not be made")

    task = BackgroundTask("finish", lambda: 1, finish=bad_finish, pass_progress=False).start()
    events = []
    with pytest.raises(RuntimeError, match="node could not be made"):
        task.wait(timeout=10, on_event=events.append)
    assert events[-1].type == "error"


def test_a_discarded_task_never_runs_finish_and_a_wait_can_time_out():
    called = []
    task = BackgroundTask("sum", _slow_sum, np.ones(3), finish=called.append, steps=4, pause_s=0.1).start()
    with pytest.raises(TimeoutError):
        task.wait(timeout=0.05)
    task.discard()
    deadline = time.monotonic() + 10
    events = []
    while not task.finished and time.monotonic() < deadline:
        events += task.poll()
        time.sleep(0.02)
    assert [e.type for e in events][-1] == "discarded" and called == [] and task.result is None
    with pytest.raises(RuntimeError, match="started already"):
        task.start()
