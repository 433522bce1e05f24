"""A real synthesis service for the tests: ``digital-contrast serve`` in a subprocess on a free loopback port.

Not a test module. :func:`start_service` adds tokens, starts the server (dummy workers unless asked
otherwise), waits until ``/v1/health`` answers and returns a :class:`RunningService` whose ``stop()``
ends it (SIGTERM, then SIGKILL) and checks that no worker outlives it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from worker_support import worker_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**worker_env(), **(env or {})})


def add_token(tokens: Path, user: str) -> str:
    done = cli("serve", "--tokens", str(tokens), "--add-token", user)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class RunningService:
    url: str
    data_dir: Path
    tokens: dict[str, str]
    process: subprocess.Popen
    log: Path
    args: list[str] = field(default_factory=list)

    def request(self, method: str, route: str, *, user: str | None = None, token: str | None = None,
                body: bytes | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of one request (4xx/5xx returned, not raised)."""
        headers = {}
        if user is not None or token is not None:
            headers["Authorization"] = f"Bearer {token if token is not None else self.tokens[user]}"
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.url + route, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, method: str, route: str, **kwargs: Any) -> tuple[int, Any]:
        status, _, body = self.request(method, route, **kwargs)
        return status, (json.loads(body) if body else None)

    def submit(self, path: Path, user: str, filename: str | None = None, **query: Any) -> tuple[int, Any]:
        params = "&".join(f"{k}={v}" for k, v in {"filename": filename or path.name, **query}.items())
        return self.json("POST", f"/v1/jobs?{params}", user=user, body=path.read_bytes())

    def wait_until(self, job_id: str, user: str, statuses: tuple[str, ...] = ("ok", "error", "cancelled"),
                   timeout: float = 120, stage: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.json("GET", f"/v1/jobs/{job_id}", user=user)
            assert status == 200, job
            if job["status"] in statuses and (stage is None or job["stage"] == stage):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout} s: {job}")

    def worker_pids(self) -> list[int]:
        """The worker processes the server started (its children running DigitalContrastLib.worker)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                if "DigitalContrastLib.worker" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    pids.append(child.pid)
            except psutil.Error:
                continue
        return pids

    def stop(self, kill: bool = False) -> None:
        workers = [psutil.Process(pid) for pid in self.worker_pids()]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for worker in workers:  # a killed server leaves its workers: end them (a clean server ends them itself)
            try:
                if kill:
                    worker.kill()
                worker.wait(10)
            except psutil.Error:
                pass


def start_service(tmp_path: Path, users: tuple[str, ...] = ("alice", "bob"), *, dummy: bool = True,
                  dummy_seconds: float = 0.0, extra: tuple[str, ...] = (), data_dir: Path | None = None,
                  tokens: dict[str, str] | None = None) -> RunningService:
    data_dir = data_dir or tmp_path / "service"
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens_file = data_dir / "tokens.json"
    tokens = dict(tokens or {})
    for user in users:
        if user not in tokens:
            tokens[user] = add_token(tokens_file, user)
    port = free_port()
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port), *extra]
    if dummy:
        args += ["--dummy", "--dummy-seconds", str(dummy_seconds)]
    log = data_dir / f"server-{port}.log"
    with open(log, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "DigitalContrastLib.commands.cli", *args], stdout=sink,
                                   stderr=subprocess.STDOUT, env=worker_env())
    service = RunningService(f"http://127.0.0.1:{port}", data_dir, tokens, process, log, args)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {log.read_text()}")
        try:
            status, _ = service.json("GET", "/v1/health", timeout=2)
            if status == 200:
                return service
        except OSError:
            pass
        time.sleep(0.1)
    service.stop(kill=True)
    raise AssertionError(f"the server did not answer in 90 s: {log.read_text()}")


def job_files(service: RunningService, job_id: str) -> list[str]:
    folder = service.data_dir / "jobs" / job_id
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []
