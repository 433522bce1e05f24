"""Run a command, read its stdout as it comes, and kill it with SIGKILL at a chosen moment
(shared by the crash tests; not a test itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence


def run_until_killed(args: Sequence[str], ready: Callable[[list[str]], bool], delay_s: float,
                     timeout_s: float = 60.0, env: dict[str, str] | None = None) -> tuple[list[str], bool]:
    """Start ``args``; once ``ready(lines so far)`` is true (or the process ends, or
    ``timeout_s`` passes), wait ``delay_s`` and kill it with SIGKILL if it still runs.

    Returns ``(stdout lines, killed)``. Fails the test if the process ended by itself with an
    exit status other than 0 (its stderr is in the message).
    """
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    lines: list[str] = []

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line.strip())

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not ready(lines) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay_s)
    killed = False
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        killed = True
    proc.wait(timeout=30)
    thread.join(timeout=10)
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return list(lines), killed
