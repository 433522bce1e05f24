"""The study's record holds: images opened, checked and hashed at init and verified when shown and
by ``check``; a moved study folder keeps working; ``init`` is atomic; backup failures never cost an
answer; changes of display or scheduling need a reason; demo reads stay marked; tokens are never
stored; an older store is migrated."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sqlite3

import numpy as np
import pytest
import yaml

from DigitalContrastLib.ct.io import write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastReaderLib.cli import main
from DigitalContrastReaderLib.reading.simulate import random_form_answers
from DigitalContrastReaderLib.store.sqlite import create_store, open_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import StoreError, StudyError, TokenError
from DigitalContrastReaderLib.study.example import write_example_study


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return code, out, err


def _example(tmp_path, **kwargs):
    options = {"cases": 3, "training_cases": 1, "readers": 2, "tasks": ("grading",), "washout_days": 0} | kwargs
    return write_example_study(tmp_path / "ex", **options)


def _answer(store, reader, token, count=1, seed=0):
    rng = random.Random(seed)
    for _ in range(count):
        item = store.open_item(reader, store.resume(reader, token=token).item_id, token=token)
        store.submit(reader, item.item_id, random_form_answers(item.questions, rng), token=token)


def test_a_moved_study_folder_keeps_working(tmp_path):
    study_file = _example(tmp_path)
    with create_store(study_file.parent / "study.sqlite", load_study(study_file)) as store:
        token = store.enrol("r01", seed=1).token
        _answer(store, "r01", token, 2)
    moved = tmp_path / "another" / "place"
    moved.parent.mkdir()
    shutil.move(str(study_file.parent), str(moved))
    with open_store(moved / "study.sqlite") as store:
        report = store.integrity_check()
        assert report.ok, report.summary()
        assert all(str(image.path).startswith(str(moved)) for image in store.images())
        item = store.open_item("r01", store.resume("r01", token=token).item_id, token=token)
        assert item.images[0]["path"].startswith(str(moved)) and item.item_id == "r01-0003"
        _answer(store, "r01", token, 1)
        assert store.integrity_check().ok


def test_a_changed_or_missing_image_fails_check_naming_it_and_is_not_shown(tmp_path, capsys):
    study_file = _example(tmp_path)
    db = tmp_path / "study.sqlite"
    with create_store(db, load_study(study_file)) as store:
        token = store.enrol("r01", seed=1).token
        _answer(store, "r01", token, 1)
        upcoming = store.item(store.resume("r01", token=token).item_id)
    image = study_file.parent / "cases" / upcoming.case_id / f"{upcoming.source_a}.nrrd"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0x01  # one voxel of the image changed in place
    image.write_bytes(bytes(data))
    code, out, _ = run(capsys, "check", db)
    assert code == 3 and f"the {upcoming.source_a} image of case '{upcoming.case_id}' is changed: {image}" in out
    with open_store(db) as store:
        with pytest.raises(StudyError, match=f"An image of item '{upcoming.item_id}' is missing or was changed"):
            store.open_item("r01", upcoming.item_id, token=token)
    image.unlink()
    code, out, _ = run(capsys, "check", db)
    assert code == 3 and f"is missing: {image}" in out


def test_init_opens_every_image_and_refuses_a_truncated_file_or_two_grids(tmp_path, capsys):
    study_file = _example(tmp_path)
    cases = study_file.parent / "cases"
    real = cases / "case002" / "real.nrrd"
    good = real.read_bytes()
    real.write_bytes(good[: len(good) * 2 // 3])
    code, _, err = run(capsys, "init", study_file, "--db", tmp_path / "a.sqlite")
    sentence = err.strip().splitlines()[-1]  # after the progress lines, one sentence
    assert code == 2 and "the real image of case 'case002' cannot be used" in sentence and "truncated" in sentence
    real.write_bytes(good)
    synthetic = cases / "case003" / "synthetic.nrrd"
    write_volume(CTVolume(np.zeros((12, 24, 24), np.int16), (1.0, 1.0, 2.5)), synthetic)  # another slice spacing
    code, _, err = run(capsys, "init", study_file, "--db", tmp_path / "a.sqlite")
    assert code == 2 and "case 'case003' has its real image" in err and "on different grids" in err
    assert not any(tmp_path.glob("*a.sqlite*"))  # nothing half-created


def test_init_is_atomic(tmp_path, monkeypatch):
    from DigitalContrastReaderLib.store import sql_store

    study = load_study(_example(tmp_path))

    def fail(*args, **kwargs):
        raise OSError("the disk is full")

    monkeypatch.setattr(sql_store, "write_study_rows", fail)
    with pytest.raises(OSError):
        create_store(tmp_path / "db.sqlite", study)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "ex"]  # no store, log or partial file
    monkeypatch.undo()
    create_store(tmp_path / "db.sqlite", study).close()  # and a new init works


def test_backup_failures_are_found_before_an_answer_or_are_warnings_after_it(tmp_path, capsys):
    study_file = _example(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, "init", study_file, "--db", tmp_path / "db.sqlite", "--backup-dir", blocker / "backups")
    assert code == 3 and "backups cannot be written there" in err and not (tmp_path / "db.sqlite").exists()
    backups = tmp_path / "other-disk"
    assert run(capsys, "init", study_file, "--db", tmp_path / "db.sqlite", "--backup-dir", backups,
               "--backup-every", 1)[0] == 0
    code, out, _ = run(capsys, "enrol", tmp_path / "db.sqlite", "--reader", "r01")
    token = out.split("token: ")[1].split()[0]
    answers = ["lumen_conspicuity=4", "edge_sharpness=3", "thrombus_delineation=4", "branch_conspicuity=5",
               "noise_artefacts=4", "overall_confidence=4", "non_diagnostic=no"]
    # the backup disk is gone when the reader starts: refused before the answer is accepted
    shutil.rmtree(backups)
    backups.write_text("the disk was unmounted")
    code, _, err = run(capsys, "answer", tmp_path / "db.sqlite", "--reader", "r01", "--token", token, "--item", "next",
                       *answers)
    assert code == 3 and "backups cannot be written there" in err and "nothing was stored" in err
    with open_store(tmp_path / "db.sqlite") as store:
        assert store.responses() == []
    # the backup disk goes away after the store was opened: the answer is saved, a warning says so
    backups.unlink()
    store = open_store(tmp_path / "db.sqlite")
    _answer(store, "r01", token, 1)
    shutil.rmtree(backups)
    backups.write_text("the disk was unmounted")
    item = store.open_item("r01", store.resume("r01", token=token).item_id, token=token)
    receipt = store.submit("r01", item.item_id, random_form_answers(item.questions, random.Random(1)), token=token)
    assert receipt.warnings and "the answer is saved, but" in receipt.warnings[0]
    store.close()
    with open_store(tmp_path / "db.sqlite") as store:
        assert {r.item_id for r in store.responses()} == {"r01-0001", "r01-0002"} and store.integrity_check().ok


def test_a_change_of_display_or_scheduling_after_answers_needs_a_reason_and_bumps_the_version(tmp_path, capsys):
    study_file = _example(tmp_path)
    db = tmp_path / "db.sqlite"
    run(capsys, "init", study_file, "--db", db)
    with open_store(db) as store:
        token = store.enrol("r01", seed=1).token
        _answer(store, "r01", token, 1)
    config = yaml.safe_load(study_file.read_text())
    config["display"] = {"window": 400, "level": 40}
    study_file.write_text(yaml.safe_dump(config, sort_keys=False))
    code, _, err = run(capsys, "init", study_file, "--db", db)
    assert code == 2 and "display.level: 200.0 -> 40.0 changes how items are shown" in err
    assert "--accept-change" in err
    code, out, _ = run(capsys, "init", study_file, "--db", db, "--accept-change", "radiologists asked for a CTA window")
    assert code == 0 and "version 1.0+1" in out
    with open_store(db) as store:
        event = store.events()[-1]
        assert event["kind"] == "study_updated" and event["payload"]["accepted_change"].startswith("radiologists")
        assert "display.level: 200.0 -> 40.0" in event["payload"]["changes"]
        assert store.study.version == "1.0+1" and store.resume("r01", token=token).display["window"] == 400
        _answer(store, "r01", token, 1)
    assert run(capsys, "export", db, "--out", tmp_path / "export")[0] == 0
    tidy = (tmp_path / "export" / "responses_tidy.csv").read_text()
    assert "demo-aorta,1.0," in tidy and "demo-aorta,1.0+1," in tidy  # answers given before and after
    versions = (tmp_path / "export" / "study_versions.csv").read_text()
    assert "1.0+1" in versions and "radiologists asked for a CTA window" in versions


def test_demo_cannot_be_switched_on_real_answers_and_simulated_reads_are_marked(tmp_path, capsys):
    study_file = _example(tmp_path, tasks=("grading", "detection"))
    config = yaml.safe_load(study_file.read_text())
    real = study_file.with_name("real.yaml")
    real.write_text(yaml.safe_dump(config | {"demo": False}, sort_keys=False))
    run(capsys, "init", real, "--db", tmp_path / "real.sqlite")
    with open_store(tmp_path / "real.sqlite") as store:
        _answer(store, "r01", store.enrol("r01", seed=1).token, 1)
    code, _, err = run(capsys, "init", study_file, "--db", tmp_path / "real.sqlite")
    assert code == 2 and "'demo: true' cannot be switched on" in err
    # a demo store with simulated answers cannot become a real study either
    run(capsys, "init", study_file, "--db", tmp_path / "demo.sqlite")
    assert run(capsys, "simulate", tmp_path / "demo.sqlite", "--all")[0] == 0
    code, _, err = run(capsys, "init", real, "--db", tmp_path / "demo.sqlite")
    assert code == 2 and "'demo' cannot be switched off" in err
    code, _, err = run(capsys, "export", tmp_path / "demo.sqlite", "--out", tmp_path / "export")
    assert code == 0 and "SIMULATED" in err
    export = tmp_path / "export"
    with open(export / "responses_tidy.csv", newline="") as handle:
        tidy = list(csv.DictReader(handle))
    assert {row["simulated"] for row in tidy} == {"true"}
    assert json.loads((export / "manifest.json").read_text())["simulated_answers"] == len(tidy)
    assert "SIMULATED READS" in (export / "detection_rating.imrmc").read_text()
    assert (export / "analysis_detection_rating.csv").read_text().splitlines()[0].endswith(",simulated")


def test_tokens_are_stored_only_as_hashes(tmp_path):
    with create_store(tmp_path / "db.sqlite", load_study(_example(tmp_path))) as store:
        token = store.enrol("r01", seed=1).token
        _answer(store, "r01", token, 1)
        with pytest.raises(TokenError):
            store.submit("r01", "r01-0002", {}, token=token.upper())
        new = store.issue_token("r01")
        with pytest.raises(TokenError, match="is wrong"):
            store.resume("r01", token=token)  # the old token stops working
        assert store.resume("r01", token=new) is not None
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and new.encode() not in data, path


def test_a_store_of_the_first_format_is_migrated(tmp_path):
    """A format-1 store (absolute image paths, no hashes, no tokens, symbolic links) opens as format 2."""
    study_file = _example(tmp_path)
    db = tmp_path / "db.sqlite"
    with create_store(db, load_study(study_file)) as store:
        token = store.enrol("r01", seed=1).token
        _answer(store, "r01", token, 2)
        base = store.study.base_dir
        images_dir = store.images_dir
    with sqlite3.connect(db) as conn:  # back to format 1, as the previous version wrote it
        for table, column in (("studies", "base_dir_rel"), ("studies", "demo"), ("studies", "accepted_change"),
                              ("studies", "changes_json"), ("studies", "reader_view_json"), ("images", "sha256"),
                              ("images", "geometry_json"), ("responses", "simulated"), ("readers", "token_salt"),
                              ("readers", "token_n"), ("readers", "token_r"), ("readers", "token_p"),
                              ("readers", "token_digest")):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("DROP TABLE origins")
        conn.execute("DROP INDEX responses_item")
        conn.execute("UPDATE images SET path = ? || '/' || path", (str(base),))
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
        conn.execute("DELETE FROM meta WHERE key IN ('store_id', 'site')")
    for blinded in images_dir.iterdir():
        original = next(i for i in base.rglob("*.nrrd") if i.read_bytes() == blinded.read_bytes())
        blinded.unlink()
        blinded.symlink_to(original)
    with open_store(db) as store:
        assert store.events()[-1]["kind"] == "store_migrated"
        assert all(image.sha256 and not image.relative.startswith("/") for image in store.images())
        assert not any(p.is_symlink() for p in images_dir.iterdir())
        report = store.integrity_check()
        assert report.ok, report.summary()
        with pytest.raises(TokenError, match="has no token yet"):
            store.resume("r01", token=token)
        _answer(store, "r01", store.issue_token("r01"), 1)
        assert len({r.item_id for r in store.responses()}) == 3 and store.integrity_check().ok
    with pytest.raises(StoreError, match="format 7 is not supported"):
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET value = '7' WHERE key = 'format'")
        open_store(db)
