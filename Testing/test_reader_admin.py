"""The admin panel's operations (library side): finding the study's store, progress, integrity,
exports, the HTML report and a logged correction, on a real store filled by simulated readers."""

from __future__ import annotations

import random

import pytest

from DigitalContrastReaderLib import admin
from DigitalContrastReaderLib.reading.simulate import SimulatedClock, simulate_reader
from DigitalContrastReaderLib.store.locate import locate_store
from DigitalContrastReaderLib.store.sqlite import create_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, UsageError
from DigitalContrastReaderLib.study.example import write_example_study


@pytest.fixture()
def filled_store(tmp_path):
    study_file = write_example_study(tmp_path / "demo", cases=4, training_cases=1, readers=3,
                                     tasks=("grading", "turing"))
    clock = SimulatedClock()
    store = create_store(tmp_path / "demo" / "study.sqlite", load_study(study_file), clock=clock)
    store.enrol("r01", seed=1)
    store.enrol("r02", seed=2)
    simulate_reader(store, "r01", random.Random(1), clock=clock)  # finished (jumps washouts)
    simulate_reader(store, "r02", random.Random(2), clock=clock, count=3)
    yield store, study_file
    store.close()


def test_the_study_is_found_from_its_store_file_or_folder(filled_store, tmp_path):
    store, study_file = filled_store
    assert locate_store(store.db_path) == store.db_path
    assert locate_store(study_file) == store.db_path  # study.yaml -> study.sqlite beside it
    assert locate_store(study_file.parent) == store.db_path
    with pytest.raises(StoreError, match="no answer store yet"):
        locate_store(tmp_path / "other.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no answer store"):
        locate_store(tmp_path / "empty")
    with pytest.raises(StoreError, match="no study there"):
        locate_store(tmp_path / "nothing.sqlite")


def test_progress_rows_say_who_is_where(filled_store):
    store, _ = filled_store
    rows = {r.reader_id: r for r in admin.progress_rows(store)}
    total = len(store.items("r01"))
    assert rows["r01"].status == "finished" and rows["r01"].items == f"{total}/{total}"
    assert rows["r02"].status == "reading" and rows["r02"].items == f"3/{len(store.items('r02'))}"
    assert rows["r03"].status == "not enrolled" and rows["r03"].items == ""
    ok, text = admin.integrity_text(store)
    assert ok and text.startswith("integrity check passed")


def test_a_correction_needs_a_reason_and_is_logged(filled_store):
    store, _ = filled_store
    item = next(i for i in store.items("r01") if i.task_id == "grading" and not i.training)
    old = next(r for r in store.responses() if r.item_id == item.item_id and r.question_key == "overall_confidence")
    new_label = "Full confidence" if old.value != 5 else "Low confidence"
    with pytest.raises(AnswerError, match="reason"):
        admin.correct_answer(store, item.item_id, "overall_confidence", new_label, reason=" ", corrected_by="dr admin")
    with pytest.raises(AnswerError):
        admin.correct_answer(store, item.item_id, "overall_confidence", "9", reason="typo", corrected_by="dr admin")
    line = admin.correct_answer(store, item.item_id, "overall_confidence", new_label,
                                reason="reader pressed the wrong key, confirmed by email", corrected_by="dr admin")
    assert "revision 2" in line and new_label in line
    revision = [r for r in store.revisions() if r.item_id == item.item_id and r.question_key == "overall_confidence"][-1]
    assert (revision.changed_by, revision.reason) == ("admin:dr admin", "reader pressed the wrong key, confirmed by email")
    event = store.events()[-1]
    assert event["kind"] == "admin_correction" and event["payload"]["reason"].startswith("reader pressed")
    assert store.integrity_check().ok


def test_exports_and_the_report(filled_store, tmp_path):
    store, _ = filled_store
    with pytest.raises(UsageError, match="export folder"):
        admin.export_study(store, "")
    result = admin.export_study(store, tmp_path / "export")
    names = {p.name for p in result.files}
    assert {"responses_tidy.csv", "manifest.json", "schedules.csv"} <= names
    if admin.report_available():
        path = admin.write_study_report(store, tmp_path / "report")
        assert path.name == "report.html" and "overall_confidence" in path.read_text()
    else:  # the statistics library has not landed in this installation: a clear sentence, no traceback
        with pytest.raises(UsageError, match="HTML report is not part of this version"):
            admin.write_study_report(store, tmp_path / "report")
