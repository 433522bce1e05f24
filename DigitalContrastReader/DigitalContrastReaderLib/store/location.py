"""Open or create a store from where it is: a path (SQLite, one site) or a ``postgresql://`` URL
(PostgreSQL, several sites). Every command that takes a store goes through here.

* :func:`open_store` / :func:`create_store`: the admin's :class:`~DigitalContrastReaderLib.store.base.AnswerStore`;
* :func:`open_reading_store`: what a reading client needs (:class:`~DigitalContrastReaderLib.store.base.ReaderStore`):
  for PostgreSQL a connection that uses only the reading functions, so it works for the study's
  reader role; for SQLite the store itself.

A URL is ``postgresql://USER@HOST:PORT/DBNAME``; the password comes from ``PGPASSWORD`` or
``~/.pgpass``, as for psql. The PostgreSQL modules (and psycopg) are imported only for a URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.study import Study

from .base import AnswerStore, ReaderStore

URL_PREFIXES = ("postgresql://", "postgres://")


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` names a PostgreSQL store (else it is a SQLite file's path)."""
    return str(location).startswith(URL_PREFIXES)


def open_store(location: str | os.PathLike, **options: Any) -> AnswerStore:
    """Open the admin store at ``location``.

    Options: ``clock`` (both); SQLite nothing else; PostgreSQL ``images_dir``, ``study_dir``,
    ``backup_dir`` (see :class:`~DigitalContrastReaderLib.store.postgres.PostgresAnswerStore`).
    """
    if is_url(location):
        from .postgres import PostgresAnswerStore

        return PostgresAnswerStore.open(str(location), **options)
    from .sqlite import SQLiteAnswerStore

    return SQLiteAnswerStore.open(Path(location), clock=options.get("clock"))


def create_store(location: str | os.PathLike, study: Study, **options: Any) -> AnswerStore:
    """Create a store for ``study`` at ``location`` (atomically; see the two stores' ``create``).

    Options: ``site``, ``facts``, ``clock`` (both); SQLite ``backup_dir``, ``backup_every``,
    ``backup_keep``, ``event_log``; PostgreSQL ``images_dir``, ``backup_dir``.
    """
    if is_url(location):
        from .postgres import PostgresAnswerStore

        options.pop("event_log", None)
        options.pop("backup_every", None)
        options.pop("backup_keep", None)
        return PostgresAnswerStore.create(str(location), study, **options)
    from .sqlite import SQLiteAnswerStore

    options.pop("images_dir", None)
    return SQLiteAnswerStore.create(Path(location), study, **options)


def open_reading_store(location: str | os.PathLike, *, images_dir: str | os.PathLike | None = None) -> ReaderStore:
    """Open ``location`` for a reading client (see the module docstring)."""
    if is_url(location):
        from .postgres_reading import PostgresReadingStore

        return PostgresReadingStore(str(location), images_dir=images_dir)
    from .sqlite import SQLiteAnswerStore

    return SQLiteAnswerStore.open(Path(location))
