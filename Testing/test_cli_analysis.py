"""The ``mrmc`` and ``report`` sub-commands on real files: a few real subprocesses (exit codes, no
traceback), the rest through ``main(argv)`` in-process to keep the suite fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from DigitalContrastReaderLib.analysis.simulated_study import grading_study, turing_study
from DigitalContrastReaderLib.cli import main

DATA = Path(__file__).resolve().parent / "data" / "reader_study"
VANDYKE = DATA / "vandyke_roc.csv"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "DigitalContrastReaderLib.cli", *args], capture_output=True, text=True, timeout=120
    )


def call(capsys, *args: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.process
def test_mrmc_prints_the_three_analyses():
    done = run("mrmc", str(VANDYKE))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "RRRC" in out and "FRRC" in out and "RRFC" in out
    assert "F(1, 15.26) = 4.4563, p = 0.0517" in out  # Van Dyke, as published by OR-DBM MRMC 2.51
    assert "chi2(1) = 5.4760, p = 0.0193" in out
    assert "F(1, 4.00) = 8.7040, p = 0.0420" in out


def test_mrmc_json_with_non_inferiority(capsys):
    code, out, err = call(capsys, "mrmc", str(VANDYKE), "--json", "--margin", "0.1", "--reference", "2")
    assert code == 0, err
    result = json.loads(out)
    assert result["analyses"]["RRRC"]["test"]["p_value"] == pytest.approx(0.0517, abs=5e-5)
    ni = result["non_inferiority"]
    assert ni["sidedness"] == "one-sided" and ni["non_inferior"] is True and ni["reference_modality"] == "2"


def test_mrmc_mean_and_proportion_figures_of_merit(tmp_path, capsys):
    csv = tmp_path / "grades.csv"
    grading_study(n_readers=4, n_cases=30, seed=1).to_csv(csv, index=False)
    code, out, err = call(capsys, "mrmc", str(csv), "--fom", "mean", "--json")
    assert code == 0, err
    assert json.loads(out)["figure_of_merit"]["name"] == "mean"
    code, out, _ = call(capsys, "mrmc", str(csv), "--fom", "proportion", "--threshold", "3")
    assert code == 0 and "proportion of scores >= 3" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("reader_id,case_id,modality,score\n1,1,a,3\n", "missing column(s) truth"),
        ("reader_id,case_id,modality,truth,score\n1,1,a,0,3\n1,2,a,1,high\n", "score 'high' in data row 2 is not a number"),
        ("reader_id,case_id,modality,truth,score\n1,1,a,0,3\n1,2,a,1,4\n1,1,b,0,3\n", "unbalanced"),
        ("reader_id,case_id,modality,truth,score\n1,1,a,2,3\n", "truth '2' in data row 1 is not 0, 1 or empty"),
    ],
)
def test_bad_csv_gets_one_sentence_naming_the_file_and_exit_2(tmp_path, capsys, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    code, _, err = call(capsys, "mrmc", str(csv))
    assert code == 2
    assert message in err and str(csv) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.process
def test_bad_csv_in_a_real_process_exits_2_without_traceback(tmp_path):
    csv = tmp_path / "unbalanced.csv"
    csv.write_text("reader_id,case_id,modality,truth,score\n1,1,a,0,3\n1,2,a,1,4\n1,1,b,0,3\n")
    done = run("mrmc", str(csv))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"digital-contrast-reader mrmc: {csv}: the design is unbalanced")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_options_exit_4_and_usage_errors_exit_64(capsys):
    code, _, err = call(capsys, "mrmc", str(VANDYKE), "--fom", "proportion")
    assert code == 4 and "--threshold" in err
    code, _, err = call(capsys, "mrmc", str(VANDYKE), "--margin", "0.05")
    assert code == 4 and "--reference" in err
    assert call(capsys, "mrmc")[0] == 64
    assert call(capsys, "mrmc", str(VANDYKE), "--fom", "sensitivity")[0] == 64


@pytest.mark.process
@pytest.mark.slow
def test_report_command_writes_html_and_figures(tmp_path):
    grades, turing = tmp_path / "grades.csv", tmp_path / "turing.csv"
    grading_study(n_readers=3, n_cases=25, seed=2).to_csv(grades, index=False)
    turing_study(n_readers=3, n_cases=20, seed=3).to_csv(turing, index=False)
    out = tmp_path / "report"
    done = run("report", str(grades), "--turing", str(turing), "--out", str(out), "--title", "Aorta CTA")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == out / "report.html"
    assert len(list((out / "figures").glob("*.png"))) == 4
    missing = run("report", str(tmp_path / "nope.csv"), "--out", str(out))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_report_from_a_study_store_analyses_what_the_readers_answered(tmp_path, capsys):
    """`report STUDY_DB` builds the grading and Turing tables from the store itself."""
    from DigitalContrastReaderLib.exports.tidy import analysis_table
    from DigitalContrastReaderLib.store.sqlite import open_store

    assert call(capsys, "example-study", str(tmp_path / "s"), "--cases", "8", "--training", "1", "--readers", "3",
                "--tasks", "grading,turing")[0] == 0
    db = tmp_path / "s" / "study.sqlite"
    assert call(capsys, "init", str(tmp_path / "s" / "study.yaml"), "--db", str(db))[0] == 0
    assert call(capsys, "simulate", str(db), "--all", "--seed", "3")[0] == 0
    code, out, err = call(capsys, "report", str(db), "--out", str(tmp_path / "report"))
    assert code == 0, err
    html = (tmp_path / "report" / "report.html").read_text()
    with open_store(db) as store:
        grades = analysis_table(store, "overall_confidence")
    assert len(grades) == 3 * 7 * 2  # readers x non-training cases x sources
    # the mean grade per source printed in the report is the mean of the stored answers
    for source, mean in grades.groupby("modality")["score"].mean().items():
        assert f"{source}</td><td>{mean:.3f}" in html.replace(" ", "")
    assert "Visual Turing test" in html
    assert len(list((tmp_path / "report" / "figures").glob("*.png"))) >= 3
