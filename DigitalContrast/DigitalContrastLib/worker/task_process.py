"""A worker ``--task`` (or ``--probe``) process seen from the GUI: started at once, polled, killable.

The Slicer module hands heavy work (input check, registration, metrics, DICOM export, the device
probe) to a process: :class:`TaskProcess` starts ``python -m DigitalContrastLib.worker --task NAME``
(or ``PythonSlicer Scripts/DigitalContrastWorker.py --task NAME`` through the same launchers as
synthesis), writes the arguments on its stdin and returns. :meth:`TaskProcess.poll` never blocks: it
turns the lines the reader threads queued into progress and, at the end, the value or the error.
:meth:`TaskProcess.cancel` kills the process tree without waiting (a real cancel: registration stops
at once), and a later poll reaps it.
"""

from __future__ import annotations

import collections
import json
import queue
import time
from collections.abc import Mapping, Sequence
from typing import Any

from DigitalContrastLib.common.errors import UserError

from . import protocol
from .outcome import ERRORS_BY_EXIT_CODE, WorkerError, describe_exit
from .process import EXIT_GRACE_S, Launcher, WorkerProcess, default_launcher, reap, worker_environment


class TaskProcess:
    """One worker process running one task (or the probe).

    Args:
        worker_args: ``["--task", "metrics"]`` or ``["--probe"]``.
        arguments: the task's JSON object (written on stdin), or None.
        launcher: ``launcher(args, env) -> Popen``; default: this Python, ``-m DigitalContrastLib.worker``.
        threads: OMP/MKL threads of the process (default: physical cores).

    Attributes once :attr:`finished`: ``value`` (the ``task_result`` value, or the probe's ``hello``)
    or ``error`` (the UserError the task raised, a crash as :class:`WorkerError`, or None when cancelled).
    """

    def __init__(self, worker_args: Sequence[str], arguments: Mapping[str, Any] | None = None, *,
                 launcher: Launcher | None = None, threads: int | None = None, log_lines: int = 50) -> None:
        self.name = worker_args[-1] if worker_args[0] == "--task" else worker_args[0].lstrip("-")
        env = worker_environment("cpu", threads)
        try:
            popen = (launcher or default_launcher())(list(worker_args), env)
        except OSError as error:
            raise WorkerError(f"the {self.name} process could not be started ({error}); check the Python the "
                              "launcher runs.", code="worker_not_started") from None
        self._proc = WorkerProcess(popen, env_key=None)
        self._proc.send(json.dumps(dict(arguments or {})) + "\n", close=True)
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self.stage: str | None = None
        self.fraction = 0.0
        self.value: Any = None
        self.error: UserError | None = None
        self.cancelled = False
        self.finished = False
        self._answered = False

    @property
    def pid(self) -> int:
        return self._proc.popen.pid

    @property
    def log_tail(self) -> list[str]:
        return list(self._log)

    def poll(self) -> bool:
        """Take what the process said so far (never blocks); returns :attr:`finished`."""
        if self.finished:
            if self.cancelled:
                reap(self._proc.popen)
            return True
        while True:
            try:
                stream, text = self._proc.lines.get_nowait()
            except queue.Empty:
                break
            if text is None:
                self._proc.open_streams -= 1
            else:
                self._take(text)
        code = self._proc.popen.poll()
        if code is None:
            return False
        if self._proc.exited_at is None:
            self._proc.exited_at = time.monotonic()
        if self._proc.open_streams > 0 and time.monotonic() - self._proc.exited_at < EXIT_GRACE_S:
            return False  # let the last lines arrive
        self._end(code)
        return True

    def _take(self, text: str) -> None:
        message = protocol.decode_line(text)
        if message is None:
            self._log.append(text)
            return
        kind = message["type"]
        if kind in ("stage", "progress"):
            self.stage = message["stage"]
            total = max(1, int(message.get("total", 1)))
            self.fraction = min(1.0, int(message.get("done", 0)) / total)
        elif kind in ("task_result", "hello"):
            self.value = message["value"] if kind == "task_result" else message
            self._answered = True
        elif kind == "error":
            cls = ERRORS_BY_EXIT_CODE.get(int(message.get("exit_code", 1)), WorkerError)
            self.error = cls(str(message.get("message")), code=str(message.get("code", cls.default_code)))
            self._answered = True

    def _end(self, code: int) -> None:
        self.finished = True
        reap(self._proc.popen)
        if self._answered and (code == 0 or self.error is not None):
            return
        tail = " | ".join(self.log_tail[-3:])
        self.error = WorkerError(f"the {self.name} process ended {describe_exit(code)} without an answer (a crash, "
                                 f"a kill, or the system running out of memory){'; last output: ' + tail if tail else ''}.")

    def cancel(self) -> None:
        """Kill the process tree without waiting; later polls reap it. The task ends with no value, no error."""
        if self.finished:
            return
        self._proc.kill(wait=False)
        self.cancelled = self.finished = True

    def wait(self, timeout_s: float | None = None) -> Any:
        """Block until the task ends (scripts and tests); returns the value or raises the error.

        Raises:
            TimeoutError: still running after ``timeout_s`` (the process is then killed).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"the {self.name} process did not finish within {timeout_s:g} s")
            time.sleep(0.02)
        if self.error is not None:
            raise self.error
        return self.value
