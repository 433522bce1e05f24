"""Backup copies of a SQLite answer store, made with SQLite's online backup API (consistent
while the store stays open) into a folder that should be on another disk."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastReaderLib.study.errors import StoreError


def backup_copy(conn: sqlite3.Connection, stem: str, backup_dir: Path, keep: int, moment: datetime) -> Path:
    """Copy the database of ``conn`` to ``backup_dir/<stem>-<UTC moment>.sqlite`` (atomically)
    and delete all but the newest ``keep`` copies; returns the new copy's path.

    Hold the store's writer lock while calling it. Partial files left by a crash during an
    earlier backup are removed first.
    """
    stamp = moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = backup_dir / f"{stem}-{stamp}.sqlite"
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
        for stale in backup_dir.glob(f".{stem}-*.partial*"):
            with contextlib.suppress(OSError):
                stale.unlink()  # left by a crash during an earlier backup
        with atomic_path(target) as tmp:
            dest = sqlite3.connect(str(tmp))
            try:
                conn.backup(dest)
            finally:
                dest.close()
    except (OSError, sqlite3.Error) as error:
        raise StoreError(f"{backup_dir}: the backup could not be written ({error}); check the folder and "
                         "free space (answers are safe in the store).") from None
    copies = sorted(backup_dir.glob(f"{stem}-*.sqlite"))
    for old in copies[: max(len(copies) - keep, 0)]:
        with contextlib.suppress(OSError):
            old.unlink()
    return target


def check_backup_dir(backup_dir: Path) -> None:
    """Make sure backups can be written to ``backup_dir`` (created if needed): write, sync and
    remove a small probe file. Raises StoreError with one sentence when they cannot, so that
    the problem is found before an answer is accepted, not after."""
    probe = backup_dir / f".probe-{os.getpid()}"
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"backup probe\n")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise StoreError(f"{backup_dir}: backups cannot be written there ({error.strerror or error}); choose another "
                         "--backup-dir or fix the folder, nothing was stored.", code="backup_dir") from None
