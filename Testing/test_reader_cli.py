"""``digital-contrast-reader``: the admin workflow, exit codes, one-sentence errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from DigitalContrastReaderLib.cli import COMMANDS, main
from DigitalContrastReaderLib.store.sqlite import open_store


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_every_required_command_is_registered():
    assert {"init", "enrol", "status", "next", "answer", "check", "export", "example-study", "token", "images",
            "merge"} <= set(COMMANDS)


def test_admin_quick_start(tmp_path, capsys, monkeypatch):
    code, out, _ = run(capsys, "example-study", tmp_path / "ex", "--cases", 4, "--training", 1, "--readers", 2,
                       "--tasks", "grading,detection")
    assert code == 0
    study, db = tmp_path / "ex" / "study.yaml", tmp_path / "study.sqlite"
    code, out, _ = run(capsys, "init", study, "--db", db, "--backup-dir", tmp_path / "backups")
    assert code == 0 and "created for study 'demo-aorta'" in out
    code, out, _ = run(capsys, "init", study, "--db", db)
    assert code == 0 and "already holds this version" in out
    code, out, _ = run(capsys, "enrol", db, "--reader", "r01", "--seed", 5)
    assert code == 0 and "seed 5" in out
    tokens = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token: ")]
    assert len(tokens) == 1 and len(tokens[0]) >= 32  # printed once, on a line of its own
    token = tokens[0]
    code, _, err = run(capsys, "next", db, "--reader", "r01")
    assert code == 6 and "needs their token" in err
    code, _, err = run(capsys, "next", db, "--reader", "r01", "--token", "not-the-token")
    assert code == 6 and err.count("\n") == 1 and "token given for reader 'r01' is wrong" in err
    code, out, _ = run(capsys, "next", db, "--reader", "r01", "--json", "--token", token)
    item = json.loads(out)
    assert code == 0 and item["item_id"] == "r01-0001" and item["images"][0]["handle"] == "Image"
    answers = ["lumen_conspicuity=4", "edge_sharpness=3", "thrombus_delineation=4", "branch_conspicuity=Sharp edges",
               "noise_artefacts=4", "overall_confidence=5", "non_diagnostic=no"]
    code, _, err = run(capsys, "answer", db, "--reader", "r01", "--item", "r01-0001", "--token", token, *answers)
    assert code == 4 and err.strip() == (
        "digital-contrast-reader answer: The answer to 'branch_conspicuity' must be one of 1, 2, 3, 4, 5 "
        "(got 'Sharp edges'); correct it and submit again.")
    answers[3] = "branch_conspicuity=5"
    responses = len(open_store(db).responses())
    code, _, err = run(capsys, "answer", db, "--reader", "r01", "--item", "r01-0001", "--token", "wrong", *answers)
    assert code == 6 and "is wrong" in err and len(open_store(db).responses()) == responses  # nothing stored
    monkeypatch.setenv("DIGITAL_CONTRAST_READER_TOKEN", token)  # the token from the environment
    code, out, _ = run(capsys, "answer", db, "--reader", "r01", "--item", "r01-0001", *answers)
    assert code == 0 and "saved r01-0001" in out and "next r01-0002" in out
    code, _, err = run(capsys, "answer", db, "--reader", "r01", "--item", "r01-0001", *answers)
    assert code == 4 and "does not allow changing answers" in err
    code, _, err = run(capsys, "answer", db, "--reader", "r01", "--item", "next", "lumen_conspicuity")
    assert code == 64 and "is not key=value" in err
    monkeypatch.delenv("DIGITAL_CONTRAST_READER_TOKEN")
    code, out, _ = run(capsys, "correct", db, "--item", "r01-0001", "--by", "pi", "--reason", "typo", "overall_confidence=4")
    assert code == 0 and "revision 2" in out
    code, out, _ = run(capsys, "status", db)
    assert code == 0 and "r01" in out and "1/" in out and "not enrolled" in out
    code, out, _ = run(capsys, "simulate", db, "--all")
    assert code == 0 and out.count("submitted ") > 10
    code, out, _ = run(capsys, "status", db, "--json")
    assert all(p["finished"] for p in json.loads(out))
    code, out, _ = run(capsys, "check", db)
    assert code == 0 and out.startswith("integrity check passed")
    code, out, _ = run(capsys, "export", db, "--out", tmp_path / "export")
    assert code == 0 and (tmp_path / "export" / "detection_rating.imrmc").is_file()
    code, out, _ = run(capsys, "token", db, "--reader", "r02")  # simulate gave r02 a token of its own
    code, out, _ = run(capsys, "next", db, "--reader", "r02", "--token", out.split("token: ")[1].split()[0])
    assert code == 0 and "has finished" in out


def test_exit_codes_for_each_kind_of_error(tmp_path, capsys):
    run(capsys, "example-study", tmp_path / "ex", "--cases", 3, "--training", 0, "--readers", 1, "--tasks", "grading")
    study = tmp_path / "ex" / "study.yaml"
    config = yaml.safe_load(study.read_text())
    config["cases"][0]["real"] = "cases/nowhere.nrrd"
    bad = tmp_path / "ex" / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    code, _, err = run(capsys, "init", bad, "--db", tmp_path / "x.sqlite")
    assert code == 2 and err.count("\n") == 1 and "field 'cases[0].real' names a file that does not exist" in err
    assert not (tmp_path / "x.sqlite").exists()
    code, _, err = run(capsys, "status", tmp_path / "missing.sqlite")
    assert code == 3 and "no answer store there" in err
    db = tmp_path / "db.sqlite"
    assert run(capsys, "init", study, "--db", db)[0] == 0
    code, _, err = run(capsys, "enrol", db, "--reader", "nobody")
    assert code == 4 and "Reader 'nobody' is not listed" in err
    real = tmp_path / "ex" / "real.yaml"
    real.write_text(yaml.safe_dump(yaml.safe_load(study.read_text()) | {"demo": False}))
    db2 = tmp_path / "real.sqlite"
    run(capsys, "init", real, "--db", db2)
    run(capsys, "enrol", db2, "--all")
    code, _, err = run(capsys, "simulate", db2, "--reader", "r01")
    assert code == 4 and "not a demo study" in err
    with pytest.raises(SystemExit) as info:
        main(["enrol", str(db), "--reader", "r01", "--bogus"])
    assert info.value.code == 64
    assert main([]) == 64
    # a tampered store fails the check with exit 3
    run(capsys, "enrol", db, "--reader", "r01")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE items SET case_id = CASE case_id WHEN 'case001' THEN 'case002' ELSE 'case001' END "
                     "WHERE item_id = 'r01-0001'")
    code, out, _ = run(capsys, "check", db)
    assert code == 3 and "integrity check FAILED" in out and "differ from their stored schedule" in out


@pytest.mark.process
def test_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("digital-contrast-reader")
    result = subprocess.run([str(script), "example-study", str(tmp_path / "ex"), "--cases", "2", "--training", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("study.yaml")
    result = subprocess.run([str(script), "init", str(tmp_path / "nope.yaml"), "--db", str(tmp_path / "db.sqlite")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
