"""A synthesis service (``digital-contrast serve``) as a drop-in for :class:`~.client.WorkerClient`.

Same interface, same events, same :class:`~.outcome.JobOutcome`, so the Slicer logic, the CLI and
the cohort evaluation run remotely by swapping the client::

    from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

    client = RemoteWorkerClient("https://gpu1.example.org", token)   # token: DIGITAL_CONTRAST_TOKEN if None
    client.start(make_job("ncct.nrrd", "synthetic.nrrd"))              # returns at once
    while client.running:
        for event in client.poll():                                    # never blocks
            ...
    client.outcome.raise_for_error()

What happens to a job (all of it in one background thread per job; ``start``, ``poll`` and
``cancel(wait=False)`` never wait on the network, so a GUI timer can drive it):

1. the input is uploaded: a file as it is, a DICOM folder as a zip of its series;
2. the server's event stream is followed (server-sent events); a dropped connection is resumed from
   the last event seen, for up to ``retry_s`` seconds; the job goes on on the server regardless;
3. once the server's job ended ``ok``, the synthetic volume (and the uncertainty map) are downloaded
   beside the requested paths, checked against the SHA-256 the server reported, and renamed into
   place, the main output last, with the provenance JSON (``<output>.json``) naming the local paths
   and the server (``provenance["server"]``: URL, job id, device, worker). A failed, cancelled or
   interrupted job leaves nothing at the output paths.

:meth:`attach` follows a job submitted earlier (by id), so a client that disconnected reattaches.
``cancel`` asks the server to cancel (its worker is killed). The job's ``device`` is the server's
choice (``serve --device``); ``provenance["device"]`` says where it ran.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import temporary_sibling
from DigitalContrastLib.common.errors import JobError, UserError

from . import protocol
from .client_base import JobClientBase
from .delivery import move_into_place, require_writable_folder
from .outcome import Event, JobOutcome, WorkerError
from .remote_http import CHUNK_BYTES, TOKEN_ENV, Cancelled, ServerConnection, server_sent_events, unreachable

__all__ = ["RemoteWorkerClient", "TOKEN_ENV"]


class _RemoteJob:
    """One job as the client follows it (shared by the caller's thread and the job's thread)."""

    def __init__(self, job: dict[str, Any], server_id: str | None = None) -> None:
        self.job = job
        self.server_id = server_id
        self.cancelled = threading.Event()
        self.started = time.monotonic()
        self.fraction = 0.0
        self.eta_s: float | None = None
        self.hello: dict[str, Any] | None = None
        self.worker: dict[str, Any] | None = None
        self.sha256: dict[str, str] = {}  # the downloaded files' SHA-256 by their local path

    @property
    def job_id(self) -> str:
        return self.job["job_id"]


class RemoteWorkerClient(JobClientBase):
    """Runs jobs on a synthesis service; the interface of :class:`~.client.WorkerClient`.

    Args:
        url: the service (``https://host`` behind its TLS proxy; ``http://127.0.0.1:8700`` on loopback).
        token: the bearer token; None reads ``DIGITAL_CONTRAST_TOKEN``.
        timeout_s: socket timeout of one request.
        retry_s: how long a lost event stream is retried before the job is given up locally.
        log_lines: plain lines kept for error reports (``log_tail``).

    Not thread-safe: call it from one thread (a GUI timer, or the CLI's main thread).
    """

    persistent = True  # the server keeps its models loaded between jobs

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 60.0, retry_s: float = 120.0,
                 log_lines: int = 200) -> None:
        self.connection = ServerConnection(url, token if token is not None else os.environ.get(TOKEN_ENV),
                                           timeout_s)
        self.retry_s = retry_s
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._items: queue.Queue = queue.Queue()
        self._job: _RemoteJob | None = None
        self._pending: list[Event] = []
        self.hello: dict[str, Any] | None = None
        self.outcome: JobOutcome | None = None

    @property
    def url(self) -> str:
        return self.connection.url

    # -------------------------------------------------------------- the server
    def health(self) -> dict[str, Any]:
        """The server's ``/v1/health``: device, queue length, workers and their loaded models (blocking)."""
        return self.connection.json("GET", "/v1/health", timeout_s=10.0)

    def models(self) -> dict[str, Any]:
        """The server's models with their cards (blocking; checks the token: 401 raises JobError)."""
        return self.connection.json("GET", "/v1/models", timeout_s=10.0)

    # -------------------------------------------------------------- state
    @property
    def server_job_id(self) -> str | None:
        return self._job.server_id if self._job else (self.outcome.result or {}).get("server", {}).get("job_id") \
            if self.outcome and self.outcome.result else None

    @property
    def worker_pid(self) -> int | None:
        return None  # the worker runs on the server

    # -------------------------------------------------------------- starting
    def start(self, job: Mapping[str, Any]) -> str:
        """Start ``job`` (``protocol.make_job``'s dict: local input and output paths) and return its id at once.

        Raises JobError when a job is running or the job is malformed, OutputError when the output
        folder cannot be written. The upload and everything after happen in the background.
        """
        job = self._checked(job)
        if not Path(job["input"]).exists():
            raise JobError(f"{job['input']} does not exist; check the path.", code="not_found")
        return self._begin(_RemoteJob(job))

    def attach(self, server_job_id: str, output: str | os.PathLike,
               uncertainty_output: str | os.PathLike | None = None) -> str:
        """Follow a job submitted earlier (reattach by its server id); its result goes to ``output``."""
        job = self._checked({"job_id": server_job_id, "input": "(on the server)", "output": os.fspath(output),
                             "options": {"uncertainty_output": os.fspath(uncertainty_output)
                                         if uncertainty_output else None}})
        return self._begin(_RemoteJob(job, server_id=server_job_id))

    def _checked(self, job: Mapping[str, Any]) -> dict[str, Any]:
        if self._job is not None:
            raise JobError("a job is already running; cancel it or wait.", code="job_running")
        job = protocol.validate_job(dict(job))
        job["output"] = os.path.abspath(job["output"])
        if job["options"]["uncertainty_output"]:
            job["options"]["uncertainty_output"] = os.path.abspath(job["options"]["uncertainty_output"])
        if job["job_id"] == "job":
            job["job_id"] = os.urandom(6).hex()
        for final in (job["output"], job["options"]["uncertainty_output"]):
            if final:
                require_writable_folder(Path(final).parent)
        return job

    def _begin(self, remote: _RemoteJob) -> str:
        self._log.clear()
        self._job, self.outcome = remote, None
        threading.Thread(target=self._follow, args=(remote,), daemon=True,
                         name=f"dc-remote-{remote.job_id}").start()
        return remote.job_id

    # -------------------------------------------------------------- following (caller's thread)
    def poll(self) -> list[Event]:
        """Events since the last call (never blocks); the job's last event has type ``end``."""
        events, self._pending = self._pending, []
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                return events
            events += self._take(item)

    def _take(self, item: tuple[_RemoteJob, Any]) -> list[Event]:
        remote, payload = item
        if remote is not self._job:
            return []  # a late item of a job that ended or was cancelled
        if isinstance(payload, JobOutcome):
            return [self._end(payload, emit=False)]
        event: Event = payload
        if event.type == "log":
            self._log.append(event.data["line"])
        elif event.type == "hello":
            self.hello = event.data
        return [event]

    def wait(self, timeout: float | None = None, on_event: Callable[[Event], None] | None = None) -> JobOutcome:
        """Block until the job ends and return its outcome (TimeoutError after ``timeout``; the job goes on)."""
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
            try:
                item = self._items.get(timeout=0.05 if remaining is None else max(0.0, min(0.05, remaining)))
            except queue.Empty:
                continue
            self._pending += self._take(item)

    def cancel(self, reason: str = "cancelled by the user", wait: bool = True) -> JobOutcome | None:
        """Cancel the job on the server (its worker is killed) and here; the outcome is ``cancelled``.

        ``wait=True`` returns once the server confirmed (a few seconds at most); ``wait=False`` sends the
        cancel from a background thread and returns at once.
        """
        remote = self._job
        if remote is None:
            return self.outcome
        remote.cancelled.set()
        if remote.server_id:
            if wait:
                self._cancel_on_server(remote)
            else:
                threading.Thread(target=self._cancel_on_server, args=(remote,), daemon=True).start()
        return self._end(JobOutcome(job_id=remote.job_id, status="cancelled", cancel_reason=reason))

    def close(self, wait_s: float = 5.0) -> None:
        """Cancel a running job; nothing else to stop (the server keeps its workers)."""
        if self._job is not None:
            self.cancel("client closed", wait=wait_s > 0)

    def _end(self, outcome: JobOutcome, emit: bool = True) -> Any:
        remote = self._job
        assert remote is not None
        outcome.log_tail = outcome.log_tail or list(self._log)
        outcome.elapsed_s = time.monotonic() - remote.started
        if outcome.ok:
            remote.fraction = 1.0
        self._job, self.outcome = None, outcome
        event = Event("end", outcome.to_dict(), remote.job_id, remote.fraction, 0.0 if outcome.ok else None)
        if emit:
            self._pending.append(event)
            return outcome
        return event

    # -------------------------------------------------------------- the job's thread
    def _put(self, remote: _RemoteJob, payload: Any) -> None:
        if not remote.cancelled.is_set():
            self._items.put((remote, payload))

    def _log_line(self, remote: _RemoteJob, line: str) -> None:
        self._put(remote, Event("log", {"line": line, "stream": "client"}, remote.job_id))

    def _follow(self, remote: _RemoteJob) -> None:
        try:
            if remote.server_id is None:
                self._submit(remote)
            end = self._stream(remote)
            if remote.cancelled.is_set():
                return
            outcome = self._outcome_of(remote, end)
        except Cancelled:
            return
        except UserError as error:
            outcome = JobOutcome(job_id=remote.job_id, status="error", error=error.to_dict())
        except Exception as error:  # noqa: BLE001 - a bug here must end the job, not hang it
            outcome = JobOutcome(job_id=remote.job_id, status="error", error=WorkerError(
                f"internal error of the remote client (a bug): {type(error).__name__}: {error}").to_dict())
        self._put(remote, outcome)

    def _cancel_on_server(self, remote: _RemoteJob) -> None:
        try:
            self.connection.json("POST", f"/v1/jobs/{remote.server_id}/cancel", timeout_s=15.0)
        except UserError:
            pass  # ended or gone already; the server's retention removes what is left

    def _submit(self, remote: _RemoteJob) -> None:
        """Upload the input (a file, or a DICOM folder zipped) with the options; remember the server's id."""
        job = remote.job
        source = Path(job["input"])
        scratch = None
        try:
            if source.is_dir():
                scratch = Path(tempfile.mkdtemp(prefix="dc-remote-"))
                upload, filename = scratch / "series.zip", source.name + ".zip"
                self._log_line(remote, f"zipping the DICOM folder {source} for upload")
                with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as zipped:
                    for path in sorted(p for p in source.rglob("*") if p.is_file()):
                        zipped.write(path, path.relative_to(source).as_posix())
            else:
                upload, filename = source, source.name
            options = job["options"]
            query = {"filename": filename, "model": job.get("model_id"), "overlap": options.get("overlap"),
                     "uncertainty": bool(options.get("uncertainty_output")), "series": options.get("series_uid"),
                     "backend": options.get("backend") or "auto"}
            size = upload.stat().st_size
            total_mib = max(1, -(-size // CHUNK_BYTES))
            self._put(remote, Event("stage", {"stage": "upload", "job_id": remote.job_id}, remote.job_id, 0.0))

            def sent(count: int) -> None:  # the CLI's bar and a GUI show the upload as it goes, in MiB
                self._put(remote, Event("progress", {"stage": "upload", "done": -(-count // CHUNK_BYTES),
                                                     "total": total_mib, "job_id": remote.job_id}, remote.job_id, 0.0))

            with open(upload, "rb") as handle:
                response = self.connection.open("POST", "/v1/jobs", query=query, upload=handle, upload_size=size,
                                                cancelled=remote.cancelled.is_set, on_sent=sent)
                status = json.loads(response.read())
                response.close()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        remote.server_id = status["id"]
        self._log_line(remote, f"job {remote.job_id} is job {remote.server_id} on {self.url}")
        if remote.cancelled.is_set():  # cancelled while the server answered: cancel there too
            self._cancel_on_server(remote)
            raise Cancelled()

    def _stream(self, remote: _RemoteJob) -> dict[str, Any]:
        """Follow the server's events to the job's end; returns the ``end`` event's data."""
        last_seq, lost_since = 0, None
        while not remote.cancelled.is_set():
            try:
                response = self.connection.open("GET", f"/v1/jobs/{remote.server_id}/events",
                                                query={"after": last_seq}, headers={"Accept": "text/event-stream"},
                                                timeout_s=max(30.0, self.connection.timeout_s))
                try:
                    for _id, _type, data in server_sent_events(response):
                        lost_since = None
                        event = json.loads(data)
                        last_seq = int(event["seq"])
                        if remote.cancelled.is_set():
                            raise Cancelled()
                        if event["type"] == "end":
                            return dict(event["data"])
                        self._relay(remote, event)
                finally:
                    response.close()
                error: BaseException = ConnectionError("the event stream ended before the job did")
            except WorkerError as failure:  # unreachable
                if failure.code != "server_unreachable":
                    raise
                error = failure
            except OSError as failure:  # a timeout or a reset while reading
                error = failure
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > self.retry_s:
                raise WorkerError(f"The connection to {self.url} was lost for {self.retry_s:g} s ({error}); the job "
                                  f"goes on there: reattach with its id {remote.server_id}.", code="server_lost")
            self._log_line(remote, f"event stream interrupted ({error}); resuming after event {last_seq}")
            time.sleep(1.0)
        raise Cancelled()

    def _relay(self, remote: _RemoteJob, event: dict[str, Any]) -> None:
        kind, data = event["type"], dict(event.get("data") or {})
        if event.get("overall_fraction") is not None:
            remote.fraction = max(remote.fraction, float(event["overall_fraction"]))
        remote.eta_s = event.get("eta_s")
        if kind == "hello":
            remote.hello = data
        elif kind == "started":
            remote.worker = data
        if kind in ("hello", "stage", "progress", "warning", "result", "error", "queued", "started"):
            if kind in ("stage", "progress", "warning", "result", "error"):
                data["job_id"] = remote.job_id
            self._put(remote, Event(kind, data, remote.job_id, remote.fraction, remote.eta_s))

    def _outcome_of(self, remote: _RemoteJob, end: dict[str, Any]) -> JobOutcome:
        status = end.get("status")
        if status == "ok":
            result = self._download(remote)
            return JobOutcome(job_id=remote.job_id, status="ok", output_path=Path(remote.job["output"]), result=result)
        if status == "cancelled":
            return JobOutcome(job_id=remote.job_id, status="cancelled",
                              cancel_reason=str(end.get("cancel_reason") or "cancelled on the server"))
        error = dict(end.get("error") or {"code": "failed", "exit_code": 1, "message": "the job failed on the server"})
        return JobOutcome(job_id=remote.job_id, status="error", error=error, log_tail=list(end.get("log_tail") or []))

    def _download(self, remote: _RemoteJob) -> dict[str, Any]:
        """Fetch the result files, verify them, write the provenance, move them into place (main output last)."""
        job, server_id = remote.job, remote.server_id
        status = self.connection.json("GET", f"/v1/jobs/{server_id}")
        result = dict(status.get("result") or {})
        output = Path(job["output"])
        uncertainty = job["options"]["uncertainty_output"]
        self._put(remote, Event("stage", {"stage": "download", "job_id": remote.job_id}, remote.job_id,
                                remote.fraction))
        staged: list[tuple[Path, Path]] = []
        try:
            if uncertainty:
                staged.append((self._fetch(remote, "uncertainty", Path(uncertainty)), Path(uncertainty)))
            staged.append((self._fetch(remote, "result", output), output))
            provenance = self.connection.json("GET", f"/v1/jobs/{server_id}/provenance")
            provenance["input"] = {**(provenance.get("input") or {}), "path": os.path.abspath(job["input"])
                                   if Path(job["input"]).exists() else (provenance.get("input") or {}).get("path")}
            provenance["output"] = {**(provenance.get("output") or {}), "path": str(output)}
            if uncertainty and isinstance(provenance.get("uncertainty"), dict):
                provenance["uncertainty"]["path"] = str(uncertainty)
            hello = remote.hello or {}
            provenance["server"] = {
                "url": self.url, "job_id": server_id, "device": provenance.get("device") or result.get("device"),
                "device_name": (hello.get("device") or {}).get("name"), "worker": remote.worker,
                "digital_contrast_version": (hello.get("packages") or {}).get("digital-contrast")}
            json_path = output.with_name(output.name + ".json")
            json_staged = temporary_sibling(json_path)
            provenance_text = json.dumps(provenance, indent=2) + "\n"
            json_staged.write_text(provenance_text, encoding="utf-8")
            remote.sha256[str(json_path)] = hashlib.sha256(provenance_text.encode("utf-8")).hexdigest()
            staged.insert(len(staged) - 1, (json_staged, json_path))
            if remote.cancelled.is_set():
                raise Cancelled()
            moved = []
            for source, destination in staged:  # the main output is last
                move_into_place(source, destination)
                moved.append(destination)
            staged = []
            if remote.cancelled.is_set():  # cancelled while the files moved: a cancelled job leaves nothing
                for path in moved:
                    path.unlink(missing_ok=True)
                raise Cancelled()
        finally:
            for source, _ in staged:
                source.unlink(missing_ok=True)
        files = [{"path": path, "sha256": sha256} for path, sha256 in remote.sha256.items()]
        return {**result, "job_id": remote.job_id, "output": str(output), "uncertainty_output": uncertainty,
                "files": files,  # as a local worker gives them: the local paths, hashed while downloading
                "provenance": provenance, "server": provenance["server"]}

    def _fetch(self, remote: _RemoteJob, route: str, destination: Path) -> Path:
        """Download ``/v1/jobs/<id>/<route>`` beside ``destination`` and check its SHA-256."""
        staged = temporary_sibling(destination)
        try:
            response = self.connection.open("GET", f"/v1/jobs/{remote.server_id}/{route}",
                                            headers={"Accept": "application/octet-stream"})
            expected = response.getheader("X-Content-SHA256")
            digest = hashlib.sha256()  # hashed as it arrives: the file is not read again
            try:
                with open(staged, "wb") as sink:
                    while chunk := response.read(CHUNK_BYTES):
                        if remote.cancelled.is_set():
                            raise Cancelled()
                        digest.update(chunk)
                        sink.write(chunk)
            except OSError as error:
                raise unreachable(self.url, error) from None
            finally:
                response.close()
            if expected and digest.hexdigest() != expected:
                raise WorkerError(f"The {route} downloaded from {self.url} does not match the SHA-256 the server "
                                  "reported; nothing was written.", code="checksum_mismatch")
            remote.sha256[str(destination)] = digest.hexdigest()
            return staged
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
