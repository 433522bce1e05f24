"""Cohort evaluation end to end on a 5-case phantom cohort with one deliberately broken case:
real files, the real background worker (its numpy-only dummy synthesis), real registration,
real subprocesses, a real local Dask cluster on loopback and a real headless browser."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from html_screenshot import screenshot
from PIL import Image

from DigitalContrastLib.cohort.case import EvaluationSettings, finished_result
from DigitalContrastLib.cohort.phantom_cohort import make_phantom_cohort
from DigitalContrastLib.cohort.run import RUN_LOG, evaluate_cohort, plan_local_pool, read_run_log
from DigitalContrastLib.cohort.table import METRIC_COLUMNS, read_cohort_csv, read_metrics_csv
from DigitalContrastLib.ct.io import read_volume
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.evaluation.metrics import body_metrics, roi_metrics

CASES = 5
BROKEN_CASE = "c003"  # broken_positions(5, 1) == [2]: the middle case
#: Columns that describe the machine and the moment, not the case: they differ between runs.
RUN_DEPENDENT = re.compile(r"^(seconds_|energy_j$|energy_window_s$|co2e_g$)")


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def _assert_same_results(rows: list[dict], expected: list[dict]) -> None:
    """Equal case by case, column by column, except what depends on the machine and the moment;
    the registration's final metric value is a multi-threaded sum (ITK adds in thread order), so
    it may differ in the last digits: it is compared to 1e-9."""
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in expected]
    for row, want in zip(rows, expected):
        assert row.keys() == want.keys()
        for key in want:
            if RUN_DEPENDENT.match(key):
                continue
            if key == "registration_metric" and want[key]:
                assert float(row[key]) == pytest.approx(float(want[key]), rel=1e-9), (row["case_id"], key)
            else:
                assert row[key] == want[key], (row["case_id"], key)


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory) -> Path:
    return make_phantom_cohort(tmp_path_factory.mktemp("cohort"), cases=CASES, broken=1)


@pytest.fixture(scope="module")
def evaluated(cohort_csv, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``digital-contrast evaluate`` run once, as a user runs it."""
    out = tmp_path_factory.mktemp("evaluated")
    done = _cli("evaluate", str(cohort_csv), "--out", str(out), "--dummy", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


@pytest.mark.process
@pytest.mark.slow
def test_four_cases_are_evaluated_and_the_broken_one_is_reported_with_its_reason(evaluated, cohort_csv):
    out, done = evaluated
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["case_id"] for r in rows] == [f"c{k:03d}" for k in range(1, CASES + 1)]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    broken = next(r for r in rows if r["case_id"] == BROKEN_CASE)
    assert broken["status"] == "failed" and broken["reason"].startswith("gate: [unreadable]")
    assert "noncontrast.nrrd" in broken["reason"] and broken["body_mae_hu"] == ""
    # the CSV's own columns travel through; a failed case keeps them too
    assert broken["broken"] == "truncated" and broken["seed"] == "20003"
    for r in ok:
        assert r["model_id"] == "dummy" and r["device"] == "cpu" and len(r["synthetic_sha256"]) == 64
        assert r["energy_method"] in ("estimate_cpu_tdp", "rapl") and float(r["energy_j"]) > 0
        assert float(r["co2e_g"]) == pytest.approx(float(r["energy_j"]) / 3.6e6 * float(r["grid_g_per_kwh"]))
        assert r["registration_method"] == "rigid" and float(r["seconds_on_case"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"cases": 5, "ok": 4, "failed": 1}
    assert summary["failed_cases"][0]["case_id"] == BROKEN_CASE
    mae = summary["metrics"]["body_mae_hu"]
    assert mae["n"] == 4 and mae["ci95_mean"][0] <= mae["mean"] <= mae["ci95_mean"][1]
    assert summary["statistics"]["bootstrap_seed"] == 20240 and summary["statistics"]["bootstrap_resamples"] == 2000
    assert summary["bland_altman"]["max_diameter_mm"]["n"] == 4
    assert summary["energy"]["jobs"] == 4 and sum(summary["energy"]["methods"].values()) == 4
    assert "4 of 5 cases evaluated, 1 failed" in done.stdout and f"{BROKEN_CASE}: FAILED, gate:" in done.stdout
    assert "report:" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.process
@pytest.mark.slow
def test_metrics_in_the_csv_equal_those_recomputed_from_the_written_volumes(evaluated, cohort_csv):
    out, _ = evaluated
    cases = {c.case_id: c for c in read_cohort_csv(cohort_csv)}
    for row in read_metrics_csv(out / "metrics.csv"):
        if row["status"] != "ok":
            continue
        case = cases[row["case_id"]]
        folder = out / "cases" / row["case_id"]
        noncontrast = read_volume(case.noncontrast)
        synthetic = read_volume(folder / "synthetic.nrrd")
        real = read_volume(folder / "real_registered.nrrd")
        labels = read_volume(case.labels)
        assert synthetic.same_geometry(noncontrast) and real.same_geometry(noncontrast)
        mask = body_mask_from_ct(noncontrast.array) & body_mask_from_ct(real.array)
        expected = {**body_metrics(synthetic.array, real.array, mask),
                    **roi_metrics(synthetic.array, real.array, labels.array, noncontrast.spacing_mm)}
        expected["body_voxels"] = int(mask.sum())
        for name in METRIC_COLUMNS:
            value = expected[name]
            if isinstance(value, float) and np.isnan(value):
                assert row[name] == "", (row["case_id"], name)
            else:
                assert float(row[name]) == pytest.approx(value, rel=1e-12, abs=1e-12), (row["case_id"], name)
        # the synthetic scan adds contrast where the real one has it: the dummy enhances soft tissue
        assert float(row["lumen_median_hu_pred"]) > float(row["lumen_median_hu_ref"]) - 200


@pytest.mark.process
@pytest.mark.slow
def test_the_report_renders_in_a_headless_browser_with_every_picture(evaluated, tmp_path):
    out, _ = evaluated
    report = out / "report.html"
    html = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', html)
    pictures = [s for s in sources if s.endswith("side_by_side.png")]
    assert len(set(pictures)) == 4 and not any(BROKEN_CASE in s for s in pictures)
    assert any("bland_altman_lumen_median_hu" in s for s in sources)
    assert any("bland_altman_max_diameter_mm" in s for s in sources)
    assert any("metric_distributions" in s for s in sources)
    for source in sources:
        assert not Path(source).is_absolute() and ".." not in source  # the folder moves as a whole
        with Image.open(out / source) as image:
            image.load()  # decodes
            assert image.width > 100 and image.height > 100
    assert "could avoid" in html and "9.2 kg" in html and "McAlister" in html
    assert BROKEN_CASE in html and "unreadable" in html

    png = screenshot(report, tmp_path / "report.png", tmp_path / "profile")
    with Image.open(png) as shot:
        rgb = np.asarray(shot.convert("RGB"), dtype=np.int16)
    assert rgb.shape[:2] == (3000, 1200)
    assert rgb.std() > 20  # not a blank page
    # the side-by-side pictures have black backgrounds and the plots colour: both are on the page
    dark = (rgb.max(axis=2) < 30).mean()
    assert dark > 0.02, f"no picture visible (dark share {dark:.3f})"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500


@pytest.mark.process
@pytest.mark.slow
def test_killed_half_way_and_rerun_finished_cases_are_not_recomputed(cohort_csv, evaluated, tmp_path):
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "DigitalContrastLib.commands.cli", "evaluate", str(cohort_csv), "--out", str(out),
               "--dummy", "--dummy-seconds", "2", "--no-progress"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and first.poll() is None:
            ok = [p for p in out.glob("cases/*/result.json") if json.loads(p.read_text())["status"] == "ok"]
            if len(ok) >= 2:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the run finished before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert not (out / "metrics.csv").exists()
    kept = {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("cases/*/result.json")
            if json.loads(p.read_text())["status"] == "ok"}
    assert 2 <= len(kept) < 4

    done = _cli("evaluate", str(cohort_csv), "--out", str(out), "--dummy", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    for case_id, (mtime_ns, content) in kept.items():
        path = out / "cases" / case_id / "result.json"
        assert path.stat().st_mtime_ns == mtime_ns and path.read_bytes() == content, case_id
    events = read_run_log(out / RUN_LOG)
    last_run = events[-1]["run"]
    this_run = [e for e in events if e["run"] == last_run]
    assert {e["case_id"] for e in this_run if e["event"] == "case_skipped"} == set(kept)
    assert this_run[-1]["event"] == "run_finished"
    assert this_run[-1]["synthesis_calls"] == 4 - len(kept)  # only the unfinished ok cases synthesized again
    assert set(this_run[-1]["computed"]) == {f"c{k:03d}" for k in range(1, CASES + 1)} - set(kept)
    # the results are those of an uninterrupted run
    resumed = read_metrics_csv(out / "metrics.csv")
    _assert_same_results(resumed, read_metrics_csv(evaluated[0] / "metrics.csv"))
    # a third run recomputes nothing
    again = _cli("evaluate", str(cohort_csv), "--out", str(out), "--dummy", "--no-progress")
    assert again.returncode == 0 and "4 kept from an earlier run, 0 synthesized now" in again.stdout


@pytest.mark.process
@pytest.mark.slow
def test_a_damaged_output_or_a_changed_setting_makes_a_finished_case_run_again(cohort_csv, evaluated, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(evaluated[0], out)
    cases = read_cohort_csv(cohort_csv)
    settings = EvaluationSettings(dummy=True)
    assert finished_result(cases[0], out, settings) is not None
    assert finished_result(cases[2], out, settings) is None  # failed: redone
    with open(out / "cases" / "c001" / "synthetic.nrrd", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    assert finished_result(cases[0], out, settings) is None
    assert finished_result(cases[1], out, EvaluationSettings(dummy=True, register="none")) is None
    assert finished_result(cases[1], out, EvaluationSettings(dummy=True, device="cpu", threads=1)) is not None


@pytest.mark.process
@pytest.mark.slow
def test_a_local_dask_cluster_of_two_workers_gives_the_local_results(cohort_csv, evaluated, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        run = evaluate_cohort(cohort_csv, tmp_path / "dask", EvaluationSettings(dummy=True),
                              scheduler=cluster.scheduler_address, progress_bar=False)
        with distributed.Client(cluster.scheduler_address) as client:
            dask_pids = set(client.run(os.getpid).values())
    ran_in = {json.loads(p.read_text())["node"]["pid"] for p in (tmp_path / "dask").glob("cases/*/result.json")}
    assert len(dask_pids) == 2 and ran_in <= dask_pids  # every case ran in a Dask worker process
    assert run.summary["counts"] == {"cases": 5, "ok": 4, "failed": 1}
    assert "Dask cluster at tcp://127.0.0.1:" in run.summary["where"]
    _assert_same_results(read_metrics_csv(run.metrics_csv), read_metrics_csv(evaluated[0] / "metrics.csv"))
    assert run.synthesis_calls == 4


@pytest.mark.process
@pytest.mark.slow
def test_two_local_worker_processes_give_the_same_results(cohort_csv, evaluated, tmp_path):
    run = evaluate_cohort(cohort_csv, tmp_path / "pool", EvaluationSettings(dummy=True), workers=2, progress_bar=False)
    assert "2 worker process(es)" in run.summary["where"]
    _assert_same_results(read_metrics_csv(run.metrics_csv), read_metrics_csv(evaluated[0] / "metrics.csv"))


def test_the_local_pool_policy_one_process_per_gpu_else_one_with_every_core():
    cpu = plan_local_pool(device="auto", gpus=0)
    assert cpu.workers == 1 and cpu.devices == ("auto",) and "every core" in cpu.policy
    gpus = plan_local_pool(device="auto", gpus=3, threads=4)
    assert gpus.devices == ("cuda:0", "cuda:1", "cuda:2") and gpus.threads_per_worker == 4
    assert plan_local_pool(device="cpu", gpus=3).devices == ("cpu",)
    assert plan_local_pool(workers=2, device="cuda:1", gpus=3).devices == ("cuda:1", "cuda:1")
    split = plan_local_pool(workers=2, device="cpu", gpus=0)
    assert split.workers == 2 and split.threads_per_worker >= 1


@pytest.mark.process
def test_every_kind_of_broken_case_fails_with_its_reason_and_the_run_goes_on(tmp_path):
    csv_path = make_phantom_cohort(tmp_path / "in", cases=3, broken=3, size_xyz=(48, 48, 24), spacing_xyz_mm=(7.2, 7.2, 7.2))
    run = evaluate_cohort(csv_path, tmp_path / "out", EvaluationSettings(dummy=True), progress_bar=False)
    reasons = {row["case_id"]: row["reason"] for row in run.rows}
    assert [row["status"] for row in run.rows] == ["failed"] * 3
    assert "[unreadable]" in reasons["c001"] and "[too_few_slices]" in reasons["c002"] and "[not_found]" in reasons["c003"]
    assert run.synthesis_calls == 0 and run.summary["counts"]["ok"] == 0
    assert run.report_html.is_file() and "nothing to show" in run.report_html.read_text()


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    return make_phantom_cohort(tmp_path_factory.mktemp("tiny"), cases=2, size_xyz=(64, 64, 32), spacing_xyz_mm=(5.4, 5.4, 5.4))


@pytest.mark.process
def test_a_missing_model_stops_the_run_with_one_sentence_and_exit_3(tiny_cohort, tmp_path):
    done = _cli("evaluate", str(tiny_cohort), "--out", str(tmp_path / "out"), "--dummy", "--model", "no-such-model",
                "--no-progress")
    assert done.returncode == 3, done.stdout + done.stderr
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert "no-such-model" in last and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "metrics.csv").exists()


@pytest.mark.process
def test_a_case_over_its_time_limit_fails_and_the_run_goes_on(tiny_cohort, tmp_path):
    run = evaluate_cohort(tiny_cohort, tmp_path / "out", EvaluationSettings(dummy=True, dummy_seconds=30, case_timeout_s=1.0),
                          progress_bar=False)
    assert [row["status"] for row in run.rows] == ["failed", "failed"]
    assert all("cancelled after 1 s" in row["reason"] for row in run.rows)
    assert run.seconds < 25 and run.report_html.is_file()
    assert not (tmp_path / "out" / "cases" / "c001" / "synthetic.nrrd").exists()  # nothing half-written


@pytest.mark.process
@pytest.mark.slow
def test_the_shipped_model_end_to_end_on_a_small_phantom_cohort(tmp_path):
    """The real path: the background worker loads the shipped model (torch) and synthesizes."""
    from DigitalContrastLib.commands.demo import shipped_model_id

    model_id = shipped_model_id()
    if model_id is None:
        pytest.skip("no shipped model is installed here (the synthesis engine and its weights)")
    csv_path = make_phantom_cohort(tmp_path / "in", cases=2, seed_start=20101)
    run = evaluate_cohort(csv_path, tmp_path / "out", EvaluationSettings(device="cpu"), progress_bar=False)
    assert [row["status"] for row in run.rows] == ["ok", "ok"], [row["reason"] for row in run.rows]
    for row in run.rows:
        assert row["model_id"] == model_id and len(row["model_weights_sha256"]) == 64 and row["device"] == "cpu"
        # the non-contrast lumen is 30-50 HU: the synthesis must show it enhanced
        assert row["lumen_median_hu_pred"] > 150, row
        assert np.isfinite(row["body_mae_hu"]) and row["energy_method"] in ("estimate_cpu_tdp", "rapl")
    # one persistent worker: the model is loaded once for the cohort
    results = [json.loads((tmp_path / "out" / "cases" / c / "result.json").read_text()) for c in ("c001", "c002")]
    assert results[1]["synthesis"]["timings"]["cache_hit"] is True
