"""A site's own data at tiny scale: site-like DICOM pairs -> prepare -> train -> cross-validate.

The cohort is generated (phantoms.site_pairs): each contrast scan a separate acquisition (its own
field of view, pixel size and slices, the patient turned by 2-5 degrees and the table shifted by
5-15 mm), both scans DICOM series of their own; one patient has a second visit; three bad pairs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DigitalContrastLib.phantoms.site_pairs import SMALL_PROTOCOL, target_registration_error_mm, write_site_cohort

pytestmark = [pytest.mark.slow, pytest.mark.process]
PATIENTS = 4
GOOD_CASES = ["s001", "s002", "s003", "s004", "s005"]  # patient P0003 has two visits (s003, s004)
BAD = ("other_patient", "other_region", "unenhanced_contrast")
TINY = ["--spacing", "7.5", "7.5", "12.5", "--patch-size", "16", "32", "32", "--roi-size", "16", "32", "32",
        "--channels", "4", "8", "16", "--res-units", "0", "--batch-size", "2", "--val-cases", "1"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_site_cohort(tmp_path_factory.mktemp("site"), PATIENTS, protocol=SMALL_PROTOCOL, second_visit_every=3,
                             bad=BAD)


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cases")
    done = _cli("prepare", str(cohort), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


def test_every_good_pair_is_prepared_and_every_bad_one_excluded_with_one_sentence(prepared):
    out, done = prepared
    summary = json.loads((out / "prepare.json").read_text())
    status = {c["case_id"]: c for c in summary["cases"]}
    assert [k for k, c in status.items() if c["status"] == "prepared"] == GOOD_CASES
    assert summary["counts"]["patients"] == PATIENTS
    reasons = {k: c["reason"] for k, c in status.items() if c["status"] == "excluded"}
    assert "different patients" in reasons["bad-other-patient"]
    assert "does not overlap" in reasons["bad-other-region"] and "body regions" in reasons["bad-other-region"]
    assert "does not look enhanced" in reasons["bad-unenhanced-contrast"]
    for reason in reasons.values():
        assert reason.count(". ") == 0 and "Traceback" not in reason  # one sentence each
    assert "Traceback" not in done.stderr
    assert "5 prepared, 3 excluded, 0 failed" in done.stdout
    for case_id in GOOD_CASES:  # each case holds the pair on one grid and its mask
        from DigitalContrastLib.ct.io import read_volume

        folder = out / case_id
        nc, c, mask = (read_volume(folder / name) for name in ("noncontrast.nrrd", "contrast.nrrd", "enhancement.nrrd"))
        assert nc.same_geometry(c) and nc.same_geometry(mask) and nc.array.dtype == np.int16
        assert (mask.array == 1).sum() > 50, case_id
    assert not (out / ".staging").exists()
    assert sorted(p.name for p in (out / "excluded").glob("*.json")) == sorted(f"bad-{k.replace('_', '-')}.json" for k in BAD)


def test_the_registration_meets_the_landmarks_of_the_generators_motion(prepared, cohort):
    out, _ = prepared
    for case_id in GOOD_CASES:
        truth = json.loads((cohort.parent / case_id / "truth.json").read_text())
        before = target_registration_error_mm(truth, sitk.Euler3DTransform())
        after = target_registration_error_mm(truth, sitk.ReadTransform(str(out / case_id / "registration.tfm")))
        assert before["mean_mm"] > 4.0, (case_id, before)  # the motion is real
        assert after["n"] > 100 and after["mean_mm"] <= 1.5, (case_id, after)
        quality = json.loads((out / case_id / "case.json").read_text())["quality"]
        assert quality["ncc_after"] > quality["ncc_before"] and quality["bone_dice_after"] > quality["bone_dice_before"]


def test_no_output_names_the_patient_or_the_study(prepared, cohort):
    import pydicom

    out, _ = prepared
    secrets = set()
    for series in cohort.parent.glob("*/*/IM00001.dcm"):
        ds = pydicom.dcmread(series, stop_before_pixels=True)
        secrets |= {str(ds.PatientName), str(ds.PatientID), ds.StudyInstanceUID, ds.SeriesInstanceUID,
                    ds.FrameOfReferenceUID, ds.StudyDate, str(ds.AcquisitionTime)}
    secrets |= {"P0001", "P0003"}  # the CSV's patient column
    found = []
    for path in out.rglob("*"):
        if path.is_file() and path.name != ".patient-key":
            data = path.read_bytes()
            found += [(path.name, s) for s in secrets if s and s.encode() in data]
    assert found == []
    facts = json.loads((out / "s003" / "case.json").read_text())
    assert facts["patient_key"] == json.loads((out / "s004" / "case.json").read_text())["patient_key"]
    assert facts["noncontrast"]["study_month"].count("-") == 1 and facts["contrast"]["dicom"]["KVP"] == 120.0
    assert facts["contrast"]["seconds_after_contrast_start"] == 25.0 and facts["seconds_between_scans"] == 270.0


def test_the_enhancement_mask_finds_the_enhanced_aorta(prepared):
    from DigitalContrastLib.ct.io import read_volume
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.evaluation.registration import resample_to
    from DigitalContrastLib.phantoms.site_pairs import make_site_pair

    out, _ = prepared
    truth = make_site_pair(30001, SMALL_PROTOCOL)  # s001: the site cohort's first patient, seed 30001
    mask = read_volume(out / "s001" / "enhancement.nrrd")
    labels = resample_to(truth.labels, mask, None, default_hu=0, interpolator="nearest").array
    vessel = mask.array == 1
    arterial = np.isin(labels, [LABELS[n] for n in ("aortic_lumen", "branch_artery", "heart_left", "pulmonary_artery")])
    precision = (vessel & arterial).sum() / vessel.sum()
    lumen = labels == LABELS["aortic_lumen"]
    assert precision > 0.7, precision
    assert (vessel & lumen).sum() / lumen.sum() > 0.3  # 4 mm voxels: the lumen's rim is partial volume
    assert not (vessel & (labels == LABELS["cortical_bone"])).any()


def test_killed_half_way_nothing_half_written_and_the_rerun_keeps_what_was_finished(cohort, prepared, tmp_path):
    subset = cohort.parent / "three.csv"  # beside the cohort: its relative paths hold
    subset.write_text("\n".join(cohort.read_text().splitlines()[:4]) + "\n")
    out = tmp_path / "cases"
    command = [sys.executable, "-m", "DigitalContrastLib.commands.cli", "prepare", str(subset), "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and first.poll() is None and not (out / "s001" / "case.json").is_file():
            time.sleep(0.05)
        assert first.poll() is None, "the run finished before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    cases = [p for p in out.iterdir() if p.is_dir() and p.name not in ("excluded", ".staging")]
    assert cases and all((p / "case.json").is_file() for p in cases)  # a case folder is complete or absent
    kept = {p.name: (p / "case.json").stat().st_mtime_ns for p in cases}
    done = _cli("prepare", str(subset), "--out", str(out))
    assert done.returncode == 0, done.stderr
    for name, mtime in kept.items():
        assert (out / name / "case.json").stat().st_mtime_ns == mtime and f"{name}: prepared earlier, kept" in done.stdout
    assert not (out / ".staging").exists()
    again = _cli("prepare", str(subset), "--out", str(out))
    assert "(3 kept from an earlier run" in again.stdout
    assert _same_statuses(out, prepared[0])


def _same_statuses(part: Path, whole: Path) -> bool:
    """Every case of ``part``'s run has the status and reason it has in ``whole``'s."""
    rows = [{c["case_id"]: (c["status"], c["reason"]) for c in json.loads((p / "prepare.json").read_text())["cases"]}
            for p in (part, whole)]
    return all(rows[1][k] == v for k, v in rows[0].items())


def test_a_folder_of_several_series_needs_its_column_in_the_csv(tmp_path):
    csv_path = write_site_cohort(tmp_path / "site", 1, seed_start=30002, protocol=SMALL_PROTOCOL, one_folder=True)
    text = csv_path.read_text()
    assert "noncontrast_series" in text
    header, row = text.splitlines()
    columns = header.split(",")
    keep = [k for k, name in enumerate(columns) if not name.endswith("_series")]
    stripped = tmp_path / "site" / "without_series.csv"
    stripped.write_text("\n".join(",".join(line.split(",")[k] for k in keep) for line in (header, row)) + "\n")
    done = _cli("prepare", str(stripped), "--out", str(tmp_path / "cases"))
    assert done.returncode == 0
    assert "s001: FAILED, noncontrast:" in done.stdout and "add a column 'noncontrast_series'" in done.stdout
    assert not (tmp_path / "cases" / "s001").exists()
    done = _cli("prepare", str(csv_path), "--out", str(tmp_path / "cases"))
    assert done.returncode == 0 and "s001: prepared" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "cases" / "excluded" / "s001.json").exists()


def test_a_bad_cohort_csv_is_refused_with_one_sentence_and_nothing_written(tmp_path):
    bad = tmp_path / "cohort.csv"
    bad.write_text("case,ncct\nc1,a.nrrd\n")
    done = _cli("prepare", str(bad), "--out", str(tmp_path / "cases"))
    assert done.returncode == 2 and "no 'case_id' column" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cases").exists()


def test_the_report_shows_every_qc_picture_in_a_headless_browser(prepared, tmp_path):
    import re

    from html_screenshot import screenshot
    from PIL import Image

    out, _ = prepared
    html = (out / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(sources) == sorted(f"{c}/qc.png" for c in GOOD_CASES)
    assert "bad-other-patient" in html and "different patients" in html
    png = screenshot(out / "report.html", tmp_path / "report.png", tmp_path / "profile")
    with Image.open(png) as shot:
        rgb = np.asarray(shot.convert("RGB"), dtype=np.int16)
    assert rgb.std() > 20 and (rgb.max(axis=2) < 30).mean() > 0.02  # the dark QC pictures are on the page


def test_train_on_prepared_cases_then_cross_validate_split_by_patient(prepared, tmp_path):
    from DigitalContrastLib.models.cards import load_card

    out, _ = prepared
    base, site = tmp_path / "base", tmp_path / "site"
    assert _cli("train", "--data", str(out), "--out", str(base), "--epochs", "1", "--steps-per-epoch", "2",
                "--model-id", "tiny-base", *TINY).returncode == 0
    done = _cli("train", "--data", str(out), "--out", str(site), "--epochs", "1", "--steps-per-epoch", "2",
                "--model-id", "tiny-site", "--init-from", str(base), "--mse-warmup", "0", "--lr", "1e-4", *TINY)
    assert done.returncode == 0, done.stderr
    card = load_card(site).data
    sheet = card["training"]["data_sheet"]
    assert sheet["patients"] == PATIENTS and sheet["cases"] == len(GOOD_CASES)
    assert sheet["contrast"]["kvp"] == {"120.0": 5} and sheet["study_months"][0] <= sheet["study_months"][1]
    assert "mask_mae_hu" in card["validation"]["during_training"]
    assert card["ood"]["cases"] == len(GOOD_CASES) and card["ood"]["threshold"] > 0
    assert "Research use at the site" in card["intended_use"]

    done = _cli("validate", "--cases", str(out), "--folds", "2", "--recipe", str(site), "--epochs", "1",
                "--steps-per-epoch", "2", "--device", "cpu", "--write-card", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    folds = list(report["split"].values())
    assert sorted(sum(folds, [])) == GOOD_CASES
    assert any({"s003", "s004"} <= set(f) for f in folds)  # one patient's two visits stay together
    assert report["starting_model"]["id"] == "tiny-base"
    summary = report["summary"]
    assert set(summary["methods"]) == {"identity", "starting", "model"}
    mask_mae = summary["methods"]["model"]["mask_mae_hu"]
    assert mask_mae["n_patients"] == PATIENTS and mask_mae["ci95"][0] <= mask_mae["mean"] <= mask_mae["ci95"][1]
    assert "model_minus_starting" in summary["differences"]
    stored = load_card(site).data
    assert stored["validation"]["cross_validation"]["split"] == report["split"]
    assert stored["training"]["data_sheet"]["folds"] == report["split"]
    assert stored["weights"] == card["weights"]  # the card grew, the weights did not change
    # a second run keeps the fold models (same recipe, same cases) and gives the same figures
    again = _cli("validate", "--cases", str(out), "--folds", "2", "--recipe", str(site), "--epochs", "1",
                 "--steps-per-epoch", "2", "--device", "cpu", "--json")
    assert "kept (trained earlier" in again.stderr
    assert json.loads(again.stdout)["summary"] == report["summary"]


def test_a_local_dask_cluster_prepares_as_the_local_run(prepared, cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    from DigitalContrastLib.preparation.run import prepare_cohort

    subset = cohort.parent / "two.csv"  # beside the cohort: its relative paths hold
    subset.write_text("\n".join(cohort.read_text().splitlines()[:3]) + "\n")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        run = prepare_cohort(subset, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert [r["status"] for r in run.records] == ["prepared", "prepared"]
    for case_id in ("s001", "s002"):
        ours = sitk.ReadTransform(str(tmp_path / "dask" / case_id / "registration.tfm"))
        local = sitk.ReadTransform(str(prepared[0] / case_id / "registration.tfm"))
        probe = (10.0, -20.0, 30.0)
        assert np.allclose(ours.TransformPoint(probe), local.TransformPoint(probe), atol=1e-3)
    shutil.rmtree(tmp_path / "dask")
