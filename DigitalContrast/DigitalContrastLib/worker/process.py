"""The worker as an operating-system process: how it is launched, its environment, its pipes, and how it is killed.

* A *launcher* ``launcher(args, env) -> Popen`` starts the worker with three pipes in a process group
  of its own: :func:`default_launcher` (``python -P -m DigitalContrastLib.worker``) or, inside Slicer,
  :func:`worker_script_launcher` (``PythonSlicer Scripts/DigitalContrastWorker.py``).
* :class:`WorkerProcess` pumps the worker's stdout and stderr into a queue line by line, from two
  reader threads, so nothing is lost and nothing waits on a timer.
* :func:`kill_process_tree` kills the worker and every descendant (Slicer's ``PythonSlicer`` is a
  launcher whose child is the real Python), so a cancel frees GPU memory.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.hardware import physical_cores
from DigitalContrastLib.common.paths import MODULE_DIR

from . import protocol
from .outcome import WorkerError

#: ``launcher(worker_args, env) -> Popen`` with ``stdin``, ``stdout`` and ``stderr`` pipes
#: (``stderr`` may be merged into ``stdout``); ``env`` is the child's complete environment.
Launcher = Callable[[Sequence[str], Mapping[str, str]], subprocess.Popen]


#: After the worker exits, wait this long for its pipes to close (a grandchild may hold them).
EXIT_GRACE_S = 0.3


#: How long cancel() waits for the killed processes to disappear.
KILL_TIMEOUT_S = 2.0


# ---------------------------------------------------------------------------- launching
def popen_launcher(command: Sequence[str], cwd: str | os.PathLike | None = None) -> Launcher:
    """A launcher running ``command + worker_args`` in a new process group with three pipes."""
    command = [os.fspath(part) for part in command]

    def launch(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
        return subprocess.Popen([*command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env), cwd=cwd, **background_process_options())

    return launch


def background_process_options() -> dict[str, Any]:
    """``Popen`` options for a child of its own: a new session (POSIX) or process group (Windows), no window.

    On Windows a console program started from a GUI (Slicer) gets a console window of its own, and
    closing that window kills it: the child is started hidden, as Slicer's ``launchConsoleProcess``
    does (``STARTUPINFO`` with ``SW_HIDE``, plus ``CREATE_NO_WINDOW``).
    """
    if os.name == "posix":
        return {"start_new_session": True}
    info = subprocess.STARTUPINFO()  # type: ignore[attr-defined]  # Windows only
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW  # type: ignore[attr-defined]
    info.wShowWindow = 0  # SW_HIDE
    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return {"creationflags": flags, "startupinfo": info}


#: ``-P`` (Python 3.11+): ``-m`` and ``-c`` would otherwise put the current folder first on
#: ``sys.path``, so a file such as ``json.py`` or ``timeit.py`` in the folder a user works in would
#: be imported by the worker instead of the standard module (a crash, or someone else's code run on
#: patient data).
SAFE_PATH_FLAGS: tuple[str, ...] = ("-P",) if sys.version_info >= (3, 11) else ()


def default_launcher() -> Launcher:
    """``sys.executable -P -m DigitalContrastLib.worker`` (the package's folder joins PYTHONPATH)."""
    launch = popen_launcher([sys.executable, *SAFE_PATH_FLAGS, "-m", "DigitalContrastLib.worker"])
    package_parent = str(MODULE_DIR)

    def launch_with_path(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
        env = dict(env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        return launch(args, env)

    return launch_with_path


#: The worker's launcher script (a Slicer resource beside this package's folder).
WORKER_SCRIPT = MODULE_DIR / "Scripts" / "DigitalContrastWorker.py"


def python_slicer_path(slicer_home: str | os.PathLike | None, which: Callable[[str], str | None] | None = None,
                       windows: bool | None = None) -> Path | None:
    """Where 3D Slicer's ``PythonSlicer`` launcher is: on the PATH Slicer sets, else ``<home>/bin``.

    ``slicer_home`` is ``slicer.app.slicerHome`` (on macOS ``Slicer.app/Contents``, whose ``bin``
    holds it too); on Windows the launcher is ``PythonSlicer.exe``. None when it is nowhere.
    """
    import shutil

    found = (which or shutil.which)("PythonSlicer")
    if found:
        return Path(found)
    if slicer_home is None:
        return None
    windows = os.name == "nt" if windows is None else windows
    candidate = Path(slicer_home) / "bin" / ("PythonSlicer.exe" if windows else "PythonSlicer")
    return candidate if candidate.is_file() else None


def worker_script_launcher(python: str | os.PathLike) -> Launcher:
    """Run the worker through its script with another Python: in Slicer ``python`` is ``PythonSlicer``.

    ``PythonSlicer`` is a launcher that starts the real Python as its child; cancel kills both.
    """
    return popen_launcher([os.fspath(python), str(WORKER_SCRIPT)])


def worker_environment(device: str = "auto", threads: int | None = None,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``base`` (default ``os.environ``) plus the worker's settings.

    ``device == "cpu"`` hides every GPU (``CUDA_VISIBLE_DEVICES=-1``); ``threads`` sets OMP/MKL
    threads (default: the number of physical cores, unless the environment already says).
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if threads is None:
        default_threads = str(physical_cores())
        env.setdefault("OMP_NUM_THREADS", default_threads)
        env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    else:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(int(threads))
    return env


def probe_worker(launcher: Launcher | None = None, timeout_s: float = 120.0) -> dict[str, Any]:
    """The worker's ``hello`` (torch build, device, free memory) without running a job.

    A GUI shows the device with this without importing torch itself. Raises WorkerError when
    the worker does not answer within ``timeout_s``.
    """
    popen = (launcher or default_launcher())(["--probe"], worker_environment())
    try:
        out, err = popen.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_process_tree(popen)
        raise WorkerError(f"the worker probe did not answer within {timeout_s:g} s; check the worker's Python.") from None
    text = (out or b"").decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")
    for line in text.splitlines():
        message = protocol.decode_line(line)
        if message and message["type"] == "hello":
            return message
    errors = (err or b"").decode("utf-8", "replace") if isinstance(err, bytes) else (err or "")
    tail = " | ".join((text + "\n" + errors).strip().splitlines()[-3:])
    raise WorkerError(f"the worker probe exited with code {popen.returncode} without a hello ({tail}).")


# ---------------------------------------------------------------------------- the running worker
class WorkerProcess:
    """A launched worker: its Popen, the queue its reader threads fill, its process group."""

    def __init__(self, popen: subprocess.Popen, env_key: tuple) -> None:
        self.popen = popen
        self.env_key = env_key
        self.lines: queue.Queue = queue.Queue()
        self.open_streams = 0
        self.exited_at: float | None = None
        self.pgid: int | None = None
        if os.name == "posix":
            try:
                pgid = os.getpgid(popen.pid)
                self.pgid = pgid if pgid == popen.pid else None  # only a group of its own is ours to kill
            except OSError:
                pass
        for name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            if stream is not None:
                self.open_streams += 1
                threading.Thread(target=self._pump, args=(stream, name), daemon=True,
                                 name=f"dc-worker-{popen.pid}-{name}").start()

    def _pump(self, stream, name: str) -> None:
        try:
            while True:
                raw = stream.readline()
                if not raw:
                    break
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                self.lines.put((name, text.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put((name, None))

    def send(self, text: str, close: bool) -> None:
        stdin = self.popen.stdin
        if stdin is None:
            return
        try:
            stdin.write(text.encode("utf-8") if "b" in getattr(stdin, "mode", "wb") else text)
            stdin.flush()
            if close:
                stdin.close()
        except (OSError, ValueError):  # it died already; the exit check reports it
            pass

    def kill(self, wait: bool = True) -> None:
        kill_process_tree(self.popen, self.pgid, wait=wait)


def kill_process_tree(popen: subprocess.Popen, pgid: int | None = None, timeout_s: float = KILL_TIMEOUT_S,
                      wait: bool = True) -> None:
    """Kill ``popen``'s process and every descendant: suspend the parent, kill children, parent, group.

    With psutil the whole tree is found and killed; without it (a stock 3D Slicer) the process group
    is killed on POSIX (the worker leads a session of its own) and ``taskkill /T`` ends the tree on
    Windows. ``wait=False`` sends the kills and returns at once (a GUI thread must not wait): call
    :func:`reap` later, or this function again with ``wait=True``.
    """
    victims = _kill_with_psutil(popen)
    if pgid is not None:  # orphans whose parent died already stay in the group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    elif victims is None and os.name == "nt" and popen.returncode is None:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(popen.pid)], capture_output=True,
                       **background_process_options())
    if not wait:
        return
    try:
        popen.wait(timeout=timeout_s)  # reap our own child
    except subprocess.TimeoutExpired:
        pass
    _wait_until_gone(victims or [], time.monotonic() + timeout_s)
    _close_pipes(popen)


def reap(popen: subprocess.Popen) -> bool:
    """Whether a killed process has ended (its pipes are then closed); never blocks."""
    if popen.poll() is None:
        return False
    _close_pipes(popen)
    return True


def _close_pipes(popen: subprocess.Popen) -> None:
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _kill_with_psutil(popen: subprocess.Popen) -> list | None:
    """Suspend the parent, kill its descendants and it; the psutil processes killed, or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    victims: list = []
    if popen.returncode is None:  # not reaped yet, so its pid is still its own
        try:
            parent = psutil.Process(popen.pid)
            try:
                parent.suspend()  # it cannot start new children while we collect them
            except psutil.Error:
                pass
            victims = [*parent.children(recursive=True), parent]
        except psutil.Error:
            victims = []
        for process in victims:
            try:
                process.kill()
            except psutil.Error:
                pass
    return victims


def _wait_until_gone(processes: list, deadline: float) -> None:
    """Wait until each psutil process has ended; a zombie (dead, not yet reaped by its new parent,
    often init) counts as ended, which ``psutil.wait_procs`` does not allow."""
    if not processes:
        return
    import psutil

    pending = list(processes)
    while pending and time.monotonic() < deadline:
        still = []
        for process in pending:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    still.append(process)
            except psutil.Error:
                pass
        pending = still
        if pending:
            time.sleep(0.005)
