"""Sample size (`plan`): RJafroc's published power table for the Van Dyke pilot reproduced to its
printed digits, the split-plot extension's identities, reading time, and the command's errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from DigitalContrastReaderLib.analysis.long_table import read_long_csv
from DigitalContrastReaderLib.analysis.mrmc import mrmc_analysis
from DigitalContrastReaderLib.analysis.sample_size import (
    PilotComponents,
    ReadingCalendar,
    cases_for_power,
    power_for,
    sample_size_table,
    significant,
)
from DigitalContrastReaderLib.cli import main

DATA = Path(__file__).resolve().parent / "data" / "reader_study"
VANDYKE = DATA / "vandyke_roc.csv"


@pytest.fixture(scope="module")
def vandyke() -> PilotComponents:
    result = mrmc_analysis(read_long_csv(VANDYKE))
    effect = result.modality_fom["1"] - result.modality_fom["2"]
    return PilotComponents.from_components(result.components, 114, effect, "Van Dyke")


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_rjafroc_power_table_for_the_van_dyke_pilot_is_reproduced_row_by_row(vandyke):
    with open(DATA / "rjafroc_power_table_vandyke.csv", newline="") as f:
        published = list(csv.DictReader(f))
    assert len(published) == 98  # 3..100 readers
    table = sample_size_table(vandyke, [int(r["readers"]) for r in published], vandyke.effect)
    for row, ours in zip(published, table.rows):
        if row["cases"] == ">2000":
            assert ours is None, row
        else:
            assert (ours.cases, significant(ours.power, 3)) == (int(row["cases"]), row["power"]), row


def test_rjafroc_power_and_sample_size_figures_are_reproduced(vandyke):
    with open(DATA / "rjafroc_sample_size_points.csv", newline="") as f:
        points = list(csv.DictReader(f))
    for p in points:
        effect = vandyke.effect if p["effect"] == "observed" else float(p["effect"])
        ours = power_for(vandyke, int(p["readers"]), int(p["cases"]), effect, analysis=p["analysis"])
        value = {"power": ours.power, "noncentrality": ours.noncentrality, "ddf": ours.ddf,
                 "critical_value": ours.critical_value}[p["quantity"]]
        decimals = len(p["printed"].split(".")[1])
        assert f"{value:.{decimals}f}" == p["printed"], p
        if p["quantity"] == "power" and p["effect"] == "observed" and "SsSampleSizeKGivenJ" in p["where"]:
            found = cases_for_power(vandyke, int(p["readers"]), effect, analysis=p["analysis"])
            assert found.cases == int(p["cases"]), p


def test_split_plot_planning_reduces_to_the_crossed_formula_and_to_independent_readers(vandyke):
    crossed = power_for(vandyke, 6, 200, 0.05)
    assert power_for(vandyke, 6, 200, 0.05, groups=1) == crossed
    # with no correlation between readers, G groups of K/G cases each are G crossed studies of K/G cases
    independent = PilotComponents(vandyke.var_tr, vandyke.var_error, vandyke.cov1, 0.0, 0.0, 114)
    assert power_for(independent, 6, 400, 0.05, groups=2).power == pytest.approx(power_for(independent, 6, 200, 0.05).power)
    # with correlated readers, splitting the same 200 cases lowers each reader's precision
    assert power_for(vandyke, 6, 200, 0.05, groups=2).power < crossed.power
    found = cases_for_power(vandyke, 6, 0.05, groups=3)
    assert found.cases % 3 == 0 and found.power > 0.8
    assert power_for(vandyke, 6, found.cases - 3, 0.05, groups=3).power <= 0.8


def test_reading_time_of_the_default_four_task_design_is_about_six_months():
    calendar = ReadingCalendar(waves=7, washout_days=28)  # grading 2 + Turing 2 + preference 1 + detection 2
    assert calendar.days(100) == 168 and calendar.reads(100) == 700
    assert ReadingCalendar(7, 28, reads_per_day=50).days(100) == 168 + 7 * 2


def test_plan_command_from_a_pilot_table_a_study_file_and_published_components(tmp_path, capsys):
    code, out, err = call(capsys, "plan", "--pilot", str(VANDYKE), "--readers", "4-6", "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [(r["readers"], r["cases"]) for r in rows] == [(4, 1089), (5, 344), (6, 251)]
    assert call(capsys, "example-study", str(tmp_path / "s"), "--cases", "8", "--readers", "4", "--design", "split-plot")[0] == 0
    code, out, err = call(capsys, "plan", "--components", "0.00020040252", "0.00080228827", "0.00034661371",
                          "0.00034407483", "0.00023902837", "--pilot-cases", "114", "--effect", "0.05",
                          "--study", str(tmp_path / "s" / "study.yaml"), "--readers", "6,8")
    assert code == 0, err
    assert "split-plot, 2 reader groups" in out and "7 waves per reader, 28-day washout" in out
    assert "168 (~5.5 months)" in out


@pytest.mark.parametrize("args, code, message", [
    (["--components", "1", "2", "3", "4", "5", "--effect", "0.05"], 4, "--pilot-cases"),
    (["--pilot", "missing.csv"], 2, "missing.csv: no such file"),
    ([], 64, "give either --pilot FILE or --components"),
    (["--pilot", str(VANDYKE), "--readers", "5", "--groups", "2"], 4, "5 readers cannot form 2 equal reader groups"),
])
def test_plan_bad_input_gets_one_sentence_and_its_exit_code(capsys, args, code, message):
    got, _, err = call(capsys, "plan", *args)
    assert got == code and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plan_from_a_store_with_too_few_readers_or_an_unknown_question(tmp_path, capsys):
    assert call(capsys, "example-study", str(tmp_path / "s"), "--cases", "8", "--training", "1", "--readers", "1",
                "--tasks", "grading,detection")[0] == 0
    db = tmp_path / "s" / "study.sqlite"
    assert call(capsys, "init", str(tmp_path / "s" / "study.yaml"), "--db", str(db))[0] == 0
    assert call(capsys, "simulate", str(db), "--all", "--seed", "3")[0] == 0
    code, _, err = call(capsys, "plan", "--pilot", str(db))
    assert code == 2 and "1 reader; reader variance needs at least two readers" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = call(capsys, "plan", "--pilot", str(db), "--question", "sharpness_of_nothing")
    assert code == 64 and "sharpness_of_nothing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.process
def test_plan_help_teaches_the_inputs():
    done = subprocess.run([sys.executable, "-m", "DigitalContrastReaderLib.cli", "plan", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for words in ("--pilot", "--components", "--study", "Hillis, Obuchowski & Berbaum 2011", "waves x washout"):
        assert words in done.stdout
