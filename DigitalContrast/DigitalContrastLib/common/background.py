"""Run a computation in a thread and hand its progress and result to the GUI thread by polling.

Used by the Slicer logic for work that is numpy/SimpleITK only and short enough not to need its
own process (registration, metrics, the device probe): SimpleITK and numpy release the GIL while
they compute, so the GUI stays responsive. The thread never touches MRML or Qt: it gets plain
arrays (copied from the nodes in the GUI thread beforehand) and returns plain results; whatever
must happen in the scene is done by a ``finish`` callback that :meth:`BackgroundTask.poll` runs
in the caller's (GUI) thread.

A thread cannot be killed: :meth:`BackgroundTask.discard` drops the result when it arrives (the
computation itself runs to its end). Work that must stop at once (synthesis) runs in the worker
process instead (``client.py``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskEvent:
    """One thing a task reported.

    ``type``: ``progress`` (``stage``, ``done``, ``total``), ``done`` (``result``: what the
    ``finish`` callback returned, or the computation's value without one), ``error``
    (``error``: the exception), or ``discarded``.
    """

    type: str
    stage: str | None = None
    done: int = 0
    total: int = 0
    result: Any = None
    error: BaseException | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class BackgroundTask:
    """``compute(*args, progress=callback, **kwargs)`` in a daemon thread, followed by polling.

    Args:
        name: for the thread and messages (``"registration"``).
        compute: pure function (no MRML, no Qt); it is passed ``progress(stage, done, total)``
            when ``pass_progress`` is True.
        finish: ``finish(value) -> result`` run in the polling thread once ``compute`` returned
            (e.g. make the MRML node); its exception is reported as the task's error.

    Call :meth:`start`, then :meth:`poll` from a timer (or :meth:`wait` in scripts and tests).
    """

    def __init__(self, name: str, compute: Callable[..., Any], *args: Any,
                 finish: Callable[[Any], Any] | None = None, pass_progress: bool = True, **kwargs: Any) -> None:
        self.name = name
        self._compute = compute
        self._args = args
        self._kwargs = kwargs
        self._finish = finish
        self._pass_progress = pass_progress
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._discarded = False
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.last_progress: TaskEvent | None = None
        self.started_at: float | None = None
        self.seconds: float | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished

    def start(self) -> "BackgroundTask":
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} task was started already")
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"dc-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            self._queue.put(("progress", (stage, int(done), int(total))))

        kwargs = dict(self._kwargs)
        if self._pass_progress:
            kwargs["progress"] = progress
        try:
            value = self._compute(*self._args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the polling thread
            self._queue.put(("error", error))
        else:
            self._queue.put(("value", value))

    def poll(self) -> list[TaskEvent]:
        """Events since the last call (never blocks); the last one is ``done``, ``error`` or ``discarded``."""
        events: list[TaskEvent] = []
        while not self.finished:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            events += self._handle(kind, payload)
        return events

    def _handle(self, kind: str, payload: Any) -> list[TaskEvent]:
        if kind == "progress":
            event = TaskEvent("progress", *payload)
            self.last_progress = event
            return [] if self._discarded else [event]
        self.finished = True
        self.seconds = time.monotonic() - (self.started_at or time.monotonic())
        if self._discarded:
            return [TaskEvent("discarded")]
        if kind == "error":
            self.error = payload
            return [TaskEvent("error", error=payload)]
        try:
            self.result = self._finish(payload) if self._finish is not None else payload
        except Exception as error:  # noqa: BLE001 - the finish step's failure is the task's failure
            self.error = error
            return [TaskEvent("error", error=error)]
        return [TaskEvent("done", result=self.result)]

    def wait(self, timeout: float | None = None, on_event: Callable[[TaskEvent], None] | None = None) -> Any:
        """Block until the task ends (running ``finish`` here); return its result or raise its error.

        Raises TimeoutError after ``timeout`` seconds (the task keeps running).
        """
        if self._thread is None:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"the {self.name} task is still running after {timeout:g} s")
            try:
                kind, payload = self._queue.get(timeout=0.1 if remaining is None else min(0.1, remaining))
            except queue.Empty:
                continue
            for event in self._handle(kind, payload):
                if on_event is not None:
                    on_event(event)
        if self.error is not None:
            raise self.error
        return self.result

    def discard(self) -> None:
        """Forget the task: its result (when the thread ends) is dropped and ``finish`` never runs."""
        self._discarded = True
