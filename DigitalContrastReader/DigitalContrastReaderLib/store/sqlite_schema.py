"""The SQLite answer store's file: its connection settings, its tables, and the migration of
older files.

Tables (``SCHEMA_SQL``): ``meta``, ``studies`` (every loaded version of the study file, with
its sha256, the store's version name for it and the reason of an accepted change), ``readers``
(with the stored schedule and the token hash), ``cases``, ``images`` (path relative to the study
folder, size, sha256, geometry and neutral file name per case and source), ``tasks``,
``questions`` (frozen once answered), ``sessions``, ``items`` (the stored schedule, with the
timing of each item), ``responses`` (one per reader, item and question), ``revisions`` (every
value a response ever had, who set it and why), ``events`` (append-only, hash-chained) and
``origins`` (events imported by ``merge``: their store and sequence number there). ``events``
and ``revisions`` refuse UPDATE and DELETE. The PostgreSQL store has the same tables and
columns (``postgres_schema.py``); rows are written and read by ``sql_rows.py`` for both.

``STORE_FORMAT`` (``meta.format``) versions this layout: a file of format 1 is migrated when it is
opened (``MIGRATE_1_TO_2`` here, the rest in ``sqlite.py``); a newer format is refused.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.errors import StoreError

STORE_FORMAT = 2

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
    base_dir TEXT NOT NULL,                 -- image paths are relative to this folder (absolute)
    base_dir_rel TEXT,                      -- the same, relative to the store's folder
    loaded_at TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    demo INTEGER NOT NULL DEFAULT 0 CHECK (demo IN (0, 1)),
    accepted_change TEXT,                   -- the admin's reason for a change of display or scheduling
    changes_json TEXT NOT NULL DEFAULT '[]',
    reader_view_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE readers (
    reader_id TEXT PRIMARY KEY,
    reader_group TEXT,
    enrolled_at TEXT NOT NULL,
    seed INTEGER NOT NULL,
    study_sha256 TEXT NOT NULL REFERENCES studies(study_sha256),
    schedule_json TEXT NOT NULL,            -- the schedule as generated, never recomputed
    schedule_sha256 TEXT NOT NULL,
    token_salt TEXT,                        -- the token's scrypt salt (hex) and parameters
    token_n INTEGER,
    token_r INTEGER,
    token_p INTEGER,
    token_digest TEXT                       -- sha256 (hex) of scrypt(token): never the token
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
    path TEXT NOT NULL,                     -- relative to the study folder (POSIX), or absolute
    size_bytes INTEGER,
    sha256 TEXT,
    geometry_json TEXT,
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
    simulated INTEGER NOT NULL DEFAULT 0 CHECK (simulated IN (0, 1)),
    UNIQUE (reader_id, item_id, question_key),
    FOREIGN KEY (task_id, question_key) REFERENCES questions(task_id, question_key)
);
CREATE INDEX responses_item ON responses(item_id, question_key);
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
CREATE TABLE origins (
    origin_store_id TEXT NOT NULL,          -- the store an imported event comes from
    origin_seq INTEGER NOT NULL,            -- its number there
    origin_hash TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE REFERENCES events(seq),
    PRIMARY KEY (origin_store_id, origin_seq)
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER revisions_no_update BEFORE UPDATE ON revisions BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
CREATE TRIGGER revisions_no_delete BEFORE DELETE ON revisions BEGIN SELECT RAISE(ABORT, 'revisions are append-only'); END;
CREATE TRIGGER origins_no_update BEFORE UPDATE ON origins BEGIN SELECT RAISE(ABORT, 'origins are append-only'); END;
CREATE TRIGGER origins_no_delete BEFORE DELETE ON origins BEGIN SELECT RAISE(ABORT, 'origins are append-only'); END;
"""

#: Format 1 -> 2 (tokens, image hashes and relative paths, simulated answers, accepted changes,
#: merge origins). ``sqlite.py`` then fills what needs Python (sha256 of the images, ...).
MIGRATE_1_TO_2 = """
ALTER TABLE studies ADD COLUMN base_dir_rel TEXT;
ALTER TABLE studies ADD COLUMN demo INTEGER NOT NULL DEFAULT 0 CHECK (demo IN (0, 1));
ALTER TABLE studies ADD COLUMN accepted_change TEXT;
ALTER TABLE studies ADD COLUMN changes_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE studies ADD COLUMN reader_view_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE readers ADD COLUMN token_salt TEXT;
ALTER TABLE readers ADD COLUMN token_n INTEGER;
ALTER TABLE readers ADD COLUMN token_r INTEGER;
ALTER TABLE readers ADD COLUMN token_p INTEGER;
ALTER TABLE readers ADD COLUMN token_digest TEXT;
ALTER TABLE images ADD COLUMN sha256 TEXT;
ALTER TABLE images ADD COLUMN geometry_json TEXT;
ALTER TABLE responses ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0 CHECK (simulated IN (0, 1));
CREATE INDEX IF NOT EXISTS responses_item ON responses(item_id, question_key);
CREATE TABLE origins (
    origin_store_id TEXT NOT NULL,
    origin_seq INTEGER NOT NULL,
    origin_hash TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE REFERENCES events(seq),
    PRIMARY KEY (origin_store_id, origin_seq)
);
CREATE TRIGGER origins_no_update BEFORE UPDATE ON origins BEGIN SELECT RAISE(ABORT, 'origins are append-only'); END;
CREATE TRIGGER origins_no_delete BEFORE DELETE ON origins BEGIN SELECT RAISE(ABORT, 'origins are append-only'); END;
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


def remove_database_files(db_path: Path) -> None:
    """Delete a database file with its WAL, shared-memory and lock files (a failed creation)."""
    for leftover in (db_path, Path(str(db_path) + "-wal"), Path(str(db_path) + "-shm"), Path(str(db_path) + ".lock")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


class SQLiteDb:
    """:class:`~DigitalContrastReaderLib.store.sql_rows.SqlDb` on a ``sqlite3`` connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, [tuple(r) for r in rows])

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, tuple(params)).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return None if row is None else row[0]

    def insert_id(self, sql: str, params: Sequence[Any], id_column: str) -> int:
        return self.conn.execute(sql, tuple(params)).lastrowid
