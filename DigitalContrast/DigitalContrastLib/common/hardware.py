"""How many CPU cores this machine and this process have: counted here, once.

psutil is used where it is installed; without it (a stock 3D Slicer does not bundle it) Linux's
``/proc/cpuinfo`` gives the physical cores and ``os.cpu_count()`` the rest.
"""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical CPU cores of the machine (hyper-threads not counted), at least 1."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:
        count = _physical_cores_from_cpuinfo()
    return int(count or os.cpu_count() or 1)


def available_cpu_cores() -> int:
    """Logical CPU cores this process may run on (its affinity mask where the system has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _physical_cores_from_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> int | None:
    """Distinct (physical id, core id) pairs in ``/proc/cpuinfo``; None where the file or the fields are absent."""
    try:
        text = path.read_text()
    except OSError:
        return None
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def memory_mb() -> tuple[float | None, float | None]:
    """``(available, total)`` system memory in MiB: psutil where installed, else ``/proc/meminfo``; None when unknown."""
    try:
        import psutil

        memory = psutil.virtual_memory()
        return memory.available / 2**20, memory.total / 2**20
    except ImportError:
        pass
    fields = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = float(value.split()[0]) / 1024  # kB -> MiB
    except (OSError, ValueError, IndexError):
        return None, None
    return fields.get("MemAvailable"), fields.get("MemTotal")


def process_exists(pid: int) -> bool:
    """Whether a process with this id is running (psutil where installed, else ``os.kill(pid, 0)`` / tasklist)."""
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:
        pass
    if os.name == "nt":
        import subprocess

        listed = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/NH"], capture_output=True, text=True)
        return str(pid) in listed.stdout
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
