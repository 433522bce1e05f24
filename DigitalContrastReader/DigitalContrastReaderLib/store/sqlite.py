"""The SQLite answer store: every answer committed when it is given, audited, backed up, checkable.

:class:`SQLiteAnswerStore` implements the :class:`~DigitalContrastReaderLib.store.base.AnswerStore`
protocol on one SQLite file: one site, where whoever can open the file is the admin (SQLite has
no roles; the reader token is checked by the store all the same). This module holds what is
SQLite's own: the file, its transactions, the JSONL event log, backups and migration. The SQL
of the admin views and writes is shared with PostgreSQL (:mod:`~DigitalContrastReaderLib.store.sql_store`),
the reading calls are :mod:`~DigitalContrastReaderLib.store.reader_access` over
:mod:`~DigitalContrastReaderLib.store.sql_reading`, the domain rules are
:mod:`~DigitalContrastReaderLib.store.rules` and the integrity check
:mod:`~DigitalContrastReaderLib.store.integrity`. The tables are in
:mod:`~DigitalContrastReaderLib.store.sqlite_schema`.

Creation is atomic: the images are opened and hashed and the backup folder tried first, the
database is written under a temporary name and renamed into place when complete, so a failed
``init`` leaves nothing behind. A store of an older format is migrated when it is opened.

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
Before its first write a store checks that the backup folder can be written (StoreError, nothing
stored, otherwise); a backup that fails after an answer is committed is a warning
(``SubmitReceipt.warnings``, ``store.warnings``), never an error: the answer is saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.config import study_from_config
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError
from DigitalContrastReaderLib.study.images import ImageFacts, image_facts, study_image_facts
from DigitalContrastReaderLib.study.reader_view import reader_view
from DigitalContrastReaderLib.study.study import Study

from .base import DEFAULT_BACKUP_EVERY, DEFAULT_BACKUP_KEEP, Clock, iso_utc, utc_now
from .eventlog import GENESIS_HASH, JsonlLog, WriterLock
from .sql_reading import SqlReaderPrimitives
from .sql_store import SqlStore
from .sqlite_backup import backup_copy, check_backup_dir
from .sqlite_schema import (
    MIGRATE_1_TO_2,
    STORE_FORMAT,
    SQLiteDb,
    connect,
    create_database,
    remove_database_files,
    schema_statements,
)


def _relative_or_absolute(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


class SQLiteAnswerStore(SqlReaderPrimitives, SqlStore):
    """An :class:`~DigitalContrastReaderLib.store.base.AnswerStore` in one SQLite file. Create with
    :meth:`create`, open with :meth:`open`."""

    def __init__(self, db_path: Path, conn: sqlite3.Connection, clock: Clock, *, creating: bool = False) -> None:
        self.db_path = db_path
        self.location = str(db_path)
        self._conn = conn
        self._db = SQLiteDb(conn)
        self._clock = clock
        self._creating = creating
        self.warnings: list[str] = []
        self.recovery_notes: list[str] = []
        self._writes_since_backup = 0
        self._submits_since_backup = 0
        self._backup_dir_checked = False
        self._tx_events = None
        meta = self._meta()
        self._lock = WriterLock(db_path.with_name(db_path.name + ".lock"))
        fmt = int(meta.get("format", 0))
        if fmt == 1 and not creating:
            with self._lock.hold():
                self._migrate_from_1(meta)
            meta = self._meta()
        elif fmt != STORE_FORMAT:
            raise StoreError(f"{db_path}: store format {meta.get('format')} is not supported by this version; "
                             "use the version that created it.")
        folder = db_path.parent
        self.event_log_path = folder / meta["event_log"]
        self.backup_dir = folder / meta["backup_dir"]
        self.images_dir = folder / meta["images_dir"]
        self.backup_every = int(meta["backup_every"])
        self.backup_keep = int(meta["backup_keep"])
        self.store_id = meta["store_id"]
        self.site = meta["site"]
        self._event_log = JsonlLog(self.event_log_path)
        if not creating:
            self.study = self._load_active_study()
            with self._lock.hold():  # bring the JSONL log up to the database after a crash
                count = self._db.scalar("SELECT COUNT(*) FROM events")
                self.recovery_notes = self._event_log.recover(count, self.events)

    def _meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._db.all("SELECT key, value FROM meta")}

    @property
    def _name(self) -> str:
        return self.db_path.name

    def _store_folder(self) -> Path:
        return self.db_path.parent

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
        site: str | None = None,
        facts: Mapping[tuple[str, str], ImageFacts] | None = None,
        clock: Clock | None = None,
    ) -> SQLiteAnswerStore:
        """Create a new store for ``study``, atomically (refuses an existing file).

        Every image is opened, checked and hashed (:func:`~DigitalContrastReaderLib.study.images.study_image_facts`,
        unless ``facts`` are given) and the backup folder tried before anything is written; the
        database is then written under a temporary name and renamed into place.
        """
        db_path = Path(db_path)
        if db_path.exists():
            raise StoreError(f"{db_path}: a store already exists there; open it, or choose another path.")
        if backup_every < 1 or backup_keep < 1:
            raise AnswerError("backup_every and backup_keep must be at least 1; correct the option.")
        folder = db_path.parent
        log_path = Path(event_log) if event_log else db_path.with_name(db_path.name + ".events.jsonl")
        if log_path.exists():
            raise StoreError(f"{log_path}: an event log already exists there; move it away or choose another store path.")
        facts = facts if facts is not None else study_image_facts(study)
        backups = Path(backup_dir) if backup_dir else folder / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        check_backup_dir(backups)
        clock = clock or utc_now
        meta = {
            "format": str(STORE_FORMAT),
            "created_at": iso_utc(clock()),
            "store_id": uuid.uuid4().hex,
            "site": site or db_path.stem,
            "event_log": _relative_or_absolute(log_path, folder),
            "backup_dir": _relative_or_absolute(backups, folder),
            "images_dir": _relative_or_absolute(db_path.with_name(db_path.stem + "-images"), folder),
            "backup_every": str(backup_every),
            "backup_keep": str(backup_keep),
        }
        partial = db_path.with_name(f".{db_path.name}.partial-{os.getpid()}")
        remove_database_files(partial)
        conn = create_database(partial, meta)
        try:
            store = cls(partial, conn, clock, creating=True)
            with store._transaction() as events:
                store._write_study(study, events, first=True, facts=facts)
            conn.close()
            os.replace(partial, db_path)  # the commit point of init: complete or absent
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            remove_database_files(partial)
            raise
        remove_database_files(partial)  # its lock file
        JsonlLog(log_path).append(events)  # a crash before this line: the next open's recovery writes it
        return cls.open(db_path, clock=clock)

    @classmethod
    def open(cls, db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
        """Open an existing store (migrates an older format, runs event-log recovery)."""
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
        """Back up (if anything changed since the last backup) and close. A backup that fails
        is a warning (``warnings``): every answer is in the store."""
        if self._conn is None:
            return
        try:
            if self._writes_since_backup:
                self._backup_or_warn()
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
        returns and before this context exits (see the module docstring). The first write of a
        store object checks the backup folder first.
        """
        if not self._backup_dir_checked and not self._creating:
            check_backup_dir(self.backup_dir)
            self._backup_dir_checked = True
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
            if self._creating:
                return  # the log is written when the finished store is first opened
            try:
                self._event_log.append(events)
            except OSError as error:
                raise StoreError(
                    f"{self.event_log_path}: the event log could not be written ({error.strerror}); the answer IS "
                    "saved in the database; free space or fix permissions, then reopen the store to repair the log."
                ) from None

    def _head(self) -> tuple[int, str]:
        row = self._db.one("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        return (row["seq"], row["hash"]) if row else (0, GENESIS_HASH)

    # -- backups and integrity -----------------------------------------------------------------
    def backup(self) -> Path:
        """Copy the database now (SQLite online backup) into ``backup_dir``; keeps the newest
        ``backup_keep`` copies. Returns the path of the new copy."""
        with self._lock.hold():
            target = backup_copy(self._conn, self.db_path.stem, self.backup_dir, self.backup_keep, self._now())
            self._writes_since_backup = 0
            self._submits_since_backup = 0
            return target

    def _backup_or_warn(self) -> None:
        try:
            self.backup()
        except StoreError as error:
            self.warnings.append(f"the answer is saved, but {error.message}")

    def _after_submit(self) -> list[str]:
        """Back up every ``backup_every`` submits; a failure is a warning (the answer is saved)."""
        before = len(self.warnings)
        if self._submits_since_backup >= self.backup_every:
            self._backup_or_warn()
        return self.warnings[before:]

    def _low_level_problems(self) -> list[str]:
        """SQLite's own checks: ``PRAGMA integrity_check`` and the foreign keys."""
        problems = []
        result = self._conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"SQLite integrity_check: {result}")
        for fk in self._conn.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"table {fk[0]} row {fk[1]} points at a missing row of {fk[2]}")
        return problems

    # -- migration -------------------------------------------------------------------------------
    def _migrate_from_1(self, meta: Mapping[str, str]) -> None:
        """Format 1 -> 2, in one transaction: new columns; image paths made relative to the study
        folder, with the sha256 and geometry of the files as they are now (a missing file stays
        without: ``check`` reports it); ``simulated`` set for answers given under a demo version;
        symbolic links in the image folder removed (hard links or copies replace them); readers
        keep no token (``digital-contrast-reader token`` issues one). Logged as ``store_migrated`` (the
        JSONL log receives that event from the recovery that follows in ``__init__``)."""
        folder = self.db_path.parent
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema_statements(MIGRATE_1_TO_2):
                conn.execute(statement)
            active_base = None
            for row in conn.execute("SELECT * FROM studies").fetchall():
                study = study_from_config(json.loads(row["config_json"]), base_dir=row["base_dir"],
                                          sha256=row["study_sha256"], check_files=False)
                conn.execute("UPDATE studies SET base_dir_rel=?, demo=?, reader_view_json=? WHERE study_sha256=?",
                             (Path(os.path.relpath(row["base_dir"], folder)).as_posix(), int(study.demo),
                              canonical_json(reader_view(study).to_dict()), row["study_sha256"]))
                if row["active"]:
                    active_base = Path(row["base_dir"])
            hashed = missing = 0
            for image in conn.execute("SELECT case_id, source, path FROM images").fetchall():
                path = Path(image["path"])
                relative = path.as_posix()
                with contextlib.suppress(ValueError):
                    relative = path.relative_to(active_base).as_posix()
                sha = geometry = None
                try:
                    facts = image_facts(path)
                    sha, geometry, hashed = facts.sha256, canonical_json(facts.geometry), hashed + 1
                except InputError:
                    missing += 1
                conn.execute("UPDATE images SET path=?, sha256=?, geometry_json=? WHERE case_id=? AND source=?",
                             (relative, sha, geometry, image["case_id"], image["source"]))
            conn.execute("UPDATE responses SET simulated = 1 WHERE study_sha256 IN "
                         "(SELECT study_sha256 FROM studies WHERE demo = 1)")
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [
                ("format", str(STORE_FORMAT)), ("store_id", uuid.uuid4().hex), ("site", self.db_path.stem)])
            events: list[dict[str, Any]] = []
            self._event(events, "store_migrated", None, None, {"from_format": 1, "to_format": STORE_FORMAT,
                                                               "images_hashed": hashed, "images_missing": missing})
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        images_dir = folder / meta["images_dir"]
        if images_dir.is_dir():
            for link in images_dir.iterdir():
                if link.is_symlink():
                    link.unlink()


def create_store(db_path: str | os.PathLike, study: Study, **options: Any) -> SQLiteAnswerStore:
    """Create a new SQLite answer store for ``study`` (see :meth:`SQLiteAnswerStore.create`)."""
    return SQLiteAnswerStore.create(db_path, study, **options)


def open_store(db_path: str | os.PathLike, *, clock: Clock | None = None) -> SQLiteAnswerStore:
    """Open an existing SQLite answer store (see :meth:`SQLiteAnswerStore.open`)."""
    return SQLiteAnswerStore.open(db_path, clock=clock)
