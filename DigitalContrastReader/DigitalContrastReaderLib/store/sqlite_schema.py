"""The SQLite answer store's file: its connection settings, its tables, and how study
versions and schedules fill them and rows become records.

Tables (``SCHEMA_SQL``): ``meta``, ``studies`` (every loaded version of the study file, with
its sha256), ``readers`` (with the stored schedule), ``cases``, ``images`` (path and neutral
link name per case and source), ``tasks``, ``questions`` (frozen once answered), ``sessions``,
``items`` (the stored schedule, with the timing of each item), ``responses`` (one per reader,
item and question), ``revisions`` (every value a response ever had, who set it and why) and
``events`` (append-only, hash-chained). ``events`` and ``revisions`` refuse UPDATE and DELETE.

``STORE_FORMAT`` (in the ``meta`` table) versions this layout: a store of another format is
refused when opened.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.blinding import new_blind_name
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import StoreError
from DigitalContrastReaderLib.study.schedule import Schedule
from DigitalContrastReaderLib.study.study import Study, source_kind, source_model

from .base import ItemRecord, ReaderRecord, ResponseRecord, RevisionRecord

STORE_FORMAT = 1

SCHEMA_SQL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE studies (
    study_sha256 TEXT PRIMARY KEY,          -- sha256 of the study file as written
    study_id TEXT NOT NULL,
    version TEXT NOT NULL,
    config_json TEXT NOT NULL,              -- the parsed study file (canonical JSON)
    source_path TEXT,                       -- where it was loaded from
    base_dir TEXT NOT NULL,                 -- image paths were relative to this folder
    loaded_at TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1))
);
CREATE TABLE readers (
    reader_id TEXT PRIMARY KEY,
    reader_group TEXT,
    enrolled_at TEXT NOT NULL,
    seed INTEGER NOT NULL,
    study_sha256 TEXT NOT NULL REFERENCES studies(study_sha256),
    schedule_json TEXT NOT NULL,            -- the schedule as generated, never recomputed
    schedule_sha256 TEXT NOT NULL
);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    training INTEGER NOT NULL CHECK (training IN (0, 1)),
    block TEXT,
    truth_json TEXT NOT NULL
);
CREATE TABLE images (
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    source TEXT NOT NULL,                   -- real | noncontrast | synthetic | synthetic:<model>
    source_kind TEXT NOT NULL,
    model_id TEXT,
    path TEXT NOT NULL,                     -- absolute path of the original file
    size_bytes INTEGER,
    blind_name TEXT NOT NULL UNIQUE,        -- neutral link name given to reader UIs
    PRIMARY KEY (case_id, source)
);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec_json TEXT NOT NULL
);
CREATE TABLE questions (
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    question_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    question_type TEXT NOT NULL,
    required INTEGER NOT NULL CHECK (required IN (0, 1)),
    spec_json TEXT NOT NULL,
    PRIMARY KEY (task_id, question_key)
);
CREATE TABLE sessions (
    reader_id TEXT NOT NULL REFERENCES readers(reader_id),
    session_no INTEGER NOT NULL,
    kind TEXT NOT NULL,                     -- training | reading
    wave INTEGER NOT NULL,
    opens_at TEXT NOT NULL,                 -- planned earliest opening (UTC)
    washout_after_wave INTEGER,
    PRIMARY KEY (reader_id, session_no)
);
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    reader_id TEXT NOT NULL REFERENCES readers(reader_id),
    session_no INTEGER NOT NULL,
    position_in_session INTEGER NOT NULL,
    order_index INTEGER NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    training INTEGER NOT NULL CHECK (training IN (0, 1)),
    layout TEXT NOT NULL,                   -- single | pair
    wave INTEGER NOT NULL,
    source_a TEXT NOT NULL,                 -- shown as "Image" (single) or "Image A" (left)
    source_b TEXT,                          -- shown as "Image B" (right); NULL for single
    shown_at TEXT,                          -- first display
    last_shown_at TEXT,
    first_interaction_at TEXT,
    submitted_at TEXT,                      -- first submit (NULL = unfinished)
    active_seconds REAL,
    visits INTEGER NOT NULL DEFAULT 0,      -- displays; revisits = visits - 1
    UNIQUE (reader_id, order_index),
    FOREIGN KEY (reader_id, session_no) REFERENCES sessions(reader_id, session_no)
);
CREATE INDEX items_next ON items(reader_id, submitted_at, order_index);
CREATE TABLE responses (
    response_id INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    reader_id TEXT NOT NULL REFERENCES readers(reader_id),
    task_id TEXT NOT NULL,
    question_key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    revision INTEGER NOT NULL,
    study_sha256 TEXT NOT NULL,             -- the study version the answer was given under
    answered_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    UNIQUE (reader_id, item_id, question_key),
    FOREIGN KEY (task_id, question_key) REFERENCES questions(task_id, question_key)
);
CREATE TABLE revisions (
    response_id INTEGER NOT NULL REFERENCES responses(response_id),
    revision INTEGER NOT NULL,
    value_json TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    changed_by TEXT NOT NULL,               -- "reader" or "admin:<name>"
    reason TEXT NOT NULL DEFAULT '',
    study_sha256 TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (response_id, revision)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    reader_id TEXT,
    item_id TEXT,
    payload_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER revisions_no_update BEFORE UPDATE ON revisions BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
CREATE TRIGGER revisions_no_delete BEFORE DELETE ON revisions BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
"""


def schema_statements(script: str = SCHEMA_SQL) -> list[str]:
    """Split the schema script into statements (triggers keep their inner semicolons)."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            statements.append(text)
            current = []
    return statements


def write_study_rows(conn: sqlite3.Connection, study: Study, loaded_at: str) -> None:
    """Make ``study`` the active version: its row in ``studies`` and its cases, images, tasks
    and questions (inside the caller's transaction).

    An image keeps its neutral link name while its path is unchanged and gets a new one when
    the path changes; ``size_bytes`` is recorded for files (the integrity check compares it).
    """
    conn.execute("UPDATE studies SET active = 0")
    conn.execute(
        "INSERT OR REPLACE INTO studies(study_sha256, study_id, version, config_json, source_path, base_dir, "
        "loaded_at, active) VALUES (?,?,?,?,?,?,?,1)",
        (study.sha256, study.study_id, study.version, study.config_json(),
         str(study.path.resolve()) if study.path else None, str(study.base_dir), loaded_at),
    )
    for case in study.cases:
        conn.execute(
            "INSERT INTO cases(case_id, training, block, truth_json) VALUES (?,?,?,?) "
            "ON CONFLICT(case_id) DO UPDATE SET training=excluded.training, block=excluded.block, "
            "truth_json=excluded.truth_json",
            (case.case_id, int(case.training), case.block, canonical_json(case.truth)),
        )
        for source, path in case.images.items():
            known = conn.execute("SELECT path FROM images WHERE case_id=? AND source=?", (case.case_id, source)).fetchone()
            size = path.stat().st_size if path.is_file() else None
            if known is None:
                conn.execute(
                    "INSERT INTO images(case_id, source, source_kind, model_id, path, size_bytes, blind_name) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (case.case_id, source, source_kind(source), source_model(source), str(path), size, new_blind_name(path)),
                )
            elif known["path"] != str(path):
                conn.execute("UPDATE images SET path=?, size_bytes=?, blind_name=? WHERE case_id=? AND source=?",
                             (str(path), size, new_blind_name(path), case.case_id, source))
    wanted = {(t.task_id, q.key) for t in study.tasks for q in t.questions}
    for row in conn.execute("SELECT task_id, question_key FROM questions").fetchall():
        if (row["task_id"], row["question_key"]) not in wanted:  # never answered (frozen otherwise)
            conn.execute("DELETE FROM questions WHERE task_id=? AND question_key=?", tuple(row))
    for position, task in enumerate(study.tasks):
        spec = {"type": task.type, "sources": list(task.sources), "compare": list(task.compare or []),
                "truth_column": task.truth_column, "finding": task.finding, "instructions": task.instructions}
        conn.execute(
            "INSERT INTO tasks(task_id, task_type, position, spec_json) VALUES (?,?,?,?) "
            "ON CONFLICT(task_id) DO UPDATE SET task_type=excluded.task_type, position=excluded.position, "
            "spec_json=excluded.spec_json",
            (task.task_id, task.type, position, canonical_json(spec)),
        )
        for qpos, q in enumerate(task.questions):
            conn.execute(
                "INSERT INTO questions(task_id, question_key, position, question_type, required, spec_json) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(task_id, question_key) DO UPDATE SET position=excluded.position, "
                "question_type=excluded.question_type, required=excluded.required, spec_json=excluded.spec_json",
                (task.task_id, q.key, qpos, q.type, int(q.required), canonical_json(q.spec())),
            )


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, ``synchronous=FULL``
    (a commit is on disk when it returns) and foreign keys enforced."""
    try:
        conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{db_path}: SQLite refused WAL mode ({mode}); put the store on a local disk.")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{db_path}: not a readable answer store ({error}); check the path or restore a backup.") from None


def create_database(db_path: Path, meta: Mapping[str, str]) -> sqlite3.Connection:
    """Create the tables and the ``meta`` rows in one transaction; on failure nothing is left on disk."""
    conn = connect(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statement in schema_statements():
            conn.execute(statement)
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()
        for leftover in (db_path, Path(str(db_path) + "-wal"), Path(str(db_path) + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    return conn


def write_schedule_rows(conn: sqlite3.Connection, schedule: Schedule, study_sha256: str) -> None:
    """Store a reader's schedule as generated: the ``readers`` row (with the schedule's JSON and
    sha256), its ``sessions`` and its ``items`` (inside the caller's transaction)."""
    reader_id = schedule.reader_id
    conn.execute(
        "INSERT INTO readers(reader_id, reader_group, enrolled_at, seed, study_sha256, schedule_json, "
        "schedule_sha256) VALUES (?,?,?,?,?,?,?)",
        (reader_id, schedule.reader_group, schedule.created_at, schedule.seed, study_sha256,
         canonical_json(schedule.to_dict()), schedule.sha256()),
    )
    conn.executemany(
        "INSERT INTO sessions(reader_id, session_no, kind, wave, opens_at, washout_after_wave) VALUES (?,?,?,?,?,?)",
        [(reader_id, s.session_no, s.kind, s.wave, s.opens_at, s.washout_after_wave) for s in schedule.sessions],
    )
    conn.executemany(
        "INSERT INTO items(item_id, reader_id, session_no, position_in_session, order_index, task_id, case_id, "
        "training, layout, wave, source_a, source_b) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(i.item_id, reader_id, i.session_no, i.position_in_session, i.order_index, i.task_id, i.case_id,
          int(i.training), i.layout, i.wave, i.sources[0], i.sources[1] if len(i.sources) > 1 else None)
         for i in schedule.items],
    )


# --------------------------------------------------------------------------------------------
# Rows -> records
# --------------------------------------------------------------------------------------------


def item_record(row: sqlite3.Row) -> ItemRecord:
    return ItemRecord(**{k: (bool(row[k]) if k == "training" else row[k]) for k in row.keys()})


def reader_record(row: sqlite3.Row) -> ReaderRecord:
    return ReaderRecord(row["reader_id"], row["reader_group"], row["enrolled_at"], row["seed"], row["schedule_sha256"])


def response_record(r: sqlite3.Row) -> ResponseRecord:
    return ResponseRecord(r["response_id"], r["item_id"], r["reader_id"], r["task_id"], r["question_key"],
                          json.loads(r["value_json"]), r["revision"], r["study_sha256"], r["answered_at"],
                          r["modified_at"])


def revision_record(r: sqlite3.Row) -> RevisionRecord:
    """A row of ``revisions`` joined with its response's item, reader and question key."""
    return RevisionRecord(r["response_id"], r["item_id"], r["reader_id"], r["question_key"], r["revision"],
                          json.loads(r["value_json"]), r["changed_at"], r["changed_by"], r["reason"],
                          r["study_sha256"])


def event_from_row(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "seq": r["seq"], "at": r["at"], "kind": r["kind"], "reader_id": r["reader_id"], "item_id": r["item_id"],
        "payload": json.loads(r["payload_json"]), "prev_hash": r["prev_hash"], "hash": r["hash"],
    }
