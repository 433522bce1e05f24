"""`report STUDY_DB` on a finished split-plot study: the whole study, every question type, numbers
that equal the analyses of the stored answers, and an honest "interim" label only while readers read."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from DigitalContrastLib.common.report_html import format_number
from DigitalContrastReaderLib.analysis.mrmc import mrmc_analysis
from DigitalContrastReaderLib.analysis.visual_grading import vgc_analysis
from DigitalContrastReaderLib.cli import main
from DigitalContrastReaderLib.exports.tidy import analysis_table
from DigitalContrastReaderLib.store.sqlite import open_store


def call(*args: str) -> int:
    try:
        return main(list(args))
    except SystemExit as exit_:
        return exit_.code


def make_study(folder: Path, *extra: str) -> Path:
    """A split-plot demo study (4 readers in 2 groups, 12 cases of which 2 training, all four tasks), read by simulation."""
    assert call("example-study", str(folder), "--cases", "12", "--readers", "4", "--design", "split-plot") == 0
    db = folder / "study.sqlite"
    assert call("init", str(folder / "study.yaml"), "--db", str(db)) == 0
    assert call("simulate", str(db), "--all", "--seed", "5", *extra) == 0
    return db


def text_of(page: Path) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("split")
    db = make_study(folder / "s")
    assert call("report", str(db), "--out", str(folder / "report")) == 0
    return db, text_of(folder / "report" / "report.html")


def test_a_finished_split_plot_study_is_reported_whole_without_interim_or_nan(finished):
    _, page = finished
    assert "interim" not in page and "nan" not in page
    assert "Design: split-plot, each reader group reads its own cases in every source (group A: r01, r03; group B: r02, r04)" in page
    for heading in ("Visual Turing test", "Mean paired difference synthetic − real", "Visual grading characteristics",
                    "Inter-reader agreement", "Graded questions", "Detection: detection", "Preference: preference"):
        assert heading in page, heading


def test_every_figure_in_the_report_is_the_analysis_of_the_stored_answers(finished):
    db, page = finished
    with open_store(db) as store:
        grades = analysis_table(store, "overall_confidence", "grading")
        detection = analysis_table(store, "rating", "detection")
        preference = analysis_table(store, "preferred", "preference")
    assert grades["reader_id"].nunique() == 4 and grades["case_id"].nunique() == 10  # every reader, every main case
    vgc = vgc_analysis(grades, "synthetic", "real")
    assert f"= {vgc.auc:.4f} (95% CI [{vgc.ci_lower:.4f}, {vgc.ci_upper:.4f}]" in page
    roc = mrmc_analysis(detection, fom="auc")
    assert roc.reader_groups == (("r01", "r03"), ("r02", "r04"))
    for m in roc.rrrc.modalities:
        df = format_number(m.df, 2)  # "n/a" where every reader's AUC is the same (no reader variance)
        assert f"{m.modality} {m.estimate:.4f} {m.std_error:.4f} {df} [{m.ci_lower:.4f}, {m.ci_upper:.4f}]" in page
    d = roc.difference("synthetic", "real")
    assert f"synthetic - real {d.estimate:.4f} {d.std_error:.4f}" in page
    share = mrmc_analysis(preference, fom="mean").rrrc.modalities[0]
    assert f"Share preferring synthetic (ties count half): {share.estimate:.3f}, 95% CI [{share.ci_lower:.4f}, {share.ci_upper:.4f}]" in page
    counts = preference["score"].value_counts()
    assert f"preferred in {counts.get(1.0, 0)}, the other in {counts.get(0.0, 0)}, no preference in {counts.get(0.5, 0)}" in page


def test_a_study_still_being_read_is_labelled_interim_and_says_what_was_left_out(tmp_path):
    db = make_study(tmp_path / "s", "--count", "30")
    assert call("report", str(db), "--out", str(tmp_path / "report")) == 0
    page = text_of(tmp_path / "report" / "report.html")
    assert "(interim)" in page
    assert re.search(r"interim: \d of 4 readers x \d+ of 10 cases are complete in every modality \(within their reader group\)", page)
    assert "detection (detection): no answers yet" in page


def test_an_unknown_question_is_one_sentence_with_the_usage_exit_code(finished, tmp_path, capsys):
    db, _ = finished
    assert call("report", str(db), "--question", "sparkle", "--out", str(tmp_path / "r")) == 64
    err = capsys.readouterr().err
    assert "no graded (Likert) question 'sparkle'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
