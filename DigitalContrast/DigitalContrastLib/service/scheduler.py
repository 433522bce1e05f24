"""The service's queue and its persistent workers.

* :class:`FairQueue`: first in, first out for each user, and the users served in turn (round
  robin), so that one user's batch cannot hold back everybody else's single job.
* :class:`WorkerPool`: ``N`` threads, each owning one persistent
  :class:`~DigitalContrastLib.worker.client.WorkerClient` (one worker process, its model kept loaded)
  pinned to one device. A thread takes the next job, forwards the worker's messages to the job's
  event log and ends the job with the client's outcome. A worker that crashes fails its job with
  its last log lines; the client starts a fresh worker for the next job. A cancel kills the
  worker's process tree (the next job starts a fresh worker).
"""

from __future__ import annotations

import collections
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import UserError
from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.client import WorkerClient
from DigitalContrastLib.worker.outcome import Event, JobOutcome
from DigitalContrastLib.worker.protocol import make_job

from .jobs import RESULT_NAME, UNCERTAINTY_NAME, ServiceJob
from .uploads import public_message

#: Result fields a client may see (the rest names paths inside the server).
PUBLIC_RESULT_FIELDS = ("sha256", "model", "device", "timings", "peak_memory")


class FairQueue:
    """Queued jobs: each user's in arrival order, the users taken in turn."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[ServiceJob]] = {}
        self._users: list[str] = []  # in order of first arrival
        self._last: str | None = None
        self._cond = threading.Condition()

    def put(self, job: ServiceJob) -> None:
        with self._cond:
            if job.user not in self._queues:
                self._queues[job.user] = collections.deque()
                self._users.append(job.user)
            self._queues[job.user].append(job)
            self._cond.notify()

    def _order(self) -> list[str]:
        """Users from the one after the last served, round the circle."""
        if self._last in self._users:
            k = self._users.index(self._last) + 1
            return self._users[k:] + self._users[:k]
        return list(self._users)

    def take(self, timeout_s: float) -> ServiceJob | None:
        """The next job (removed from the queue), or None after ``timeout_s`` without one."""
        with self._cond:
            deadline = time.monotonic() + timeout_s
            while True:
                for user in self._order():
                    if self._queues[user]:
                        self._last = user
                        return self._queues[user].popleft()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def remove(self, job: ServiceJob) -> bool:
        with self._cond:
            queue = self._queues.get(job.user)
            if queue is not None and job in queue:
                queue.remove(job)
                return True
            return False

    def positions(self) -> dict[str, int]:
        """Job id -> how many queued jobs will be taken before it (0: next)."""
        with self._cond:
            queues = {user: list(q) for user, q in self._queues.items()}
            order = self._order()
        positions: dict[str, int] = {}
        rank = 0
        while any(queues[user] for user in order):
            for user in order:
                if queues[user]:
                    positions[queues[user].pop(0).id] = rank
                    rank += 1
        return positions

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())


def public_result(result: dict[str, Any] | None) -> dict[str, Any]:
    return {key: (result or {}).get(key) for key in PUBLIC_RESULT_FIELDS}


def public_hello(hello: dict[str, Any] | None) -> dict[str, Any]:
    hello = hello or {}
    torch = hello.get("torch") or {}
    return {"pid": hello.get("pid"), "mode": hello.get("mode"), "device": hello.get("device"),
            "torch": {k: torch.get(k) for k in ("version", "cuda", "cuda_available", "device_count")},
            "packages": hello.get("packages")}


def public_event(event: Event) -> dict[str, Any] | None:
    """What a client sees of a worker event: no server paths, no plain log lines (None)."""
    data = {k: v for k, v in event.data.items() if k not in ("type", "job_id")}
    if event.type == "log":
        return None
    if event.type == "hello":
        return public_hello(event.data)
    if event.type == "result":
        return public_result(event.data)
    if event.type == "end":
        keep = ("status", "exit_code", "error", "cancel_reason", "elapsed_s", "process_exit")
        out = {k: data.get(k) for k in keep}
        if data.get("status") == "error":
            out["log_tail"] = list(data.get("log_tail") or [])[-20:]
        return out
    return data


class WorkerSlot(threading.Thread):
    """One persistent worker on one device, running the queue's jobs one after another."""

    def __init__(self, index: int, device: str, queue: FairQueue, client: WorkerClient) -> None:
        super().__init__(name=f"dc-service-worker-{index}", daemon=True)
        self.index = index
        self.device = device
        self.queue = queue
        self.client = client
        self.job: ServiceJob | None = None
        self.jobs_run = 0
        self.models: set[str] = set()
        self._models_pid: int | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            job = self.queue.take(timeout_s=0.5)
            if job is None:
                continue
            self.job = job
            try:
                self._run(job)
            finally:
                self.job = None
                self.jobs_run += 1
        self.client.close()

    def describe(self) -> dict[str, Any]:
        """For the health page: the device, the worker process, what it has loaded."""
        hello = self.client.hello
        alive = self.client._proc is not None and self.client._proc.popen.poll() is None  # noqa: SLF001
        return {"slot": self.index, "device": self.device, "worker_alive": alive,
                "worker": public_hello(hello) if hello else None, "busy": self.job is not None,
                "jobs_run": self.jobs_run, "models_loaded": sorted(self.models) if alive else []}

    def _run(self, job: ServiceJob) -> None:
        job.status, job.started = "running", time.time()
        job.result_dir.mkdir(parents=True, exist_ok=True)
        options = SynthesisOptions(
            model_id=job.options.get("model_id"), device=self.device, overlap=job.options.get("overlap"),
            series_uid=job.options.get("series_uid"), backend=job.options.get("backend") or "auto",
            uncertainty_output=str(job.result_dir / UNCERTAINTY_NAME) if job.options.get("uncertainty") else None)
        try:
            self.client.start(make_job(job.input_path, job.result_dir / RESULT_NAME, options, job_id=job.id))
        except UserError as error:
            self._end(job, JobOutcome(job_id=job.id, status="error", error=error.to_dict()))
            return
        job.worker = {"slot": self.index, "pid": self.client.worker_pid, "device": self.device}
        job.add_event("started", dict(job.worker))
        if self.client.hello is not None:  # a warm worker said hello to an earlier job: every job gets one
            job.add_event("hello", public_hello(self.client.hello))
        job.save()
        outcome = None
        while outcome is None:
            if job.cancel_requested.is_set() or self._stopping.is_set():
                outcome = self.client.cancel("cancelled by its owner" if job.cancel_requested.is_set()
                                             else "the server stopped")
                for event in self.client.poll():
                    self._forward(job, event)
                break
            try:
                outcome = self.client.wait(timeout=0.1, on_event=lambda event: self._forward(job, event))
            except TimeoutError:
                continue
        self._end(job, outcome)

    def _forward(self, job: ServiceJob, event: Event) -> None:
        data = public_event(event)
        if data is None or event.type == "end":
            return
        if event.type == "hello":
            job.worker = {**(job.worker or {}), "pid": data.get("pid")}
        if event.type in ("warning", "error") and isinstance(data.get("message"), str):
            data["message"] = public_message(data["message"], job.input_name, job.folder)
        if event.type == "warning":
            job.gate_warnings.append({"code": str(data.get("code")), "message": str(data.get("message"))})
        job.add_event(event.type, data, event.overall_fraction, event.eta_s)

    def _end(self, job: ServiceJob, outcome: JobOutcome | None) -> None:
        outcome = outcome or JobOutcome(job_id=job.id, status="cancelled", cancel_reason="no outcome")
        job.status, job.ended = outcome.status, time.time()
        if outcome.ok:
            result = outcome.result or {}
            job.result = public_result(result)
            job.result["files"] = {Path(item["path"]).name: item["sha256"] for item in result.get("files") or []}
            if self.client.worker_pid != self._models_pid:  # a fresh worker: its cache started empty
                self.models, self._models_pid = set(), self.client.worker_pid
            self.models.add(str((result.get("model") or {}).get("id")))
        elif outcome.status == "error":
            job.error = dict(outcome.error or {})
            job.error.pop("trace", None)
            job.error["message"] = public_message(str(job.error.get("message", "")), job.input_name, job.folder)
            if job.error.get("code") in ("worker_crashed", "internal"):
                job.error["log_tail"] = list(outcome.log_tail)[-20:]
        if not outcome.ok:
            shutil.rmtree(job.result_dir, ignore_errors=True)  # a failed or cancelled job leaves no results
        job.remove_inputs()
        job.save()
        end = public_event(outcome_event(outcome)) or {}
        if job.error is not None:
            end["error"] = {key: value for key, value in job.error.items() if key != "log_tail"}
        job.add_event("end", end, 1.0 if outcome.ok else None, 0.0)
        job.settled.set()


def outcome_event(outcome: JobOutcome) -> Event:
    return Event("end", outcome.to_dict(), outcome.job_id)


class WorkerPool:
    """The slots, one per device in ``devices``."""

    def __init__(self, devices: Sequence[str], queue: FairQueue, *, dummy: bool = False, dummy_seconds: float = 0.0,
                 threads: int | None = None, work_root: Path | None = None, worker_args: Sequence[str] = ()) -> None:
        if work_root is not None:
            Path(work_root).mkdir(parents=True, exist_ok=True)
        self.slots = [WorkerSlot(k, device, queue, WorkerClient(
            persistent=True, dummy=dummy, dummy_seconds=dummy_seconds, threads=threads, work_root=work_root,
            worker_args=worker_args)) for k, device in enumerate(devices)]

    def start(self) -> None:
        for slot in self.slots:
            slot.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        for slot in self.slots:
            slot.stop()
        for slot in self.slots:
            slot.join(timeout_s)
