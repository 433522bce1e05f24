"""The answer store's interface: the :class:`AnswerStore` protocol and the records it returns.

A reader UI (Slicer, a web reading station), the command line, the admin panel and the exports
talk to a store only through :class:`AnswerStore`. :class:`~DigitalContrastReaderLib.store.sqlite.SQLiteAnswerStore`
implements it on one SQLite file; a store for several sites (PostgreSQL) implements the same
protocol and calls the same domain rules (:mod:`~DigitalContrastReaderLib.store.rules`) and the
same integrity check (:mod:`~DigitalContrastReaderLib.store.integrity`).

Times in records are ISO 8601 strings in UTC (:func:`iso_utc`); ``None`` means "not yet".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from DigitalContrastReaderLib.study.blinding import ReaderItem
from DigitalContrastReaderLib.study.schedule import Schedule
from DigitalContrastReaderLib.study.study import Study

DEFAULT_BACKUP_EVERY = 25
DEFAULT_BACKUP_KEEP = 10

#: A store's clock: returns the current time, timezone-aware (tests and simulations pass their own).
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_utc(moment: datetime) -> str:
    """``moment`` as the ISO 8601 text in UTC that every record holds."""
    if moment.tzinfo is None:
        raise ValueError("the store's clock must return timezone-aware datetimes")
    return moment.astimezone(timezone.utc).isoformat()


def parse_iso(text: str) -> datetime:
    """The datetime of a record's ISO 8601 time."""
    return datetime.fromisoformat(text)


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


@dataclass(frozen=True)
class ImageRecord:
    """An image the store knows (ADMIN view): its case, source, original file and size in bytes
    when it was loaded (None when it was not a file, e.g. a DICOM folder)."""

    case_id: str
    source: str
    path: Path
    size_bytes: int | None


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
    """What a reader UI, the CLI, the admin panel and the exports need from a store of answers.

    Attributes:
        study: the study version in force (the last one loaded).
        event_log_path: the append-only JSONL copy of the events.
        backup_dir: where backup copies of the store are written.

    A store is a context manager: leaving the ``with`` block closes it (with a backup when
    anything changed). Every write is one transaction that is on disk when the call returns.
    """

    study: Study
    event_log_path: Path
    backup_dir: Path

    def __enter__(self) -> AnswerStore: ...
    def __exit__(self, *exc: object) -> None: ...

    # -- study and readers
    def update_study(self, study: Study) -> bool: ...
    def enrol(self, reader_id: str, *, seed: int | None = None) -> Schedule: ...
    def schedule(self, reader_id: str) -> Schedule: ...

    # -- reading (what a reader UI calls)
    def resume(self, reader_id: str) -> ReaderItem | None: ...
    def open_item(self, reader_id: str, item_id: str) -> ReaderItem: ...
    def mark_interaction(self, reader_id: str, item_id: str) -> None: ...
    def submit(self, reader_id: str, item_id: str, answers: Mapping[str, Any], *,
               active_seconds: float | None = None) -> SubmitReceipt: ...
    def opens_at(self, reader_id: str, session_no: int) -> datetime: ...

    # -- administration
    def correct_answer(self, item_id: str, question_key: str, value: Any, *, reason: str,
                       corrected_by: str) -> int: ...
    def progress(self) -> list[ReaderProgress]: ...
    def integrity_check(self) -> IntegrityReport: ...
    def backup(self) -> Path: ...
    def close(self) -> None: ...

    # -- reading back (admin views; never for a reader UI)
    def readers(self) -> list[ReaderRecord]: ...
    def items(self, reader_id: str | None = None) -> list[ItemRecord]: ...
    def item(self, item_id: str) -> ItemRecord: ...
    def images(self) -> list[ImageRecord]: ...
    def study_versions(self) -> list[dict[str, Any]]: ...
    def responses(self) -> list[ResponseRecord]: ...
    def revisions(self) -> list[RevisionRecord]: ...
    def events(self) -> list[dict[str, Any]]: ...
    def last_event_at(self) -> datetime | None: ...
