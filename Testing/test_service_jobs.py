"""Jobs on a real synthesis service: the CLI and the Python client against it, fairness between users,
crashed and killed workers, cancel, a restarted server, reattaching, and the retention policy."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from service_support import cli, job_files, start_service
from worker_support import read_hu, write_mr_like, write_tiny_ct

from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.protocol import make_job
from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

pytestmark = [pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")


@pytest.fixture(scope="module")
def ncct(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "ncct.nrrd"
    write_tiny_ct(path)
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = start_service(tmp_path_factory.mktemp("jobs"), users=("alice", "bob", "carol"), dummy_seconds=0.5)
    yield running
    running.stop()


def test_synthesize_with_server_writes_what_a_local_run_writes_and_names_the_server(service, ncct, tmp_path):
    remote = cli("synthesize", str(ncct), str(tmp_path / "remote.nrrd"), "--server", service.url, "--json",
                 env={"DIGITAL_CONTRAST_TOKEN": service.tokens["alice"]})
    assert remote.returncode == 0, remote.stderr
    provenance = json.loads(remote.stdout)
    assert provenance["server"]["url"] == service.url and provenance["server"]["device"] == "cpu"
    assert provenance["output"]["path"] == str(tmp_path / "remote.nrrd")
    assert provenance["input"]["path"] == str(ncct)
    assert json.loads((tmp_path / "remote.nrrd.json").read_text()) == provenance
    # the same worker code run locally: voxel for voxel the same
    from DigitalContrastLib.worker.client import run_synthesis_job

    run_synthesis_job(ncct, tmp_path / "local.nrrd", SynthesisOptions(), dummy=True)
    assert np.array_equal(read_hu(tmp_path / "local.nrrd"), read_hu(tmp_path / "remote.nrrd"))


def test_the_cli_refuses_a_non_ct_with_exit_2_and_a_wrong_token_with_exit_4_writing_nothing(service, tmp_path):
    write_mr_like(tmp_path / "mr.nrrd")
    refused = cli("synthesize", str(tmp_path / "mr.nrrd"), str(tmp_path / "out.nrrd"), "--server", service.url,
                  env={"DIGITAL_CONTRAST_TOKEN": service.tokens["alice"]})
    assert refused.returncode == 2 and "mr.nrrd" in refused.stderr and "Traceback" not in refused.stderr
    unauthorized = cli("synthesize", str(tmp_path / "mr.nrrd"), str(tmp_path / "out.nrrd"), "--server", service.url,
                       env={"DIGITAL_CONTRAST_TOKEN": "dc_12345678_" + "x" * 43})
    assert unauthorized.returncode == 4 and "token" in unauthorized.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr.nrrd"]


def test_the_remote_client_is_a_drop_in_for_the_local_one(service, ncct, tmp_path):
    client = RemoteWorkerClient(service.url, service.tokens["bob"])
    job_id = client.start(make_job(ncct, tmp_path / "out" / "syn.nrrd",
                                   SynthesisOptions(uncertainty_output=str(tmp_path / "out" / "sd.nrrd"))))
    assert client.running and isinstance(job_id, str)
    events = []
    while client.running:
        events += client.poll()
        time.sleep(0.01)
    outcome = client.outcome
    assert outcome.ok, outcome
    kinds = [e.type for e in events]
    assert kinds[-1] == "end" and "hello" in kinds and "result" in kinds and kinds.count("end") == 1
    fractions = [e.overall_fraction for e in events if e.type == "progress"]
    assert fractions == sorted(fractions) and events[-1].overall_fraction == 1.0
    assert all(e.job_id == job_id for e in events)
    assert outcome.output_path == tmp_path / "out" / "syn.nrrd" and outcome.result["output"] == str(outcome.output_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sd.nrrd", "syn.nrrd", "syn.nrrd.json"]
    assert client.hello["mode"] == "dummy"


def test_three_clients_with_three_jobs_each_all_finish_in_a_fair_order_on_two_workers(tmp_path, ncct):
    running = start_service(tmp_path, users=("u1", "u2", "u3"), dummy_seconds=1.0, extra=("--workers", "2"))
    try:
        ids: dict[str, list[str]] = {}

        def submit(user: str) -> None:
            ids[user] = [running.submit(ncct, user)[1]["id"] for _ in range(3)]

        threads = [threading.Thread(target=submit, args=(user,)) for user in ("u1", "u2", "u3")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        jobs = [running.wait_until(job_id, user, timeout=180) | {"user": user}
                for user, job_ids in ids.items() for job_id in job_ids]
    finally:
        running.stop()
    assert [job["status"] for job in jobs] == ["ok"] * 9
    assert {job["worker"]["slot"] for job in jobs} == {0, 1}
    spans = [(job["started"], job["ended"]) for job in jobs]
    most_at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most_at_once <= 2
    # fair: at every point of the start order no user is more than one job ahead of another
    started: dict[str, int] = {"u1": 0, "u2": 0, "u3": 0}
    for job in sorted(jobs, key=lambda j: j["started"])[1:]:
        started[job["user"]] += 1
        assert max(started.values()) - min(started.values()) <= 2, started
    first_round = [job["user"] for job in sorted(jobs, key=lambda j: j["started"])[:4]]
    assert len(set(first_round)) == 3, first_round


def test_a_worker_killed_mid_job_fails_that_job_with_its_last_log_lines_and_the_next_job_succeeds(tmp_path, ncct):
    running = start_service(tmp_path, users=("alice",), dummy_seconds=20.0)
    try:
        job = running.submit(ncct, "alice")[1]
        job = running.wait_until(job["id"], "alice", ("running",), stage="inference")
        os.kill(job["worker"]["pid"], signal.SIGKILL)
        failed = running.wait_until(job["id"], "alice", timeout=30)
        assert failed["status"] == "error" and failed["error"]["code"] == "worker_crashed"
        assert "SIGKILL" in failed["error"]["message"]
        assert any("DigitalContrast worker" in line for line in failed["error"]["log_tail"])
        assert not (running.data_dir / "jobs" / job["id"] / "result").exists()
        events = running.request("GET", f"/v1/jobs/{job['id']}/events", user="alice")[2].decode()
        assert "event: end" in events and "worker_crashed" in events
        next_job = running.submit(ncct, "alice")[1]
        done = running.wait_until(next_job["id"], "alice", timeout=60)
        assert done["status"] == "ok" and done["worker"]["pid"] != job["worker"]["pid"]
    finally:
        running.stop()


def test_a_cancel_mid_inference_leaves_no_process_and_no_files(tmp_path, ncct):
    running = start_service(tmp_path, users=("alice",), dummy_seconds=30.0,
                            extra=("--retention-hours", "0.001"))
    try:
        job = running.submit(ncct, "alice")[1]
        job = running.wait_until(job["id"], "alice", ("running",), stage="inference")
        worker = psutil.Process(job["worker"]["pid"])
        status, cancelled = running.json("POST", f"/v1/jobs/{job['id']}/cancel", user="alice")
        assert status == 200 and cancelled["status"] == "cancelled"
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        assert running.worker_pids() == []
        assert job_files(running, job["id"]) == ["job.json"]  # the record only, no patient data
        assert not list((running.data_dir / "work").glob("dc-job-*"))
        time.sleep(8)  # past the 3.6 s retention: the sweep removes the record too
        assert job_files(running, job["id"]) == [] and running.json("GET", f"/v1/jobs/{job['id']}", user="alice")[0] == 404
    finally:
        running.stop()


def test_a_queued_job_cancelled_never_runs(service, ncct):
    first = service.submit(ncct, "carol")[1]
    second = service.submit(ncct, "carol")[1]
    status, body = service.json("POST", f"/v1/jobs/{second['id']}/cancel", user="carol")
    assert status == 200 and body["status"] == "cancelled" and body["started"] is None
    assert service.wait_until(first["id"], "carol")["status"] == "ok"
    assert job_files(service, second["id"]) == ["job.json"]


def test_a_restarted_server_marks_its_running_job_failed_never_lost(tmp_path, ncct):
    running = start_service(tmp_path, users=("alice",), dummy_seconds=30.0)
    job = running.submit(ncct, "alice")[1]
    running.wait_until(job["id"], "alice", ("running",))
    running.stop(kill=True)
    again = start_service(tmp_path, users=(), tokens=running.tokens, data_dir=running.data_dir)
    try:
        failed = again.wait_until(job["id"], "alice", timeout=10)
        assert failed["status"] == "error" and failed["error"]["code"] == "server_restarted"
        assert "restarted" in failed["error"]["message"]
        assert job_files(again, job["id"]) == ["job.json"]
        events = again.request("GET", f"/v1/jobs/{job['id']}/events", user="alice")[2].decode()
        assert "server_restarted" in events
    finally:
        again.stop()


def test_a_client_that_disconnects_does_not_cancel_and_reattaches_by_id(service, ncct, tmp_path):
    first = RemoteWorkerClient(service.url, service.tokens["alice"])
    first.start(make_job(ncct, tmp_path / "a.nrrd"))
    while first.server_job_id is None:
        first.poll()
        time.sleep(0.01)
    server_id = first._job.server_id
    first._job.cancelled.set()  # the client vanishes without cancelling (a closed laptop)
    first._job = None
    second = RemoteWorkerClient(service.url, service.tokens["alice"])
    second.attach(server_id, tmp_path / "b.nrrd")
    outcome = second.wait(timeout=60)
    assert outcome.ok and (tmp_path / "b.nrrd").is_file() and not (tmp_path / "a.nrrd").exists()
    assert json.loads((tmp_path / "b.nrrd.json").read_text())["server"]["job_id"] == server_id
    # events resume from any point
    status, _, body = service.request("GET", f"/v1/jobs/{server_id}/events?after=3", user="alice")
    assert status == 200 and body.decode().startswith("id: 4\n")


def test_the_client_cancels_on_the_server_and_writes_nothing(tmp_path, ncct):
    running = start_service(tmp_path, users=("alice",), dummy_seconds=30.0)
    try:
        client = RemoteWorkerClient(running.url, running.tokens["alice"])
        client.start(make_job(ncct, tmp_path / "out.nrrd"))
        deadline = time.monotonic() + 60
        while not any(e.type == "stage" and e.data["stage"] == "inference" for e in client.poll()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server_id = client.server_job_id
        outcome = client.cancel()
        assert outcome.status == "cancelled" and [e.type for e in client.poll()] == ["end"]
        assert running.json("GET", f"/v1/jobs/{server_id}", user="alice")[1]["status"] == "cancelled"
        assert running.worker_pids() == [] and not (tmp_path / "out.nrrd").exists()
    finally:
        running.stop()


def test_evaluate_with_server_gives_the_local_results(service, tmp_path):
    from DigitalContrastLib.cohort.phantom_cohort import make_phantom_cohort

    csv_path = make_phantom_cohort(tmp_path / "cohort", cases=2, misregister=False)
    env = {"DIGITAL_CONTRAST_TOKEN": service.tokens["alice"]}
    remote = cli("evaluate", str(csv_path), "--out", str(tmp_path / "remote"), "--server", service.url,
                 "--no-progress", "--register", "none", env=env)
    assert remote.returncode == 0, remote.stderr
    local = cli("evaluate", str(csv_path), "--out", str(tmp_path / "local"), "--dummy", "--no-progress",
                "--register", "none")
    assert local.returncode == 0, local.stderr
    for case in ("c001", "c002"):
        a = read_hu(tmp_path / "remote" / "cases" / case / "synthetic.nrrd")
        b = read_hu(tmp_path / "local" / "cases" / case / "synthetic.nrrd")
        assert np.array_equal(a, b)
    summary = json.loads((tmp_path / "remote" / "summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and service.url in summary["where"]


def test_the_worker_s_gate_warnings_reach_the_client_naming_the_upload_not_a_server_path(service, tmp_path):
    thick = tmp_path / "thick.nrrd"
    write_tiny_ct(thick, spacing_xyz_mm=(0.8, 0.8, 6.0))
    client = RemoteWorkerClient(service.url, service.tokens["alice"])
    events: list = []
    outcome = client.run(make_job(thick, tmp_path / "out.nrrd"), on_event=events.append)
    assert outcome.ok, outcome
    warnings = [e.data for e in events if e.type == "warning"]
    assert [w["code"] for w in warnings] == ["thick_slices"]
    assert "thick.nrrd" in warnings[0]["message"] and str(service.data_dir) not in warnings[0]["message"]
    status = service.json("GET", f"/v1/jobs/{outcome.result['server']['job_id']}", user="alice")[1]
    assert [w["code"] for w in status["gate_warnings"]] == ["thick_slices"]


def test_the_fair_queue_serves_users_in_turn_and_each_user_first_in_first_out():
    from DigitalContrastLib.service.jobs import ServiceJob
    from DigitalContrastLib.service.scheduler import FairQueue

    queue = FairQueue()
    jobs = [ServiceJob(id=f"{user}{k}", user=user, folder=Path("/nonexistent"), input_name="x.nrrd")
            for user in ("a", "b", "c") for k in range(3)]
    for job in jobs:  # a's whole batch first, then b's, then c's
        queue.put(job)
    assert queue.positions()["c0"] == 2 and queue.positions()["a1"] == 3
    order = [queue.take(0.1).id for _ in range(9)]
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    assert queue.take(0.01) is None
    late = ServiceJob(id="d0", user="d", folder=Path("/nonexistent"), input_name="x.nrrd")
    queue.put(jobs[0])
    queue.put(late)
    assert queue.remove(late) and not queue.remove(late) and queue.take(0.1).id == "a0"
