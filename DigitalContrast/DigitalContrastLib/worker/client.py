"""Run synthesis jobs in the background worker and follow them: pure Python, no Qt, no torch.

One client serves the Slicer logic, the CLI and batch code::

    from DigitalContrastLib.worker.client import WorkerClient
    from DigitalContrastLib.worker.protocol import make_job

    client = WorkerClient()                       # or WorkerClient(launcher=..., persistent=True)
    client.start(make_job("ncct.nrrd", "synthetic.nrrd"))
    while client.running:                         # a GUI calls poll() from a timer instead
        for event in client.poll():               # never blocks
            if event.type == "progress":
                print(f"{event.overall_fraction:.0%}, {event.eta_s or 0:.0f} s left")
        time.sleep(0.1)
    outcome = client.outcome                      # JobOutcome: status ok | error | cancelled
    outcome.raise_for_error()                     # or read outcome.error / outcome.log_tail

or blocking: ``client.run(job, on_event=print)``; or for the CLI ``run_synthesis_job(...)``.

**One job at a time per client**: ``start`` while a job runs raises JobError ("a job is already
running; cancel it or wait"). Use one client per concurrent job.

How a job runs:

* The worker is launched by an injectable *launcher* ``launcher(args, env) -> Popen`` (stdin,
  stdout and stderr pipes). The default runs ``sys.executable -P -m DigitalContrastLib.worker`` in
  its own process group; inside Slicer, pass ``worker_script_launcher(PythonSlicer)`` (it runs
  ``Scripts/DigitalContrastWorker.py``; Slicer's ``sys.executable`` is the application).
  The child alone gets ``PYTHONUNBUFFERED=1``, ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``,
  ``CUDA_VISIBLE_DEVICES=-1`` when the job's device is ``cpu``, and OMP/MKL thread counts.
* Reader threads put every stdout/stderr line on a queue as it comes (nothing is dropped, nothing
  waits on a timer); ``poll()`` turns them into :class:`Event` objects: the worker's messages
  (see ``protocol.py``) plus ``log`` (a plain text line) and ``end`` (the outcome, last).
  Progress events carry one ``overall_fraction`` (``progress.overall_fraction``, never going
  back) and a smoothed ``eta_s``.
* Output handling: the client owns a job folder (``dc-job-*`` in the system temp folder or
  ``work_root``) and tells the worker to write there. The result is moved to the requested
  path (an atomic rename; copy + rename across file systems) only when the worker's ``result``
  message came, the worker exited 0 (or, persistent, is still alive), and every file's SHA-256
  matches the one reported. The main output moves last. So a killed, crashed or cancelled job
  leaves nothing at the output path, even if it died between its own rename and its message;
  the job folder is removed in every case.
* ``cancel()`` kills the whole process tree (psutil: the parent is suspended, its descendants
  killed, then the parent, then its process group), so the launcher's child Python (Slicer's
  ``PythonSlicer`` is a launcher) and anything it started die too and GPU memory is freed.
  The outcome is ``cancelled`` because the client decided it, whatever the exit code.
* A worker that dies (segfault, ``kill -9``, the kernel's out-of-memory killer) gives an
  ``error`` outcome with code ``worker_crashed``, the exit code or signal and the last log lines,
  never a hang: the client watches the process itself, not only its pipes (a leftover grandchild
  may hold them open).
* ``persistent=True`` keeps one ``--serve`` worker between jobs so the model stays loaded;
  a job whose device needs another environment (``cpu`` vs GPU) restarts it.
"""

from __future__ import annotations

import atexit
import collections
import errno
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.hardware import physical_cores
from DigitalContrastLib.common.paths import MODULE_DIR

from . import protocol
from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastLib.common.checksum import file_sha256
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
from DigitalContrastLib.common.progress import STAGES, ProgressCallback, overall_fraction

#: ``launcher(worker_args, env) -> Popen`` with ``stdin``, ``stdout`` and ``stderr`` pipes
#: (``stderr`` may be merged into ``stdout``); ``env`` is the child's complete environment.
Launcher = Callable[[Sequence[str], Mapping[str, str]], subprocess.Popen]

JOB_FOLDER_PREFIX = "dc-job-"
#: After the worker exits, wait this long for its pipes to close (a grandchild may hold them).
EXIT_GRACE_S = 0.3
#: How long cancel() waits for the killed processes to disappear.
KILL_TIMEOUT_S = 2.0
#: Weight of a new ETA estimate in the running average.
ETA_SMOOTHING = 0.3


class WorkerError(UserError):
    """The worker crashed, was killed, or broke the protocol (a bug or the system, not the input)."""

    exit_code = EXIT_INTERNAL
    default_code = "worker_crashed"


class JobCancelled(Exception):
    """Raised by :meth:`JobOutcome.raise_for_error` for a job the client cancelled."""


_ERRORS_BY_EXIT_CODE: dict[int, type[UserError]] = {
    cls.exit_code: cls for cls in (InputError, ModelError, JobError, OutOfMemoryError, NoGPUError, OutputError)
}


# ---------------------------------------------------------------------------- launching
def popen_launcher(command: Sequence[str], cwd: str | os.PathLike | None = None) -> Launcher:
    """A launcher running ``command + worker_args`` in a new process group with three pipes."""
    command = [os.fspath(part) for part in command]

    def launch(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
        extra: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        return subprocess.Popen([*command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env), cwd=cwd, **extra)

    return launch


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
        _kill_process_tree(popen)
        raise WorkerError(f"the worker probe did not answer within {timeout_s:g} s; check the worker's Python.") from None
    text = (out or b"").decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")
    for line in text.splitlines():
        message = protocol.decode_line(line)
        if message and message["type"] == "hello":
            return message
    errors = (err or b"").decode("utf-8", "replace") if isinstance(err, bytes) else (err or "")
    tail = " | ".join((text + "\n" + errors).strip().splitlines()[-3:])
    raise WorkerError(f"the worker probe exited with code {popen.returncode} without a hello ({tail}).")


def stage_weights(uncertainty: bool = False) -> dict[str, float]:
    """Stage shares of a worker job, in the order the worker reports them.

    The worker loads (or reuses) the model before reading the input, so ``model`` comes first.
    Flip test-time augmentation runs the network 3 more times: ``uncertainty`` then weighs
    3 times ``inference`` (0 without it).
    """
    weights = {"model": STAGES["model"], **{k: v for k, v in STAGES.items() if k != "model"}}
    weights["uncertainty"] = 3 * STAGES["inference"] if uncertainty else 0.0
    return weights


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
        cls = _ERRORS_BY_EXIT_CODE.get(self.exit_code, WorkerError)
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


# ---------------------------------------------------------------------------- internals
class _WorkerProcess:
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

    def kill(self) -> None:
        _kill_process_tree(self.popen, self.pgid)


def _kill_process_tree(popen: subprocess.Popen, pgid: int | None = None, timeout_s: float = KILL_TIMEOUT_S) -> None:
    """Kill ``popen``'s process and every descendant: suspend the parent, kill children, parent, group."""
    import psutil

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
    if pgid is not None:  # orphans whose parent died already stay in the group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    try:
        popen.wait(timeout=timeout_s)  # reap our own child
    except subprocess.TimeoutExpired:
        pass
    _wait_until_gone(victims, time.monotonic() + timeout_s)
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _wait_until_gone(processes: list, deadline: float) -> None:
    """Wait until each psutil process has ended; a zombie (dead, not yet reaped by its new parent,
    often init) counts as ended, which ``psutil.wait_procs`` does not allow."""
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


@dataclass
class _RunningJob:
    job: dict[str, Any]          # as requested (final paths)
    worker_job: dict[str, Any]   # as sent (paths in the job folder)
    folder: Path
    started: float
    weights: dict[str, float]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    fraction: float = 0.0
    eta_s: float | None = None
    eta_at: float = 0.0
    renamed: dict[str, str] = field(default_factory=dict)  # job-folder path -> delivered path

    @property
    def job_id(self) -> str:
        return self.job["job_id"]


_LIVE_CLIENTS: "weakref.WeakSet[WorkerClient]" = weakref.WeakSet()


@atexit.register
def _kill_workers_at_exit() -> None:
    for client in list(_LIVE_CLIENTS):
        client.close(wait_s=0.0)


# ---------------------------------------------------------------------------- the client
class WorkerClient:
    """Starts the worker, follows one job at a time, delivers its output or reports why not.

    Args:
        launcher: ``launcher(worker_args, env) -> Popen``; default :func:`default_launcher`.
        persistent: keep one ``--serve`` worker (and its loaded model) between jobs.
        dummy: run the worker's numpy-only fake synthesis (``--dummy``; self-tests, no torch).
        dummy_seconds: how long the dummy inference lasts.
        worker_args: extra worker options (e.g. ``["--dummy-spawn-child"]`` in tests).
        threads: OMP/MKL threads of the worker (default: physical cores).
        work_root: where job folders are made (default: the system temp folder).
        log_lines: how many plain log lines to keep for error reports.

    Not thread-safe: call it from one thread (a GUI timer, or the CLI's main thread).
    """

    def __init__(self, launcher: Launcher | None = None, *, persistent: bool = False, dummy: bool = False,
                 dummy_seconds: float = 0.0, worker_args: Sequence[str] = (), threads: int | None = None,
                 work_root: str | os.PathLike | None = None, log_lines: int = 200) -> None:
        self._launcher = launcher or default_launcher()
        self.persistent = persistent
        self._worker_args = [*(["--serve"] if persistent else []),
                             *(["--dummy", "--dummy-seconds", str(dummy_seconds)] if dummy else []), *worker_args]
        self._threads = threads
        self._work_root = Path(work_root) if work_root else Path(tempfile.gettempdir())
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._proc: _WorkerProcess | None = None
        self._job: _RunningJob | None = None
        self._pending: list[Event] = []
        self.hello: dict[str, Any] | None = None
        self.outcome: JobOutcome | None = None
        _LIVE_CLIENTS.add(self)

    # -------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        """True while a job is started and not yet ended (call poll() or wait() to advance)."""
        return self._job is not None

    @property
    def worker_pid(self) -> int | None:
        """PID of the launched process (with Slicer's launcher: the launcher, parent of the worker)."""
        return self._proc.popen.pid if self._proc else None

    @property
    def overall_fraction(self) -> float:
        return self._job.fraction if self._job else (1.0 if self.outcome and self.outcome.ok else 0.0)

    @property
    def eta_s(self) -> float | None:
        return self._job.eta_s if self._job else None

    @property
    def log_tail(self) -> list[str]:
        return list(self._log)

    # -------------------------------------------------------------- starting
    def start(self, job: Mapping[str, Any]) -> str:
        """Start ``job`` (a dict as ``protocol.make_job`` builds) and return its job id.

        Raises JobError when a job is already running or the job is malformed, OutputError when
        the output folder cannot be written, WorkerError when the worker cannot be launched.
        """
        if self._job is not None:
            raise JobError("a job is already running; cancel it or wait.", code="job_running")
        job = protocol.validate_job(dict(job))
        job["input"] = os.path.abspath(job["input"])
        job["output"] = os.path.abspath(job["output"])
        if job["options"]["uncertainty_output"]:
            job["options"]["uncertainty_output"] = os.path.abspath(job["options"]["uncertainty_output"])
        if job["job_id"] == "job":
            job["job_id"] = os.urandom(6).hex()
        for final in (job["output"], job["options"]["uncertainty_output"]):
            if final:
                _require_writable_folder(Path(final).parent)

        _remove_stale_job_folders(self._work_root)
        folder = Path(tempfile.mkdtemp(prefix=JOB_FOLDER_PREFIX, dir=self._work_root))
        (folder / "owner.pid").write_text(str(os.getpid()))
        worker_job = {**job, "output": str(folder / "out" / Path(job["output"]).name), "options": dict(job["options"])}
        if job["options"]["uncertainty_output"]:
            worker_job["options"]["uncertainty_output"] = str(folder / "unc" / Path(job["options"]["uncertainty_output"]).name)
        weights = stage_weights(uncertainty=bool(job["options"]["uncertainty_output"]))

        self._log.clear()
        try:
            proc = self._worker_for(job["device"])
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._job = _RunningJob(job=job, worker_job=worker_job, folder=folder, started=time.monotonic(),
                                weights=weights)
        self.outcome = None
        proc.send(protocol.job_line(worker_job), close=not self.persistent)
        return job["job_id"]

    def _worker_for(self, device: str) -> _WorkerProcess:
        env = worker_environment(device, self._threads)
        env_key = (env.get("CUDA_VISIBLE_DEVICES"), env.get("OMP_NUM_THREADS"))
        proc = self._proc
        if proc is not None and proc.env_key == env_key and proc.popen.poll() is None:
            return proc
        if proc is not None:
            proc.kill()
        self._proc = None
        self.hello = None
        try:
            popen = self._launcher(list(self._worker_args), env)
        except OSError as error:
            raise WorkerError(f"the worker could not be started ({error}); check the Python the launcher runs.",
                              code="worker_not_started") from None
        self._proc = _WorkerProcess(popen, env_key)
        return self._proc

    # -------------------------------------------------------------- following
    def poll(self) -> list[Event]:
        """Events since the last call (never blocks); the job's last event has type ``end``."""
        events, self._pending = self._pending, []
        proc = self._proc
        while proc is not None:
            try:
                item = proc.lines.get_nowait()
            except queue.Empty:
                break
            events += self._handle(proc, item)
        events += self._check_exit()
        return events

    def wait(self, timeout: float | None = None, on_event: Callable[[Event], None] | None = None) -> JobOutcome:
        """Block until the job ends and return its outcome; ``on_event`` sees every event.

        Raises TimeoutError after ``timeout`` seconds (the job keeps running), JobError when no
        job was ever started.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for event in self.poll():
                if on_event:
                    on_event(event)
            if self._job is None:
                if self.outcome is None:
                    raise JobError("no job was started; call start() first.", code="no_job")
                return self.outcome
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {self._job.job_id} still running after {timeout:g} s")
            proc = self._proc
            if proc is not None:
                try:
                    item = proc.lines.get(timeout=min(0.05, remaining) if remaining is not None else 0.05)
                except queue.Empty:
                    continue
                self._pending += self._handle(proc, item)
            else:
                time.sleep(0.01)

    def run(self, job: Mapping[str, Any], on_event: Callable[[Event], None] | None = None,
            timeout: float | None = None) -> JobOutcome:
        """Start ``job`` and wait for it; on timeout or Ctrl-C the job is cancelled (and Ctrl-C re-raised)."""
        self.start(job)
        try:
            return self.wait(timeout, on_event)
        except TimeoutError:
            outcome = self.cancel(f"timed out after {timeout:g} s")
            for event in self.poll():
                if on_event:
                    on_event(event)
            return outcome  # type: ignore[return-value]
        except BaseException:
            self.cancel("interrupted")
            raise

    def cancel(self, reason: str = "cancelled by the user") -> JobOutcome | None:
        """Kill the worker's whole process tree, remove the job folder; the outcome is ``cancelled``.

        Returns once the processes are gone (at most about 2 s). Without a running job, returns
        the last outcome and does nothing.
        """
        job = self._job
        if job is None:
            return self.outcome
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        return self._end(JobOutcome(job_id=job.job_id, status="cancelled", cancel_reason=reason))

    def close(self, wait_s: float = 5.0) -> None:
        """Cancel a running job and stop the worker (a persistent one gets EOF, then is killed)."""
        if self._job is not None:
            self.cancel("client closed")
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.popen.poll() is None and wait_s > 0:
            try:
                proc.popen.stdin.close()
                proc.popen.wait(timeout=wait_s)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        proc.kill()

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------- message handling
    def _handle(self, proc: _WorkerProcess, item: tuple[str, str | None]) -> list[Event]:
        stream, text = item
        if text is None:
            proc.open_streams -= 1
            return []
        job = self._job
        message = protocol.decode_line(text)
        if message is None:
            self._log.append(text)
            return [Event("log", {"line": text, "stream": stream}, job.job_id if job else None)]
        kind = message["type"]
        if kind == "hello":
            self.hello = message
            return [Event("hello", message)]
        if job is None or message.get("job_id") not in (None, job.job_id) or proc is not self._proc:
            return []  # a late message of a finished or cancelled job
        if kind in ("stage", "progress"):
            total = int(message.get("total", 1))
            self._advance(job, message["stage"], int(message.get("done", 0)), total)
        elif kind == "result":
            job.result = message
        elif kind == "error":
            job.error = {k: v for k, v in message.items() if k not in ("type", "job_id")}
        events = [Event(kind, message, job.job_id, job.fraction, job.eta_s)]
        if self.persistent and kind in ("result", "error"):
            events += self._finish(process_exit=None)
        return events

    def _advance(self, job: _RunningJob, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        job.fraction = max(job.fraction, overall_fraction(stage, done, total, job.weights))
        elapsed = now - job.started
        if job.fraction >= 0.02 and elapsed > 0:
            estimate = elapsed * (1.0 - job.fraction) / job.fraction
            if job.eta_s is None:
                job.eta_s = estimate
            else:
                predicted = max(0.0, job.eta_s - (now - job.eta_at))
                job.eta_s = (1 - ETA_SMOOTHING) * predicted + ETA_SMOOTHING * estimate
            job.eta_at = now

    def _check_exit(self) -> list[Event]:
        proc = self._proc
        if self._job is None or proc is None:
            return []
        code = proc.popen.poll()
        if code is None:
            return []
        now = time.monotonic()
        if proc.exited_at is None:
            proc.exited_at = now
        if proc.open_streams > 0 and now - proc.exited_at < EXIT_GRACE_S:
            return []  # let the last lines arrive
        events: list[Event] = []
        while self._job is not None:
            try:
                item = proc.lines.get_nowait()
            except queue.Empty:
                break
            events += self._handle(proc, item)
        if self._job is not None:
            events += self._finish(process_exit=code)
        return events

    # -------------------------------------------------------------- ending
    def _finish(self, process_exit: int | None) -> list[Event]:
        """End the job from what the worker said and how it exited; deliver the output if earned."""
        job = self._job
        assert job is not None
        if process_exit is not None and self._proc is not None:
            self._proc.kill()  # leftover descendants (and pipes) of a worker that has ended
            self._proc = None
        outcome = JobOutcome(job_id=job.job_id, status="error", process_exit=process_exit)
        healthy_exit = process_exit == 0 or (self.persistent and process_exit is None)
        if job.result is not None and healthy_exit:
            try:
                outcome.output_path = self._deliver(job)
                outcome.status, outcome.result = "ok", _final_result(job)
            except UserError as error:
                outcome.error = error.to_dict()
        elif job.error is not None:
            outcome.error = job.error
        else:
            how = _describe_exit(process_exit)
            what = "reported a result but" if job.result is not None else "ended"
            outcome.error = WorkerError(
                f"the worker process {what} {how} before the job was complete (a crash, a kill, or the system "
                "running out of memory); nothing was written, see the last log lines.").to_dict()
            outcome.error["process_exit"] = process_exit
        return [self._end(outcome, emit=False)]

    def _end(self, outcome: JobOutcome, emit: bool = True) -> Any:
        job = self._job
        assert job is not None
        shutil.rmtree(job.folder, ignore_errors=True)
        outcome.log_tail = list(self._log)
        outcome.elapsed_s = time.monotonic() - job.started
        if outcome.ok:
            job.fraction = 1.0
        self._job = None
        self.outcome = outcome
        event = Event("end", outcome.to_dict(), job.job_id, job.fraction, 0.0 if outcome.ok else None)
        if emit:
            self._pending.append(event)
            return outcome
        return event

    def _deliver(self, job: _RunningJob) -> Path:
        """Verify every reported file's SHA-256, then move them into place, the main output last.

        JSON files beside the output (the provenance) name the job-folder paths the worker
        wrote; they are rewritten to name the delivered paths.
        """
        result = job.result or {}
        main = Path(result.get("output", "")).resolve()
        files = result.get("files") or [{"path": result.get("output"), "sha256": result.get("sha256")}]
        moves = []
        for item in files:
            source = Path(str(item.get("path"))).resolve()
            destination = self._final_path(job, source)
            if not source.is_file() or file_sha256(source) != item.get("sha256"):
                raise WorkerError(
                    f"the worker's output {source.name} is missing or does not match the SHA-256 it reported; "
                    "nothing was delivered.", code="checksum_mismatch")
            moves.append((source == main, source, destination))
            job.renamed[str(item.get("path"))] = job.renamed[str(source)] = str(destination)
        if not any(is_main for is_main, _, _ in moves):
            raise WorkerError("the worker's result does not list its main output; nothing was delivered.",
                              code="protocol_error")
        for _, source, destination in sorted(moves, key=lambda move: move[0]):
            if source.suffix == ".json":
                _rewrite_json_paths(source, job.renamed)
            _move_into_place(source, destination)
        return Path(job.job["output"])

    def _final_path(self, job: _RunningJob, source: Path) -> Path:
        folder = job.folder.resolve()
        try:
            part, *rest = source.relative_to(folder).parts
        except ValueError:
            raise WorkerError(f"the worker wrote {source} outside its job folder; nothing was delivered.",
                              code="protocol_error") from None
        target = job.job["output"] if part == "out" else job.job["options"]["uncertainty_output"]
        if part not in ("out", "unc") or not rest or not target:
            raise WorkerError(f"the worker reported an unexpected file {source.name}; nothing was delivered.",
                              code="protocol_error")
        return Path(target).parent.joinpath(*rest)


def _final_result(job: _RunningJob) -> dict[str, Any]:
    """The worker's result with the delivered paths in place of the job-folder ones."""
    result = _replace_paths({k: v for k, v in (job.result or {}).items() if k != "type"}, job.renamed)
    result["output"] = job.job["output"]
    result["uncertainty_output"] = job.job["options"]["uncertainty_output"]
    return result


def _replace_paths(value: Any, renamed: Mapping[str, str]) -> Any:
    """``value`` (JSON-like) with every string equal to a key of ``renamed`` replaced by its value."""
    if isinstance(value, str):
        return renamed.get(value, value)
    if isinstance(value, dict):
        return {k: _replace_paths(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_paths(v, renamed) for v in value]
    return value


def _rewrite_json_paths(path: Path, renamed: Mapping[str, str]) -> None:
    """Rewrite a (verified) JSON file in the job folder so that it names the delivered paths."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return  # not JSON after all: deliver it as it is
    updated = _replace_paths(data, renamed)
    if updated != data:
        path.write_text(json.dumps(updated, indent=2) + "\n", encoding="utf-8")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "without an exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"with exit code {code}"


def _require_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"output folder {folder} cannot be created ({error.strerror}); choose a writable folder.",
                          code="output_not_writable") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable; choose a writable folder.",
                          code="output_not_writable")


def _move_into_place(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination`` (atomic); across file systems copy to a temp name first."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, destination)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            with atomic_path(destination) as tmp:
                shutil.copyfile(source, tmp)
    except OSError as error:
        raise OutputError(f"output {destination} cannot be written ({error.strerror}); choose a writable folder.",
                          code="output_not_writable") from None


def _remove_stale_job_folders(root: Path) -> None:
    """Remove job folders left by clients that died (their ``owner.pid`` is not running)."""
    import psutil

    try:
        candidates = list(root.glob(JOB_FOLDER_PREFIX + "*"))
    except OSError:
        return
    for folder in candidates:
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not psutil.pid_exists(owner):
            shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- CLI / batch helper
def run_synthesis_job(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    model_id: str | None = None,
    device: str = "auto",
    uncertainty_path: str | os.PathLike | None = None,
    overlap: float | None = None,
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str, str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    client: WorkerClient | None = None,
    launcher: Launcher | None = None,
    dummy: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Synthesize ``input_path`` into ``output_path`` in a background worker; returns the result.

    The blocking path the CLI and batch code use (Slicer uses the same client, polling). The
    arguments mirror ``synthesis.synthesize_file``; ``progress(stage, done, total)``,
    ``on_warning(code, message)`` and ``on_log(line)`` are called as events arrive. Pass a
    persistent ``client`` to keep the model loaded across calls.

    Returns the worker's ``result`` fields (``output`` = ``output_path``, ``sha256``,
    ``model``, ``device``, ``timings``, ``provenance``...). Raises the UserError subclass of the
    failure (InputError, ModelError, JobError, OutOfMemoryError, NoGPUError, OutputError; a
    crash is WorkerError), JobCancelled on timeout; Ctrl-C cancels the job and propagates.
    """
    job = protocol.make_job(input_path, output_path, model_id=model_id, device=device,
                            uncertainty_output=uncertainty_path, overlap=overlap, series_uid=series_uid)

    def on_event(event: Event) -> None:
        if event.type == "progress" and progress:
            progress(event.data["stage"], event.data["done"], event.data["total"])
        elif event.type == "warning" and on_warning:
            on_warning(event.data["code"], event.data["message"])
        elif event.type == "log" and on_log:
            on_log(event.data["line"])

    own = client is None
    client = client or WorkerClient(launcher, dummy=dummy)
    try:
        outcome = client.run(job, on_event=on_event, timeout=timeout_s)
    finally:
        if own:
            client.close()
    outcome.raise_for_error()
    return outcome.result or {}
