"""The background worker as a real process: messages, exit codes, probe, dummy mode, serve mode."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from worker_support import (
    BODY_HU,
    BONE_HU,
    WORKER_SCRIPT,
    job_text,
    read_hu,
    run_worker,
    worker_env,
    write_mr_like,
    write_tiny_ct,
)

from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import (
    EXIT_BAD_INPUT,
    EXIT_BAD_JOB,
    EXIT_MODEL,
    EXIT_NO_GPU,
    EXIT_OUTPUT,
)
from DigitalContrastLib.worker import protocol

pytestmark = pytest.mark.process


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message


def test_dummy_job_streams_ordered_messages_and_writes_the_reported_file(tmp_path):
    regions = write_tiny_ct(tmp_path / "ncct.nrrd")
    output = tmp_path / "out" / "synthetic.nrrd"
    code, messages, log = run_worker(["--dummy"], job_text(job_id="j1", input=str(tmp_path / "ncct.nrrd"), output=str(output)))

    assert code == 0, log
    types = [m["type"] for m in messages]
    assert types[0] == "hello" and types[-1] == "result"
    assert set(types) == {"hello", "stage", "progress", "result"}
    stages = [m["stage"] for m in messages if m["type"] == "stage"]
    assert stages[-4:] == ["preprocess", "inference", "postprocess", "write"]
    assert all(m.get("job_id") == "j1" for m in messages[1:])
    # within each stage, done never goes back and the final done == total is always sent
    for stage in stages:
        done = [m["done"] for m in messages if m["type"] == "progress" and m["stage"] == stage]
        total = {m["total"] for m in messages if m["type"] == "progress" and m["stage"] == stage}
        assert done == sorted(done) and done[-1] == max(total)

    result = messages[-1]
    assert result["sha256"] == file_sha256(output)
    assert result["model"]["id"] == "dummy" and result["provenance"]["dummy"] is True
    assert result["timings"]["cache_hit"] is False
    # the fake synthesis: +300 HU on the soft tissue, air and bone untouched, geometry kept
    hu = read_hu(output)
    assert hu.shape == regions["array"].shape and hu.dtype == np.int16
    assert np.all(hu[regions["soft"]] >= BODY_HU + 300)
    assert np.all(hu[regions["air"]] == -1000) and np.all(hu[regions["bone"]] == BONE_HU)
    beside = sorted(p.name for p in output.parent.iterdir())
    assert beside == ["synthetic.nrrd", "synthetic.nrrd.json"], "output + provenance, no temporary file left"
    assert [f["path"] for f in result["files"]] == [str(output), str(output) + ".json"]


def test_dummy_worker_never_imports_torch(tmp_path):
    write_tiny_ct(tmp_path / "ncct.nrrd")
    code, messages, log = run_worker(["--dummy"], job_text(input=str(tmp_path / "ncct.nrrd"), output=str(tmp_path / "o.nrrd")))
    assert code == 0, log
    hello, result = messages[0], messages[-1]
    assert hello["mode"] == "dummy" and hello["torch"]["imported"] is False
    assert result["torch_imported"] is False


def test_job_file_argument_and_log_text_stay_apart(tmp_path):
    write_tiny_ct(tmp_path / "ncct.nrrd")
    job = tmp_path / "job.json"
    job.write_text(job_text(job_id="from-file", input=str(tmp_path / "ncct.nrrd"), output=str(tmp_path / "o.nrrd")))
    code, messages, log = run_worker(["--dummy", str(job)])
    assert code == 0
    assert messages[-1]["type"] == "result" and messages[-1]["job_id"] == "from-file"
    assert "job from-file" in log  # plain log text on stderr, never mistaken for a message


@pytest.mark.parametrize(
    ("stdin", "expected_code", "needle"),
    [
        ("this is not json\n", EXIT_BAD_JOB, "not valid JSON"),
        ('{"input": "a.nrrd"}\n', EXIT_BAD_JOB, "'output' is a required property"),
        ('{"input": "a.nrrd", "output": "b.nrrd", "devise": "cpu"}\n', EXIT_BAD_JOB, "devise"),
        ('{"input": "a.nrrd", "output": "b.nrrd", "options": {"overlap": 1.5}}\n', EXIT_BAD_JOB, "options.overlap"),
        ('{"input": "a.nrrd", "output": "b.nrrd", "device": "gpu"}\n', EXIT_BAD_JOB, "device"),
    ],
)
def test_malformed_job_exits_4_with_one_sentence(stdin, expected_code, needle):
    code, messages, _ = run_worker(["--dummy"], stdin)
    assert code == expected_code
    error = messages[-1]
    assert error["type"] == "error" and error["exit_code"] == expected_code
    assert needle in error["message"] and _one_sentence(error["message"])


def test_each_failure_has_its_documented_exit_code(tmp_path):
    ncct = tmp_path / "ncct.nrrd"
    write_tiny_ct(ncct)
    not_ct = tmp_path / "notes.nrrd"
    not_ct.write_text("this is a text file, not a CT volume\n")
    mr_like = tmp_path / "mr.nrrd"
    write_mr_like(mr_like)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        ({"input": str(tmp_path / "missing.nrrd")}, EXIT_BAD_INPUT),
        ({"input": str(not_ct)}, EXIT_BAD_INPUT),
        ({"input": str(mr_like)}, EXIT_BAD_INPUT),  # readable, refused by the input gate
        ({"input": str(ncct), "model_id": "no-such-model"}, EXIT_MODEL),
        ({"input": str(ncct), "device": "cuda"}, EXIT_NO_GPU),
        ({"input": str(ncct), "output": str(a_file / "sub" / "o.nrrd")}, EXIT_OUTPUT),
    ]
    codes = []
    for fields, expected in cases:
        job = {"output": str(tmp_path / "o.nrrd"), **fields}
        code, messages, log = run_worker(["--dummy"], job_text(**job))
        assert code == expected, (fields, log)
        assert messages[-1]["type"] == "error" and messages[-1]["exit_code"] == expected
        assert _one_sentence(messages[-1]["message"]), messages[-1]["message"]
        assert not (tmp_path / "o.nrrd").exists()
        codes.append(messages[-1]["code"])
    assert codes[:3] == ["not_found", "unreadable", "not_ct_hu"]


def test_gate_warnings_travel_as_warning_messages(tmp_path):
    write_tiny_ct(tmp_path / "thick.nrrd", spacing_xyz_mm=(0.8, 0.8, 5.0))
    code, messages, log = run_worker(["--dummy"], job_text(input=str(tmp_path / "thick.nrrd"), output=str(tmp_path / "o.nrrd")))
    assert code == 0, log
    warnings = [m for m in messages if m["type"] == "warning"]
    assert [w["code"] for w in warnings] == ["thick_slices"] and _one_sentence(warnings[0]["message"])
    assert messages[-1]["type"] == "result"


def test_serve_mode_keeps_the_model_and_survives_a_bad_job(tmp_path):
    write_tiny_ct(tmp_path / "ncct.nrrd")
    lines = "".join([
        job_text(job_id="first", input=str(tmp_path / "ncct.nrrd"), output=str(tmp_path / "a.nrrd")),
        "not json\n",
        job_text(job_id="second", input=str(tmp_path / "ncct.nrrd"), output=str(tmp_path / "b.nrrd")),
    ])
    code, messages, log = run_worker(["--dummy", "--serve", "--dummy-model-seconds", "0.3"], lines)
    assert code == 0, log  # EOF ends the worker cleanly
    assert [m["type"] for m in messages].count("hello") == 1
    results = {m["job_id"]: m for m in messages if m["type"] == "result"}
    assert set(results) == {"first", "second"}
    assert results["first"]["timings"]["cache_hit"] is False and results["first"]["timings"]["model_load_s"] >= 0.3
    assert results["second"]["timings"]["cache_hit"] is True and results["second"]["timings"]["model_load_s"] == 0
    assert [m["exit_code"] for m in messages if m["type"] == "error"] == [EXIT_BAD_JOB]
    assert (tmp_path / "a.nrrd").is_file() and (tmp_path / "b.nrrd").is_file()


def test_probe_reports_the_device_and_works_without_torch():
    blocked = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
         "from DigitalContrastLib.worker.server import main; sys.exit(main(['--probe']))"],
        capture_output=True, timeout=60, env=worker_env())
    assert blocked.returncode == 0, blocked.stderr.decode()
    messages = [protocol.decode_line(line) for line in blocked.stdout.decode().splitlines()]
    assert [m["type"] for m in messages] == ["hello"]
    hello = messages[0]
    assert hello["mode"] == "probe" and hello["torch"]["imported"] is False and "error" in hello["torch"]
    assert hello["device"]["kind"] == "cpu" and hello["device"]["free_memory_mb"] > 0


@pytest.mark.slow
def test_probe_with_torch_reports_its_build():
    code, messages, log = run_worker(["--probe"], timeout=120)
    assert code == 0, log
    (hello,) = messages
    assert hello["torch"]["imported"] is True and hello["torch"]["version"].startswith("2.")
    assert "cuda" in hello["torch"] and hello["device"]["kind"] in {"cpu", "cuda"}


def test_slicer_launcher_script_runs_the_same_worker(tmp_path):
    write_tiny_ct(tmp_path / "ncct.nrrd")
    done = subprocess.run(
        [sys.executable, str(WORKER_SCRIPT), "--dummy"], cwd=tmp_path, capture_output=True, timeout=60,
        input=job_text(input="ncct.nrrd", output="o.nrrd").encode())
    assert done.returncode == 0, done.stderr.decode()
    messages = [m for m in map(protocol.decode_line, done.stdout.decode().splitlines()) if m]
    assert messages[-1]["type"] == "result" and (tmp_path / "o.nrrd").is_file()
