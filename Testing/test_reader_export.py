"""Exports and importers: exact round trips, the analysis table, iMRMC and JAFROC layouts."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timezone

import pandas as pd
import pytest
from openpyxl import load_workbook

from DigitalContrastReaderLib.exports.bundle import export_all
from DigitalContrastReaderLib.exports.columns import TIDY_COLUMNS
from DigitalContrastReaderLib.exports.mrmc_files import read_imrmc, write_imrmc, write_jafroc_xlsx
from DigitalContrastReaderLib.exports.tidy import analysis_table, read_tidy_csv, tidy_table, write_tidy_csv
from DigitalContrastReaderLib.reading.simulate import SimulatedClock, simulate_reader
from DigitalContrastReaderLib.store.sqlite import create_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import UsageError
from DigitalContrastReaderLib.study.example import write_example_study


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    study = load_study(write_example_study(folder / "ex", cases=8, training_cases=1, readers=3))
    clock = SimulatedClock(datetime(2025, 2, 2, tzinfo=timezone.utc))
    store = create_store(folder / "db.sqlite", study, clock=clock)
    for k, reader in enumerate(("r01", "r02", "r03")):
        store.enrol(reader, seed=k)
        simulate_reader(store, reader, random.Random(k), clock=clock)
    # one admin correction, so that revisions and revision numbers show in the exports
    store.correct_answer("r01-0002", "confidence", 5, reason="test", corrected_by="admin")
    graded = next(i for i in store.items("r02") if i.task_id == "grading" and not i.training)
    store.correct_answer(graded.item_id, "comment", "added by the admin", reason="from the paper form", corrected_by="admin")
    yield store
    store.close()


def test_tidy_table_has_one_row_per_reader_case_source_question_with_labels(store):
    tidy = tidy_table(store)
    assert len(tidy) == len(store.responses())
    assert not tidy.duplicated(["reader_id", "item_id", "question_key"]).any()
    assert list(tidy.columns[: len(TIDY_COLUMNS)]) == [c.name for c in TIDY_COLUMNS]
    assert "truth_disease_present" in tidy.columns
    likert = tidy[tidy["question_key"] == "overall_confidence"].iloc[0]
    assert likert["value_label"] in {"No confidence: non-diagnostic", "Low confidence", "Moderate confidence",
                                     "High confidence", "Full confidence"}
    assert likert["value_code"] == json.loads(likert["value"]) and likert["scale_max"] == 5
    pairs = tidy[tidy["task_type"] == "preference"]
    assert set(pairs["source"]) == {"synthetic"} and set(pairs["compared_with"]) == {"real"}
    preferred = pairs[pairs["question_key"] == "preferred"]
    for _, row in preferred.iterrows():
        chosen = json.loads(row["value"])
        item = store.item(row["item_id"])
        expected = {"A": item.source_a, "B": item.source_b, "equal": "equal"}[chosen]
        assert row["preferred_source"] == expected
        assert row["image_handle"] == ("Image A" if item.source_a == "synthetic" else "Image B")
    turing = tidy[tidy["task_type"] == "turing"]
    assert (turing["task_truth"] == (turing["source"] == "synthetic").astype(int)).all()
    corrected = tidy[(tidy["item_id"] == "r01-0002") & (tidy["question_key"] == "confidence")]
    assert corrected["revision"].tolist() == [2] and corrected["value"].tolist() == ["5"]


def test_tidy_csv_round_trip_gives_the_same_table(store, tmp_path):
    tidy = tidy_table(store)
    path = write_tidy_csv(tidy, tmp_path / "responses_tidy.csv")
    back = read_tidy_csv(path)
    pd.testing.assert_frame_equal(back, tidy)
    # and the analysis made from the imported CSV equals the one made from the store
    for task, question in (("detection", "rating"), ("grading", "lumen_conspicuity"), ("preference", "preferred")):
        pd.testing.assert_frame_equal(analysis_table(back, question, task),
                                      analysis_table(store, question, task))


def test_analysis_table_format_and_scores(store):
    table = analysis_table(store, "rating", "detection")
    assert list(table.columns) == ["reader_id", "case_id", "modality", "truth", "score"]
    assert str(table["truth"].dtype) == "Int64" and str(table["score"].dtype) == "float64"
    assert len(table) == 3 * 7 * 2  # readers x main cases x modalities
    assert set(table["modality"]) == {"real", "synthetic"} and set(table["truth"]) == {0, 1}
    assert table["score"].between(1, 10).all()
    # rating: "present" with confidence c -> 5 + c; "absent" -> 6 - c
    tidy = tidy_table(store)
    row = table.iloc[0]
    answers = tidy[(tidy["reader_id"] == row["reader_id"]) & (tidy["case_id"] == row["case_id"])
                   & (tidy["source"] == row["modality"]) & (tidy["task_id"] == "detection")]
    present = json.loads(answers.loc[answers["question_key"] == "finding_present", "value"].item())
    confidence = answers.loc[answers["question_key"] == "confidence", "value_code"].item()
    assert row["score"] == (5 + confidence if present else 6 - confidence)
    truth = {c.case_id: c.truth["disease_present"] for c in store.study.cases}
    assert all(truth[c] == t for c, t in zip(table["case_id"], table["truth"]))
    pref = analysis_table(store, "preferred")
    assert set(pref["score"]) <= {0.0, 0.5, 1.0} and pref["truth"].isna().all()
    with pytest.raises(UsageError, match="is in tasks turing, detection|is in tasks detection, turing"):
        analysis_table(store, "confidence")
    with pytest.raises(UsageError, match="no numeric score"):
        analysis_table(store, "comment", "grading")


def test_imrmc_round_trip_and_layout(store, tmp_path):
    table = analysis_table(store, "rating", "detection")
    path = write_imrmc(table, tmp_path / "detection_rating.imrmc", description=["a test export"])
    pd.testing.assert_frame_equal(read_imrmc(path), table)
    lines = path.read_text().splitlines()
    begin = lines.index("BEGIN DATA:")
    header = lines[:begin]
    assert "NR: 3" in header and "NM: 2" in header and "a test export" in header
    n0 = int(next(h for h in header if h.startswith("N0:")).split(":")[1])
    n1 = int(next(h for h in header if h.startswith("N1:")).split(":")[1])
    assert n0 + n1 == 7
    data = [line.split(",") for line in lines[begin + 1:]]
    truth_rows = [d for d in data if d[0] == "-1"]
    assert len(truth_rows) == 7 and all(d[2] == "truth" and d[3] in ("0", "1") for d in truth_rows)
    score_rows = [d for d in data if d[0] != "-1"]
    assert len(score_rows) == len(table)
    assert all(part.lstrip("-").isdigit() for d in data for part in d[:2])  # integer reader and case ids
    assert all(d[2].isdigit() for d in score_rows)


def test_jafroc_workbook_layout(store, tmp_path):
    table = analysis_table(store, "rating", "detection")
    path = write_jafroc_xlsx(table, tmp_path / "detection.xlsx")
    book = load_workbook(path)
    assert book.sheetnames == ["TRUTH", "FP", "TP"]
    truth = list(book["TRUTH"].values)
    assert truth[0] == ("CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm")
    assert [r[5] for r in truth[1:3]] == ["ROC", "crossed"]
    assert all(r[3] == "1, 2, 3" and r[4] == "1, 2" for r in truth[1:])
    fp, tp = list(book["FP"].values), list(book["TP"].values)
    assert fp[0] == ("ReaderID", "ModalityID", "CaseID", "FP_Rating")
    assert tp[0] == ("ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating")
    normal = {r[0] for r in truth[1:] if r[1] == 0}
    assert {r[2] for r in fp[1:]} == normal and not {r[2] for r in tp[1:]} & normal
    assert len(fp) - 1 + len(tp) - 1 == len(table)
    assert sorted(r[3] for r in fp[1:]) == sorted(table.loc[table["truth"] == 0, "score"].tolist())


def test_export_all_writes_every_file_with_a_data_dictionary_and_checksums(store, tmp_path):
    result = export_all(store, tmp_path / "out")
    names = {p.name for p in result.files}
    for name in ("responses_tidy.csv", "revisions.csv", "schedules.csv", "schedules.json", "data_dictionary.csv",
                 "data_dictionary.md", "manifest.json", "analysis_detection_rating.csv", "detection_rating.imrmc",
                 "detection_rating.jafroc.xlsx", "analysis_grading_overall_confidence.csv"):
        assert name in names
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == digest
    dictionary = pd.read_csv(tmp_path / "out" / "data_dictionary.csv")
    for csv_name, pattern in (("responses_tidy.csv", "responses_tidy.csv"), ("schedules.csv", "schedules.csv"),
                              ("revisions.csv", "revisions.csv"),
                              ("analysis_detection_rating.csv", "analysis_<task>_<question>.csv")):
        columns = pd.read_csv(tmp_path / "out" / csv_name, nrows=0).columns
        documented = set(dictionary.loc[dictionary["file"] == pattern, "column"])
        assert set(columns) <= documented, set(columns) - documented
    schedules = pd.read_csv(tmp_path / "out" / "schedules.csv")
    assert len(schedules) == len(store.items())
    stored = json.loads((tmp_path / "out" / "schedules.json").read_text())
    assert [r["seed"] for r in stored["readers"]] == [0, 1, 2]
    revisions = pd.read_csv(tmp_path / "out" / "revisions.csv")
    assert "admin:admin" in set(revisions["changed_by"])
