"""The audit trail: hash-chained events, the append-only JSONL copy, and the writer lock.

Every change to a store (study loaded, reader enrolled, item shown, answer submitted, answer
corrected...) is an event ``{seq, at, kind, reader_id, item_id, payload, prev_hash, hash}``;
``hash`` is the sha256 of the canonical JSON of the other fields, and ``prev_hash`` is the
hash of the event before (64 zeros for the first), so any edit, removal or reordering of a
past event breaks the chain.

The events live in the database (the source of truth) and are also appended, one JSON object
per line, to a JSONL file that is fsync'd after the database commit. See
:mod:`DigitalContrastReaderLib.store.sqlite` for the order of writes, and :meth:`JsonlLog.recover`
for what recovery does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.canonical import canonical_json

GENESIS_HASH = "0" * 64
EVENT_FIELDS = ("seq", "at", "kind", "reader_id", "item_id", "payload", "prev_hash")


def event_hash(event: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the event's fields (``hash`` itself excluded)."""
    body = {name: event[name] for name in EVENT_FIELDS}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def make_event(
    seq: int, at: str, kind: str, reader_id: str | None, item_id: str | None, payload: dict[str, Any], prev_hash: str
) -> dict[str, Any]:
    event = {
        "seq": seq,
        "at": at,
        "kind": kind,
        "reader_id": reader_id,
        "item_id": item_id,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    event["hash"] = event_hash(event)
    return event


def chain_problems(events: list[dict[str, Any]]) -> list[str]:
    """Problems with a sequence of events: gaps in ``seq``, broken links, wrong hashes."""
    problems: list[str] = []
    prev = GENESIS_HASH
    for expected_seq, event in enumerate(events, start=1):
        if event["seq"] != expected_seq:
            problems.append(f"event {event['seq']} follows event {expected_seq - 1} (an event is missing)")
            break
        if event["prev_hash"] != prev:
            problems.append(f"event {event['seq']} does not link to the hash of event {expected_seq - 1}")
            break
        if event_hash(event) != event["hash"]:
            problems.append(f"event {event['seq']} was changed after it was written (its hash does not match)")
            break
        prev = event["hash"]
    return problems


def _fsync_dir(folder: Path) -> None:
    if sys.platform.startswith("win"):
        return  # Windows cannot open a directory for fsync; NTFS journals the metadata itself
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class JsonlLog:
    """An append-only JSON-lines file of events, written with ``fsync`` before returning."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(canonical_json(e) + "\n" for e in events).encode("utf-8")
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_dir(self.path.parent)

    def read(self) -> tuple[list[dict[str, Any]], int]:
        """All complete events, and the number of bytes of an unfinished last line (a write cut
        off by a crash; 0 when the file ends cleanly). A damaged complete line raises ValueError."""
        if not self.path.exists():
            return [], 0
        raw = self.path.read_bytes()
        cut = raw.rfind(b"\n") + 1
        events = []
        for number, line in enumerate(raw[:cut].splitlines(), start=1):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"line {number} of {self.path.name} is not valid JSON") from None
        return events, len(raw) - cut

    def drop_unfinished_tail(self) -> int:
        """Remove an unfinished last line (left by a crash mid-write); returns the bytes removed."""
        _, tail = self.read()
        if tail:
            size = self.path.stat().st_size
            with open(self.path, "r+b") as handle:
                handle.truncate(size - tail)
                handle.flush()
                os.fsync(handle.fileno())
        return tail

    def recover(self, database_count: int, database_events: Callable[[], list[dict[str, Any]]]) -> list[str]:
        """Bring the log up to the database after a crash; returns notes on what was repaired.

        Drops an unfinished last line, then appends the events the database holds beyond the
        log. Never rewrites a damaged log or one that disagrees with the database (the integrity
        check reports those). Call it holding the writer lock.

        Args:
            database_count: the number of events in the database.
            database_events: returns every event of the database, in order (read only when needed).
        """
        notes = []
        dropped = self.drop_unfinished_tail()
        if dropped:
            notes.append(f"removed an unfinished last line ({dropped} bytes) from {self.path.name}: a write cut off "
                         "by a crash; the database holds that event")
        try:
            logged, _ = self.read()
        except ValueError:
            return notes  # reported by the integrity check; never rewrite a damaged log
        if len(logged) >= database_count:
            return notes
        db_events = database_events()
        if logged != db_events[: len(logged)]:
            return notes  # a disagreement, not a lag: reported by the integrity check, not repaired
        missing = db_events[len(logged):]
        self.append(missing)
        notes.append(f"appended {len(missing)} event(s) to {self.path.name} that were committed to the database "
                     "but not yet logged (the writer stopped between the two writes)")
        return notes


class WriterLock:
    """An exclusive, process-wide lock on ``<db>.lock`` held by whoever writes the store.

    It serialises "commit to SQLite, then append to the JSONL log" across processes (a Slicer
    session and a CLI on the same study), so the log never interleaves or duplicates events.
    The operating system releases it when the holder dies, even by SIGKILL. Re-entrant within
    one object.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle = None
        self._depth = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self._depth == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+b")
            try:
                if sys.platform.startswith("win"):
                    import msvcrt

                    handle.seek(0)
                    while True:
                        try:
                            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                            break
                        except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                            continue
                else:
                    import fcntl

                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
            self._handle = handle
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._handle is not None:
                handle, self._handle = self._handle, None
                try:
                    if sys.platform.startswith("win"):
                        import msvcrt

                        handle.seek(0)
                        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
                    else:
                        import fcntl

                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                finally:
                    handle.close()
