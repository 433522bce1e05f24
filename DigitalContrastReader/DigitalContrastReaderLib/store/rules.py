"""The domain rules of an answer store, written once so that every store applies them alike.

Plain functions over records (:mod:`~DigitalContrastReaderLib.store.base`) and the study: a store
reads what a rule needs, calls it inside its transaction, and writes what it returns. A rule
raises :class:`~DigitalContrastReaderLib.study.errors.AnswerError` (or ``StudyError``) with one
sentence and a ``code``; nothing here touches a database.

* reading order: :func:`check_owner`, :func:`check_is_next`, :func:`check_is_open`,
  :func:`session_opens_at` (washout), :func:`next_item`;
* answers: :func:`check_active_seconds`, :func:`validated_answers`, :func:`check_may_submit_again`,
  :func:`active_seconds_of_submit`, :func:`answer_changes`;
* corrections: :func:`check_correction_request`, :func:`validated_correction`;
* enrolment and study versions: :func:`not_enrolled_error`, :func:`check_not_enrolled`,
  :func:`check_study_update`;
* what a reader sees and what progress means: :func:`reader_item`, :func:`reader_progress`;
* the washout audit: :func:`washout_problems`.

Times are timezone-aware datetimes, or the ISO 8601 UTC text of the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.blinding import ReaderItem, image_handles
from DigitalContrastReaderLib.study.errors import AnswerError, StudyError
from DigitalContrastReaderLib.study.study import Reader, Study, Task

from .base import ItemRecord, ReaderProgress, ReaderRecord, iso_utc, parse_iso

# --------------------------------------------------------------------------------------------
# Enrolment and study versions
# --------------------------------------------------------------------------------------------


def not_enrolled_error(study: Study, reader_id: str) -> AnswerError:
    """The error for a reader without a stored schedule (an unlisted reader raises at once)."""
    study.reader(reader_id)
    return AnswerError(f"Reader '{reader_id}' is not enrolled yet; enrol them first ('digital-contrast-reader enrol "
                       f"DB --reader {reader_id}').", code="not_enrolled")


def check_not_enrolled(reader_id: str, existing: ReaderRecord | None) -> None:
    """A schedule is generated once: refuse a second enrolment."""
    if existing is not None:
        raise AnswerError(
            f"Reader '{reader_id}' was enrolled at {existing.enrolled_at} (seed {existing.seed}); a "
            "stored schedule is never recomputed, so carry on with 'next'.",
            code="already_enrolled",
        )


def check_study_update(old: Study, new: Study, *, store_name: str, answered: bool, scheduled_cases: set[str],
                       enrolled: set[str], scheduled_tasks: set[str]) -> None:
    """Refuse (StudyError) a new study version that would change what existing answers mean.

    Args:
        old, new: the study in force and the version to load.
        store_name: the store's name for the messages (a file name).
        answered: the store holds at least one answer (questions are frozen then).
        scheduled_cases / scheduled_tasks: cases and tasks in stored schedules.
        enrolled: the enrolled readers.

    Questions are frozen once any answer exists; the images of a case in stored schedules, the
    cases and tasks of stored schedules and enrolled readers cannot be removed or changed.
    Added cases, readers and tasks only affect readers enrolled afterwards; truth values may be
    corrected.
    """
    name = new.path.name if new.path else "the study file"
    if new.study_id != old.study_id:
        raise StudyError(f"{name}: study_id '{new.study_id}' differs from '{old.study_id}' in {store_name}; "
                         "use a new store for another study.")
    if answered:
        old_q = {(t.task_id, q.key): q.spec() for t in old.tasks for q in t.questions}
        new_q = {(t.task_id, q.key): q.spec() for t in new.tasks for q in t.questions}
        for key in sorted(set(old_q) | set(new_q)):
            if key[0] in {t.task_id for t in old.tasks} and old_q.get(key) != new_q.get(key):
                raise StudyError(
                    f"{name}: question '{key[1]}' of task '{key[0]}' differs from the one already answered in "
                    f"{store_name}; questions are frozen once answered, so restore it or start a new study database."
                )
    new_cases = {c.case_id: c for c in new.cases}
    for case in old.cases:
        if case.case_id not in new_cases:
            if case.case_id in scheduled_cases:
                raise StudyError(f"{name}: case '{case.case_id}' is missing but is in stored schedules; put it back.")
        elif case.case_id in scheduled_cases and new_cases[case.case_id].images != case.images:
            raise StudyError(f"{name}: the images of case '{case.case_id}' changed but it is in stored schedules; "
                             "restore its paths (or start a new study database).")
    missing_readers = sorted(enrolled - {r.reader_id for r in new.readers})
    if missing_readers:
        raise StudyError(f"{name}: reader '{missing_readers[0]}' is enrolled but no longer listed; put them back.")
    missing_tasks = sorted(scheduled_tasks - {t.task_id for t in new.tasks})
    if missing_tasks:
        raise StudyError(f"{name}: task '{missing_tasks[0]}' is in stored schedules but no longer listed; put it back.")


# --------------------------------------------------------------------------------------------
# Reading order and washout
# --------------------------------------------------------------------------------------------


def unknown_item_error(item_id: str, store_name: str) -> AnswerError:
    return AnswerError(f"There is no item '{item_id}' in {store_name}; check the item id.", code="unknown_item")


def check_owner(item: ItemRecord, reader_id: str) -> None:
    """An item is read (and shown) only by the reader whose schedule holds it."""
    if item.reader_id != reader_id:
        raise AnswerError(f"Item '{item.item_id}' belongs to another reader, not '{reader_id}'; check the reader id.",
                          code="wrong_reader")


def next_item(items: Sequence[ItemRecord]) -> ItemRecord | None:
    """The first unfinished item of one reader's items (in stored order), None when all are done."""
    unfinished = [i for i in items if i.submitted_at is None]
    return min(unfinished, key=lambda i: i.order_index) if unfinished else None


def check_is_next(item: ItemRecord, next_unfinished: ItemRecord | None) -> None:
    """Items are read in their stored order: only the reader's next unfinished item may be
    shown or submitted for the first time."""
    if next_unfinished is None or next_unfinished.item_id != item.item_id:
        raise AnswerError(
            f"Item '{item.item_id}' is not the next item of reader '{item.reader_id}' "
            f"(the next is '{next_unfinished.item_id if next_unfinished else 'none'}'); items are read in their "
            "stored order.",
            code="not_next",
        )


def check_is_open(item: ItemRecord, opens_at: datetime, now: datetime, washout_days: float) -> None:
    """An item's session must be open (its washout over) before it is read."""
    if opens_at > now:
        raise AnswerError(
            f"Item '{item.item_id}' opens at {iso_utc(opens_at)} (a {washout_days:g}-day washout after "
            "the previous reading of these cases); come back then.",
            code="washout",
        )


def session_opens_at(planned: datetime, washout_after_wave: int | None, last_submit_of_that_wave: datetime | None,
                     washout_days: float) -> datetime:
    """When a session opens: its planned date, and for a washout session at least
    ``washout_days`` after the last submit of the wave before (once that wave has a submit)."""
    if washout_after_wave is not None and last_submit_of_that_wave is not None:
        return max(planned, last_submit_of_that_wave + timedelta(days=washout_days))
    return planned


def washout_problems(order: Sequence[ItemRecord], washout_days: float) -> list[str]:
    """Cases read again (main readings) sooner than the washout after the previous reading,
    among one reader's items in stored order."""
    washout = timedelta(days=washout_days)
    last_read: dict[str, tuple[int, datetime]] = {}
    problems = []
    for item in order:
        if item.training or item.submitted_at is None:
            continue
        at = parse_iso(item.submitted_at)
        if item.case_id in last_read:
            wave, when = last_read[item.case_id]
            if wave != item.wave and at - when < washout - timedelta(seconds=1):
                problems.append(f"item '{item.item_id}' re-read case '{item.case_id}' {(at - when).days} days after "
                                f"its previous reading (washout {washout.days} days)")
        last_read[item.case_id] = (item.wave, at)
    return problems


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def check_active_seconds(active_seconds: Any) -> None:
    """The reading time a UI reports is a non-negative number of seconds (or None)."""
    if active_seconds is not None and (not isinstance(active_seconds, (int, float)) or active_seconds < 0):
        raise AnswerError(f"active_seconds must be a non-negative number, not {active_seconds!r}; correct it.")


def validated_answers(task: Task, answers: Mapping[str, Any]) -> dict[str, Any]:
    """Every question of ``task`` -> its validated answer (None: optional and not answered).

    Unknown keys are refused; each value is validated by its question (required ones included).
    """
    keys = {q.key for q in task.questions}
    unknown = sorted(set(answers) - keys)
    if unknown:
        raise AnswerError(f"Task '{task.task_id}' has no question '{unknown[0]}'; answer only "
                          f"{', '.join(q.key for q in task.questions)}.", code="unknown_question")
    return {q.key: q.validate(answers.get(q.key)) for q in task.questions}


def check_may_submit_again(item: ItemRecord, study: Study) -> bool:
    """Whether this submit changes an earlier one (True) or is the first (False); a second
    submit is refused unless the study allows answer modification."""
    modified = item.submitted_at is not None
    if modified and not study.allow_answer_modification:
        raise AnswerError(
            f"Item '{item.item_id}' was already submitted and study '{study.study_id}' does not allow changing "
            "answers; ask the study admin for a correction.", code="already_submitted",
        )
    return modified


def active_seconds_of_submit(active_seconds: float | None, item: ItemRecord, now: datetime) -> float | None:
    """The reading time stored with a first submit: what the UI measured, else the seconds
    from the last display to ``now`` (None when the item was never displayed)."""
    if active_seconds is None and item.last_shown_at is not None:
        return max((now - parse_iso(item.last_shown_at)).total_seconds(), 0.0)
    return active_seconds


def answer_changes(values: Mapping[str, Any], previous: Mapping[str, tuple[Any, int]]) -> dict[str, dict[str, Any]]:
    """The changes a modifying submit makes: question key -> ``{from, to, revision}``.

    Args:
        values: the validated answers (None = not given: the earlier value is kept).
        previous: question key -> (its current value, its revision number).
    """
    changes = {}
    for key, value in values.items():
        if value is None:
            continue
        old = previous.get(key)
        if old is None or old[0] != value:
            changes[key] = {"from": None if old is None else old[0], "to": value,
                            "revision": 1 if old is None else old[1] + 1}
    return changes


# --------------------------------------------------------------------------------------------
# Corrections
# --------------------------------------------------------------------------------------------


def check_correction_request(reason: str, corrected_by: str) -> None:
    """An admin correction needs a reason and the admin's name."""
    if not reason or not reason.strip():
        raise AnswerError("A correction needs a reason; give one (e.g. 'reader pressed the wrong level, confirmed by email').",
                          code="no_reason")
    if not corrected_by or not corrected_by.strip():
        raise AnswerError("A correction needs the name of the admin who makes it; give it.", code="no_admin")


def validated_correction(study: Study, item: ItemRecord, question_key: str, value: Any) -> Any:
    """The validated corrected value; corrections apply to submitted items and need a value."""
    if item.submitted_at is None:
        raise AnswerError(f"Item '{item.item_id}' has not been submitted yet; corrections apply to submitted answers "
                          "only.", code="not_submitted")
    value = study.task(item.task_id).question(question_key).validate(value)
    if value is None:
        raise AnswerError(f"A correction of '{question_key}' needs a value; give one.", code="required")
    return value


# --------------------------------------------------------------------------------------------
# What a reader sees, and what progress means
# --------------------------------------------------------------------------------------------


def reader_item(study: Study, item: ItemRecord, *, image_paths: Sequence[Path], answers: Mapping[str, Any],
                sessions_total: int, items_in_session: int, items_total: int, opens_at: datetime,
                now: datetime) -> ReaderItem:
    """The blinded view of ``item`` for a reader UI: neutral image handles and links
    (``image_paths``, in the item's source order), the questions and the answers given so far.

    ``editable`` unless submitted in a study that forbids changes; ``opens_at`` set only while a
    washout still closes the item.
    """
    task = study.task(item.task_id)
    done = item.submitted_at is not None
    return ReaderItem(
        item_id=item.item_id,
        session_no=item.session_no,
        sessions_total=sessions_total,
        position_in_session=item.position_in_session,
        items_in_session=items_in_session,
        order_index=item.order_index,
        items_total=items_total,
        task_id=task.task_id,
        task_type=task.type,
        instructions=task.instructions,
        training=item.training,
        layout=item.layout,
        images=tuple({"handle": h, "path": str(p)} for h, p in zip(image_handles(item.layout), image_paths)),
        display={**study.display, **study.layout},
        questions=tuple(q.spec() for q in task.questions),
        answers=dict(answers),
        done=done,
        editable=not done or study.allow_answer_modification,
        opens_at=None if done or opens_at <= now else iso_utc(opens_at),
    )


def reader_progress(reader: Reader, items: Sequence[ItemRecord], *, sessions_total: int,
                    next_opens_at: datetime | None, now: datetime) -> ReaderProgress:
    """The progress of an enrolled reader (one not enrolled is ``ReaderProgress(id, group, enrolled=False)``).

    Args:
        reader: the reader as listed in the study.
        items: the reader's stored items.
        sessions_total: sessions in the reader's schedule.
        next_opens_at: when the session of the next unfinished item opens (None when finished).
        now: the store's current time (a later opening is a washout still running).
    """
    nxt = next_item(items)
    submitted = [i.submitted_at for i in items if i.submitted_at is not None]
    return ReaderProgress(
        reader.reader_id, reader.group, True,
        items_total=len(items),
        items_done=len(submitted),
        training_total=sum(1 for i in items if i.training),
        training_done=sum(1 for i in items if i.training and i.submitted_at is not None),
        sessions_total=sessions_total,
        current_session=nxt.session_no if nxt else None,
        next_item_id=nxt.item_id if nxt else None,
        next_opens_at=iso_utc(next_opens_at) if next_opens_at and next_opens_at > now else None,
        last_submit_at=max(submitted) if submitted else None,
    )
