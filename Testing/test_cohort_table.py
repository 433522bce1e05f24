"""The cohort CSV: what a scientist writes is read as meant, and every mistake is one sentence
naming the file and the fix, with nothing written (exit 2 from the CLI)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from DigitalContrastLib.cohort.table import (
    metrics_columns,
    read_cohort_csv,
    read_metrics_csv,
    write_metrics_csv,
)
from DigitalContrastLib.common.errors import EXIT_BAD_INPUT, InputError


def _write(tmp_path, text: str, name: str = "cohort.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_paths_are_relative_to_the_csv_and_extra_columns_are_carried(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _write(tmp_path / "sub", "case_id,noncontrast,contrast,labels,site,age\n"
                                    "c1,c1/nc.nrrd,c1/cta.nrrd,,oxford,71\n"
                                    f"c2,{tmp_path}/abs.nii.gz,,c2/lab.nrrd,\"leeds, UK\",65\n")
    cases = read_cohort_csv(path)
    assert [c.case_id for c in cases] == ["c1", "c2"]
    assert cases[0].noncontrast == (tmp_path / "sub" / "c1" / "nc.nrrd")
    assert cases[0].contrast == (tmp_path / "sub" / "c1" / "cta.nrrd") and cases[0].labels is None
    assert cases[1].noncontrast == tmp_path / "abs.nii.gz" and cases[1].contrast is None
    assert dict(cases[1].extra) == {"site": "leeds, UK", "age": "65"}
    assert metrics_columns(cases[0].extra)[:5] == ["case_id", "status", "reason", "site", "age"]


@pytest.mark.parametrize("text, words", [
    ("case_id,contrast\nc1,a.nrrd\n", ["'noncontrast' column", "header needs case_id and noncontrast"]),
    ("noncontrast\na.nrrd\n", ["'case_id' column"]),
    ("case_id,noncontrast\nc1,a.nrrd\nC1,b.nrrd\n", ["'C1' appears twice", "rows 2 and 3", "unique id"]),
    ("case_id,noncontrast\n../evil,a.nrrd\n", ["'../evil' cannot be a folder name", "letters, digits"]),
    ("case_id,noncontrast\n.hidden,a.nrrd\n", ["cannot be a folder name"]),
    ("case_id,noncontrast\nc1,\n", ["no noncontrast path"]),
    ("case_id,noncontrast\n,a.nrrd\n", ["no case_id"]),
    ("case_id,noncontrast\n", ["lists no case"]),
    ("", ["is empty"]),
    ("case_id,noncontrast,status\nc1,a.nrrd,x\n", ["'status'", "rename that column"]),
    ("case_id,noncontrast,site,site\nc1,a.nrrd,x,y\n", ["two columns named 'site'"]),
])
def test_a_bad_cohort_csv_is_one_sentence_naming_the_file_and_the_fix(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_cohort_csv(path)
    message = info.value.message
    assert str(path) in message and message.count("\n") == 0
    for word in words:
        assert word in message
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_a_missing_csv_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_cohort_csv(tmp_path / "nope.csv")


@pytest.mark.process
def test_the_cli_refuses_a_bad_csv_with_exit_2_and_writes_nothing(tmp_path):
    path = _write(tmp_path, "case_id,noncontrast\nc1,a.nrrd\nc1,b.nrrd\n")
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", "evaluate", str(path), "--out", str(out), "--dummy"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "appears twice" in lines[0] and str(path) in lines[0]
    assert not out.exists()


def test_metrics_csv_round_trips_numbers_exactly(tmp_path):
    rows = [{"case_id": "c1", "status": "ok", "reason": "", "site": "x", "body_mae_hu": 1 / 3, "body_psnr_db": float("inf"),
             "lumen_dice": float("nan"), "diameter_slices": 12}]
    path = write_metrics_csv(tmp_path / "metrics.csv", rows, ["site"])
    back = read_metrics_csv(path)[0]
    assert float(back["body_mae_hu"]) == 1 / 3
    assert back["body_psnr_db"] == "inf" and back["lumen_dice"] == "" and back["diameter_slices"] == "12"
    assert back["site"] == "x"
