"""The SQLite answer store: every answer committed when it is given, audited, backed up, checkable.

:class:`SQLiteAnswerStore` implements the :class:`~DigitalContrastReaderLib.store.base.AnswerStore`
protocol on one SQLite file. This module holds SQL and transactions only: the domain rules
(reading order, washout, valid answers, frozen questions) are in :mod:`~DigitalContrastReaderLib.store.rules`
and the integrity check in :mod:`~DigitalContrastReaderLib.store.integrity`, shared with any other store.

The tables, and how study versions and schedules fill them, are in
:mod:`~DigitalContrastReaderLib.store.sqlite_schema`.

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
repairs (:meth:`~DigitalContrastReaderLib.store.eventlog.JsonlLog.recover`) are reported in
``recovery_notes`` and by :meth:`SQLiteAnswerStore.integrity_check`. If the log holds events the
database lacks, or different ones (a database restored from an older backup, or tampering),
nothing is repaired: the integrity check fails and names the first difference, and the log is
the record of what was lost.

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
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.blinding import ReaderItem, ensure_blind_link
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.config import study_from_config
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, StudyError
from DigitalContrastReaderLib.study.schedule import Schedule, generate_schedule
from DigitalContrastReaderLib.study.study import Study

from . import rules
from .base import (
    DEFAULT_BACKUP_EVERY,
    DEFAULT_BACKUP_KEEP,
    Clock,
    ImageRecord,
    IntegrityReport,
    ItemRecord,
    ReaderProgress,
    ReaderRecord,
    ResponseRecord,
    RevisionRecord,
    SubmitReceipt,
    iso_utc,
    parse_iso,
    utc_now,
)
from .eventlog import GENESIS_HASH, JsonlLog, WriterLock, make_event
from .integrity import check_integrity
from .sqlite_backup import backup_copy
from .sqlite_schema import (
    STORE_FORMAT,
    connect,
    create_database,
    event_from_row,
    item_record,
    reader_record,
    response_record,
    revision_record,
    write_schedule_rows,
    write_study_rows,
)


def _relative_or_absolute(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


class SQLiteAnswerStore:
    """An :class:`~DigitalContrastReaderLib.store.base.AnswerStore` in one SQLite file. Create with
    :meth:`create`, open with :meth:`open`."""

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
        self.study = study if study is not None else self._load_active_study()
        with self._lock.hold():  # bring the JSONL log up to the database after a crash
            count = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            self.recovery_notes: list[str] = self._log.recover(count, self.events)

    # -- opening -------------------------------------------------------------------------------
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
            "created_at": iso_utc(clock()),
            "event_log": _relative_or_absolute(log_path, folder),
            "backup_dir": _relative_or_absolute(Path(backup_dir) if backup_dir else folder / "backups", folder),
            "images_dir": _relative_or_absolute(db_path.with_name(db_path.stem + "-images"), folder),
            "backup_every": str(backup_every),
            "backup_keep": str(backup_keep),
        }
        store = cls(db_path, create_database(db_path, meta), clock, study)
        with store._transaction() as events:
            store._write_study(study, events, first=True)
        return store

    @classmethod
    def open(cls, db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
        """Open an existing store (runs event-log recovery, see the module docstring)."""
        db_path = Path(db_path)
        if not db_path.is_file():
            raise StoreError(f"{db_path}: no answer store there; create one with 'digital-contrast-reader init'.")
        conn = connect(db_path)
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
        event = make_event(seq, iso_utc(self._clock()), kind, reader_id, item_id, payload, prev)
        self._conn.execute(
            "INSERT INTO events(seq, at, kind, reader_id, item_id, payload_json, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (seq, event["at"], kind, reader_id, item_id, canonical_json(payload), prev, event["hash"]),
        )
        events.append(event)
        return event

    def events(self) -> list[dict[str, Any]]:
        """Every event in order (the audit trail)."""
        return [event_from_row(r) for r in self._conn.execute("SELECT * FROM events ORDER BY seq")]

    # -- study ---------------------------------------------------------------------------------
    def _load_active_study(self) -> Study:
        row = self._conn.execute("SELECT * FROM studies WHERE active = 1").fetchone()
        if row is None:
            raise StoreError(f"{self.db_path}: the store holds no study; it was not created completely, create it again.")
        return study_from_config(
            json.loads(row["config_json"]), base_dir=row["base_dir"], sha256=row["study_sha256"],
            path=row["source_path"], check_files=False,
        )

    def _write_study(self, study: Study, events: list[dict[str, Any]], *, first: bool) -> None:
        write_study_rows(self._conn, study, iso_utc(self._clock()))
        self._event(events, "study_loaded" if first else "study_updated", None, None, {
            "study_id": study.study_id, "version": study.version, "study_sha256": study.sha256,
            "source_path": str(study.path) if study.path else None, "warnings": list(study.warnings),
        })
        self.study = study

    def update_study(self, study: Study) -> bool:
        """Load a new version of the study file into the store; False when it is unchanged.

        Refused (StudyError) when it would change what existing answers mean
        (:func:`~DigitalContrastReaderLib.store.rules.check_study_update`).
        """
        if study.sha256 == self.study.sha256:
            return False
        rules.check_study_update(
            self.study, study, store_name=self.db_path.name,
            answered=self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] > 0,
            scheduled_cases={r[0] for r in self._conn.execute("SELECT DISTINCT case_id FROM items")},
            enrolled={r.reader_id for r in self.readers()},
            scheduled_tasks={r[0] for r in self._conn.execute("SELECT DISTINCT task_id FROM items")},
        )
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
            row = self._conn.execute("SELECT * FROM readers WHERE reader_id=?", (reader_id,)).fetchone()
            rules.check_not_enrolled(reader_id, None if row is None else reader_record(row))
            write_schedule_rows(self._conn, schedule, self.study.sha256)
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
            raise rules.not_enrolled_error(self.study, reader_id)
        return Schedule.from_dict(json.loads(row["schedule_json"]))

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

    def _next_item(self, reader_id: str) -> ItemRecord | None:
        """:func:`~DigitalContrastReaderLib.store.rules.next_item` in SQL (index ``items_next``)."""
        if self._conn.execute("SELECT 1 FROM readers WHERE reader_id=?", (reader_id,)).fetchone() is None:
            raise rules.not_enrolled_error(self.study, reader_id)
        row = self._conn.execute(
            "SELECT * FROM items WHERE reader_id=? AND submitted_at IS NULL ORDER BY order_index LIMIT 1", (reader_id,)
        ).fetchone()
        return None if row is None else item_record(row)

    def opens_at(self, reader_id: str, session_no: int) -> datetime:
        """When a session opens (:func:`~DigitalContrastReaderLib.store.rules.session_opens_at`)."""
        session = self._conn.execute("SELECT * FROM sessions WHERE reader_id=? AND session_no=?",
                                     (reader_id, session_no)).fetchone()
        last = None
        if session["washout_after_wave"] is not None:
            last = self._conn.execute("SELECT MAX(submitted_at) FROM items WHERE reader_id=? AND wave=?",
                                      (reader_id, session["washout_after_wave"])).fetchone()[0]
        return rules.session_opens_at(parse_iso(session["opens_at"]), session["washout_after_wave"],
                                      None if last is None else parse_iso(last), self.study.design.washout_days)

    def _reader_item(self, item: ItemRecord) -> ReaderItem:
        count = self._conn.execute
        answers = {
            r["question_key"]: json.loads(r["value_json"])
            for r in count("SELECT question_key, value_json FROM responses WHERE item_id=?", (item.item_id,))
        }
        return rules.reader_item(
            self.study, item,
            image_paths=self._image_paths(item.case_id, item.sources),
            answers=answers,
            sessions_total=count("SELECT COUNT(*) FROM sessions WHERE reader_id=?", (item.reader_id,)).fetchone()[0],
            items_in_session=count("SELECT COUNT(*) FROM items WHERE reader_id=? AND session_no=?",
                                   (item.reader_id, item.session_no)).fetchone()[0],
            items_total=count("SELECT COUNT(*) FROM items WHERE reader_id=?", (item.reader_id,)).fetchone()[0],
            opens_at=self.opens_at(item.reader_id, item.session_no),
            now=self._clock(),
        )

    def resume(self, reader_id: str) -> ReaderItem | None:
        """Exactly the next unfinished item of the reader in stored order (None when finished).

        Its ``opens_at`` is set when a washout still blocks it. Records nothing (call
        :meth:`open_item` when it is displayed)."""
        item = self._next_item(reader_id)
        return None if item is None else self._reader_item(item)

    def _check_is_next_and_open(self, item: ItemRecord) -> None:
        rules.check_is_next(item, self._next_item(item.reader_id))
        rules.check_is_open(item, self.opens_at(item.reader_id, item.session_no), self._clock(),
                            self.study.design.washout_days)

    def open_item(self, reader_id: str, item_id: str) -> ReaderItem:
        """Display an item: records the first and last display time and counts visits.

        Allowed for the next unfinished item once it is open, and for items already submitted
        (a revisit; editable only when the study allows answer modification)."""
        with self._transaction() as events:  # checks inside: another process may write too
            item = self.item(item_id)
            rules.check_owner(item, reader_id)
            if item.submitted_at is None:
                self._check_is_next_and_open(item)
            now = iso_utc(self._clock())
            self._conn.execute(
                "UPDATE items SET shown_at = COALESCE(shown_at, ?), last_shown_at = ?, visits = visits + 1 WHERE item_id=?",
                (now, now, item_id),
            )
            self._event(events, "shown", reader_id, item_id, {"visit": item.visits + 1})
        return self._reader_item(self.item(item_id))

    def mark_interaction(self, reader_id: str, item_id: str) -> None:
        """Record the first interaction with a displayed item (scroll, window/level, a click)."""
        item = self.item(item_id)
        rules.check_owner(item, reader_id)
        if item.first_interaction_at is not None or item.submitted_at is not None:
            return  # nothing to record: no transaction, no event
        with self._transaction() as events:
            updated = self._conn.execute(
                "UPDATE items SET first_interaction_at = ? WHERE item_id=? AND first_interaction_at IS NULL "
                "AND submitted_at IS NULL", (iso_utc(self._clock()), item_id)).rowcount
            if updated:
                self._event(events, "first_interaction", reader_id, item_id, {})

    # -- answers -------------------------------------------------------------------------------
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
        rules.check_active_seconds(active_seconds)
        with self._transaction() as events:  # checks inside: another process may write too
            item = self.item(item_id)
            rules.check_owner(item, reader_id)
            values = rules.validated_answers(self.study.task(item.task_id), answers)
            modified = rules.check_may_submit_again(item, self.study)
            if not modified:
                self._check_is_next_and_open(item)
            now_dt = self._clock()
            now = iso_utc(now_dt)
            if not modified:
                seconds = rules.active_seconds_of_submit(active_seconds, item, now_dt)
                given = {k: v for k, v in values.items() if v is not None}
                event = self._event(events, "submit", reader_id, item_id, {
                    "answers": given, "study_sha256": self.study.sha256, "active_seconds": seconds,
                })
                for key, value in given.items():
                    cur = self._conn.execute(
                        "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, "
                        "study_sha256, answered_at, modified_at) VALUES (?,?,?,?,?,1,?,?,?)",
                        (item_id, reader_id, item.task_id, key, canonical_json(value), self.study.sha256, now, now),
                    )
                    self._insert_revision(cur.lastrowid, 1, value, now, "reader", "", event["seq"])
                self._conn.execute("UPDATE items SET submitted_at=?, active_seconds=? WHERE item_id=?",
                                   (now, seconds, item_id))
                self._submits_since_backup += 1
            else:
                previous = {r["question_key"]: (json.loads(r["value_json"]), r["revision"]) for r in self._conn.execute(
                    "SELECT question_key, value_json, revision FROM responses WHERE item_id=?", (item_id,))}
                changes = rules.answer_changes(values, previous)
                event = self._event(events, "modify", reader_id, item_id, {
                    "changes": changes, "study_sha256": self.study.sha256, "active_seconds": active_seconds,
                })
                for key, change in changes.items():
                    self._set_response(item_id, reader_id, item.task_id, key, change["to"], now, "reader", "",
                                       event["seq"])
                if active_seconds is not None:
                    self._conn.execute("UPDATE items SET active_seconds = COALESCE(active_seconds, 0) + ? WHERE item_id=?",
                                       (active_seconds, item_id))
        nxt = self._next_item(reader_id)
        receipt = SubmitReceipt(item_id, now, event["seq"], modified, nxt.item_id if nxt else None, nxt is None)
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
        rules.check_correction_request(reason, corrected_by)
        with self._transaction() as events:
            item = self.item(item_id)
            value = rules.validated_correction(self.study, item, question_key, value)
            old = self._conn.execute("SELECT value_json FROM responses WHERE item_id=? AND question_key=?",
                                     (item_id, question_key)).fetchone()
            now = iso_utc(self._clock())
            event = self._event(events, "admin_correction", item.reader_id, item_id, {
                "question_key": question_key, "from": None if old is None else json.loads(old["value_json"]),
                "to": value, "reason": reason.strip(), "corrected_by": corrected_by.strip(),
                "study_sha256": self.study.sha256,
            })
            return self._set_response(item_id, item.reader_id, item.task_id, question_key, value, now,
                                      f"admin:{corrected_by.strip()}", reason.strip(), event["seq"])

    # -- reading back --------------------------------------------------------------------------
    def readers(self) -> list[ReaderRecord]:
        return [reader_record(r) for r in self._conn.execute("SELECT * FROM readers ORDER BY reader_id")]

    def items(self, reader_id: str | None = None) -> list[ItemRecord]:
        query = "SELECT * FROM items" + (" WHERE reader_id=?" if reader_id else "") + " ORDER BY reader_id, order_index"
        return [item_record(r) for r in self._conn.execute(query, (reader_id,) if reader_id else ())]

    def item(self, item_id: str) -> ItemRecord:
        """One item with its sources and timing (admin view)."""
        row = self._conn.execute("SELECT * FROM items WHERE item_id=?", (item_id,)).fetchone()
        if row is None:
            raise rules.unknown_item_error(item_id, self.db_path.name)
        return item_record(row)

    def images(self) -> list[ImageRecord]:
        """Every image of the study's cases with its original path (admin view)."""
        return [ImageRecord(r["case_id"], r["source"], Path(r["path"]), r["size_bytes"])
                for r in self._conn.execute("SELECT case_id, source, path, size_bytes FROM images")]

    def study_versions(self) -> list[dict[str, Any]]:
        """Every version of the study file loaded into the store, oldest first."""
        rows = self._conn.execute("SELECT study_sha256, study_id, version, source_path, loaded_at, active FROM studies "
                                  "ORDER BY loaded_at")
        return [dict(r) for r in rows]

    def last_event_at(self) -> datetime | None:
        row = self._conn.execute("SELECT at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return parse_iso(row["at"]) if row else None

    def responses(self) -> list[ResponseRecord]:
        rows = self._conn.execute("SELECT * FROM responses ORDER BY reader_id, item_id, response_id")
        return [response_record(r) for r in rows]

    def revisions(self) -> list[RevisionRecord]:
        rows = self._conn.execute(
            "SELECT v.*, r.item_id, r.reader_id, r.question_key FROM revisions v JOIN responses r USING (response_id) "
            "ORDER BY v.response_id, v.revision")
        return [revision_record(r) for r in rows]

    def progress(self) -> list[ReaderProgress]:
        """Progress of every reader listed in the study (enrolled or not)."""
        enrolled = {r.reader_id for r in self.readers()}
        result = []
        for reader in self.study.readers:
            rid = reader.reader_id
            if rid not in enrolled:
                result.append(ReaderProgress(rid, reader.group, enrolled=False))
                continue
            items = self.items(rid)
            nxt = rules.next_item(items)
            result.append(rules.reader_progress(
                reader, items,
                sessions_total=self._conn.execute("SELECT COUNT(*) FROM sessions WHERE reader_id=?", (rid,)).fetchone()[0],
                next_opens_at=self.opens_at(rid, nxt.session_no) if nxt else None,
                now=self._clock(),
            ))
        return result

    # -- backups and integrity -----------------------------------------------------------------
    def backup(self) -> Path:
        """Copy the database now (SQLite online backup) into ``backup_dir``; keeps the newest
        ``backup_keep`` copies. Returns the path of the new copy."""
        with self._lock.hold():
            target = backup_copy(self._conn, self.db_path.stem, self.backup_dir, self.backup_keep, self._clock())
            self._writes_since_backup = 0
            self._submits_since_backup = 0
            return target

    def integrity_check(self) -> IntegrityReport:
        """SQLite's own checks (``PRAGMA integrity_check``, foreign keys), then
        :func:`~DigitalContrastReaderLib.store.integrity.check_integrity`; problems make ``ok`` False."""
        low_level = []
        result = self._conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            low_level.append(f"SQLite integrity_check: {result}")
        for fk in self._conn.execute("PRAGMA foreign_key_check").fetchall():
            low_level.append(f"table {fk[0]} row {fk[1]} points at a missing row of {fk[2]}")
        return check_integrity(self, event_log=self._log, low_level_problems=low_level, notes=self.recovery_notes)


def create_store(db_path: str | os.PathLike, study: Study, **options: Any) -> SQLiteAnswerStore:
    """Create a new SQLite answer store for ``study`` (see :meth:`SQLiteAnswerStore.create`)."""
    return SQLiteAnswerStore.create(db_path, study, **options)


def open_store(db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
    """Open an existing SQLite answer store (see :meth:`SQLiteAnswerStore.open`)."""
    return SQLiteAnswerStore.open(db_path, clock=clock)
