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
import os
import queue
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import JobError, UserError
from DigitalContrastLib.common.progress import STAGES, ProgressCallback, overall_fraction
from DigitalContrastLib.synthesis.options import SynthesisOptions

from . import protocol
from .client_base import JobClientBase
from .delivery import (
    JOB_FOLDER_PREFIX,
    RunningJob,
    deliver,
    final_result,
    remove_stale_job_folders,
    require_writable_folder,
)
from .outcome import Event, JobOutcome, WorkerError, describe_exit
from .process import EXIT_GRACE_S, Launcher, WorkerProcess, default_launcher, reap, worker_environment

#: Weight of a new ETA estimate in the running average.
ETA_SMOOTHING = 0.3


def stage_weights(uncertainty: bool = False) -> dict[str, float]:
    """Stage shares of a worker job, in the order the worker reports them.

    The worker loads (or reuses) the model before reading the input, so ``model`` comes first.
    Flip test-time augmentation runs the network 3 more times: ``uncertainty`` then weighs
    3 times ``inference`` (0 without it).
    """
    weights = {"model": STAGES["model"], **{k: v for k, v in STAGES.items() if k != "model"}}
    weights["uncertainty"] = 3 * STAGES["inference"] if uncertainty else 0.0
    return weights


_LIVE_CLIENTS: "weakref.WeakSet[WorkerClient]" = weakref.WeakSet()


@atexit.register
def _kill_workers_at_exit() -> None:
    for client in list(_LIVE_CLIENTS):
        client.close(wait_s=0.0)


# ---------------------------------------------------------------------------- the client
class WorkerClient(JobClientBase):
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
        verify_outputs: check each delivered file's SHA-256 here (default). A caller that reads the
            output and checks the hash the result reports itself (the Slicer logic, a slab per GUI
            tick) turns it off: hashing 150 MB at once would hold a GUI thread.
        env: extra environment variables of the worker (the relay's token: never on a command line).

    Not thread-safe: call it from one thread (a GUI timer, or the CLI's main thread).
    """

    def __init__(self, launcher: Launcher | None = None, *, persistent: bool = False, dummy: bool = False,
                 dummy_seconds: float = 0.0, worker_args: Sequence[str] = (), threads: int | None = None,
                 work_root: str | os.PathLike | None = None, log_lines: int = 200, verify_outputs: bool = True,
                 env: Mapping[str, str] | None = None) -> None:
        self._launcher = launcher or default_launcher()
        self._extra_env = dict(env or {})
        self.persistent = persistent
        self._worker_args = [*(["--serve"] if persistent else []),
                             *(["--dummy", "--dummy-seconds", str(dummy_seconds)] if dummy else []), *worker_args]
        self._threads = threads
        self.work_root = Path(work_root) if work_root else Path(tempfile.gettempdir())
        self.verify_outputs = verify_outputs
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._proc: WorkerProcess | None = None
        self._job: RunningJob | None = None
        self._pending: list[Event] = []
        self._dying: list[WorkerProcess] = []  # killed without waiting, not yet reaped
        self.hello: dict[str, Any] | None = None
        self.outcome: JobOutcome | None = None
        _LIVE_CLIENTS.add(self)

    # -------------------------------------------------------------- state
    @property
    def worker_pid(self) -> int | None:
        """PID of the launched process (with Slicer's launcher: the launcher, parent of the worker)."""
        return self._proc.popen.pid if self._proc else None

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
                require_writable_folder(Path(final).parent)

        remove_stale_job_folders(self.work_root)
        folder = Path(tempfile.mkdtemp(prefix=JOB_FOLDER_PREFIX, dir=self.work_root))
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
        self._job = RunningJob(job=job, worker_job=worker_job, folder=folder, started=time.monotonic(),
                                weights=weights)
        self.outcome = None
        proc.send(protocol.job_line(worker_job), close=not self.persistent)
        return job["job_id"]

    def _worker_for(self, device: str) -> WorkerProcess:
        env = {**worker_environment(device, self._threads), **self._extra_env}
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
        self._proc = WorkerProcess(popen, env_key)
        return self._proc

    # -------------------------------------------------------------- following
    def poll(self) -> list[Event]:
        """Events since the last call (never blocks); the job's last event has type ``end``."""
        events, self._pending = self._pending, []
        self._dying = [dying for dying in self._dying if not reap(dying.popen)]
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

    def cancel(self, reason: str = "cancelled by the user", wait: bool = True) -> JobOutcome | None:
        """Kill the worker's whole process tree, remove the job folder; the outcome is ``cancelled``.

        Returns once the processes are gone (at most about 2 s); with ``wait=False`` (a GUI thread)
        it returns as soon as the kills are sent, and :meth:`poll` or :meth:`close` reaps the
        processes later. Without a running job, returns the last outcome and does nothing.
        """
        job = self._job
        if job is None:
            return self.outcome
        if self._proc is not None:
            self._proc.kill(wait=wait)
            if not wait:
                self._dying.append(self._proc)
            self._proc = None
        return self._end(JobOutcome(job_id=job.job_id, status="cancelled", cancel_reason=reason))

    def close(self, wait_s: float = 5.0) -> None:
        """Cancel a running job and stop the worker (a persistent one gets EOF, then is killed)."""
        if self._job is not None:
            self.cancel("client closed")
        for dying in self._dying:
            dying.kill()
        self._dying = []
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

    # -------------------------------------------------------------- message handling
    def _handle(self, proc: WorkerProcess, item: tuple[str, str | None]) -> list[Event]:
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
            self._advance(job, message["stage"], int(message.get("done", 0)), total, message.get("overall_fraction"))
        elif kind == "result":
            job.result = message
        elif kind == "error":
            job.error = {k: v for k, v in message.items() if k not in ("type", "job_id")}
        events = [Event(kind, message, job.job_id, job.fraction, job.eta_s)]
        if self.persistent and kind in ("result", "error"):
            events += self._finish(process_exit=None)
        return events

    def _advance(self, job: RunningJob, stage: str, done: int, total: int, fraction: float | None = None) -> None:
        """``fraction``: the overall fraction a relay reports (a remote job's stages include upload and download)."""
        now = time.monotonic()
        if fraction is None:
            fraction = overall_fraction(stage, done, total, job.weights)
        job.fraction = max(job.fraction, min(1.0, float(fraction)))
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
                outcome.output_path = deliver(job, verify=self.verify_outputs)
                outcome.status, outcome.result = "ok", final_result(job)
            except UserError as error:
                outcome.error = error.to_dict()
        elif job.error is not None:
            outcome.error = job.error
        else:
            how = describe_exit(process_exit)
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



# ---------------------------------------------------------------------------- CLI / batch helper
def run_synthesis_job(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: SynthesisOptions = SynthesisOptions(),
    *,
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
    persistent ``client`` to keep the model loaded across calls, or a
    :class:`~.remote_client.RemoteWorkerClient` to run on a synthesis service.

    Returns the worker's ``result`` fields (``output`` = ``output_path``, ``sha256``,
    ``model``, ``device``, ``timings``, ``provenance``...). Raises the UserError subclass of the
    failure (InputError, ModelError, JobError, OutOfMemoryError, NoGPUError, OutputError; a
    crash is WorkerError), JobCancelled on timeout; Ctrl-C cancels the job and propagates.
    """
    job = protocol.make_job(input_path, output_path, options)

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
