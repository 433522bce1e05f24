"""The answer store: rules that live with the data, the audit trail, recovery and backups."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timezone

import pytest
import yaml

from DigitalContrastReaderLib.reading.simulate import SimulatedClock, simulate_reader, simulated_answers
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.store.sqlite import create_store, open_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, StudyError
from DigitalContrastReaderLib.study.example import write_example_study

START = datetime(2025, 5, 5, 8, 0, tzinfo=timezone.utc)
GRADING = {"lumen_conspicuity": 4, "edge_sharpness": 3, "thrombus_delineation": 4, "branch_conspicuity": 5,
           "noise_artefacts": 4, "overall_confidence": 4, "non_diagnostic": False}


def _study_file(tmp_path, *, modification=False, **kwargs):
    path = write_example_study(tmp_path / "ex", cases=kwargs.pop("cases", 5), training_cases=0, readers=2,
                               tasks=kwargs.pop("tasks", ("grading",)), **kwargs)
    if modification:
        config = yaml.safe_load(path.read_text())
        config["allow_answer_modification"] = True
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def clock():
    return SimulatedClock(START)


def _store(tmp_path, clock, **kwargs):
    """A store with reader r01 enrolled, and r01's token."""
    store = create_store(tmp_path / "db.sqlite", load_study(_study_file(tmp_path, **kwargs)), clock=clock)
    return store, store.enrol("r01", seed=1).token


def test_store_is_wal_with_full_sync_and_implements_the_interface(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    assert isinstance(store, AnswerStore)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_submit_records_answers_timing_and_moves_on(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    item = store.resume("r01", token=token)
    assert item.order_index == 1 and not item.done and item.opens_at is None
    store.open_item("r01", item.item_id, token=token)
    clock.advance(3)
    store.mark_interaction("r01", item.item_id, token=token)
    clock.advance(20)
    receipt = store.submit("r01", item.item_id, GRADING, token=token)
    record = store.item(item.item_id)
    assert record.visits == 1 and record.active_seconds == pytest.approx(23.0)
    assert datetime.fromisoformat(record.first_interaction_at) - datetime.fromisoformat(record.shown_at) == \
        (datetime.fromisoformat(record.submitted_at) - datetime.fromisoformat(record.shown_at)) * 3 / 23
    assert receipt.next_item_id == store.resume("r01", token=token).item_id == "r01-0002"
    answers = {r.question_key: r.value for r in store.responses()}
    assert answers == GRADING  # the optional comment was not given, so no row
    assert {r.study_sha256 for r in store.responses()} == {store.study.sha256}
    # a revisit counts, the UI-reported active time wins when given
    store.open_item("r01", item.item_id, token=token)
    assert store.item(item.item_id).visits == 2
    store.submit("r01", "r01-0002", GRADING, active_seconds=12.5, token=token)
    assert store.item("r01-0002").active_seconds == 12.5
    store.close()


def test_required_unknown_and_invalid_answers_are_refused_and_nothing_is_written(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    item = store.resume("r01", token=token).item_id
    events = len(store.events())
    with pytest.raises(AnswerError, match="'overall_confidence' is required"):
        store.submit("r01", item, {k: v for k, v in GRADING.items() if k != "overall_confidence"}, token=token)
    with pytest.raises(AnswerError, match="has no question 'colour'"):
        store.submit("r01", item, {**GRADING, "colour": "red"}, token=token)
    with pytest.raises(AnswerError, match="must be one of the levels"):
        store.submit("r01", item, {**GRADING, "edge_sharpness": 6}, token=token)
    with pytest.raises(AnswerError, match="not the next item"):
        store.submit("r01", "r01-0003", GRADING, token=token)
    token2 = store.enrol("r02", seed=2).token
    with pytest.raises(AnswerError, match="belongs to another reader"):
        store.submit("r02", item, GRADING, token=token2)
    with pytest.raises(AnswerError, match="not listed in study"):
        store.resume("r07", token=token)
    assert store.responses() == [] and len(store.events()) == events + 1  # + r02's enrolment
    assert store.item(item).submitted_at is None
    store.close()


def test_one_answer_per_reader_item_question_without_modification(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    store.submit("r01", "r01-0001", GRADING, token=token)
    with pytest.raises(AnswerError, match="does not allow changing answers; ask the study admin"):
        store.submit("r01", "r01-0001", {**GRADING, "overall_confidence": 2}, token=token)
    assert {r.question_key: r.value for r in store.responses()}["overall_confidence"] == 4
    # the database itself refuses a second row for the same reader, item and question
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store._conn.execute(
            "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256, "
            "answered_at, modified_at) VALUES ('r01-0001','r01','grading','overall_confidence','2',1,'x','t','t')")
    assert all(r.revision == 1 for r in store.responses())
    store.close()


def test_modification_creates_revisions_only_when_the_study_allows_it(tmp_path, clock):
    store, token = _store(tmp_path, clock, modification=True)
    store.submit("r01", "r01-0001", GRADING, token=token)
    clock.advance(60)
    receipt = store.submit("r01", "r01-0001", {**GRADING, "overall_confidence": 2, "comment": "looked again"}, token=token)
    assert receipt.modified
    values = {r.question_key: (r.value, r.revision) for r in store.responses()}
    assert values["overall_confidence"] == (2, 2) and values["lumen_conspicuity"] == (4, 1)
    assert values["comment"] == ("looked again", 1)
    history = [(v.revision, v.value, v.changed_by) for v in store.revisions() if v.question_key == "overall_confidence"]
    assert history == [(1, 4, "reader"), (2, 2, "reader")]
    assert [e["kind"] for e in store.events()][-2:] == ["submit", "modify"]
    assert store.resume("r01", token=token).item_id == "r01-0002"  # modifying does not move the reader
    assert store.integrity_check().ok
    store.close()


def test_admin_correction_is_a_logged_revision_with_its_reason(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    store.submit("r01", "r01-0001", GRADING, token=token)
    with pytest.raises(AnswerError, match="needs a reason"):
        store.correct_answer("r01-0001", "overall_confidence", 5, reason=" ", corrected_by="pi")
    with pytest.raises(AnswerError, match="has not been submitted"):
        store.correct_answer("r01-0002", "overall_confidence", 5, reason="typo", corrected_by="pi")
    revision = store.correct_answer("r01-0001", "overall_confidence", 5, reason="reader emailed: pressed 4 for 5",
                                    corrected_by="dr-admin")
    assert revision == 2
    last = [v for v in store.revisions() if v.question_key == "overall_confidence"][-1]
    assert (last.value, last.changed_by, last.reason) == (5, "admin:dr-admin", "reader emailed: pressed 4 for 5")
    event = store.events()[-1]
    assert event["kind"] == "admin_correction" and event["payload"]["from"] == 4 and event["payload"]["to"] == 5
    assert store.integrity_check().ok
    store.close()


def test_questions_are_frozen_once_answered(tmp_path, clock):
    path = _study_file(tmp_path)
    store = create_store(tmp_path / "db.sqlite", load_study(path), clock=clock)
    token = store.enrol("r01", seed=1).token
    config = yaml.safe_load(path.read_text())
    config["tasks"][0]["questions"] = [{"key": "extra", "type": "yes_no", "text": "Any artefact?"}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert store.update_study(load_study(path))  # no answers yet: questions may still change
    assert "extra" in [q.key for q in store.study.task("grading").questions]
    store.submit("r01", "r01-0001", {**GRADING, "extra": True}, token=token)
    config["tasks"][0]["questions"][0]["text"] = "Any artefact at all?"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(StudyError) as info:
        store.update_study(load_study(path))
    assert info.value.message == (
        "study.yaml: question 'extra' of task 'grading' differs from the one already answered in db.sqlite; "
        "questions are frozen once answered, so restore it or start a new study database.")
    # adding a reader is still fine
    config["tasks"][0]["questions"][0]["text"] = "Any artefact?"
    config["readers"].append({"id": "r09"})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert store.update_study(load_study(path))
    store.enrol("r09", seed=2)
    assert store.integrity_check().ok
    store.close()


def test_events_and_revisions_are_append_only_and_tampering_is_detected(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    store.submit("r01", "r01-0001", GRADING, token=token)
    for sql in ("UPDATE events SET kind='x' WHERE seq=1", "DELETE FROM events WHERE seq=1",
                "UPDATE revisions SET value_json='1'", "DELETE FROM revisions"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._conn.execute(sql)
    assert store.integrity_check().ok
    # a changed answer without its revision, and an answer to an unscheduled item, are caught
    store._conn.execute("UPDATE responses SET value_json='1' WHERE question_key='overall_confidence'")
    store._conn.execute("PRAGMA foreign_keys=OFF")
    store._conn.execute("INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, "
                        "study_sha256, answered_at, modified_at) VALUES ('ghost','r01','grading','comment','\"x\"',1,'s','t','t')")
    report = store.integrity_check()
    assert not report.ok
    text = "\n".join(report.problems)
    assert "does not match its revision history" in text and "belongs to no scheduled item ('ghost')" in text
    store.close()


def test_a_rewritten_event_breaks_the_hash_chain(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    store.submit("r01", "r01-0001", GRADING, token=token)
    store._conn.execute("DROP TRIGGER events_no_update")
    store._conn.execute("UPDATE events SET payload_json='{}' WHERE kind='submit'")
    report = store.integrity_check()
    assert any("hash chain" in p and "changed after it was written" in p for p in report.problems)
    assert any("disagree" in p for p in report.problems)  # the JSONL log still has the original
    store.close()


def test_open_repairs_a_lagging_or_cut_event_log_and_refuses_a_disagreeing_one(tmp_path, clock):
    store, token = _store(tmp_path, clock)
    for k in range(3):
        store.submit("r01", f"r01-000{k + 1}", GRADING, token=token)
    log = store.event_log_path
    store.close()
    lines = log.read_bytes().splitlines(keepends=True)
    # the writer died after the COMMIT, before the log append, and during the next append
    log.write_bytes(b"".join(lines[:-2]) + lines[-2][:25])
    reopened = open_store(tmp_path / "db.sqlite", clock=clock)
    assert any("unfinished last line" in n for n in reopened.recovery_notes)
    assert any("appended 2 event(s)" in n for n in reopened.recovery_notes)
    report = reopened.integrity_check()
    assert report.ok and report.notes
    assert log.read_bytes().splitlines(keepends=True) == lines
    reopened.close()
    # a log that disagrees (not just lags) is never rewritten: the check fails
    tampered = [json.loads(line) for line in lines]
    tampered[3]["payload"] = {"answers": {}}
    log.write_text("".join(json.dumps(e) + "\n" for e in tampered))
    reopened = open_store(tmp_path / "db.sqlite", clock=clock)
    report = reopened.integrity_check()
    assert not report.ok and any("disagree from event 4" in p for p in report.problems)
    reopened.close()


def test_backups_every_n_submits_and_at_close(tmp_path, clock):
    study = load_study(_study_file(tmp_path, cases=6))
    store = create_store(tmp_path / "db.sqlite", study, clock=clock, backup_every=4, backup_keep=2,
                         backup_dir=tmp_path / "other-disk")
    store.enrol("r01", seed=1)
    rng = random.Random(0)
    simulate_reader(store, "r01", rng, clock=clock, count=9)
    copies = sorted((tmp_path / "other-disk").glob("db-*.sqlite"))
    assert len(copies) == 2  # backups after submit 4 and 8, both kept
    with sqlite3.connect(copies[-1]) as copy:
        assert copy.execute("SELECT COUNT(*) FROM items WHERE submitted_at IS NOT NULL").fetchone()[0] == 8
    clock.advance(5)
    store.close()
    copies = sorted((tmp_path / "other-disk").glob("db-*.sqlite"))
    assert len(copies) == 2  # rotation keeps the newest two
    with sqlite3.connect(copies[-1]) as copy:
        assert copy.execute("SELECT COUNT(*) FROM items WHERE submitted_at IS NOT NULL").fetchone()[0] == 9
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_store_errors_are_sentences(tmp_path, clock):
    study = load_study(_study_file(tmp_path))
    create_store(tmp_path / "db.sqlite", study, clock=clock).close()
    with pytest.raises(StoreError, match="a store already exists there"):
        create_store(tmp_path / "db.sqlite", study)
    with pytest.raises(StoreError, match="no answer store there; create one"):
        open_store(tmp_path / "nothing.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a readable answer store"):
        open_store(tmp_path / "junk.sqlite")


def test_simulated_readers_never_touch_a_real_study(tmp_path, clock):
    path = _study_file(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["demo"] = False
    path.write_text(yaml.safe_dump(config))
    store = create_store(tmp_path / "db.sqlite", load_study(path), clock=clock)
    store.enrol("r01", seed=0)
    with pytest.raises(AnswerError, match="not a demo study"):
        simulate_reader(store, "r01", random.Random(0), clock=clock)
    assert simulated_answers(store.study.task("grading"), ("real",), {}, random.Random(0))
    store.close()
