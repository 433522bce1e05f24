"""Active reading time of one item: time spent with the item, idle stretches left out.

A reader who leaves the workstation with an item on screen must not make that item look slow.
The counter therefore counts, from the moment an item is shown, only the time within
``idle_after_seconds`` of the reader's last interaction (a scroll, a window/level change, a click
or key press in the form). Formally: the length of the union of the intervals
``[t_i, t_i + idle_after_seconds]`` over the display time and every interaction ``t_i``, cut at
the present, minus time while the counter is paused (Slicer in the background).

The result does not depend on how often :meth:`ActiveTimeCounter.tick` is called: a timer in the
UI only refreshes the display; every event brings the account up to date before it is applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_IDLE_AFTER_SECONDS = 60.0


class ActiveTimeCounter:
    """Seconds of active reading of the current item.

    Args:
        idle_after_seconds: after this long without an interaction, time stops counting.
        clock: monotonic seconds (``time.monotonic``; tests pass a fake).
    """

    def __init__(self, idle_after_seconds: float = DEFAULT_IDLE_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if idle_after_seconds <= 0:
            raise ValueError(f"idle_after_seconds must be positive, not {idle_after_seconds!r}")
        self.idle_after_seconds = float(idle_after_seconds)
        self._clock = clock
        self._seconds = 0.0
        self._accounted_until: float | None = None  # None: not running
        self._last_interaction = 0.0
        self._paused = False

    def start(self) -> None:
        """An item is shown: restart at zero (the display counts as the first interaction)."""
        now = self._clock()
        self._seconds = 0.0
        self._accounted_until = now
        self._last_interaction = now
        self._paused = False

    def stop(self) -> float:
        """No item is shown any more; returns the final count."""
        self.tick()
        self._accounted_until = None
        return self._seconds

    @property
    def running(self) -> bool:
        return self._accounted_until is not None

    def tick(self) -> float:
        """Bring the count up to now; returns it (call it from a timer to refresh a display)."""
        if self._accounted_until is None:
            return self._seconds
        now = self._clock()
        if not self._paused:
            active_until = min(now, self._last_interaction + self.idle_after_seconds)
            self._seconds += max(0.0, active_until - self._accounted_until)
        self._accounted_until = max(self._accounted_until, now)
        return self._seconds

    def interaction(self) -> None:
        """The reader did something: time counts again (for up to ``idle_after_seconds``)."""
        if self._accounted_until is None:
            return
        self.tick()
        self._last_interaction = self._clock()
        self._paused = False

    def pause(self) -> None:
        """Stop counting (the application lost focus) until the next interaction or :meth:`resume`."""
        self.tick()
        self._paused = True

    def resume(self) -> None:
        """Count again from now (the application is in front again); not an interaction."""
        self.tick()
        self._paused = False

    @property
    def seconds(self) -> float:
        """Active seconds so far (up to the last tick or event; call :meth:`tick` for now)."""
        return self._seconds
