"""The PostgreSQL answer store: one study read at several sites, with the roles enforced by the
database.

:class:`PostgresAnswerStore` is the admin's store (the role that ran ``init``): the full
:class:`~DigitalContrastReaderLib.store.base.AnswerStore`, its admin SQL shared with SQLite
(:mod:`~DigitalContrastReaderLib.store.sql_store`). Its reading calls go through the same stored
functions as a reading station's (:mod:`~DigitalContrastReaderLib.store.postgres_reading`), so
there is one write path for answers.

Guarantees, as in the SQLite store: one transaction per submitted item (committed with the
server's ``synchronous_commit``, on disk when the call returns); ``events``, ``revisions`` and
``origins`` append-only by trigger (UPDATE, DELETE and TRUNCATE refused, for every role); the
hash chain, each new event checked by trigger against the chain head, which every writer locks;
``check`` (:func:`~DigitalContrastReaderLib.store.integrity.check_integrity`, plus the triggers and
the chain head). The store keeps no JSONL log: the server's write-ahead log and ``pg_dump``
backups (:meth:`PostgresAnswerStore.backup`) take its place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.errors import StoreError
from DigitalContrastReaderLib.study.images import ImageFacts, study_image_facts
from DigitalContrastReaderLib.study.study import Study

from .base import Clock, iso_utc, utc_now
from .postgres_reading import PgReaderPrimitives
from .postgres_schema import (
    APPEND_ONLY_TABLES,
    SCHEMA_VERSION,
    PgDb,
    connect,
    create_reader_role,
    functions_sha256,
    install_functions,
    migrate,
    reader_role_name,
    safe_location,
    schema_exists,
    store_error,
    url_parts,
)
from .sql_store import SqlStore


class PostgresAnswerStore(PgReaderPrimitives, SqlStore):
    """An :class:`~DigitalContrastReaderLib.store.base.AnswerStore` in a PostgreSQL database.
    Create with :meth:`create`, open with :meth:`open`.

    Args:
        clock: a client clock for simulations (honoured by the server for the admin role only);
            None: the server's time for reading calls.
        images_dir: where blinded copies of the images are made (default: ``<study folder>/<database>-images``).
        study_dir: the study folder on this machine (default: the one recorded by ``init``).
        backup_dir: where :meth:`backup` writes ``pg_dump`` files (default: ``./backups``).
    """

    def __init__(self, url: str, conn: Any, clock: Clock | None, *, creating: bool = False,
                 images_dir: str | os.PathLike | None = None, study_dir: str | os.PathLike | None = None,
                 backup_dir: str | os.PathLike | None = None) -> None:
        self._url = url
        self.location = safe_location(url)
        self._conn = conn
        self._db = PgDb(conn)
        self._clock = clock
        self.study_dir = Path(study_dir) if study_dir else None
        self.event_log_path = None
        self.backup_dir = Path(backup_dir) if backup_dir else Path("backups")
        self.warnings: list[str] = []
        self.recovery_notes: list[str] = []
        self.dbname = url_parts(url)["dbname"]
        if not creating:
            self._check_schema()
        meta = {r["key"]: r["value"] for r in self._db.all("SELECT key, value FROM meta")}
        self.store_id, self.site = meta["store_id"], meta["site"]
        self.reader_role = meta["reader_role"]
        self.reader_password: str | None = None
        self._images_dir_option = Path(images_dir) if images_dir else None
        if not creating:
            self.study = self._load_active_study()

    @property
    def images_dir(self) -> Path:
        return self._images_dir_option or self.study.base_dir / f"{self.dbname}-images"

    def _now(self):
        return (self._clock or utc_now)()

    # -- opening ---------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Refuse a database without a store or with a newer schema; migrate an older one and
        re-install the reading functions when they changed (admin role only)."""
        if not schema_exists(self._conn):
            raise StoreError(f"{self.location}: this database holds no answer store; create one with "
                             "'digital-contrast-reader init STUDY --db URL'.", code="no_store")
        try:
            meta = {r["key"]: r["value"] for r in self._db.all("SELECT key, value FROM meta")}
        except Exception as error:  # psycopg.Error: a reader role may not read meta
            raise store_error(error, self.location) from None
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.location}: the store has schema version {version}, newer than this version of "
                             f"the reader library knows ({SCHEMA_VERSION}); update it.", code="newer_schema")
        if version < SCHEMA_VERSION or meta.get("functions_sha256") != functions_sha256():
            with self._write():
                applied = migrate(self._conn, version)
                install_functions(self._conn, meta["reader_role"])
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                self._db.execute("UPDATE meta SET value=? WHERE key='functions_sha256'", (functions_sha256(),))
                if applied:
                    self._event([], "store_migrated", None, None, {"from_version": version, "to_version": SCHEMA_VERSION})

    @classmethod
    def create(cls, url: str, study: Study, *, site: str | None = None,
               facts: Mapping[tuple[str, str], ImageFacts] | None = None, clock: Clock | None = None,
               **options: Any) -> PostgresAnswerStore:
        """Create the store for ``study`` in the (existing, empty) database of ``url``, in ONE
        transaction: schema, reading functions, the reader role with its privileges, the study.
        A failure leaves nothing behind. ``store.reader_role`` and ``store.reader_password``
        (printed once by ``init``) say how reading stations connect."""
        facts = facts if facts is not None else study_image_facts(study)
        conn = connect(url)
        dbname = url_parts(url)["dbname"]
        role = reader_role_name(dbname)
        try:
            if schema_exists(conn):
                raise StoreError(f"{safe_location(url)}: the database already holds an answer store; open it, or "
                                 "choose another database.", code="exists")
            with conn.transaction():
                migrate(conn, 0)
                admin = conn.execute("SELECT current_user").fetchone()[0]
                password = create_reader_role(conn, role, dbname)
                install_functions(conn, role)
                meta = {"schema_version": str(SCHEMA_VERSION), "functions_sha256": functions_sha256(),
                        "store_id": uuid.uuid4().hex, "site": site or dbname, "admin_role": admin,
                        "reader_role": role, "created_at": iso_utc((clock or utc_now)())}
                conn.cursor().executemany("INSERT INTO meta(key, value) VALUES (%s, %s)", list(meta.items()))
                store = cls(url, conn, clock, creating=True, **options)
                with store._transaction() as events:
                    store._write_study(study, events, first=True, facts=facts)
        except BaseException as error:
            conn.close()
            import psycopg

            if isinstance(error, psycopg.Error):
                raise store_error(error, safe_location(url)) from None
            raise
        store.reader_password = password
        return store

    @classmethod
    def open(cls, url: str, *, clock: Clock | None = None, **options: Any) -> PostgresAnswerStore:
        """Open the store of ``url`` as its admin (migrates an older schema)."""
        conn = connect(url)
        try:
            return cls(url, conn, clock, **options)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> PostgresAnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reader_url(self) -> str:
        """How a reading station connects: the reader role on this server and database."""
        parts = url_parts(self._url)
        return f"postgresql://{self.reader_role}@{parts['host']}:{parts['port']}/{parts['dbname']}"

    # -- transactions ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        import psycopg

        try:
            with self._conn.transaction():
                yield
        except psycopg.Error as error:
            raise store_error(error, self.location) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[list[dict[str, Any]]]:
        """One transaction that holds the event chain (its head row locked first)."""
        with self._write():
            self._db.execute("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
            events: list[dict[str, Any]] = []
            yield events

    def _head(self) -> tuple[int, str]:
        row = self._db.one("SELECT seq, hash FROM chain_head WHERE id = 1")
        return int(row["seq"]), row["hash"]

    # -- backups and integrity -------------------------------------------------------------------
    def backup(self) -> Path:
        """A ``pg_dump`` of the database (custom format) into ``backup_dir``; returns its path.
        Restore with ``pg_restore --dbname=URL FILE`` into an empty database."""
        pg_dump = shutil.which("pg_dump") or next(
            (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), reverse=True)), None)
        if pg_dump is None:
            raise StoreError("pg_dump is not installed here; install the PostgreSQL client (e.g. apt-get install "
                             "postgresql-client) or back up on the server.", code="no_pg_dump")
        stamp = self._now().strftime("%Y%m%dT%H%M%S%fZ")
        target = self.backup_dir / f"{self.dbname}-{stamp}.dump"
        try:
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run([pg_dump, "--format=custom", f"--file={target}", f"--dbname={self._url}"], check=True,
                           capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            raise StoreError(f"{self.backup_dir}: pg_dump failed ({detail.strip().splitlines()[-1] if detail.strip() else error}); "
                             "check the folder and the connection.", code="backup") from None
        return target

    def _low_level_problems(self) -> list[str]:
        """The chain head matches the last event; the append-only triggers are in place."""
        problems = []
        head = self._head()
        last = self._db.one("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        expected = (int(last["seq"]), last["hash"]) if last else (0, "0" * 64)
        if head != expected:
            problems.append(f"the chain head (event {head[0]}) is not the last event")
        triggers = {r["tgname"] for r in self._db.all(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'dcstore' AND t.tgenabled <> 'D'")}
        for table in APPEND_ONLY_TABLES:
            for trigger in (f"{table}_append_only", f"{table}_no_truncate"):
                if trigger not in triggers:
                    problems.append(f"the trigger {trigger} that keeps {table} append-only is missing or disabled")
        if "events_chain_link" not in triggers:
            problems.append("the trigger events_chain_link that checks the hash chain is missing or disabled")
        return problems


def create_store(url: str, study: Study, **options: Any) -> PostgresAnswerStore:
    return PostgresAnswerStore.create(url, study, **options)


def open_store(url: str, **options: Any) -> PostgresAnswerStore:
    return PostgresAnswerStore.open(url, **options)
