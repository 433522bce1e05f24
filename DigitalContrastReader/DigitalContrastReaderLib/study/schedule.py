"""Reading schedules: generated ONCE per reader at enrolment, stored, never recomputed.

A schedule fixes, for one reader:

* **sessions**: a training session first (if the study has training cases), then the readings.
  A *wave* is one pass over the reader's cases in one task: a single-image task with ``n``
  sources has ``n`` waves (each case once per wave, in a different source each time); a
  preference task has one. Long waves are cut into sessions of at most
  ``design.max_items_per_session`` items.
* **washout**: wave ``w`` does not open before ``washout_days`` after the last submit of wave
  ``w - 1`` (they share cases). ``opens_at`` is the planned earliest date (enrolment plus the
  washouts); the store also enforces the rule against the actual submit times, so a reader who
  finishes a wave late still gets the full washout.
* **order**: items are shuffled within each session by ``random.Random(seed)``; the seed is
  recorded, and the same study, reader and seed always give the same schedule.
* **first source per case** (single-image tasks): each case gets a cyclic (Latin) order of the
  sources; the rows are dealt in turn to the shuffled cases, so with two sources half of the
  cases (±1) are seen real-first and half synthetic-first.
* **sides** (preference): the test source (``compare[0]``) is on the left (Image A) in half of
  the items (±1), in a shuffled order.
* Items of one case never share a session of a single-image task (one case per wave), so a
  Turing reader never sees both sources of a case in one sitting.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .canonical import sha256_json
from .study import SINGLE_IMAGE_TASKS, Case, Study, Task

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class ScheduledSession:
    """One sitting. ``opens_at`` is an ISO-8601 UTC time; ``washout_after_wave`` names the wave
    whose last submit must lie ``washout_days`` in the past before this session opens."""

    session_no: int
    kind: str  # "training" | "reading"
    wave: int  # 0 = training
    task_ids: tuple[str, ...]
    opens_at: str
    washout_after_wave: int | None


@dataclass(frozen=True)
class ScheduledItem:
    """One item of a schedule. ``sources`` is what is displayed, in display order: one source
    (``Image``) or two (left = ``Image A``, right = ``Image B``). Never given to a reader UI."""

    item_id: str
    reader_id: str
    session_no: int
    position_in_session: int  # 1-based
    order_index: int  # 1-based position over the whole schedule
    task_id: str
    case_id: str
    training: bool
    layout: str  # "single" | "pair"
    sources: tuple[str, ...]
    wave: int


@dataclass(frozen=True)
class Schedule:
    reader_id: str
    reader_group: str | None
    seed: int
    study_sha256: str
    created_at: str
    washout_days: float
    sessions: tuple[ScheduledSession, ...]
    items: tuple[ScheduledItem, ...]
    generator_version: int = GENERATOR_VERSION
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        sessions = tuple(ScheduledSession(**{**s, "task_ids": tuple(s["task_ids"])}) for s in data["sessions"])
        items = tuple(ScheduledItem(**{**i, "sources": tuple(i["sources"])}) for i in data["items"])
        return cls(**{**data, "sessions": sessions, "items": items})

    def sha256(self) -> str:
        return sha256_json(self.to_dict())


def item_id_for(reader_id: str, order_index: int) -> str:
    """Neutral item ids: the reader and the (random) position, nothing about case or source."""
    return f"{reader_id}-{order_index:04d}"


def _balanced_flags(count: int, rng: random.Random) -> list[bool]:
    """``count`` booleans, half True (±1, the odd one decided by ``rng``), in shuffled order."""
    trues = count // 2 + (rng.random() < 0.5 if count % 2 else 0)
    flags = [True] * trues + [False] * (count - trues)
    rng.shuffle(flags)
    return flags


def _task_waves(task: Task, cases: list[Case], rng: random.Random, *, training: bool) -> list[list[tuple]]:
    """The waves of one task as lists of ``(task, case, sources)``.

    Main cases: a single-image task with ``n`` sources gives ``n`` waves with every case once
    per wave; a preference task gives one wave. Training cases: one wave, each case once, in
    rotating sources, so training never repeats a case within a task.
    """
    if task.type in SINGLE_IMAGE_TASKS:
        n = len(task.sources)
        order = list(cases)
        rng.shuffle(order)
        offset = rng.randrange(n)
        waves: list[list[tuple]] = [[] for _ in range(1 if training else n)]
        for k, case in enumerate(order):
            row = (k + offset) % n
            latin = [task.sources[(row + r) % n] for r in range(n)]  # cyclic Latin-square row
            for r, wave in enumerate(waves):
                wave.append((task, case, (latin[r],)))
        return waves
    assert task.compare is not None
    test, reference = task.compare
    flags = _balanced_flags(len(cases), rng)
    return [[(task, case, (test, reference) if left else (reference, test)) for case, left in zip(cases, flags)]]


def _split(entries: list[tuple], max_items: int | None) -> list[list[tuple]]:
    if not max_items or len(entries) <= max_items:
        return [entries]
    parts = math.ceil(len(entries) / max_items)
    size, extra = divmod(len(entries), parts)
    chunks, start = [], 0
    for p in range(parts):
        end = start + size + (1 if p < extra else 0)
        chunks.append(entries[start:end])
        start = end
    return chunks


def generate_schedule(study: Study, reader_id: str, *, seed: int, start: datetime) -> Schedule:
    """Make a reader's schedule (pure function of study, reader, seed and start time).

    Args:
        study: the loaded study.
        reader_id: a reader listed in the study.
        seed: the random seed (recorded in the schedule).
        start: enrolment time (timezone-aware UTC); the first sessions open then.

    Returns:
        The :class:`Schedule`; store it (``AnswerStore.enrol`` does) and never regenerate it.
    """
    reader = study.reader(reader_id)
    rng = random.Random(seed)
    cases = study.cases_for_reader(reader_id)
    training_cases = [c for c in cases if c.training]
    main_cases = [c for c in cases if not c.training]
    washout = timedelta(days=study.design.washout_days)

    waves: list[tuple[str, int, list[tuple]]] = []  # (kind, wave number, entries)
    if training_cases:
        entries: list[tuple] = []
        for task in study.tasks:
            block = _task_waves(task, training_cases, rng, training=True)[0]
            rng.shuffle(block)
            entries.extend(block)  # tasks in study order, shuffled within each task
        waves.append(("training", 0, entries))
    wave_no = 0
    for task in study.tasks:
        for entries in _task_waves(task, main_cases, rng, training=False):
            wave_no += 1
            rng.shuffle(entries)
            waves.append(("reading", wave_no, entries))

    sessions: list[ScheduledSession] = []
    items: list[ScheduledItem] = []
    for kind, wave, entries in waves:
        planned = start + washout * max(wave - 1, 0)
        for chunk in _split(entries, study.design.max_items_per_session):
            session_no = len(sessions) + 1
            task_ids = tuple(dict.fromkeys(task.task_id for task, _, _ in chunk))
            sessions.append(
                ScheduledSession(session_no, kind, wave, task_ids, planned.isoformat(), wave - 1 if wave >= 2 else None)
            )
            for position, (task, case, sources) in enumerate(chunk, start=1):
                order_index = len(items) + 1
                items.append(
                    ScheduledItem(
                        item_id=item_id_for(reader_id, order_index),
                        reader_id=reader_id,
                        session_no=session_no,
                        position_in_session=position,
                        order_index=order_index,
                        task_id=task.task_id,
                        case_id=case.case_id,
                        training=kind == "training",
                        layout=task.layout,
                        sources=tuple(sources),
                        wave=wave,
                    )
                )
    return Schedule(
        reader_id=reader_id,
        reader_group=reader.group,
        seed=seed,
        study_sha256=study.sha256,
        created_at=start.isoformat(),
        washout_days=study.design.washout_days,
        sessions=tuple(sessions),
        items=tuple(items),
    )


def waves_per_reader(study: Study) -> int:
    """How many waves each reader's schedule has (training not counted): one per source of every
    single-image task, one per preference task. Wave ``w`` opens ``washout_days`` after wave ``w - 1``,
    so a reading takes at least ``(waves - 1) * washout_days`` days."""
    return sum(len(task.sources) if task.type in SINGLE_IMAGE_TASKS else 1 for task in study.tasks)
