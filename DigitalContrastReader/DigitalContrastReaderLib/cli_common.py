"""What the reader-study commands share: the store argument (a SQLite path or a PostgreSQL URL),
the reader's token, opening a store for the admin or for reading, and showing warnings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from DigitalContrastReaderLib.study.errors import UsageError

if TYPE_CHECKING:  # the commands import the store when they run: --help stays light
    from DigitalContrastReaderLib.store.base import AnswerStore, ReaderStore

TOKEN_ENV = "DIGITAL_CONTRAST_READER_TOKEN"
IMAGES_ENV = "DIGITAL_CONTRAST_READER_IMAGES"
DB_HELP = ("the study's answer store: a .sqlite file, or postgresql://USER@HOST:PORT/DBNAME (password from "
           "PGPASSWORD or ~/.pgpass)")


def db_argument(p: argparse.ArgumentParser, name: str = "db", metavar: str = "DB", help: str = DB_HELP) -> None:
    p.add_argument(name, metavar=metavar, help=help)


def study_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study-dir", metavar="FOLDER",
                   help="PostgreSQL: the study folder on this machine (default: the one init was run with)")


def reader_arguments(p: argparse.ArgumentParser) -> None:
    """``--reader``, ``--token`` and ``--images`` of the reading commands."""
    p.add_argument("--reader", required=True, help="reader id")
    p.add_argument("--token", default=None,
                   help=f"the reader's token (printed by 'enrol'; default ${TOKEN_ENV})")
    p.add_argument("--images", metavar="FOLDER", default=None,
                   help=f"PostgreSQL reading station: the folder of blinded images (default ${IMAGES_ENV})")


def token_of(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV)


def open_admin(args: argparse.Namespace, **options: Any) -> AnswerStore:
    """The admin store of ``args.db`` (with ``--study-dir`` when the command has it)."""
    from DigitalContrastReaderLib.store.location import is_url, open_store

    if is_url(args.db) and getattr(args, "study_dir", None):
        options["study_dir"] = args.study_dir
    return open_store(args.db, **options)


def open_reading(args: argparse.Namespace) -> ReaderStore:
    """What a reading client opens: for PostgreSQL only the reading functions (the reader role)."""
    from DigitalContrastReaderLib.store.location import open_reading_store

    return open_reading_store(args.db, images_dir=args.images)


def show_warnings(store: Any) -> None:
    """Print what went wrong after a commit (a failed backup): the answers are saved."""
    for warning in getattr(store, "warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def key_values(pairs: Sequence[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"'{pair}' is not key=value; write each answer as QUESTION=VALUE.")
        values[key.strip()] = value
    return values


def print_token(reader_id: str, token: str) -> None:
    """A new token, on a line of its own (printed once; the store keeps only a hash)."""
    print(f"token: {token}")
    print(f"  (reader {reader_id}: give it to them now; it is not shown again, the store keeps only a hash)")
