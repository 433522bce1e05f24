"""The answer store's interface: the :class:`ReaderStore` and :class:`AnswerStore` protocols and
the records they return.

Two protocols, because a store has two kinds of caller:

* a **reading client** (the Slicer module, a web reading station, ``next``/``answer``) signs in
  with a reader id and that reader's token and needs only :class:`ReaderStore`: every method
  takes the token, and returns neutral item ids, image references and the reader's own answers,
  never a case id, a source or another reader's data. A PostgreSQL reading station connects
  as the study's reader role and gets exactly this (``store.postgres_reading``);
* the **study admin** (the command line, the admin panel, the exports, ``merge``) needs
  :class:`AnswerStore`, which adds enrolment, corrections, progress, the integrity check and
  the admin views of items, images, answers and events.

:class:`~DigitalContrastReaderLib.store.sqlite.SQLiteAnswerStore` (one site) and
:class:`~DigitalContrastReaderLib.store.postgres.PostgresAnswerStore` (several sites) implement
both over the same domain rules (:mod:`~DigitalContrastReaderLib.store.rules`) and integrity
check (:mod:`~DigitalContrastReaderLib.store.integrity`); :mod:`~DigitalContrastReaderLib.store.location`
opens either from a path or a ``postgresql://`` URL.

Times in records are ISO 8601 strings in UTC (:func:`iso_utc`); ``None`` means "not yet".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from DigitalContrastReaderLib.study.blinding import ReaderItem
from DigitalContrastReaderLib.study.schedule import Schedule
from DigitalContrastReaderLib.study.study import Study

from .tokens import TokenHash

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
    """What a submit returns once the answer is durable in the database (and, for SQLite, in
    the event log). ``warnings``: what went wrong after the commit (a backup that could not
    be written), to be shown to the user; the answer is saved."""

    item_id: str
    submitted_at: str
    event_seq: int
    modified: bool  # True when this changed an earlier submit (a revision)
    next_item_id: str | None
    finished: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enrolment:
    """A new reader's stored schedule and their token (shown once: the store keeps a hash)."""

    schedule: Schedule
    token: str


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
class NeutralItem:
    """An item as a reading client may know it: its place in the schedule and its timing,
    nothing of its case or sources (:class:`ItemRecord` adds those for the admin)."""

    item_id: str
    reader_id: str
    session_no: int
    position_in_session: int
    order_index: int
    task_id: str
    training: bool
    layout: str
    wave: int
    shown_at: str | None
    last_shown_at: str | None
    first_interaction_at: str | None
    submitted_at: str | None
    active_seconds: float | None
    visits: int


@dataclass(frozen=True)
class ItemRecord(NeutralItem):
    """An item with its case and sources: the ADMIN view (never give it to a reader UI).
    ``source_a`` is shown as "Image" (single) or "Image A" (left), ``source_b`` as "Image B"."""

    case_id: str
    source_a: str
    source_b: str | None

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source_a,) if self.source_b is None else (self.source_a, self.source_b)

    def neutral(self) -> NeutralItem:
        """The same item without its case and sources (what a reading client may know)."""
        return NeutralItem(**{f.name: getattr(self, f.name) for f in fields(NeutralItem)})


@dataclass(frozen=True)
class ImageRef:
    """A neutral image reference: the blinded file name (random token + extension) and sha256."""

    ref: str
    sha256: str | None


@dataclass(frozen=True)
class ReaderCounts:
    """How far a reader is: items and training items (total, submitted), sessions, last submit."""

    items_total: int
    items_done: int
    training_total: int
    training_done: int
    sessions_total: int
    last_submit_at: str | None


@dataclass(frozen=True)
class ReaderState:
    """What a store reads for one reading call, in one transaction (see ``reader_access``).

    Attributes:
        now: the store's time of the call (ISO UTC): a PostgreSQL server's clock for a reader.
        study_sha256: the study version in force.
        item: the item asked for, or the reader's next unfinished one (None: finished).
        next_item_id: the reader's next unfinished item.
        session_opens_at / washout_after_wave / washout_wave_last_submit: the planned opening
            of the item's session, the wave its washout follows and that wave's last submit.
        items_in_session: items in the item's session.
        answers: the item's answers, question key -> (value, revision).
        images: the item's images, in display order.
        head: (seq, hash) of the last event, when the call locked the event chain.
    """

    now: str
    study_sha256: str
    item: NeutralItem | None
    next_item_id: str | None
    session_opens_at: str | None
    washout_after_wave: int | None
    washout_wave_last_submit: str | None
    items_in_session: int
    counts: ReaderCounts
    answers: dict[str, tuple[Any, int]]
    images: tuple[ImageRef, ...]
    head: tuple[int, str] | None = None


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
    simulated: bool = False  # given while the study was a demo (simulated readers, trial reads)


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
    event_seq: int = 0


@dataclass(frozen=True)
class ReaderRecord:
    reader_id: str
    group: str | None
    enrolled_at: str
    seed: int
    schedule_sha256: str
    token: TokenHash | None = None  # None: no token issued yet (a store made by an older version)


@dataclass(frozen=True)
class ImageRecord:
    """An image the store knows (ADMIN view): its case and source, the file as recorded
    (``relative``: relative to the study folder, or absolute) and where that is now (``path``),
    its size in bytes (None for a folder), sha256 and neutral file name."""

    case_id: str
    source: str
    path: Path
    size_bytes: int | None
    sha256: str | None = None
    relative: str = ""
    blind_name: str = ""


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
# The interfaces
# --------------------------------------------------------------------------------------------


@runtime_checkable
class ReaderStore(Protocol):
    """What a reading client needs: sign in with a reader id and token, read in order, submit.

    Every method checks the token on the store's side (a PostgreSQL server inside its stored
    functions) and raises :class:`~DigitalContrastReaderLib.study.errors.TokenError` when it is
    missing or wrong, with nothing stored. Items come back as blinded
    :class:`~DigitalContrastReaderLib.study.blinding.ReaderItem` objects whose images were
    verified against their sha256. Every write is one transaction, durable when the call returns.
    """

    def __enter__(self) -> ReaderStore: ...
    def __exit__(self, *exc: object) -> None: ...
    def close(self) -> None: ...

    def verify_token(self, reader_id: str, token: str) -> bool: ...
    def resume(self, reader_id: str, *, token: str) -> ReaderItem | None: ...
    def peek_item(self, reader_id: str, item_id: str, *, token: str) -> ReaderItem: ...
    def open_item(self, reader_id: str, item_id: str, *, token: str) -> ReaderItem: ...
    def mark_interaction(self, reader_id: str, item_id: str, *, token: str) -> None: ...
    def submit(self, reader_id: str, item_id: str, answers: Mapping[str, Any], *, token: str,
               active_seconds: float | None = None) -> SubmitReceipt: ...
    def reader_progress(self, reader_id: str, *, token: str) -> ReaderProgress: ...


@runtime_checkable
class AnswerStore(ReaderStore, Protocol):
    """What the study admin, the exports and ``merge`` need besides reading.

    Attributes:
        study: the study version in force (the last one loaded).
        location: the store's path or URL (passwords left out), for messages.
        store_id: a random id given at creation (``merge`` records the origin of events by it).
        site: the name of the site the store belongs to.
        event_log_path: the append-only JSONL copy of the events (None: the store keeps none).
        backup_dir: where backup copies are written.
        warnings: what went wrong after a commit (backups), to be shown; answers are safe.

    A store is a context manager: leaving the ``with`` block closes it (a SQLite store backs up
    when anything changed). Every write is one transaction that is durable when the call returns.
    """

    study: Study
    location: str
    store_id: str
    site: str
    event_log_path: Path | None
    backup_dir: Path
    warnings: list[str]

    def __enter__(self) -> AnswerStore: ...

    # -- study and readers
    def update_study(self, study: Study, *, accept_change: str | None = None) -> bool: ...
    def enrol(self, reader_id: str, *, seed: int | None = None) -> Enrolment: ...
    def issue_token(self, reader_id: str) -> str: ...
    def schedule(self, reader_id: str) -> Schedule: ...
    def opens_at(self, reader_id: str, session_no: int) -> datetime: ...

    # -- administration
    def correct_answer(self, item_id: str, question_key: str, value: Any, *, reason: str,
                       corrected_by: str) -> int: ...
    def progress(self) -> list[ReaderProgress]: ...
    def integrity_check(self) -> IntegrityReport: ...
    def backup(self) -> Path: ...
    def import_records(self, batch: Any) -> dict[str, int]: ...

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
