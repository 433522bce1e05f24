"""The PostgreSQL answer store on a real server: roles enforced by the database, tokens checked
inside the stored functions, append-only tables, migrations, merge of site stores, and the
multi-site load with kill -9 (short; ``make bench`` runs the 2-minute version)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from DigitalContrastReaderLib.cli import main
from DigitalContrastReaderLib.exports.tidy import tidy_table
from DigitalContrastReaderLib.reading.simulate import random_form_answers
from DigitalContrastReaderLib.store.location import create_store, open_reading_store, open_store
from DigitalContrastReaderLib.store.merge import merge_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, TokenError
from DigitalContrastReaderLib.study.example import write_example_study

pytestmark = pytest.mark.postgres


def _study(tmp_path, readers=3, cases=3):
    return load_study(write_example_study(tmp_path / "study", cases=cases, training_cases=1, readers=readers,
                                          tasks=("grading", "preference"), washout_days=0))


def _read(store, reader, token, count, rng):
    """A reading station's loop: show, answer, submit ``count`` items; returns the answers given."""
    given = {}
    for _ in range(count):
        item = store.resume(reader, token=token)
        item = store.open_item(reader, item.item_id, token=token)
        given[item.item_id] = random_form_answers(item.questions, rng)
        store.submit(reader, item.item_id, given[item.item_id], token=token)
    return given


@pytest.fixture()
def pg_study(tmp_path, postgres_url):
    """A PostgreSQL store with r01 and r02 enrolled, each having answered 3 items, and the
    folder of blinded images; yields (admin store, tokens, images folder)."""
    study = _study(tmp_path)
    store = create_store(postgres_url, study)
    tokens = {r: store.enrol(r, seed=k).token for k, r in enumerate(("r01", "r02"))}
    images = tmp_path / "blinded"
    assert main(["images", postgres_url, "--out", str(images)]) == 0
    rng = random.Random(0)
    for reader in tokens:
        _read(store, reader, tokens[reader], 3, rng)
    yield store, tokens, images
    store.close()


def test_the_reader_role_can_read_its_own_items_and_nothing_of_the_key(pg_study):
    store, tokens, images = pg_study
    assert store.reader_role.endswith("_reader") and store.reader_password
    reader_url = store.reader_url()
    with psycopg.connect(reader_url, autocommit=True) as conn:
        # every table, the key above all (case <-> source, truth, models), is refused by the server
        for table in ("items", "images", "cases", "studies", "readers", "responses", "revisions", "events", "tasks",
                      "questions", "sessions", "meta", "origins", "chain_head"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM dcstore.{table}")
        for statement in ("UPDATE dcstore.responses SET value_json = '1'", "DELETE FROM dcstore.events",
                          "INSERT INTO dcstore.meta VALUES ('x', 'y')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # only the five reading functions may be called; the helpers and triggers may not
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT dcstore.check_reader('r01', NULL)")
        # another reader's answers: asking for their item with one's own key is refused by the server
        reading = open_reading_store(reader_url, images_dir=images)
        with pytest.raises(AnswerError, match="belongs to another reader"):
            reading.peek_item("r01", "r02-0001", token=tokens["r01"])
        with pytest.raises(TokenError, match="is wrong"):
            reading.peek_item("r02", "r02-0001", token=tokens["r01"])
        own = reading.peek_item("r01", "r01-0001", token=tokens["r01"])
        assert own.answers and own.done and own.images[0]["path"].startswith(str(images))
        # what the reader receives names no case and no source
        text = str(own.to_dict())
        assert "case0" not in text and "synthetic" not in text and "real" not in text.replace("realistic", "")
        reading.close()


def test_a_wrong_token_stores_nothing_and_a_right_one_is_checked_in_the_server(pg_study):
    store, tokens, images = pg_study
    reading = open_reading_store(store.reader_url(), images_dir=images)
    item = reading.resume("r01", token=tokens["r01"])
    before = (len(store.events()), len(store.responses()))
    answers = random_form_answers(item.questions, random.Random(1))
    for wrong in ("", "x" * 32, tokens["r02"]):
        with pytest.raises(TokenError):
            reading.submit("r01", item.item_id, answers, token=wrong)
    assert (len(store.events()), len(store.responses())) == before
    # a key presented straight to the stored function (bypassing the client) is checked there too
    with psycopg.connect(store.reader_url(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT dcstore.reader_state('r01', %s, NULL, false, NULL)", (b"\0" * 32,))
        assert info.value.sqlstate == "DCT01"
    assert reading.verify_token("r01", tokens["r01"]) and not reading.verify_token("r01", tokens["r02"])
    assert not reading.verify_token("nobody", tokens["r01"])
    receipt = reading.submit("r01", item.item_id, answers, token=tokens["r01"])
    assert receipt.event_seq == before[0] + 1 and store.integrity_check().ok
    reading.close()


def test_reading_station_times_are_the_servers_and_the_audit_trail_is_append_only(pg_study, postgres_server):
    store, tokens, images = pg_study
    with psycopg.connect(store._url, autocommit=True) as conn:  # even the admin cannot rewrite history
        for statement in ("UPDATE dcstore.events SET kind = 'x' WHERE seq = 1", "DELETE FROM dcstore.revisions",
                          "TRUNCATE dcstore.events CASCADE"):
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(statement)
        # an event that does not link to the chain head is refused by the trigger
        with pytest.raises(psycopg.Error, match="does not follow"):
            conn.execute("INSERT INTO dcstore.events VALUES (999, 't', 'x', NULL, NULL, '{}', 'p', 'h')")
    report = store.integrity_check()
    assert report.ok, report.summary()
    with psycopg.connect(store._url, autocommit=True) as conn:
        conn.execute("ALTER TABLE dcstore.events DISABLE TRIGGER events_append_only")
        conn.execute("UPDATE dcstore.events SET payload_json = '{}' WHERE kind = 'submit'")
    report = store.integrity_check()
    assert not report.ok
    assert any("events_append_only" in p for p in report.problems)
    assert any("changed after it was written" in p for p in report.problems)


def test_migrations_and_a_newer_schema(tmp_path, postgres_url):
    store = create_store(postgres_url, _study(tmp_path))
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # functions from an older release: re-installed by the next admin connection
        conn.execute("UPDATE dcstore.meta SET value = 'old' WHERE key = 'functions_sha256'")
        conn.execute("DROP FUNCTION dcstore.reader_study()")
    with open_store(postgres_url) as store:
        assert store.integrity_check().ok
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT dcstore.reader_study()").fetchone()[0]
        conn.execute("UPDATE dcstore.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(postgres_url)


def test_init_is_atomic_and_refuses_a_second_store(tmp_path, postgres_server, postgres_url):
    study = _study(tmp_path)
    store = create_store(postgres_url, study)
    store.close()
    with pytest.raises(StoreError, match="already holds an answer store"):
        create_store(postgres_url, study)
    # a failure inside init (here: the reader role's name is taken by a role that may not be altered
    # by this admin) leaves no schema behind
    url = postgres_server.create_database("atomic_test")
    postgres_server.sql("CREATE ROLE atomic_test_reader SUPERUSER")
    postgres_server.sql("CREATE ROLE limited LOGIN CREATEROLE")
    postgres_server.sql("GRANT CREATE ON DATABASE atomic_test TO limited")
    with pytest.raises(StoreError):
        create_store(postgres_server.url("atomic_test", "limited"), study)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'dcstore'").fetchone()[0] == 0


def test_two_sqlite_sites_merge_into_postgres_and_merging_again_changes_nothing(tmp_path, postgres_url):
    study = _study(tmp_path, readers=4)
    central = create_store(postgres_url, study, site="central")
    rng = random.Random(3)
    sites = []
    for name, readers in (("site-a", ("r01", "r02")), ("site-b", ("r03",))):
        site = create_store(tmp_path / f"{name}.sqlite", study, site=name)
        for k, reader in enumerate(readers):
            _read(site, reader, site.enrol(reader, seed=k).token, 4 + k, rng)
        graded = next(i for i in site.items(readers[0]) if i.submitted_at and i.task_id == "grading")
        site.correct_answer(graded.item_id, "overall_confidence", 1, reason="paper form", corrected_by="pi")
        sites.append(site)
    central_token = central.enrol("r04", seed=9).token
    _read(central, "r04", central_token, 2, rng)

    reports = [merge_store(central, site) for site in sites]
    assert [r.counts["readers"] for r in reports] == [2, 1]
    assert central.integrity_check().ok, central.integrity_check().summary()
    merged = tidy_table(central)
    events = central.events()
    imported = [e for e in events if "origin" in e["payload"]]
    assert {e["payload"]["origin"]["site"] for e in imported} == {"site-a", "site-b"}
    assert len(imported) == sum(len(s.events()) for s in sites)
    site_a_events = {e["seq"]: e["hash"] for e in sites[0].events()}
    assert all(site_a_events[e["payload"]["origin"]["seq"]] == e["payload"]["origin"]["hash"]
               for e in imported if e["payload"]["origin"]["site"] == "site-a")
    # every site answer is there, with its revision history
    for site in sites:
        for response in site.responses():
            assert any(r.item_id == response.item_id and r.question_key == response.question_key and
                       r.value == response.value and r.revision == response.revision for r in central.responses())
    assert main(["merge", postgres_url, str(sites[0].db_path), str(sites[1].db_path)]) == 0  # again, from the CLI
    assert [e["hash"] for e in central.events()] == [e["hash"] for e in events]
    assert tidy_table(central).equals(merged)
    # the site reads on after the first merge: only the new answers come in
    _read(sites[1], "r03", sites[1].issue_token("r03"), 1, rng)
    assert merge_store(central, sites[1]).counts["answers"] > 0 and central.integrity_check().ok
    # conflicts are refused, naming the item or the reader, and nothing is imported
    graded = next(i for i in sites[0].items("r01") if i.submitted_at and i.task_id == "grading")
    central.correct_answer(graded.item_id, "edge_sharpness", 1, reason="central review", corrected_by="pi")
    sites[0].correct_answer(graded.item_id, "edge_sharpness", 2, reason="site review", corrected_by="site-pi")
    before = [e["hash"] for e in central.events()]
    with pytest.raises(StoreError, match=f"item '{graded.item_id}' has another answer to 'edge_sharpness'"):
        merge_store(central, sites[0])
    other = create_store(tmp_path / "rogue.sqlite", study, site="rogue")
    _read(other, "r04", other.enrol("r04", seed=9).token, 1, random.Random(99))
    with pytest.raises(StoreError, match="reader 'r04' is enrolled there with another schedule"):
        merge_store(central, other)
    assert [e["hash"] for e in central.events()] == before
    for store in (*sites, other, central):
        store.close()


@pytest.mark.process
@pytest.mark.slow
def test_twelve_writers_on_three_sites_with_kill_9_lose_nothing(tmp_path, postgres_server):
    from multisite_load import run_load

    figures = run_load(postgres_server, tmp_path, seconds=20, kills=2, cases=150)  # more than 20 s of reading
    print(figures)
    assert figures["kills"] == 2 and figures["items_submitted"] >= 12  # at least one per reader on average
    assert figures["writer_errors"] == []
    assert figures["acknowledged_missing"] == [] and figures["acknowledged_changed"] == []
    assert figures["submitted_more_than_once"] == []
    assert figures["check_ok"], figures["check_problems"]
    assert figures["tidy_csv_equals_sqlite"], figures["tidy_difference"]


def test_the_command_line_sets_up_a_postgres_study_and_a_reading_station_reads_it(tmp_path, postgres_url, capsys):
    study_file = write_example_study(tmp_path / "study", cases=2, training_cases=1, readers=2, tasks=("grading",),
                                     washout_days=0)
    assert main(["init", str(study_file), "--db", postgres_url]) == 0
    out = capsys.readouterr().out
    role = out.split("reader role: ")[1].split()[0]
    reader_url = out.split("reading stations connect with ")[1].split()[0]
    assert role.endswith("_reader") and reader_url.startswith(f"postgresql://{role}@127.0.0.1:")
    assert main(["enrol", postgres_url, "--all"]) == 0
    tokens = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("token: ")]
    assert len(tokens) == 2
    assert main(["images", postgres_url, "--out", str(tmp_path / "blinded")]) == 0
    capsys.readouterr()
    station = [reader_url, "--reader", "r01", "--images", str(tmp_path / "blinded")]
    assert main(["next", *station, "--token", tokens[1]]) == 6  # r02's token
    assert "is wrong" in capsys.readouterr().err
    assert main(["next", *station, "--token", tokens[0], "--json"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["item_id"] == "r01-0001" and item["images"][0]["path"].startswith(str(tmp_path / "blinded"))
    given = random_form_answers(item["questions"], random.Random(2))
    answers = [f"{k}={'yes' if v is True else 'no' if v is False else v}" for k, v in given.items()]
    assert main(["answer", *station, "--token", tokens[0], "--item", "next", *answers]) == 0
    assert "saved r01-0001" in capsys.readouterr().out
    # the reader role cannot run admin commands
    assert main(["status", reader_url]) == 3
    assert "this role may not do that" in capsys.readouterr().err
    assert main(["check", postgres_url]) == 0


def test_a_postgres_store_is_backed_up_with_pg_dump(pg_study, tmp_path):
    store, _tokens, _images = pg_study
    store.backup_dir = tmp_path / "dumps"
    dump = store.backup()
    assert dump.parent == tmp_path / "dumps" and dump.stat().st_size > 0
    tool = shutil.which("pg_restore") or str(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_restore"))[-1])
    listing = subprocess.run([tool, "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA dcstore events" in listing  # a restorable dump of the audit trail and the rest
