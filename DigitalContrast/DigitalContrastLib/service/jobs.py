"""The service's jobs: who owns each, what happened to it, and its folder on disk.

Each job lives in ``<data dir>/jobs/<job id>/``:

=====================  =====================================================================
``job.json``           its record (owner, options, status, result, error); no voxels
``upload.*``           the upload as received (removed as soon as the job ends)
``input/``             a zip's DICOM series, extracted (removed as soon as the job ends)
``dicom_meta.json``    the DICOM facts of a DICOM input (the export needs them)
``result/``            ``synthetic.nrrd``, its provenance ``synthetic.nrrd.json``, ``uncertainty.nrrd``
``dicom.zip``          the labelled synthetic DICOM series, made on the first request
=====================  =====================================================================

A job's events (the worker's ``hello``, ``stage``, ``progress``, ``warning``, ``result`` and
``error`` messages, the service's ``queued`` and ``started``, and ``end`` last) are numbered from 1
and kept in memory so that a client can reattach to the stream from any point. When the server
starts, a job left ``queued`` or ``running`` by the previous process is marked failed with code
``server_restarted``: never silently lost. A folder older than the retention time is deleted
whole (inputs, results and record).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import EXIT_INTERNAL

ACTIVE = ("queued", "running")
FINISHED = ("ok", "error", "cancelled")
RECORD_FILE = "job.json"
RESULT_NAME = "synthetic.nrrd"
UNCERTAINTY_NAME = "uncertainty.nrrd"


@dataclass
class ServiceJob:
    """One job of the service.

    Attributes:
        id: 16 hex digits (random: ids say nothing about other users' jobs).
        user: the owner (the token's user); nobody else sees the job.
        folder: the job's folder.
        input_name: the upload's file name as the client gave it (never a server path).
        input_path: the input the worker reads (a file, or the folder of a DICOM series).
        options: ``model_id`` (None: the default model), ``uncertainty`` (bool), ``overlap`` (None: the card's),
            ``series_uid``, ``backend`` (``auto``, ``torch`` or ``openvino``).
        status: ``queued``, ``running``, ``ok``, ``error`` or ``cancelled``.
        created, started, ended: UNIX times (s).
        stage, fraction, eta_s: the latest progress (fraction in [0, 1] of the whole job).
        worker: ``{"slot", "pid", "device"}`` of the worker that ran it.
        result: the public part of the worker's result (model, device, timings, SHA-256 of each file).
        error: ``{"code", "message", "exit_code"}`` (+ ``log_tail`` for a crash).
        gate_warnings: ``[{"code", "message"}]``: the warnings of the worker's input gate.
    """

    id: str
    user: str
    folder: Path
    input_name: str
    input_path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    stage: str | None = None
    fraction: float = 0.0
    eta_s: float | None = None
    worker: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    gate_warnings: list[dict[str, str]] = field(default_factory=list)
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    #: set once an ended job's files are final and its record saved (the 'end' event is the last step)
    settled: threading.Event = field(default_factory=threading.Event, repr=False)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def result_dir(self) -> Path:
        return self.folder / "result"

    def add_event(self, type_: str, data: dict[str, Any], fraction: float | None = None,
                  eta_s: float | None = None) -> dict[str, Any]:
        """Append one event (numbered from 1) and update the progress it carries."""
        with self._lock:
            if fraction is not None:
                self.fraction = max(self.fraction, float(fraction))
            if type_ in ("stage", "progress"):
                self.stage = data.get("stage", self.stage)
                self.eta_s = eta_s
            event = {"seq": len(self.events) + 1, "type": type_, "data": data, "job_id": self.id,
                     "overall_fraction": self.fraction, "eta_s": eta_s}
            self.events.append(event)
            return event

    def events_after(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[max(0, int(seq)):]

    def record(self) -> dict[str, Any]:
        """What ``job.json`` holds (and, less the paths, what the API shows)."""
        return {"id": self.id, "user": self.user, "input_name": self.input_name,
                "input_path": str(self.input_path) if self.input_path else None, "options": self.options,
                "status": self.status, "created": self.created, "started": self.started, "ended": self.ended,
                "stage": self.stage, "fraction": self.fraction, "worker": self.worker, "result": self.result,
                "error": self.error, "gate_warnings": self.gate_warnings}

    def save(self) -> None:
        atomic_write_text(self.folder / RECORD_FILE, json.dumps(self.record(), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "ServiceJob":
        data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        job = cls(id=str(data["id"]), user=str(data["user"]), folder=folder, input_name=str(data["input_name"]),
                  input_path=Path(data["input_path"]) if data.get("input_path") else None,
                  options=dict(data.get("options") or {}), status=str(data["status"]),
                  created=float(data["created"]), started=data.get("started"), ended=data.get("ended"),
                  stage=data.get("stage"), fraction=float(data.get("fraction") or 0.0), worker=data.get("worker"),
                  result=data.get("result"), error=data.get("error"), gate_warnings=list(data.get("gate_warnings") or []))
        return job

    def remove_inputs(self) -> None:
        """Delete what the client uploaded (the job no longer needs it)."""
        for path in self.folder.glob("upload*"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.folder / "input", ignore_errors=True)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


class JobIndex:
    """Every job of the service by id, restored from disk at start-up, swept by the retention policy."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, ServiceJob] = {}
        self._lock = threading.Lock()

    def restore(self) -> list[ServiceJob]:
        """Load the records a previous server left; its queued and running jobs become failed
        (``server_restarted``). Returns those jobs."""
        interrupted = []
        for folder in sorted(p for p in self.jobs_dir.iterdir() if p.is_dir()):
            try:
                job = ServiceJob.load(folder)
            except (OSError, ValueError, KeyError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)  # an upload that never became a job
                continue
            if job.status in ACTIVE:
                was = job.status
                job.status, job.ended = "error", time.time()
                job.error = {"code": "server_restarted", "exit_code": EXIT_INTERNAL,
                             "message": f"the server restarted while this job was {was}; submit it again."}
                job.remove_inputs()
                shutil.rmtree(job.result_dir, ignore_errors=True)
                job.save()
                interrupted.append(job)
            with self._lock:
                self._jobs[job.id] = job
        return interrupted

    def add(self, job: ServiceJob) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def get(self, job_id: str, user: str) -> ServiceJob | None:
        """The job, or None when it does not exist or belongs to someone else (the same answer)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.user == user else None

    def forget(self, job: ServiceJob) -> None:
        """Delete a job's folder and record now."""
        shutil.rmtree(job.folder, ignore_errors=True)
        with self._lock:
            self._jobs.pop(job.id, None)

    def of_user(self, user: str) -> list[ServiceJob]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.user == user), key=lambda j: j.created)

    def __iter__(self) -> Iterator[ServiceJob]:
        with self._lock:
            return iter(list(self._jobs.values()))

    def sweep(self, retention_s: float, now: float | None = None) -> list[str]:
        """Delete the folders of finished jobs that ended more than ``retention_s`` ago, and folders
        that hold no job record (an upload abandoned halfway); returns the ids removed."""
        now = time.time() if now is None else now
        removed = []
        for job in list(self):
            if job.finished and (job.ended or job.created) + retention_s <= now:
                shutil.rmtree(job.folder, ignore_errors=True)
                with self._lock:
                    self._jobs.pop(job.id, None)
                removed.append(job.id)
        with self._lock:
            known = {job.folder.name for job in self._jobs.values()}
        for folder in self.jobs_dir.iterdir():
            if folder.is_dir() and folder.name not in known and folder.stat().st_mtime + 3600 <= now:
                shutil.rmtree(folder, ignore_errors=True)
        return removed
