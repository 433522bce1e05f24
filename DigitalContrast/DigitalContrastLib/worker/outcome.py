"""How a worker job ended, and the events that lead there: what a client hands to its caller.

Remote and local clients alike report a job as :class:`Event` objects and end it with a
:class:`JobOutcome`, whose ``raise_for_error`` raises the UserError subclass of the documented exit code.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    InputError,
    JobError,
    ModelError,
    NoGPUError,
    OutOfMemoryError,
    OutputError,
    UserError,
)


class WorkerError(UserError):
    """The worker crashed, was killed, or broke the protocol (a bug or the system, not the input)."""

    exit_code = EXIT_INTERNAL
    default_code = "worker_crashed"


class JobCancelled(Exception):
    """Raised by :meth:`JobOutcome.raise_for_error` for a job the client cancelled."""


ERRORS_BY_EXIT_CODE: dict[int, type[UserError]] = {
    cls.exit_code: cls for cls in (InputError, ModelError, JobError, OutOfMemoryError, NoGPUError, OutputError)
}


# ---------------------------------------------------------------------------- events, outcomes
@dataclass(frozen=True)
class Event:
    """One thing that happened in a job.

    ``type``: a protocol message type (``hello``, ``stage``, ``progress``, ``warning``,
    ``result``, ``error``), ``log`` (``data = {"line", "stream"}``) or ``end`` (``data`` = the
    outcome as a dict; always the last event of a job). ``overall_fraction`` in ``[0, 1]`` and
    ``eta_s`` (seconds, smoothed; None until it can be estimated) describe the whole job.
    """

    type: str
    data: dict[str, Any]
    job_id: str | None = None
    overall_fraction: float | None = None
    eta_s: float | None = None


@dataclass
class JobOutcome:
    """How a job ended.

    ``status``: ``ok`` (the output is in place and verified), ``error`` (``error`` holds
    ``code``, ``exit_code`` and a one-sentence ``message``) or ``cancelled`` (the client killed
    it; ``cancel_reason`` says why). ``process_exit``: the worker's exit status, negative for a
    signal, None while a persistent worker lives on or when it was killed by the client.
    """

    job_id: str
    status: str
    output_path: Path | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    process_exit: int | None = None
    cancel_reason: str | None = None
    log_tail: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def exit_code(self) -> int:
        """The documented exit code this outcome stands for (130 when cancelled)."""
        if self.status == "ok":
            return EXIT_OK
        if self.status == "cancelled":
            return 130
        return int((self.error or {}).get("exit_code", EXIT_INTERNAL))

    def raise_for_error(self) -> None:
        """Raise the UserError subclass matching the exit code (JobCancelled when cancelled)."""
        if self.status == "ok":
            return
        if self.status == "cancelled":
            raise JobCancelled(f"job {self.job_id} was cancelled ({self.cancel_reason}).")
        error = self.error or {}
        cls = ERRORS_BY_EXIT_CODE.get(self.exit_code, WorkerError)
        message = str(error.get("message", "the worker failed"))
        if cls is WorkerError:  # a bug or a crash: the worker's last words help
            lines = ([str(error["trace"])] if error.get("trace") else []) or self.log_tail[-12:]
            if lines:
                message += "\nlast worker output:\n" + "\n".join("  " + line for line in lines)
        raise cls(message, code=str(error.get("code", cls.default_code)))

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "exit_code": self.exit_code,
                "output_path": str(self.output_path) if self.output_path else None, "error": self.error,
                "process_exit": self.process_exit, "cancel_reason": self.cancel_reason,
                "elapsed_s": self.elapsed_s, "log_tail": list(self.log_tail)}


def describe_exit(code: int | None) -> str:
    if code is None:
        return "without an exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"with exit code {code}"
