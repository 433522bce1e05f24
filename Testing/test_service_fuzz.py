"""schemathesis against the served OpenAPI document: at least 200 generated requests, no 5xx, no
response outside the documented status codes, content types and schemas.

The fuzzer runs as its own command line (``schemathesis run``) against a real server with dummy
workers, authenticated, with the id of a real finished job supplied for the ``{job_id}`` routes so
that they are reached past the 404, and once without a token (every answer must be a documented 401).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_support import start_service
from worker_support import write_tiny_ct

pytestmark = [pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")
pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e .[test])")

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")


def schemathesis(url: str, folder: Path, name: str, headers: list[str], config: str = "") -> tuple[int, list[dict], str]:
    """Run the fuzzer; return its exit code, its ndjson events and its text output."""
    config_file = folder / f"{name}.toml"
    config_file.write_text(config)
    report = folder / f"{name}.ndjson"
    command = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    args = [command, "--config-file", str(config_file), "--no-color", "run", url + "/openapi.json", "--checks", CHECKS,
            "--max-examples", "30", "--seed", "29", "--workers", "1", "--request-timeout", "60",
            "--report", "ndjson", "--report-ndjson-path", str(report)]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()] if report.exists() else []
    return done.returncode, events, done.stdout + done.stderr


def generated_count(output: str) -> int:
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] == "generated,":
            return int(words[0])
    raise AssertionError(f"no 'N generated' line in the fuzzer's summary:\n{output[-3000:]}")


def test_schemathesis_finds_no_5xx_and_no_schema_violation_in_200_requests_or_more(tmp_path):
    service = start_service(tmp_path, users=("fuzz",), extra=("--max-upload-mb", "2"))
    try:
        ncct = tmp_path / "ncct.nrrd"
        write_tiny_ct(ncct)
        job_id = service.submit(ncct, "fuzz")[1]["id"]
        assert service.wait_until(job_id, "fuzz")["status"] == "ok"
        config = f'[parameters]\n"path.job_id" = "{job_id}"\n'
        code, _events, output = schemathesis(service.url, tmp_path, "authorized",
                                             [f"Authorization: Bearer {service.tokens['fuzz']}"], config)
        assert code == 0, output[-6000:]
        authorized = generated_count(output)
        code, _events, output = schemathesis(service.url, tmp_path, "anonymous", [])
        assert code == 0, output[-6000:]
        anonymous = generated_count(output)
        log = service.log.read_text()
    finally:
        service.stop()
    print(f"schemathesis: {authorized} requests with a token, {anonymous} without")
    assert authorized >= 200, authorized
    assert anonymous >= 100, anonymous
    assert "Traceback" not in log and "Exception" not in log, log[-3000:]
