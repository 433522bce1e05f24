"""Benchmark of the synthesis service: what going through it adds to a warm local job, as a ratio.

``run_service_bench(path)`` (``make bench``; standalone ``python -m DigitalContrastLib.benchmarks.service
PATH``) times the same job on the same machine, in the same run, both ways, each with its model
already loaded (one untimed job first):

* ``local_s``: a persistent :class:`~DigitalContrastLib.worker.client.WorkerClient` (``start()`` to
  the verified output in place), as Slicer and the CLI run it locally;
* ``service_s``: a :class:`~DigitalContrastLib.worker.remote_client.RemoteWorkerClient` against
  ``digital-contrast serve`` on loopback (upload, the input check at submit, queue, the same
  worker, the event stream, download with SHA-256 checks, the provenance rewritten).

``overhead_ratio`` = ``service_s / local_s - 1`` (medians of ``repeats`` alternating runs); the
target is at most :data:`TARGET_OVERHEAD`. ``phases_s`` splits one service run as the client saw it.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from DigitalContrastLib.service.tokens import TokenStore
from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.client import WorkerClient
from DigitalContrastLib.worker.outcome import Event
from DigitalContrastLib.worker.process import SAFE_PATH_FLAGS
from DigitalContrastLib.worker.protocol import make_job
from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

TARGET_OVERHEAD = 0.20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _timed(client: Any, job: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one job and when (s from start) each phase began, as the client saw it."""
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def on_event(event: Event) -> None:
        now = time.perf_counter() - started
        if event.type in ("stage", "started", "queued"):
            marks.setdefault(event.data.get("stage", event.type) if event.type == "stage" else event.type, now)

    outcome = client.run(job, on_event=on_event)
    wall = time.perf_counter() - started
    outcome.raise_for_error()
    return wall, marks


def _start_server(folder: Path, device: str, threads: int | None) -> tuple[subprocess.Popen, str, str]:
    tokens = folder / "tokens.json"
    token = TokenStore(tokens).add_token("bench")
    port = _free_port()
    args = [sys.executable, *SAFE_PATH_FLAGS, "-m", "DigitalContrastLib.commands.cli", "serve", "--data-dir",
            str(folder / "service"), "--tokens", str(tokens), "--port", str(port), "--device", device, "--workers", "1"]
    if threads:
        args += ["--threads", str(threads)]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - kept open for the server's life
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the bench server exited: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=2):
                return server, url, token
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the bench server did not answer within 120 s")


def run_service_bench(input_path: str | os.PathLike, model_id: str | None = None, device: str = "cpu",
                      repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    """Time warm local jobs and warm service jobs on ``input_path`` alternately; see the module docstring."""
    input_path = Path(input_path)
    options = SynthesisOptions(model_id=model_id, device=device)
    with tempfile.TemporaryDirectory(prefix="dc-bench-service-") as scratch:
        folder = Path(scratch)
        server, url, token = _start_server(folder, device, threads)
        try:
            local = WorkerClient(persistent=True, threads=threads)
            remote = RemoteWorkerClient(url, token)

            def job(name: str) -> dict[str, Any]:
                return make_job(input_path, folder / "out" / f"{name}.nrrd", options, job_id=name)

            _timed(local, job("local-warm-up"))
            _timed(remote, job("service-warm-up"))
            local_s, service_s, phases = [], [], {}
            for k in range(repeats):
                local_s.append(_timed(local, job(f"local-{k}"))[0])
                wall, phases = _timed(remote, job(f"service-{k}"))
                service_s.append(wall)
            local.close()
            with urllib.request.urlopen(url + "/v1/health", timeout=10) as response:
                health = json.loads(response.read())
        finally:
            server.terminate()
            server.wait(30)
    local_median, service_median = statistics.median(local_s), statistics.median(service_s)
    overhead = service_median / local_median - 1.0
    return {
        "benchmark": "service",
        "input": str(input_path),
        "input_mb": round(input_path.stat().st_size / 2**20, 1),
        "device": device,
        "server_device": health.get("device"),
        "local_s": [round(v, 3) for v in local_s],
        "service_s": [round(v, 3) for v in service_s],
        "local_median_s": round(local_median, 3),
        "service_median_s": round(service_median, 3),
        "overhead_s": round(service_median - local_median, 3),
        "overhead_ratio": round(overhead, 4),
        "phases_s": {name: round(at, 3) for name, at in sorted(phases.items(), key=lambda item: item[1])},
        "target_overhead_ratio": TARGET_OVERHEAD,
        "meets_target": overhead <= TARGET_OVERHEAD,
    }


if __name__ == "__main__":
    print(json.dumps(run_service_bench(sys.argv[1]), indent=2))
