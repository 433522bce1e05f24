"""The job client with real worker processes: delivery, cancel, crashes, errors, warm reuse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from worker_support import BODY_HU, alive, descendants, read_hu, worker_env, write_mr_like, write_tiny_ct

from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import EXIT_BAD_INPUT, EXIT_MODEL, EXIT_NO_GPU, InputError, JobError, ModelError
from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.client import (
    WorkerClient,
    run_synthesis_job,
)
from DigitalContrastLib.worker.outcome import (
    JobCancelled,
    WorkerError,
)
from DigitalContrastLib.worker.process import (
    popen_launcher,
    probe_worker,
    worker_script_launcher,
)
from DigitalContrastLib.worker.protocol import make_job

pytestmark = pytest.mark.process


@pytest.fixture
def ncct(tmp_path):
    path = tmp_path / "in" / "ncct.nrrd"
    write_tiny_ct(path)
    return path


@pytest.fixture
def work_root(tmp_path):
    root = tmp_path / "jobs"
    root.mkdir()
    return root


def slicer_like_launcher(tmp_path):
    """Like ``worker_script_launcher(PythonSlicer)``: a launcher process whose child is the real Python."""
    python_slicer = tmp_path / "PythonSlicer"
    python_slicer.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                             f"sys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n")
    python_slicer.chmod(0o755)
    return worker_script_launcher(python_slicer)


def wait_for(client, predicate, timeout=30.0):
    """Poll ``client`` until an event satisfies ``predicate``; returns all events seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.poll()
        seen += events
        if any(predicate(e) for e in events):
            return seen
        assert client.running, f"job ended early: {client.outcome}"
        time.sleep(0.02)
    raise AssertionError("timed out waiting for an event")


def test_run_delivers_a_verified_output_with_ordered_events(ncct, tmp_path, work_root):
    output = tmp_path / "out" / "synthetic.nrrd"
    events = []
    with WorkerClient(dummy=True, dummy_seconds=0.5, work_root=work_root) as client:
        outcome = client.run(make_job(ncct, output, job_id="ordered"), on_event=events.append)

    assert outcome.ok, outcome
    kinds = [e.type for e in events if e.type != "log"]
    assert kinds[0] == "hello" and kinds[-2:] == ["result", "end"]
    assert set(kinds) == {"hello", "stage", "progress", "result", "end"}
    fractions = [e.overall_fraction for e in events if e.type == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert sum(1 for e in events if e.type == "progress" and e.data["stage"] == "inference") >= 3
    assert all(e.job_id == "ordered" for e in events if e.type in {"stage", "progress", "result", "end"})

    assert outcome.output_path == output and output.is_file()
    assert outcome.result["sha256"] == file_sha256(output)
    assert outcome.result["output"] == str(output)
    assert np.all(read_hu(output)[read_hu(ncct) == BODY_HU] >= BODY_HU + 300)
    assert sorted(p.name for p in output.parent.iterdir()) == ["synthetic.nrrd", "synthetic.nrrd.json"]
    provenance = json.loads((output.parent / "synthetic.nrrd.json").read_text())
    assert provenance["output"]["path"] == str(output), "the provenance names the delivered file"
    assert outcome.result["provenance"]["output"]["path"] == str(output)
    assert list(work_root.iterdir()) == [], "the job folder is removed"


def test_uncertainty_map_is_delivered_to_its_own_folder(ncct, tmp_path, work_root):
    output, sd_map = tmp_path / "a" / "synthetic.nii.gz", tmp_path / "b" / "sd.nii.gz"
    outcome = WorkerClient(dummy=True, work_root=work_root).run(make_job(ncct, output, SynthesisOptions(uncertainty_output=sd_map)))
    assert outcome.ok, outcome
    assert output.is_file() and sd_map.is_file() and read_hu(sd_map).shape == read_hu(ncct).shape
    provenance = json.loads(output.with_name("synthetic.nii.gz.json").read_text())
    assert provenance["uncertainty"]["path"] == str(sd_map)
    assert list(work_root.iterdir()) == []


def test_second_start_while_running_is_refused(ncct, tmp_path, work_root):
    client = WorkerClient(dummy=True, dummy_seconds=3, work_root=work_root)
    client.start(make_job(ncct, tmp_path / "a.nrrd"))
    with pytest.raises(JobError, match="a job is already running; cancel it or wait"):
        client.start(make_job(ncct, tmp_path / "b.nrrd"))
    client.cancel()
    assert client.outcome.status == "cancelled"


def test_cancel_mid_inference_kills_the_whole_tree_within_2_s(ncct, tmp_path, work_root):
    output = tmp_path / "out" / "synthetic.nrrd"
    client = WorkerClient(slicer_like_launcher(tmp_path), dummy=True, dummy_seconds=30, work_root=work_root,
                          worker_args=["--dummy-spawn-child"])
    client.start(make_job(ncct, output))
    wait_for(client, lambda e: e.type == "progress" and e.data["stage"] == "inference" and e.data["done"] >= 1)
    launcher_pid = client.worker_pid
    tree = [launcher_pid, *descendants(launcher_pid)]
    assert len(tree) == 3, "launcher -> worker -> the dummy's child"

    started = time.monotonic()
    outcome = client.cancel()
    while any(alive(pid) for pid in tree) and time.monotonic() - started < 5:
        time.sleep(0.01)
    cancel_latency_s = time.monotonic() - started

    assert not [pid for pid in tree if alive(pid)], "every process of the tree is gone"
    assert cancel_latency_s < 2.0, cancel_latency_s
    assert outcome.status == "cancelled" and outcome.exit_code == 130
    assert not output.exists() and not output.parent.exists() or not list(output.parent.iterdir())
    assert list(work_root.iterdir()) == []
    assert client.poll()[-1].type == "end"
    with pytest.raises(JobCancelled):
        outcome.raise_for_error()
    print(f"cancel latency {cancel_latency_s:.3f} s")


def test_a_gui_cancel_returns_at_once_and_without_psutil_still_kills_the_tree(ncct, tmp_path, work_root,
                                                                              monkeypatch):
    """A stock Slicer has no psutil, and its GUI thread must not wait: the process group is killed, reaped later."""
    client = WorkerClient(slicer_like_launcher(tmp_path), dummy=True, dummy_seconds=30, work_root=work_root,
                          worker_args=["--dummy-spawn-child"])
    client.start(make_job(ncct, tmp_path / "o.nrrd"))
    wait_for(client, lambda e: e.type == "progress" and e.data["stage"] == "inference" and e.data["done"] >= 1)
    tree = [client.worker_pid, *descendants(client.worker_pid)]
    assert len(tree) == 3

    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "psutil", None)  # the client's own imports of psutil now fail
        started = time.monotonic()
        outcome = client.cancel(wait=False)
        returned_s = time.monotonic() - started
        time.sleep(0.3)
        client.poll()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert returned_s < 0.05, f"cancel held the caller {returned_s:.3f} s"
    assert not [pid for pid in tree if alive(pid)], "every process of the tree is gone"
    assert outcome.status == "cancelled" and list(work_root.iterdir()) == []
    client.close()


def test_kill_9_of_the_worker_is_reported_as_a_crash_within_2_s(ncct, tmp_path, work_root):
    output = tmp_path / "out" / "synthetic.nrrd"
    client = WorkerClient(dummy=True, dummy_seconds=30, work_root=work_root, worker_args=["--dummy-spawn-child"])
    client.start(make_job(ncct, output))
    wait_for(client, lambda e: e.type == "progress" and e.data["stage"] == "inference")
    grandchildren = descendants(client.worker_pid)
    assert grandchildren, "the dummy's child holds the worker's pipes open"

    started = time.monotonic()
    os.kill(client.worker_pid, signal.SIGKILL)
    outcome = client.wait(timeout=2.0)
    report_latency_s = time.monotonic() - started

    assert outcome.status == "error" and outcome.error["code"] == "worker_crashed"
    assert outcome.process_exit == -signal.SIGKILL and "SIGKILL" in outcome.error["message"]
    assert any("job" in line for line in outcome.log_tail), "the last log lines come with the report"
    assert not output.exists()
    assert list(work_root.iterdir()) == []
    assert not [pid for pid in grandchildren if alive(pid)], "orphans of the dead worker are killed too"
    with pytest.raises(WorkerError, match="last worker output"):
        outcome.raise_for_error()
    print(f"crash report latency {report_latency_s:.3f} s")


def test_user_errors_come_back_with_their_exit_code_and_one_sentence(ncct, tmp_path, work_root):
    not_ct = tmp_path / "notes.nrrd"
    not_ct.write_text("a text file, not a CT\n")
    mr_like = tmp_path / "mr.nrrd"
    write_mr_like(mr_like)
    client = WorkerClient(dummy=True, work_root=work_root)
    for job, code, cls in [
        (make_job(not_ct, tmp_path / "o.nrrd"), EXIT_BAD_INPUT, InputError),
        (make_job(mr_like, tmp_path / "o.nrrd"), EXIT_BAD_INPUT, InputError),  # refused by the gate
        (make_job(ncct, tmp_path / "o.nrrd", SynthesisOptions(model_id="no-such-model")), EXIT_MODEL, ModelError),
        (make_job(ncct, tmp_path / "o.nrrd", SynthesisOptions(device="cuda")), EXIT_NO_GPU, None),
    ]:
        outcome = client.run(job, timeout=60)
        assert outcome.status == "error" and outcome.exit_code == code and outcome.process_exit == code
        message = outcome.error["message"]
        assert message.endswith(".") and "\n" not in message
        assert not (tmp_path / "o.nrrd").exists()
        if cls:
            with pytest.raises(cls):
                outcome.raise_for_error()
    with pytest.raises(JobError, match="options.overlap"):
        client.start({"input": str(ncct), "output": str(tmp_path / "o.nrrd"), "options": {"overlap": 2}})
    assert list(work_root.iterdir()) == []


def test_persistent_worker_reuses_the_loaded_model(ncct, tmp_path, work_root):
    with WorkerClient(dummy=True, persistent=True, work_root=work_root,
                      worker_args=["--dummy-model-seconds", "0.5"]) as client:
        first = client.run(make_job(ncct, tmp_path / "a.nrrd", job_id="first"), timeout=60)
        pid = client.worker_pid
        started = time.monotonic()
        second = client.run(make_job(ncct, tmp_path / "b.nrrd", job_id="second"), timeout=60)
        second_wall_s = time.monotonic() - started
        assert client.worker_pid == pid, "the same worker process served both jobs"
    assert first.ok and second.ok
    assert first.result["timings"]["cache_hit"] is False and first.result["timings"]["model_load_s"] >= 0.5
    assert second.result["timings"]["cache_hit"] is True and second.result["timings"]["model_load_s"] == 0
    assert second_wall_s - second.result["timings"]["synthesis_s"] < 0.5
    assert file_sha256(tmp_path / "a.nrrd") == file_sha256(tmp_path / "b.nrrd")
    assert not alive(pid), "closing the client ends the persistent worker"


FAKE_WORKER = textwrap.dedent("""
    import json, os, sys
    from DigitalContrastLib.common.checksum import file_sha256
    from DigitalContrastLib.worker import protocol
    job = json.loads(sys.stdin.readline())
    os.makedirs(os.path.dirname(job["output"]), exist_ok=True)
    open(job["output"], "wb").write(b"not what was hashed")
    lie = {MODE!r} == "bad-sha"
    sha = "0" * 64 if lie else file_sha256(job["output"])
    sys.stdout.write(protocol.encode_message("result", job_id=job["job_id"], output=job["output"], sha256=sha,
                     model={{"id": "fake"}}, device="cpu", timings={{}}))
    sys.stdout.flush()
    sys.exit(0 if lie else 3)
""")


@pytest.mark.parametrize("mode", ["bad-sha", "result-then-nonzero-exit"])
def test_a_result_is_delivered_only_if_verified_and_the_worker_exited_0(mode, ncct, tmp_path, work_root):
    """A stand-in worker (real process) that lies about its output's hash, or fails after its result."""
    launch = popen_launcher([sys.executable, "-c", FAKE_WORKER.format(MODE=mode)])
    client = WorkerClient(lambda args, env: launch(args, {**env, "PYTHONPATH": worker_env()["PYTHONPATH"]}),
                          work_root=work_root)
    outcome = client.run(make_job(ncct, tmp_path / "o.nrrd"), timeout=60)
    assert outcome.status == "error"
    # the stand-in really ran to its result (an import failure would end it as a crash before any result)
    expected = {"bad-sha": ("checksum_mismatch", 0), "result-then-nonzero-exit": ("worker_crashed", 3)}[mode]
    assert (outcome.error["code"], outcome.process_exit) == expected
    assert not (tmp_path / "o.nrrd").exists()
    assert list(work_root.iterdir()) == []


def test_run_synthesis_job_reports_progress_and_raises_user_errors(ncct, tmp_path):
    seen = []
    result = run_synthesis_job(ncct, tmp_path / "o.nrrd", dummy=True,
                               progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert result["output"] == str(tmp_path / "o.nrrd") and (tmp_path / "o.nrrd").is_file()
    inference = [(done, total) for stage, done, total in seen if stage == "inference"]
    assert inference[0][0] == 0 and inference[-1][0] == inference[-1][1] and ("write", 1, 1) in seen
    with pytest.raises(InputError) as caught:
        run_synthesis_job(tmp_path / "absent.nrrd", tmp_path / "p.nrrd", dummy=True)
    assert caught.value.exit_code == EXIT_BAD_INPUT and "absent.nrrd" in caught.value.message



def test_probe_worker_reports_the_device_when_torch_is_absent():
    """What a GUI shows before any job, without importing torch in its own process."""
    no_torch = ("import sys; sys.modules['torch'] = None; sys.argv[0] = 'worker'; "
                "from DigitalContrastLib.worker.server import main; sys.exit(main(sys.argv[1:]))")
    launch = popen_launcher([sys.executable, "-c", no_torch])
    hello = probe_worker(lambda args, env: launch(args, {**env, "PYTHONPATH": worker_env()["PYTHONPATH"]}), timeout_s=60)
    assert hello["torch"]["imported"] is False and hello["device"]["kind"] == "cpu"
    assert hello["device"]["free_memory_mb"] > 0 and hello["protocol"] == 1


def test_a_segfaulting_worker_is_an_error_with_its_last_words(ncct, tmp_path, work_root):
    crash = "import ctypes, sys; print('loading weights', file=sys.stderr, flush=True); ctypes.string_at(0)"
    client = WorkerClient(popen_launcher([sys.executable, "-c", crash]), work_root=work_root)
    outcome = client.run(make_job(ncct, tmp_path / "o.nrrd"), timeout=30)
    assert outcome.status == "error" and outcome.error["code"] == "worker_crashed"
    assert "SIGSEGV" in outcome.error["message"] and outcome.log_tail[-1] == "loading weights"
    assert not (tmp_path / "o.nrrd").exists() and list(work_root.iterdir()) == []


def test_run_with_a_timeout_cancels_the_job(ncct, tmp_path, work_root):
    client = WorkerClient(dummy=True, dummy_seconds=30, work_root=work_root)
    started = time.monotonic()
    outcome = client.run(make_job(ncct, tmp_path / "o.nrrd"), timeout=1.5)
    assert outcome.status == "cancelled" and "timed out" in outcome.cancel_reason
    assert time.monotonic() - started < 4
    assert not (tmp_path / "o.nrrd").exists() and list(work_root.iterdir()) == []


# ---------------------------------------------------------------------------- the real engine
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random model folder (the engine's test fixture); skips where the engine is absent."""
    pytest.importorskip("DigitalContrastLib.synthesis.api", reason="the synthesis engine is not merged")
    from model_fixtures import write_tiny_model

    folder = tmp_path_factory.mktemp("models") / "tiny-test"
    write_tiny_model(folder)
    return folder


@pytest.mark.slow
def test_real_engine_through_a_persistent_worker(tiny_model, tmp_path, work_root):
    """One warm worker: a real job, a warm second job, a missing model and tampered weights."""
    from model_fixtures import body_volume

    from DigitalContrastLib.ct.io import write_volume

    ncct = write_volume(body_volume(), tmp_path / "body.nrrd")
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model, tampered)
    weights = next(tampered.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))

    def on_cpu(model) -> SynthesisOptions:
        return SynthesisOptions(model_id=str(model), device="cpu")

    events = []
    with WorkerClient(persistent=True, work_root=work_root) as client:
        first = client.run(make_job(ncct, tmp_path / "a.nrrd", on_cpu(tiny_model)), on_event=events.append, timeout=300)
        started = time.monotonic()
        second = client.run(make_job(ncct, tmp_path / "b.nrrd", on_cpu(tiny_model)), timeout=300)
        second_wall_s = time.monotonic() - started
        missing = client.run(make_job(ncct, tmp_path / "c.nrrd", on_cpu("no-such-model")), timeout=300)
        bad_weights = client.run(make_job(ncct, tmp_path / "d.nrrd", on_cpu(tampered)), timeout=300)

    assert first.ok, first.error
    kinds = [e.type for e in events if e.type != "log"]
    assert kinds[0] == "hello" and kinds[-2:] == ["result", "end"] and "error" not in kinds
    fractions = [e.overall_fraction for e in events if e.type == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert first.result["sha256"] == file_sha256(tmp_path / "a.nrrd")
    assert first.result["model"]["id"] == "tiny-test" and first.result["torch_imported"] is True
    provenance = json.loads((tmp_path / "a.nrrd.json").read_text())
    assert provenance["output"]["path"] == str(tmp_path / "a.nrrd") and provenance["synthetic"] is True
    assert read_hu(tmp_path / "a.nrrd").shape == read_hu(ncct).shape

    assert second.ok and second.result["timings"]["cache_hit"] is True
    assert second.result["timings"]["model_load_s"] == 0
    print(f"warm second job: wall {second_wall_s:.3f} s, in-worker synthesis {second.result['timings']['synthesis_s']:.3f} s")
    assert second_wall_s - second.result["timings"]["synthesis_s"] < 0.5

    for outcome, code in [(missing, "model_missing"), (bad_weights, "checksum_mismatch")]:
        assert outcome.status == "error" and outcome.exit_code == EXIT_MODEL and outcome.error["code"] == code
        assert outcome.error["message"].endswith(".") and "\n" not in outcome.error["message"]
    assert not (tmp_path / "c.nrrd").exists() and not (tmp_path / "d.nrrd").exists()
    assert list(work_root.iterdir()) == []


def test_a_launcher_that_merges_stderr_into_stdout_works(ncct, tmp_path, work_root):
    """Like ``slicer.util.launchConsoleProcess``: one pipe for messages and log text."""
    def merged(args, env):
        return subprocess.Popen([sys.executable, "-m", "DigitalContrastLib.worker", *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**env, "PYTHONPATH": worker_env()["PYTHONPATH"]})

    outcome = WorkerClient(merged, dummy=True, work_root=work_root).run(make_job(ncct, tmp_path / "o.nrrd"), timeout=60)
    assert outcome.ok, outcome
    assert any("job" in line for line in outcome.log_tail)
    assert outcome.result["sha256"] == file_sha256(tmp_path / "o.nrrd")


def test_a_module_named_like_the_standard_library_in_the_users_folder_is_not_imported(ncct, tmp_path, work_root,
                                                                                      monkeypatch):
    """`python -m` puts the current folder first on sys.path; the worker must not import from it."""
    folder = tmp_path / "where-the-user-works"
    folder.mkdir()
    (folder / "json.py").write_text("raise SystemExit('the json.py of the current folder was imported')\n")
    shadowed = subprocess.run([sys.executable, "-c", "import json"], cwd=folder, capture_output=True, text=True)
    assert shadowed.returncode != 0 and "current folder was imported" in shadowed.stderr  # the hazard is real
    monkeypatch.chdir(folder)
    output = tmp_path / "out" / "synthetic.nrrd"
    outcome = WorkerClient(dummy=True, work_root=work_root).run(make_job(ncct, output))
    assert outcome.ok, outcome
    assert read_hu(output).shape == read_hu(ncct).shape
