"""The "Remote server" device of the Slicer module: a worker process (``--server URL``) relays each job to a
real service, so no HTTP runs in Slicer's process. The token travels in the relay's environment (never on
a command line), the relay never imports torch, a refused token is one sentence with nothing written,
and the Check button's task reports the server's device and models."""

from __future__ import annotations

import json

import psutil
import pytest
from service_support import start_service
from worker_support import write_tiny_ct

from DigitalContrastLib.worker.protocol import make_job
from DigitalContrastLib.worker.relay import RelayWorkerClient
from DigitalContrastLib.worker.task_process import TaskProcess

pytestmark = [pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")


def test_the_relay_delivers_the_result_and_provenance_without_torch_and_keeps_the_token_off_command_lines(tmp_path):
    service = start_service(tmp_path, users=("ws1",), dummy_seconds=0.5)
    ncct = tmp_path / "ncct.nrrd"
    write_tiny_ct(ncct)
    token = service.tokens["ws1"]
    try:
        with RelayWorkerClient(service.url + "/", token, work_root=tmp_path) as client:
            client.start(make_job(ncct, tmp_path / "out" / "synthetic.nrrd"))
            relay = psutil.Process(client.worker_pid)
            command_lines = [" ".join(p.cmdline()) for p in [relay, *relay.children(recursive=True)]]
            outcome = client.wait(timeout=120)
            assert outcome.ok, outcome.error
            assert client.hello["mode"] == "remote" and client.hello["torch"]["imported"] is False
        assert not any(token in line for line in command_lines) and any("--server" in line for line in command_lines)
        provenance = json.loads((tmp_path / "out" / "synthetic.nrrd.json").read_text())
        assert provenance["server"]["url"] == service.url and provenance["output"]["path"] == str(
            tmp_path / "out" / "synthetic.nrrd")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["synthetic.nrrd", "synthetic.nrrd.json"]
        assert outcome.result["device"] == "cpu" and outcome.result["server"]["job_id"] == client.server_job_id

        check = TaskProcess(["--task", "server_check"], {"url": service.url, "token": token}).wait(60)
        assert check["health"]["status"] == "ok" and check["models"]["models"]
        refused = TaskProcess(["--task", "server_check"], {"url": service.url, "token": "not-a-token"})
        with pytest.raises(Exception) as error:
            refused.wait(60)
        assert "token" in str(error.value).lower() and "\n" not in str(error.value)
    finally:
        service.stop()


def test_a_refused_token_is_one_sentence_and_nothing_is_written(tmp_path):
    service = start_service(tmp_path, users=("ws1",))
    ncct = tmp_path / "ncct.nrrd"
    write_tiny_ct(ncct)
    try:
        with RelayWorkerClient(service.url, "wrong", work_root=tmp_path) as client:
            outcome = client.run(make_job(ncct, tmp_path / "out" / "synthetic.nrrd"), timeout=60)
        assert outcome.status == "error" and outcome.error["code"] == "bad_token", outcome.error
        message = outcome.error["message"]
        assert "token" in message.lower() and "\n" not in message and "Traceback" not in message
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    finally:
        service.stop()


def test_a_malformed_server_url_is_refused_before_any_process_starts(tmp_path):
    from DigitalContrastLib.common.errors import JobError

    with pytest.raises(JobError, match="http:// or https://"):
        RelayWorkerClient("gpu-server:8000", "t", work_root=tmp_path)
