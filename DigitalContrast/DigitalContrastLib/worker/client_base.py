"""What the local and the remote job clients share: the job's progress state, and the blocking ``run``
built on ``start``/``wait``/``cancel``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .outcome import Event, JobOutcome


class JobClientBase:
    """``run`` and the context manager over a subclass's ``start``, ``wait``, ``poll``, ``cancel`` and ``close``,
    and the state read from its ``_job`` (None between jobs; ``fraction``, ``eta_s``), ``_log`` (the last
    log lines) and ``outcome`` (the last job's)."""

    _job: Any
    _log: Any
    outcome: JobOutcome | None

    @property
    def running(self) -> bool:
        """True while a job is started and not yet ended (call poll() or wait() to advance)."""
        return self._job is not None

    @property
    def overall_fraction(self) -> float:
        """The job's progress, 0..1 (1 once it ended well)."""
        return self._job.fraction if self._job else (1.0 if self.outcome and self.outcome.ok else 0.0)

    @property
    def eta_s(self) -> float | None:
        """Seconds the job is expected to take still, when known."""
        return self._job.eta_s if self._job else None

    @property
    def log_tail(self) -> list[str]:
        """The worker's last log lines."""
        return list(self._log)

    def run(self, job: Mapping[str, Any], on_event: Callable[[Event], None] | None = None,
            timeout: float | None = None) -> JobOutcome:
        """Start ``job`` and wait for it; on timeout or Ctrl-C the job is cancelled (and Ctrl-C re-raised)."""
        self.start(job)  # type: ignore[attr-defined]
        try:
            return self.wait(timeout, on_event)  # type: ignore[attr-defined]
        except TimeoutError:
            outcome = self.cancel(f"timed out after {timeout:g} s")  # type: ignore[attr-defined]
            for event in self.poll():  # type: ignore[attr-defined]
                if on_event:
                    on_event(event)
            return outcome
        except BaseException:
            self.cancel("interrupted")  # type: ignore[attr-defined]
            raise

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()  # type: ignore[attr-defined]
