"""The "Remote server" device: a worker process that hands each job to a synthesis service.

Inside 3D Slicer a Python thread advances only while the GUI thread runs Python, so the remote
client's upload, event stream and download cannot run in Slicer's process. Instead the module
starts a worker as for a local run, with ``--server URL`` (``python -m DigitalContrastLib.worker
--serve --server URL``, the token in ``DIGITAL_CONTRAST_TOKEN``): it speaks the worker protocol on
its stdout, and runs every job it reads through :class:`~.remote_client.RemoteWorkerClient`. The
Slicer logic therefore keeps its local path unchanged: the same progress bar, the same files
delivered and hashed, the same result node; the provenance names the server and its device.

* :class:`RelayRunner` runs in the worker process: it relays the service's stages (``upload``,
  ``queued``, the worker's own stages, ``download``) with their overall fraction, and reports the
  server's job id once the server accepted the upload.
* :class:`RelayWorkerClient` is the :class:`~.client.WorkerClient` of that process. Its ``cancel``
  kills the relay as any worker is killed, then cancels the job on the server too, from a short
  ``--task server_cancel`` process (a GUI thread never waits on the network).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from DigitalContrastLib.common.errors import JobError

from .client import WorkerClient
from .outcome import Event, JobOutcome
from .process import Launcher
from .remote_client import RemoteWorkerClient
from .remote_http import TOKEN_ENV, ServerConnection
from .task_process import TaskProcess

#: The result fields a relayed job reports (the protocol's ``result`` message).
RESULT_FIELDS = ("output", "sha256", "files", "model", "device", "timings", "peak_memory", "provenance", "server")


class RelayRunner:
    """Runs each job on the service at ``url`` (the worker process's side; see the module docstring)."""

    mode = "remote"

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, job: dict[str, Any], channel: Any) -> dict[str, Any]:
        """Run one validated job remotely; returns the ``result`` message fields, raises a UserError."""
        job_id = job["job_id"]
        client = RemoteWorkerClient(self.url)

        def relay(event: Event) -> None:
            data = event.data
            if event.type == "queued" and client.server_job_id:
                channel.send("stage", job_id=job_id, stage="queued", server_url=client.url,
                             server_job_id=client.server_job_id, overall_fraction=event.overall_fraction)
            elif event.type in ("stage", "progress") and isinstance(data.get("stage"), str):
                fields = {"done": int(data.get("done", 0)), "total": int(data.get("total", 1))} \
                    if event.type == "progress" else {}
                channel.send(event.type, job_id=job_id, stage=data["stage"], overall_fraction=event.overall_fraction,
                             **fields)
            elif event.type == "warning":
                channel.send("warning", job_id=job_id, code=str(data.get("code")), message=str(data.get("message")))

        try:
            outcome = client.run(job, on_event=relay)
        finally:
            client.close(wait_s=0)
        if outcome.status == "cancelled":
            raise JobError(f"the job was cancelled on {self.url} ({outcome.cancel_reason}); run it again.",
                           code="cancelled_on_server")
        outcome.raise_for_error()
        result = outcome.result or {}
        return {key: result.get(key) for key in RESULT_FIELDS}


class RelayWorkerClient(WorkerClient):
    """A :class:`WorkerClient` whose worker runs the jobs on the service at ``url``.

    Args:
        url: the service (``https://gpu-server.example.org``).
        token: the bearer token (given to the relay process in its environment, never on a command line).
        launcher: how worker processes start (in Slicer: ``PythonSlicer`` and the worker script).
        **options: further :class:`WorkerClient` options (``work_root``, ``verify_outputs``).
    """

    def __init__(self, url: str, token: str | None, launcher: Launcher | None = None, **options: Any) -> None:
        self.server_url = ServerConnection(url, token).url  # a malformed URL is refused here, in one sentence
        super().__init__(launcher, persistent=True, worker_args=["--server", self.server_url],
                         env={TOKEN_ENV: token or ""}, **options)
        self._token = token
        self.server_job_id: str | None = None
        self._cancels: list[TaskProcess] = []

    def start(self, job: Mapping[str, Any]) -> str:
        self.server_job_id = None
        return super().start(job)

    def _handle(self, proc: Any, item: tuple[str, str | None]) -> list[Event]:
        events = super()._handle(proc, item)
        for event in events:
            if event.type == "stage" and event.data.get("server_job_id"):
                self.server_job_id = str(event.data["server_job_id"])
        return events

    def poll(self) -> list[Event]:
        self._cancels = [task for task in self._cancels if not task.poll()]
        return super().poll()

    def cancel(self, reason: str = "cancelled by the user", wait: bool = True) -> JobOutcome | None:
        """Kill the relay (as a local worker is killed), then cancel the job on the server as well."""
        server_job_id = self.server_job_id if self.running else None
        outcome = super().cancel(reason, wait)
        if server_job_id:
            task = TaskProcess(["--task", "server_cancel"],
                               {"url": self.server_url, "token": self._token, "job_id": server_job_id},
                               launcher=self._launcher)
            if wait:
                try:
                    task.wait(timeout_s=30)
                except Exception:  # noqa: BLE001 - the server may be gone: its retention removes the job
                    pass
            else:
                self._cancels.append(task)
        return outcome

    def close(self, wait_s: float = 5.0) -> None:
        super().close(wait_s)
        for task in self._cancels:
            try:
                task.wait(timeout_s=wait_s)
            except Exception:  # noqa: BLE001 - closing: the server's retention removes what is left
                task.cancel()
        self._cancels = []


def cancel_on_server(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``--task server_cancel``: cancel job ``job_id`` on ``url`` (token in the arguments); its status."""
    connection = ServerConnection(str(arguments["url"]), arguments.get("token"), timeout_s=20.0)
    status = connection.json("POST", f"/v1/jobs/{arguments['job_id']}/cancel")
    return {"job_id": arguments["job_id"], "status": status.get("status")}


def check_server(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``--task server_check``: the service's health and models, which also checks the token (401: one sentence)."""
    client = RemoteWorkerClient(str(arguments["url"]), arguments.get("token") or "")
    health, models = client.health(), client.models()
    return {"url": client.url, "health": health, "models": models}
