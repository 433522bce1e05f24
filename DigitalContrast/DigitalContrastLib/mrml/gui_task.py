"""A background task as the module's GUI sees it: bounded steps here, the heavy part in a worker process.

A task is a *pipeline*: a generator that writes the nodes it needs to files in slabs
(:mod:`.node_files`), starts a worker ``--task`` process (:class:`~DigitalContrastLib.worker.task_process.TaskProcess`),
waits for it one tick at a time (yielding :data:`~.gui_steps.WAIT`), then builds its result nodes
from files in slabs, and ``return``\\ s the result. :class:`GuiTask` runs the pipeline within a time
budget per :meth:`~GuiTask.poll` (the module's timer calls it every 150 ms), so the GUI thread is
never held for long, and turns what happened into :class:`TaskEvent` objects. :meth:`~GuiTask.discard`
stops it for real: the process tree is killed and partial files are removed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from DigitalContrastLib.worker.task_process import TaskProcess

from .gui_steps import STEP_BUDGET_S, WAIT, BlockMonitor, Progress, StepRunner

Pipeline = Generator[Any, None, Any]


@dataclass(frozen=True)
class TaskEvent:
    """One thing a task reported.

    ``type``: ``progress`` (``stage``, ``done``, ``total``: a percentage), ``done`` (``result``),
    ``error`` (``error``: the exception), or ``discarded``.
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


def wait_for_process(process: TaskProcess, stage: str | None = None) -> Generator[Any, None, Any]:
    """Pipeline steps that wait for ``process`` one tick at a time; returns its value (or raises its error).

    Closing the pipeline (a discarded task) kills the process.
    """
    try:
        while not process.poll():
            yield Progress(stage or process.stage or process.name, process.fraction)
            yield WAIT
    except GeneratorExit:
        process.cancel()
        raise
    if process.error is not None:
        raise process.error
    return process.value


class GuiTask:
    """Runs a pipeline a little per :meth:`poll`; the result is what the pipeline returns.

    Args:
        name: ``registration``, ``metrics``, ``export``, ``probe``...
        pipeline: the generator (see the module docstring).
        workspace: a private folder the pipeline writes into; removed when the task ends.
        monitor: records how long each :meth:`poll` held the calling thread.
    """

    def __init__(self, name: str, pipeline: Pipeline, workspace: Path | None = None,
                 monitor: BlockMonitor | None = None, budget_s: float = STEP_BUDGET_S) -> None:
        self.name = name
        self.workspace = workspace
        self.monitor = monitor or BlockMonitor()
        self._runner = StepRunner(pipeline, budget_s)
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.seconds: float | None = None
        self._last_percent = -1

    @property
    def running(self) -> bool:
        return not self.finished

    def start(self) -> "GuiTask":
        """Run the first steps (kept for the old ``start()`` call sites); returns the task."""
        self.poll()
        return self

    def poll(self) -> list[TaskEvent]:
        """Advance within the time budget; events since the last call (the last is ``done``, ``error`` or ``discarded``)."""
        if self.finished:
            return []
        with self.monitor.measure(f"{self.name} poll"):
            try:
                done = self._runner.advance()
            except BaseException as error:  # noqa: BLE001 - the task's failure, handed to the caller
                return [self._end(error=error)]
            if done:
                return [self._end(result=self._runner.result)]
            return self._progress()

    def _progress(self) -> list[TaskEvent]:
        last = self._runner.last
        if not isinstance(last, Progress):
            return []
        percent = int(round(100 * last.fraction))
        if percent == self._last_percent:
            return []
        self._last_percent = percent
        return [TaskEvent("progress", last.stage, percent, 100)]

    def _end(self, result: Any = None, error: BaseException | None = None, kind: str | None = None) -> TaskEvent:
        self.finished = True
        self.seconds = time.monotonic() - self.started_at
        self.result, self.error = result, error
        if self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
        if kind is not None:
            return TaskEvent(kind)
        return TaskEvent("error", error=error) if error is not None else TaskEvent("done", result=result)

    def discard(self) -> None:
        """Stop the task: its process tree is killed (no waiting), partial files removed, nothing added."""
        if not self.finished:
            with self.monitor.measure(f"{self.name} discard"):
                self._runner.close()
                self._end(kind="discarded")

    def wait(self, timeout: float | None = None, on_event: Callable[[TaskEvent], None] | None = None) -> Any:
        """Poll until the task ends (scripts and tests); returns its result or raises its error.

        Raises TimeoutError after ``timeout`` seconds (the task is then discarded).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if self.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.discard()
                raise TimeoutError(f"the {self.name} task is still running after {timeout:g} s")
            if self._runner.waiting:
                time.sleep(0.01)
        if self.error is not None:
            raise self.error
        return self.result


def new_workspace(work_dir: str | Path | None, name: str) -> Path:
    """A private temporary folder for one task (in ``work_dir``, else the system's temporary folder)."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"dc-{name}-", dir=work_dir))
