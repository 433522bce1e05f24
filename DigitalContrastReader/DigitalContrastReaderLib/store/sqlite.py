"""The answer store: every answer committed when it is given, audited, backed up, checkable.

:class:`AnswerStore` is the interface a reader UI, the CLI and the exports call;
:class:`SQLiteAnswerStore` implements it on one SQLite file (a PostgreSQL store for multi-site
studies can implement the same protocol).

Tables (see ``SCHEMA_SQL``): ``meta``, ``studies`` (every loaded version of the study file, with
its sha256), ``readers`` (with the stored schedule), ``cases``, ``images`` (path and neutral
link name per case and source), ``tasks``, ``questions`` (frozen once answered), ``sessions``,
``items`` (the stored schedule, with the timing of each item), ``responses`` (one per reader,
item and question), ``revisions`` (every value a response ever had, who set it and why) and
``events`` (append-only, hash-chained). ``events`` and ``revisions`` refuse UPDATE and DELETE.

Durability and the order of writes
----------------------------------
SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns. A submit
is ONE transaction (responses, revisions, item timing and the event). Under an exclusive writer
lock (``<db>.lock``), the store then

1. commits the transaction to SQLite (the source of truth), then
2. appends the same events to the JSONL log (``<db>.events.jsonl`` unless configured) and
   fsyncs it, and only then returns to the caller.

So a crash can leave the JSONL log *behind* the database (the writer died between 1 and 2) or
end in a half-written line, never ahead of it. When a store is opened, recovery drops a
half-written last line and appends the events that the database holds and the log lacks; both
repairs are reported in ``recovery_notes`` and by :meth:`SQLiteAnswerStore.integrity_check`. If
the log holds events the database lacks, or different ones (a database restored from an older
backup, or tampering), nothing is repaired: the integrity check fails and names the first
difference, and the log is the record of what was lost.

Backups: every ``backup_every`` submits and at close (when something changed), the database is
copied with SQLite's online backup API to ``backup_dir`` (default ``<db folder>/backups``; put it
on another disk) as ``<db name>-<UTC time>.sqlite``; the newest ``backup_keep`` copies are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from DigitalContrastLib.common.atomic import atomic_path

from DigitalContrastReaderLib.study.blinding import ReaderItem, ensure_blind_link, image_handles, new_blind_name
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, StudyError
from .eventlog import GENESIS_HASH, JsonlLog, WriterLock, chain_problems, make_event
from DigitalContrastReaderLib.study.schedule import Schedule, generate_schedule
from DigitalContrastReaderLib.study.study import Study, canonical_json, source_kind, source_model, study_from_config

STORE_FORMAT = 1
DEFAULT_BACKUP_EVERY = 25
DEFAULT_BACKUP_KEEP = 10

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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


# --------------------------------------------------------------------------------------------
# Records returned to callers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitReceipt:
    """What a submit returns once the answer is on disk in the database AND the event log."""

    item_id: str
    submitted_at: str
    event_seq: int
    modified: bool  # True when this changed an earlier submit (a revision)
    next_item_id: str | None
    finished: bool


@dataclass(frozen=True)
class ReaderProgress:
    reader_id: str
    group: str | None
    enrolled: bool
    items_total: int = 0
    items_done: int = 0
    training_total: int = 0
    training_done: int = 0
    sessions_total: int = 0
    current_session: int | None = None
    next_item_id: str | None = None
    next_opens_at: str | None = None
    last_submit_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.enrolled and self.items_done == self.items_total


@dataclass(frozen=True)
class ItemRecord:
    """An item with its sources and timing: the ADMIN view (never give it to a reader UI)."""

    item_id: str
    reader_id: str
    session_no: int
    position_in_session: int
    order_index: int
    task_id: str
    case_id: str
    training: bool
    layout: str
    wave: int
    source_a: str
    source_b: str | None
    shown_at: str | None
    last_shown_at: str | None
    first_interaction_at: str | None
    submitted_at: str | None
    active_seconds: float | None
    visits: int

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source_a,) if self.source_b is None else (self.source_a, self.source_b)


@dataclass(frozen=True)
class ResponseRecord:
    response_id: int
    item_id: str
    reader_id: str
    task_id: str
    question_key: str
    value: Any
    revision: int
    study_sha256: str
    answered_at: str
    modified_at: str


@dataclass(frozen=True)
class RevisionRecord:
    response_id: int
    item_id: str
    reader_id: str
    question_key: str
    revision: int
    value: Any
    changed_at: str
    changed_by: str
    reason: str
    study_sha256: str


@dataclass(frozen=True)
class ReaderRecord:
    reader_id: str
    group: str | None
    enrolled_at: str
    seed: int
    schedule_sha256: str


@dataclass
class IntegrityReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        head = "integrity check passed" if self.ok else f"integrity check FAILED ({len(self.problems)} problems)"
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        lines = [f"{head}: {counts}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@runtime_checkable
class AnswerStore(Protocol):
    """What a reader UI, the CLI and the exports need from a store of answers."""

    study: Study

    def enrol(self, reader_id: str, *, seed: int | None = None) -> Schedule: ...
    def schedule(self, reader_id: str) -> Schedule: ...
    def resume(self, reader_id: str) -> ReaderItem | None: ...
    def open_item(self, reader_id: str, item_id: str) -> ReaderItem: ...
    def mark_interaction(self, reader_id: str, item_id: str) -> None: ...
    def submit(self, reader_id: str, item_id: str, answers: Mapping[str, Any], *,
               active_seconds: float | None = None) -> SubmitReceipt: ...
    def correct_answer(self, item_id: str, question_key: str, value: Any, *, reason: str,
                       corrected_by: str) -> int: ...
    def update_study(self, study: Study) -> bool: ...
    def progress(self) -> list[ReaderProgress]: ...
    def integrity_check(self) -> IntegrityReport: ...
    def readers(self) -> list[ReaderRecord]: ...
    def items(self, reader_id: str | None = None) -> list[ItemRecord]: ...
    def item(self, item_id: str) -> ItemRecord: ...
    def study_versions(self) -> list[dict[str, Any]]: ...
    def responses(self) -> list[ResponseRecord]: ...
    def revisions(self) -> list[RevisionRecord]: ...
    def events(self) -> list[dict[str, Any]]: ...
    def backup(self) -> Path: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# SQLite implementation
# --------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the store's clock must return timezone-aware datetimes")
    return moment.astimezone(timezone.utc).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _relative_or_absolute(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


class SQLiteAnswerStore:
    """An :class:`AnswerStore` in one SQLite file. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, db_path: Path, conn: sqlite3.Connection, clock: Clock, study: Study | None = None) -> None:
        self.db_path = db_path
        self._conn = conn
        self._clock = clock
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("format", 0)) != STORE_FORMAT:
            raise StoreError(f"{db_path}: store format {meta.get('format')} is not supported by this version; "
                             "use the version that created it.")
        folder = db_path.parent
        self.event_log_path = folder / meta["event_log"]
        self.backup_dir = folder / meta["backup_dir"]
        self.images_dir = folder / meta["images_dir"]
        self.backup_every = int(meta["backup_every"])
        self.backup_keep = int(meta["backup_keep"])
        self._log = JsonlLog(self.event_log_path)
        self._lock = WriterLock(db_path.with_name(db_path.name + ".lock"))
        self._writes_since_backup = 0
        self._submits_since_backup = 0
        self.recovery_notes: list[str] = []
        self.study = study if study is not None else self._load_active_study()
        self._recover_event_log()

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def _connect(db_path: Path) -> sqlite3.Connection:
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

    @classmethod
    def create(
        cls,
        db_path: str | os.PathLike,
        study: Study,
        *,
        backup_dir: str | os.PathLike | None = None,
        backup_every: int = DEFAULT_BACKUP_EVERY,
        backup_keep: int = DEFAULT_BACKUP_KEEP,
        event_log: str | os.PathLike | None = None,
        clock: Clock | None = None,
    ) -> SQLiteAnswerStore:
        """Create a new store for ``study`` (refuses an existing file)."""
        db_path = Path(db_path)
        if db_path.exists():
            raise StoreError(f"{db_path}: a store already exists there; open it, or choose another path.")
        if backup_every < 1 or backup_keep < 1:
            raise AnswerError("backup_every and backup_keep must be at least 1; correct the option.")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        folder = db_path.parent
        clock = clock or utc_now
        log_path = Path(event_log) if event_log else db_path.with_name(db_path.name + ".events.jsonl")
        if log_path.exists():
            raise StoreError(f"{log_path}: an event log already exists there; move it away or choose another store path.")
        meta = {
            "format": str(STORE_FORMAT),
            "created_at": _iso(clock()),
            "event_log": _relative_or_absolute(log_path, folder),
            "backup_dir": _relative_or_absolute(Path(backup_dir) if backup_dir else folder / "backups", folder),
            "images_dir": _relative_or_absolute(db_path.with_name(db_path.stem + "-images"), folder),
            "backup_every": str(backup_every),
            "backup_keep": str(backup_keep),
        }
        conn = cls._connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split_sql(SCHEMA_SQL):
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
        store = cls(db_path, conn, clock, study)
        with store._transaction() as events:
            store._write_study(study, events, first=True)
        return store

    @classmethod
    def open(cls, db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
        """Open an existing store (runs event-log recovery, see the module docstring)."""
        db_path = Path(db_path)
        if not db_path.is_file():
            raise StoreError(f"{db_path}: no answer store there; create one with 'digital-contrast-reader init'.")
        conn = cls._connect(db_path)
        try:
            return cls(db_path, conn, clock or utc_now)
        except sqlite3.DatabaseError as error:
            conn.close()
            raise StoreError(f"{db_path}: not a readable answer store ({error}); check the path or restore a backup.") from None
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Back up (if anything changed since the last backup) and close."""
        if self._conn is None:
            return
        try:
            if self._writes_since_backup:
                self.backup()
        finally:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> SQLiteAnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions and events ---------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[list[dict[str, Any]]]:
        """Hold the writer lock; one SQLite transaction; then append its events to the JSONL log.

        Yields the list that :meth:`_event` fills. The log append and fsync happen after COMMIT
        returns and before this context exits (see the module docstring).
        """
        with self._lock.hold():
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise StoreError(f"{self.db_path}: the store is busy or not writable ({error}); retry, or check the "
                                 "disk and permissions.") from None
            events: list[dict[str, Any]] = []
            try:
                yield events
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as error:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"{self.db_path}: the answer could not be saved ({error}); nothing was written; "
                                 "check the disk and run 'digital-contrast-reader check'.") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._writes_since_backup += 1
            try:
                self._log.append(events)
            except OSError as error:
                raise StoreError(
                    f"{self.event_log_path}: the event log could not be written ({error.strerror}); the answer IS "
                    "saved in the database; free space or fix permissions, then reopen the store to repair the log."
                ) from None

    def _event(self, events: list[dict[str, Any]], kind: str, reader_id: str | None, item_id: str | None,
               payload: dict[str, Any]) -> dict[str, Any]:
        if events:
            seq, prev = events[-1]["seq"] + 1, events[-1]["hash"]
        else:
            row = self._conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row["seq"] + 1, row["hash"]) if row else (1, GENESIS_HASH)
        event = make_event(seq, _iso(self._clock()), kind, reader_id, item_id, payload, prev)
        self._conn.execute(
            "INSERT INTO events(seq, at, kind, reader_id, item_id, payload_json, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (seq, event["at"], kind, reader_id, item_id, canonical_json(payload), prev, event["hash"]),
        )
        events.append(event)
        return event

    @staticmethod
    def _event_from_row(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "seq": row["seq"], "at": row["at"], "kind": row["kind"], "reader_id": row["reader_id"],
            "item_id": row["item_id"], "payload": json.loads(row["payload_json"]),
            "prev_hash": row["prev_hash"], "hash": row["hash"],
        }

    def events(self) -> list[dict[str, Any]]:
        """Every event in order (the audit trail)."""
        return [self._event_from_row(r) for r in self._conn.execute("SELECT * FROM events ORDER BY seq")]

    def _recover_event_log(self) -> None:
        """Bring the JSONL log up to the database after a crash (see the module docstring)."""
        with self._lock.hold():
            dropped = self._log.drop_unfinished_tail()
            if dropped:
                self.recovery_notes.append(
                    f"removed an unfinished last line ({dropped} bytes) from {self.event_log_path.name}: a write cut off "
                    "by a crash; the database holds that event"
                )
            try:
                logged, _ = self._log.read()
            except ValueError:
                return  # reported by integrity_check; never rewrite a damaged log
            count = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if len(logged) >= count:
                return
            db_events = self.events()
            if logged != db_events[: len(logged)]:
                return  # a disagreement, not a lag: reported by integrity_check, not repaired
            missing = db_events[len(logged):]
            self._log.append(missing)
            self.recovery_notes.append(
                f"appended {len(missing)} event(s) to {self.event_log_path.name} that were committed to the database "
                "but not yet logged (the writer stopped between the two writes)"
            )

    # -- study ---------------------------------------------------------------------------------
    def _load_active_study(self) -> Study:
        row = self._conn.execute("SELECT * FROM studies WHERE active = 1").fetchone()
        if row is None:
            raise StoreError(f"{self.db_path}: the store holds no study; it was not created completely, create it again.")
        return study_from_config(
            json.loads(row["config_json"]), base_dir=row["base_dir"], sha256=row["study_sha256"],
            path=row["source_path"], check_files=False,
        )

    def _answered_count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def _write_study(self, study: Study, events: list[dict[str, Any]], *, first: bool) -> None:
        conn = self._conn
        conn.execute("UPDATE studies SET active = 0")
        conn.execute(
            "INSERT OR REPLACE INTO studies(study_sha256, study_id, version, config_json, source_path, base_dir, "
            "loaded_at, active) VALUES (?,?,?,?,?,?,?,1)",
            (study.sha256, study.study_id, study.version, study.config_json(),
             str(study.path.resolve()) if study.path else None, str(study.base_dir), _iso(self._clock())),
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
        self._event(events, "study_loaded" if first else "study_updated", None, None, {
            "study_id": study.study_id, "version": study.version, "study_sha256": study.sha256,
            "source_path": str(study.path) if study.path else None, "warnings": list(study.warnings),
        })
        self.study = study

    def update_study(self, study: Study) -> bool:
        """Load a new version of the study file into the store; False when it is unchanged.

        Refused (StudyError) when it would change what existing answers mean: questions once any
        answer exists, the images of a case already read, removed cases, tasks or enrolled readers.
        Added cases, readers and tasks only affect readers enrolled afterwards; truth values may be
        corrected (the change is logged).
        """
        if study.sha256 == self.study.sha256:
            return False
        name = study.path.name if study.path else "the study file"
        old = self.study
        if study.study_id != old.study_id:
            raise StudyError(f"{name}: study_id '{study.study_id}' differs from '{old.study_id}' in {self.db_path.name}; "
                             "use a new store for another study.")
        if self._answered_count():
            old_q = {(t.task_id, q.key): q.spec() for t in old.tasks for q in t.questions}
            new_q = {(t.task_id, q.key): q.spec() for t in study.tasks for q in t.questions}
            for key in sorted(set(old_q) | set(new_q)):
                if key[0] in {t.task_id for t in old.tasks} and old_q.get(key) != new_q.get(key):
                    raise StudyError(
                        f"{name}: question '{key[1]}' of task '{key[0]}' differs from the one already answered in "
                        f"{self.db_path.name}; questions are frozen once answered, so restore it or start a new study database."
                    )
        read_cases = {r[0] for r in self._conn.execute("SELECT DISTINCT case_id FROM items")}
        new_cases = {c.case_id: c for c in study.cases}
        for case in old.cases:
            if case.case_id not in new_cases:
                if case.case_id in read_cases:
                    raise StudyError(f"{name}: case '{case.case_id}' is missing but is in stored schedules; put it back.")
            elif case.case_id in read_cases and new_cases[case.case_id].images != case.images:
                raise StudyError(f"{name}: the images of case '{case.case_id}' changed but it is in stored schedules; "
                                 "restore its paths (or start a new study database).")
        enrolled = {r.reader_id for r in self.readers()}
        missing_readers = sorted(enrolled - {r.reader_id for r in study.readers})
        if missing_readers:
            raise StudyError(f"{name}: reader '{missing_readers[0]}' is enrolled but no longer listed; put them back.")
        scheduled_tasks = {r[0] for r in self._conn.execute("SELECT DISTINCT task_id FROM items")}
        missing_tasks = sorted(scheduled_tasks - {t.task_id for t in study.tasks})
        if missing_tasks:
            raise StudyError(f"{name}: task '{missing_tasks[0]}' is in stored schedules but no longer listed; put it back.")
        with self._transaction() as events:
            self._write_study(study, events, first=False)
        return True

    # -- enrolment and schedules ---------------------------------------------------------------
    def enrol(self, reader_id: str, *, seed: int | None = None) -> Schedule:
        """Generate and STORE the reader's schedule (once; a second enrolment is refused)."""
        self.study.reader(reader_id)
        if seed is None:
            seed = secrets.randbits(31)
        schedule = generate_schedule(self.study, reader_id, seed=int(seed), start=self._clock())
        with self._transaction() as events:
            conn = self._conn
            existing = conn.execute("SELECT enrolled_at, seed FROM readers WHERE reader_id=?", (reader_id,)).fetchone()
            if existing is not None:
                raise AnswerError(
                    f"Reader '{reader_id}' was enrolled at {existing['enrolled_at']} (seed {existing['seed']}); a "
                    "stored schedule is never recomputed, so carry on with 'next'.",
                    code="already_enrolled",
                )
            conn.execute(
                "INSERT INTO readers(reader_id, reader_group, enrolled_at, seed, study_sha256, schedule_json, "
                "schedule_sha256) VALUES (?,?,?,?,?,?,?)",
                (reader_id, schedule.reader_group, schedule.created_at, schedule.seed, self.study.sha256,
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
            self._event(events, "enrol", reader_id, None, {
                "seed": schedule.seed, "schedule_sha256": schedule.sha256(), "study_sha256": self.study.sha256,
                "sessions": len(schedule.sessions), "items": len(schedule.items),
            })
        for item in schedule.items:
            self._image_paths(item.case_id, item.sources)
        return schedule

    def schedule(self, reader_id: str) -> Schedule:
        """The stored schedule of a reader, exactly as generated at enrolment."""
        row = self._conn.execute("SELECT schedule_json FROM readers WHERE reader_id=?", (reader_id,)).fetchone()
        if row is None:
            raise AnswerError(self._not_enrolled(reader_id), code="not_enrolled")
        return Schedule.from_dict(json.loads(row["schedule_json"]))

    def _not_enrolled(self, reader_id: str) -> str:
        self.study.reader(reader_id)
        return f"Reader '{reader_id}' is not enrolled yet; enrol them first ('digital-contrast-reader enrol DB --reader {reader_id}')."

    # -- blinded items -------------------------------------------------------------------------
    def _image_paths(self, case_id: str, sources: tuple[str, ...]) -> list[Path]:
        paths = []
        for source in sources:
            row = self._conn.execute("SELECT path, blind_name FROM images WHERE case_id=? AND source=?",
                                     (case_id, source)).fetchone()
            original = Path(row["path"])
            if not original.exists():
                raise StudyError(f"An image of case '{case_id}' is missing ({original}); restore it, then carry on.")
            paths.append(ensure_blind_link(original, self.images_dir / row["blind_name"]))
        return paths

    def _item_row(self, item_id: str) -> sqlite3.Row:
        row = self._conn.execute("SELECT * FROM items WHERE item_id=?", (item_id,)).fetchone()
        if row is None:
            raise AnswerError(f"There is no item '{item_id}' in {self.db_path.name}; check the item id.", code="unknown_item")
        return row

    def _check_owner(self, row: sqlite3.Row, reader_id: str) -> None:
        if row["reader_id"] != reader_id:
            raise AnswerError(f"Item '{row['item_id']}' belongs to another reader, not '{reader_id}'; check the reader id.",
                              code="wrong_reader")

    def _next_row(self, reader_id: str) -> sqlite3.Row | None:
        if self._conn.execute("SELECT 1 FROM readers WHERE reader_id=?", (reader_id,)).fetchone() is None:
            raise AnswerError(self._not_enrolled(reader_id), code="not_enrolled")
        return self._conn.execute(
            "SELECT * FROM items WHERE reader_id=? AND submitted_at IS NULL ORDER BY order_index LIMIT 1", (reader_id,)
        ).fetchone()

    def opens_at(self, reader_id: str, session_no: int) -> datetime:
        """When a session opens: its planned date, and for a washout session at least
        ``washout_days`` after the last submit of the wave before."""
        session = self._conn.execute("SELECT * FROM sessions WHERE reader_id=? AND session_no=?",
                                     (reader_id, session_no)).fetchone()
        opens = _parse(session["opens_at"])
        if session["washout_after_wave"] is not None:
            last = self._conn.execute("SELECT MAX(submitted_at) FROM items WHERE reader_id=? AND wave=?",
                                      (reader_id, session["washout_after_wave"])).fetchone()[0]
            if last is not None:
                opens = max(opens, _parse(last) + timedelta(days=self.study.design.washout_days))
        return opens

    def _reader_item(self, row: sqlite3.Row) -> ReaderItem:
        reader_id = row["reader_id"]
        task = self.study.task(row["task_id"])
        sources = (row["source_a"],) if row["source_b"] is None else (row["source_a"], row["source_b"])
        paths = self._image_paths(row["case_id"], sources)
        opens = self.opens_at(reader_id, row["session_no"])
        done = row["submitted_at"] is not None
        answers = {
            r["question_key"]: json.loads(r["value_json"])
            for r in self._conn.execute("SELECT question_key, value_json FROM responses WHERE item_id=?", (row["item_id"],))
        }
        count = self._conn.execute
        return ReaderItem(
            item_id=row["item_id"],
            session_no=row["session_no"],
            sessions_total=count("SELECT COUNT(*) FROM sessions WHERE reader_id=?", (reader_id,)).fetchone()[0],
            position_in_session=row["position_in_session"],
            items_in_session=count("SELECT COUNT(*) FROM items WHERE reader_id=? AND session_no=?",
                                   (reader_id, row["session_no"])).fetchone()[0],
            order_index=row["order_index"],
            items_total=count("SELECT COUNT(*) FROM items WHERE reader_id=?", (reader_id,)).fetchone()[0],
            task_id=task.task_id,
            task_type=task.type,
            instructions=task.instructions,
            training=bool(row["training"]),
            layout=row["layout"],
            images=tuple({"handle": h, "path": str(p)} for h, p in zip(image_handles(row["layout"]), paths)),
            display={**self.study.display, **self.study.layout},
            questions=tuple(q.spec() for q in task.questions),
            answers=answers,
            done=done,
            editable=not done or self.study.allow_answer_modification,
            opens_at=None if done or opens <= self._clock() else _iso(opens),
        )

    def resume(self, reader_id: str) -> ReaderItem | None:
        """Exactly the next unfinished item of the reader in stored order (None when finished).

        Its ``opens_at`` is set when a washout still blocks it. Records nothing (call
        :meth:`open_item` when it is displayed)."""
        row = self._next_row(reader_id)
        return None if row is None else self._reader_item(row)

    def open_item(self, reader_id: str, item_id: str) -> ReaderItem:
        """Display an item: records the first and last display time and counts visits.

        Allowed for the next unfinished item once it is open, and for items already submitted
        (a revisit; editable only when the study allows answer modification)."""
        with self._transaction() as events:  # checks inside: another process may write too
            row = self._item_row(item_id)
            self._check_owner(row, reader_id)
            if row["submitted_at"] is None:
                self._check_is_next_and_open(row)
            now = _iso(self._clock())
            self._conn.execute(
                "UPDATE items SET shown_at = COALESCE(shown_at, ?), last_shown_at = ?, visits = visits + 1 WHERE item_id=?",
                (now, now, item_id),
            )
            self._event(events, "shown", reader_id, item_id, {"visit": row["visits"] + 1})
        return self._reader_item(self._item_row(item_id))

    def _check_is_next_and_open(self, row: sqlite3.Row) -> None:
        nxt = self._next_row(row["reader_id"])
        if nxt is None or nxt["item_id"] != row["item_id"]:
            raise AnswerError(
                f"Item '{row['item_id']}' is not the next item of reader '{row['reader_id']}' "
                f"(the next is '{nxt['item_id'] if nxt else 'none'}'); items are read in their stored order.",
                code="not_next",
            )
        opens = self.opens_at(row["reader_id"], row["session_no"])
        if opens > self._clock():
            raise AnswerError(
                f"Item '{row['item_id']}' opens at {_iso(opens)} (a {self.study.design.washout_days:g}-day washout after "
                "the previous reading of these cases); come back then.",
                code="washout",
            )

    def mark_interaction(self, reader_id: str, item_id: str) -> None:
        """Record the first interaction with a displayed item (scroll, window/level, a click)."""
        row = self._item_row(item_id)
        self._check_owner(row, reader_id)
        if row["first_interaction_at"] is not None or row["submitted_at"] is not None:
            return  # nothing to record: no transaction, no event
        with self._transaction() as events:
            updated = self._conn.execute(
                "UPDATE items SET first_interaction_at = ? WHERE item_id=? AND first_interaction_at IS NULL "
                "AND submitted_at IS NULL", (_iso(self._clock()), item_id)).rowcount
            if updated:
                self._event(events, "first_interaction", reader_id, item_id, {})

    # -- answers -------------------------------------------------------------------------------
    def _validated(self, task_id: str, answers: Mapping[str, Any]) -> dict[str, Any]:
        task = self.study.task(task_id)
        keys = {q.key for q in task.questions}
        unknown = sorted(set(answers) - keys)
        if unknown:
            raise AnswerError(f"Task '{task_id}' has no question '{unknown[0]}'; answer only "
                              f"{', '.join(q.key for q in task.questions)}.", code="unknown_question")
        return {q.key: q.validate(answers.get(q.key)) for q in task.questions}

    def _insert_revision(self, response_id: int, revision: int, value: Any, at: str, by: str, reason: str,
                         event_seq: int) -> None:
        self._conn.execute(
            "INSERT INTO revisions(response_id, revision, value_json, changed_at, changed_by, reason, study_sha256, "
            "event_seq) VALUES (?,?,?,?,?,?,?,?)",
            (response_id, revision, canonical_json(value), at, by, reason, self.study.sha256, event_seq),
        )

    def submit(self, reader_id: str, item_id: str, answers: Mapping[str, Any], *,
               active_seconds: float | None = None) -> SubmitReceipt:
        """Save the answers to one item in ONE transaction; returns once they are on disk.

        Every required question needs an answer, unknown keys are refused, values are validated
        by their question. A second submit of the same item is refused unless the study allows
        answer modification; then changed values become new revisions (an omitted optional
        answer keeps its earlier value).

        Args:
            active_seconds: time the reader actively spent, as measured by the UI (idle time
                excluded). Default: seconds from the last display to this submit.
        """
        if active_seconds is not None and (not isinstance(active_seconds, (int, float)) or active_seconds < 0):
            raise AnswerError(f"active_seconds must be a non-negative number, not {active_seconds!r}; correct it.")
        with self._transaction() as events:  # checks inside: another process may write too
            row = self._item_row(item_id)
            self._check_owner(row, reader_id)
            values = self._validated(row["task_id"], answers)
            modified = row["submitted_at"] is not None
            if modified and not self.study.allow_answer_modification:
                raise AnswerError(
                    f"Item '{item_id}' was already submitted and study '{self.study.study_id}' does not allow changing "
                    "answers; ask the study admin for a correction.", code="already_submitted",
                )
            if not modified:
                self._check_is_next_and_open(row)
            now_dt = self._clock()
            now = _iso(now_dt)
            if not modified:
                seconds = active_seconds
                if seconds is None and row["last_shown_at"] is not None:
                    seconds = max((now_dt - _parse(row["last_shown_at"])).total_seconds(), 0.0)
                given = {k: v for k, v in values.items() if v is not None}
                event = self._event(events, "submit", reader_id, item_id, {
                    "answers": given, "study_sha256": self.study.sha256, "active_seconds": seconds,
                })
                for key, value in given.items():
                    cur = self._conn.execute(
                        "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, "
                        "study_sha256, answered_at, modified_at) VALUES (?,?,?,?,?,1,?,?,?)",
                        (item_id, reader_id, row["task_id"], key, canonical_json(value), self.study.sha256, now, now),
                    )
                    self._insert_revision(cur.lastrowid, 1, value, now, "reader", "", event["seq"])
                self._conn.execute("UPDATE items SET submitted_at=?, active_seconds=? WHERE item_id=?",
                                   (now, seconds, item_id))
                self._submits_since_backup += 1
            else:
                changes = {}
                for key, value in values.items():
                    if value is None:
                        continue
                    old = self._conn.execute("SELECT response_id, value_json, revision FROM responses WHERE item_id=? "
                                             "AND question_key=?", (item_id, key)).fetchone()
                    if old is None or json.loads(old["value_json"]) != value:
                        changes[key] = {"from": None if old is None else json.loads(old["value_json"]), "to": value,
                                        "revision": 1 if old is None else old["revision"] + 1}
                event = self._event(events, "modify", reader_id, item_id, {
                    "changes": changes, "study_sha256": self.study.sha256, "active_seconds": active_seconds,
                })
                for key, change in changes.items():
                    self._set_response(item_id, reader_id, row["task_id"], key, change["to"], now, "reader", "",
                                       event["seq"])
                if active_seconds is not None:
                    self._conn.execute("UPDATE items SET active_seconds = COALESCE(active_seconds, 0) + ? WHERE item_id=?",
                                       (active_seconds, item_id))
        nxt = self._next_row(reader_id)
        receipt = SubmitReceipt(item_id, now, event["seq"], modified, nxt["item_id"] if nxt else None, nxt is None)
        if self._submits_since_backup >= self.backup_every:
            self.backup()
        return receipt

    def _set_response(self, item_id: str, reader_id: str, task_id: str, key: str, value: Any, at: str, by: str,
                      reason: str, event_seq: int) -> int:
        old = self._conn.execute("SELECT response_id, revision FROM responses WHERE item_id=? AND question_key=?",
                                 (item_id, key)).fetchone()
        if old is None:
            cur = self._conn.execute(
                "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256, "
                "answered_at, modified_at) VALUES (?,?,?,?,?,1,?,?,?)",
                (item_id, reader_id, task_id, key, canonical_json(value), self.study.sha256, at, at),
            )
            response_id, revision = cur.lastrowid, 1
        else:
            response_id, revision = old["response_id"], old["revision"] + 1
            self._conn.execute("UPDATE responses SET value_json=?, revision=?, modified_at=?, study_sha256=? "
                               "WHERE response_id=?", (canonical_json(value), revision, at, self.study.sha256, response_id))
        self._insert_revision(response_id, revision, value, at, by, reason, event_seq)
        return revision

    def correct_answer(self, item_id: str, question_key: str, value: Any, *, reason: str, corrected_by: str) -> int:
        """An admin correction of a submitted answer: a new revision with the reason, logged as
        an ``admin_correction`` event. Returns the new revision number."""
        if not reason or not reason.strip():
            raise AnswerError("A correction needs a reason; give one (e.g. 'reader pressed the wrong level, confirmed by email').",
                              code="no_reason")
        if not corrected_by or not corrected_by.strip():
            raise AnswerError("A correction needs the name of the admin who makes it; give it.", code="no_admin")
        with self._transaction() as events:
            row = self._item_row(item_id)
            if row["submitted_at"] is None:
                raise AnswerError(f"Item '{item_id}' has not been submitted yet; corrections apply to submitted answers "
                                  "only.", code="not_submitted")
            question = self.study.task(row["task_id"]).question(question_key)
            value = question.validate(value)
            if value is None:
                raise AnswerError(f"A correction of '{question_key}' needs a value; give one.", code="required")
            old = self._conn.execute("SELECT value_json FROM responses WHERE item_id=? AND question_key=?",
                                     (item_id, question_key)).fetchone()
            now = _iso(self._clock())
            event = self._event(events, "admin_correction", row["reader_id"], item_id, {
                "question_key": question_key, "from": None if old is None else json.loads(old["value_json"]),
                "to": value, "reason": reason.strip(), "corrected_by": corrected_by.strip(),
                "study_sha256": self.study.sha256,
            })
            return self._set_response(item_id, row["reader_id"], row["task_id"], question_key, value, now,
                                      f"admin:{corrected_by.strip()}", reason.strip(), event["seq"])

    # -- reading back --------------------------------------------------------------------------
    def readers(self) -> list[ReaderRecord]:
        return [ReaderRecord(r["reader_id"], r["reader_group"], r["enrolled_at"], r["seed"], r["schedule_sha256"])
                for r in self._conn.execute("SELECT * FROM readers ORDER BY reader_id")]

    def items(self, reader_id: str | None = None) -> list[ItemRecord]:
        query = "SELECT * FROM items" + (" WHERE reader_id=?" if reader_id else "") + " ORDER BY reader_id, order_index"
        rows = self._conn.execute(query, (reader_id,) if reader_id else ())
        return [ItemRecord(**{k: (bool(r[k]) if k == "training" else r[k]) for k in r.keys()}) for r in rows]


    def item(self, item_id: str) -> ItemRecord:
        """One item with its sources and timing (admin view)."""
        row = self._item_row(item_id)
        return ItemRecord(**{k: (bool(row[k]) if k == "training" else row[k]) for k in row.keys()})

    def study_versions(self) -> list[dict[str, Any]]:
        """Every version of the study file loaded into the store, oldest first."""
        rows = self._conn.execute("SELECT study_sha256, study_id, version, source_path, loaded_at, active FROM studies "
                                  "ORDER BY loaded_at")
        return [dict(r) for r in rows]

    def last_event_at(self) -> datetime | None:
        row = self._conn.execute("SELECT at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return _parse(row["at"]) if row else None

    def responses(self) -> list[ResponseRecord]:
        rows = self._conn.execute("SELECT * FROM responses ORDER BY reader_id, item_id, response_id")
        return [ResponseRecord(r["response_id"], r["item_id"], r["reader_id"], r["task_id"], r["question_key"],
                               json.loads(r["value_json"]), r["revision"], r["study_sha256"], r["answered_at"],
                               r["modified_at"]) for r in rows]

    def revisions(self) -> list[RevisionRecord]:
        rows = self._conn.execute(
            "SELECT v.*, r.item_id, r.reader_id, r.question_key FROM revisions v JOIN responses r USING (response_id) "
            "ORDER BY v.response_id, v.revision")
        return [RevisionRecord(r["response_id"], r["item_id"], r["reader_id"], r["question_key"], r["revision"],
                               json.loads(r["value_json"]), r["changed_at"], r["changed_by"], r["reason"],
                               r["study_sha256"]) for r in rows]

    def progress(self) -> list[ReaderProgress]:
        """Progress of every reader listed in the study (enrolled or not)."""
        result = []
        for reader in self.study.readers:
            rid = reader.reader_id
            enrolled = self._conn.execute("SELECT 1 FROM readers WHERE reader_id=?", (rid,)).fetchone() is not None
            if not enrolled:
                result.append(ReaderProgress(rid, reader.group, False))
                continue
            stats = self._conn.execute(
                "SELECT COUNT(*) AS n, COUNT(submitted_at) AS done, SUM(training) AS t, "
                "SUM(training AND submitted_at IS NOT NULL) AS tdone, MAX(submitted_at) AS last FROM items WHERE reader_id=?",
                (rid,)).fetchone()
            nxt = self._next_row(rid)
            opens = self.opens_at(rid, nxt["session_no"]) if nxt else None
            result.append(ReaderProgress(
                rid, reader.group, True, stats["n"], stats["done"], stats["t"] or 0, stats["tdone"] or 0,
                self._conn.execute("SELECT COUNT(*) FROM sessions WHERE reader_id=?", (rid,)).fetchone()[0],
                nxt["session_no"] if nxt else None, nxt["item_id"] if nxt else None,
                _iso(opens) if opens and opens > self._clock() else None, stats["last"],
            ))
        return result

    # -- backups -------------------------------------------------------------------------------
    def backup(self) -> Path:
        """Copy the database now (SQLite online backup) into ``backup_dir``; keeps the newest
        ``backup_keep`` copies. Returns the path of the new copy."""
        with self._lock.hold():
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.backup_dir.glob(f".{self.db_path.stem}-*.partial*"):
                with contextlib.suppress(OSError):
                    stale.unlink()  # left by a crash during an earlier backup
            stamp = self._clock().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.backup_dir / f"{self.db_path.stem}-{stamp}.sqlite"
            try:
                with atomic_path(target) as tmp:
                    dest = sqlite3.connect(str(tmp))
                    try:
                        self._conn.backup(dest)
                    finally:
                        dest.close()
            except (OSError, sqlite3.Error) as error:
                raise StoreError(f"{self.backup_dir}: the backup could not be written ({error}); check the folder and "
                                 "free space (answers are safe in the store).") from None
            copies = sorted(self.backup_dir.glob(f"{self.db_path.stem}-*.sqlite"))
            for old in copies[: max(len(copies) - self.backup_keep, 0)]:
                with contextlib.suppress(OSError):
                    old.unlink()
            self._writes_since_backup = 0
            self._submits_since_backup = 0
            return target

    # -- integrity -----------------------------------------------------------------------------
    def integrity_check(self) -> IntegrityReport:
        """Check everything that must hold; problems make ``ok`` False (see the README)."""
        conn = self._conn
        problems: list[str] = []
        notes = list(self.recovery_notes)
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"SQLite integrity_check: {result}")
        for fk in conn.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"table {fk[0]} row {fk[1]} points at a missing row of {fk[2]}")
        db_events = self.events()
        problems += [f"hash chain: {p}" for p in chain_problems(db_events)]

        try:
            logged, tail = self._log.read()
            if tail:
                problems.append(f"{self.event_log_path.name} ends in an unfinished line; reopen the store to repair it")
            if len(logged) != len(db_events):
                problems.append(f"{self.event_log_path.name} holds {len(logged)} events, the database {len(db_events)}")
            for a, b in zip(logged, db_events):
                if a != b:
                    problems.append(f"{self.event_log_path.name} and the database disagree from event {b['seq']} on")
                    break
        except ValueError as error:
            problems.append(str(error))

        items = {i.item_id: i for i in self.items()}
        task_questions = {t.task_id: {q.key: q for q in t.questions} for t in self.study.tasks}
        answered: dict[str, set[str]] = {}
        for r in self.responses():
            item = items.get(r.item_id)
            if item is None:
                problems.append(f"response {r.response_id} belongs to no scheduled item ('{r.item_id}')")
                continue
            if item.reader_id != r.reader_id or item.task_id != r.task_id:
                problems.append(f"response {r.response_id} names reader/task {r.reader_id}/{r.task_id} but its item is "
                                f"{item.reader_id}/{item.task_id}")
            if r.question_key not in task_questions.get(item.task_id, {}):
                problems.append(f"response {r.response_id} answers '{r.question_key}', not a question of task '{item.task_id}'")
            if item.submitted_at is None:
                problems.append(f"response {r.response_id} belongs to item '{r.item_id}' that was never submitted")
            answered.setdefault(r.item_id, set()).add(r.question_key)
        for dup in conn.execute("SELECT reader_id, item_id, question_key, COUNT(*) AS n FROM responses "
                                "GROUP BY reader_id, item_id, question_key HAVING n > 1"):
            problems.append(f"{dup['n']} answers to '{dup['question_key']}' of item '{dup['item_id']}' (one allowed)")
        for item in items.values():
            if item.submitted_at is None:
                continue
            missing = [k for k, q in task_questions[item.task_id].items()
                       if q.required and k not in answered.get(item.item_id, set())]
            if missing:
                problems.append(f"item '{item.item_id}' was submitted without the required answer '{missing[0]}'")

        revision_rows = conn.execute(
            "SELECT r.response_id, r.revision, r.value_json, COUNT(v.revision) AS n, MAX(v.revision) AS top, "
            "(SELECT value_json FROM revisions WHERE response_id = r.response_id ORDER BY revision DESC LIMIT 1) AS last "
            "FROM responses r LEFT JOIN revisions v USING (response_id) GROUP BY r.response_id").fetchall()
        for rr in revision_rows:
            if rr["n"] != rr["revision"] or rr["top"] != rr["revision"] or rr["last"] != rr["value_json"]:
                problems.append(f"response {rr['response_id']} does not match its revision history")

        submitted_by_event = {e["item_id"] for e in db_events if e["kind"] == "submit"}
        submitted = {i.item_id for i in items.values() if i.submitted_at is not None}
        if submitted_by_event != submitted:
            odd = sorted(submitted_by_event ^ submitted)
            problems.append(f"item '{odd[0]}' is submitted in the items table but not in the events, or the reverse")

        for reader in self.readers():
            schedule = self.schedule(reader.reader_id)
            if schedule.sha256() != reader.schedule_sha256:
                problems.append(f"the stored schedule of reader '{reader.reader_id}' does not match its sha256")
            stored = [(i.item_id, i.case_id, i.sources, i.session_no, i.order_index, i.task_id)
                      for i in schedule.items]
            table = [(i.item_id, i.case_id, i.sources, i.session_no, i.order_index, i.task_id)
                     for i in items.values() if i.reader_id == reader.reader_id]
            if stored != table:
                problems.append(f"the items of reader '{reader.reader_id}' differ from their stored schedule")
            order = [i for i in items.values() if i.reader_id == reader.reader_id]
            done_flags = [i.submitted_at is not None for i in order]
            if False in done_flags and True in done_flags[done_flags.index(False):]:
                problems.append(f"reader '{reader.reader_id}' has a submitted item after an unfinished one")
            problems += self._washout_problems(order)

        for row in conn.execute("SELECT case_id, source, path, size_bytes FROM images"):
            path = Path(row["path"])
            if not path.exists():
                notes.append(f"image of case '{row['case_id']}' ({row['source']}) is missing: {path}")
            elif row["size_bytes"] is not None and path.is_file() and path.stat().st_size != row["size_bytes"]:
                notes.append(f"image of case '{row['case_id']}' ({row['source']}) changed size since it was loaded: {path}")

        counts = {
            "readers": len(self.readers()),
            "items": len(items),
            "submitted": len(submitted),
            "responses": conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0],
            "events": len(db_events),
        }
        return IntegrityReport(ok=not problems, problems=problems, notes=notes, counts=counts)

    def _washout_problems(self, order: list[ItemRecord]) -> list[str]:
        """Cases read again (main readings) sooner than the washout after the previous reading."""
        washout = timedelta(days=self.study.design.washout_days)
        last_read: dict[str, tuple[int, datetime]] = {}
        problems = []
        for item in order:
            if item.training or item.submitted_at is None:
                continue
            at = _parse(item.submitted_at)
            if item.case_id in last_read:
                wave, when = last_read[item.case_id]
                if wave != item.wave and at - when < washout - timedelta(seconds=1):
                    problems.append(f"item '{item.item_id}' re-read case '{item.case_id}' {(at - when).days} days after "
                                    f"its previous reading (washout {washout.days} days)")
            last_read[item.case_id] = (item.wave, at)
        return problems


def _split_sql(script: str) -> list[str]:
    """Split the schema script into statements (triggers keep their inner semicolons)."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            statements.append(text)
            current = []
    return statements


def create_store(db_path: str | os.PathLike, study: Study, **options: Any) -> SQLiteAnswerStore:
    """Create a new SQLite answer store for ``study`` (see :meth:`SQLiteAnswerStore.create`)."""
    return SQLiteAnswerStore.create(db_path, study, **options)


def open_store(db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
    """Open an existing SQLite answer store (see :meth:`SQLiteAnswerStore.open`)."""
    return SQLiteAnswerStore.open(db_path, clock=clock)
