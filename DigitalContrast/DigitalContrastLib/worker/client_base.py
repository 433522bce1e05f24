"""What the local and the remote job clients share: the blocking ``run`` built on ``start``/``wait``/``cancel``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .outcome import Event, JobOutcome


class JobClientBase:
    """``run`` and the context manager over a subclass's ``start``, ``wait``, ``poll``, ``cancel`` and ``close``."""

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
