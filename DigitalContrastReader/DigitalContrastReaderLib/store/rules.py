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
from DigitalContrastReaderLib.study.reader_view import ReaderStudyView, ReaderTask
from DigitalContrastReaderLib.study.study import Study, Task

from .base import ItemRecord, NeutralItem, ReaderCounts, ReaderProgress, ReaderRecord, iso_utc, parse_iso

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


def presentation_changes(old: Study, new: Study) -> list[str]:
    """How ``new`` changes the way items are shown or scheduled, one ``"field: old -> new"`` per
    change: display (window/level), layout, answer modification, the design (type, washout,
    session size, group blocks) and each kept task's instructions and sources."""
    changes = []

    def compare(name: str, a: Any, b: Any) -> None:
        if a != b:
            changes.append(f"{name}: {a!r} -> {b!r}")

    for key in sorted(set(old.display) | set(new.display)):
        compare(f"display.{key}", old.display.get(key), new.display.get(key))
    for key in sorted(set(old.layout) | set(new.layout)):
        compare(f"layout.{key}", old.layout.get(key), new.layout.get(key))
    compare("allow_answer_modification", old.allow_answer_modification, new.allow_answer_modification)
    for name in ("type", "washout_days", "max_items_per_session", "group_blocks"):
        compare(f"design.{name}", getattr(old.design, name), getattr(new.design, name))
    new_tasks = {t.task_id: t for t in new.tasks}
    for task in old.tasks:
        if task.task_id in new_tasks:
            for name in ("instructions", "sources", "compare"):
                compare(f"tasks.{task.task_id}.{name}", getattr(task, name), getattr(new_tasks[task.task_id], name))
    return changes


def check_study_update(old: Study, new: Study, *, store_name: str, answered: bool, simulated: bool,
                       scheduled_cases: set[str], enrolled: set[str], scheduled_tasks: set[str],
                       old_images: Mapping[tuple[str, str], str | None], new_images: Mapping[tuple[str, str], str],
                       accept_change: str | None = None) -> list[str]:
    """Refuse (StudyError) a new study version that would change what existing answers mean;
    return how it changes the way items are shown or scheduled (:func:`presentation_changes`).

    Args:
        old, new: the study in force and the version to load.
        store_name: the store's name for the messages.
        answered: the store holds at least one answer (questions are frozen then).
        simulated: some of those answers were given while the study was a demo.
        scheduled_cases / scheduled_tasks: cases and tasks in stored schedules.
        enrolled: the enrolled readers.
        old_images / new_images: ``(case_id, source) -> sha256`` recorded and now.
        accept_change: the admin's reason for changing how items are shown or scheduled in a
            study that has answers (required then; the change is logged with it).

    Questions are frozen once any answer exists; the images of a case in stored schedules (their
    bytes), the cases and tasks of stored schedules and enrolled readers cannot be removed or
    changed; ``demo`` cannot be switched on in a store with real answers, nor off in one with
    simulated answers. Added cases, readers and tasks only affect readers enrolled afterwards;
    truth values may be corrected.
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
    if new.demo and not old.demo and answered and not simulated:
        raise StudyError(f"{name}: 'demo: true' cannot be switched on in {store_name}, which holds real answers; "
                         "try the demo in a new store.", code="demo_switch")
    if old.demo and not new.demo and simulated:
        raise StudyError(f"{name}: 'demo' cannot be switched off in {store_name}, which holds simulated answers; "
                         "create a new store for the real study.", code="demo_switch")
    new_cases = {c.case_id: c for c in new.cases}
    for case in old.cases:
        if case.case_id not in new_cases:
            if case.case_id in scheduled_cases:
                raise StudyError(f"{name}: case '{case.case_id}' is missing but is in stored schedules; put it back.")
            continue
        if case.case_id not in scheduled_cases:
            continue
        if set(new_cases[case.case_id].images) != set(case.images):
            raise StudyError(f"{name}: the images of case '{case.case_id}' changed but it is in stored schedules; "
                             "restore them (or start a new study database).")
        for source in case.images:
            before = old_images.get((case.case_id, source))
            if before is not None and new_images.get((case.case_id, source)) != before:
                raise StudyError(f"{name}: the {source} image of case '{case.case_id}' is not the one recorded "
                                 f"(sha256 {before[:12]}...) but the case is in stored schedules; restore that file "
                                 "(or start a new study database).", code="image_changed")
    missing_readers = sorted(enrolled - {r.reader_id for r in new.readers})
    if missing_readers:
        raise StudyError(f"{name}: reader '{missing_readers[0]}' is enrolled but no longer listed; put them back.")
    missing_tasks = sorted(scheduled_tasks - {t.task_id for t in new.tasks})
    if missing_tasks:
        raise StudyError(f"{name}: task '{missing_tasks[0]}' is in stored schedules but no longer listed; put it back.")
    changes = presentation_changes(old, new)
    if changes and answered and not (accept_change and accept_change.strip()):
        raise StudyError(
            f"{name}: {changes[0]} changes how items are shown or scheduled in a study that already has answers; "
            "if that is intended, run init again with --accept-change \"REASON\" (the study version is bumped and "
            "the change logged).", code="needs_accept_change")
    return changes


def version_label(file_version: str, earlier_labels: Sequence[str]) -> str:
    """The version name a store gives a newly loaded study version: the file's own version
    string, or, when an earlier version already used it, ``<version>+<k>`` (k = 1, 2, ...), so
    that answers given under different contents never share a version name."""
    if file_version not in earlier_labels:
        return file_version
    k = 1
    while f"{file_version}+{k}" in earlier_labels:
        k += 1
    return f"{file_version}+{k}"


def not_enrolled_reader_error(reader_id: str) -> AnswerError:
    """The error of a reading client for a reader the store has no schedule of."""
    return AnswerError(f"Reader '{reader_id}' is not enrolled in this study; check the reader id, or ask the study "
                       "admin to enrol you.", code="not_enrolled")


# --------------------------------------------------------------------------------------------
# Reading order and washout
# --------------------------------------------------------------------------------------------


def unknown_item_error(item_id: str, store_name: str) -> AnswerError:
    return AnswerError(f"There is no item '{item_id}' in {store_name}; check the item id.", code="unknown_item")


def check_owner(item: NeutralItem | ItemRecord, reader_id: str) -> None:
    """An item is read (and shown) only by the reader whose schedule holds it."""
    if item.reader_id != reader_id:
        raise AnswerError(f"Item '{item.item_id}' belongs to another reader, not '{reader_id}'; check the reader id.",
                          code="wrong_reader")


def next_item(items: Sequence[ItemRecord]) -> ItemRecord | None:
    """The first unfinished item of one reader's items (in stored order), None when all are done."""
    unfinished = [i for i in items if i.submitted_at is None]
    return min(unfinished, key=lambda i: i.order_index) if unfinished else None


def check_is_next(item: NeutralItem | ItemRecord, next_item_id: str | None) -> None:
    """Items are read in their stored order: only the reader's next unfinished item
    (``next_item_id``) may be shown or submitted for the first time."""
    if next_item_id != item.item_id:
        raise AnswerError(
            f"Item '{item.item_id}' is not the next item of reader '{item.reader_id}' "
            f"(the next is '{next_item_id or 'none'}'); items are read in their stored order.",
            code="not_next",
        )


def check_is_open(item: NeutralItem | ItemRecord, opens_at: datetime, now: datetime, washout_days: float) -> None:
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


def validated_answers(task: Task | ReaderTask, answers: Mapping[str, Any]) -> dict[str, Any]:
    """Every question of ``task`` -> its validated answer (None: optional and not answered).

    Unknown keys are refused; each value is validated by its question (required ones included).
    """
    keys = {q.key for q in task.questions}
    unknown = sorted(set(answers) - keys)
    if unknown:
        raise AnswerError(f"Task '{task.task_id}' has no question '{unknown[0]}'; answer only "
                          f"{', '.join(q.key for q in task.questions)}.", code="unknown_question")
    return {q.key: q.validate(answers.get(q.key)) for q in task.questions}


def check_may_submit_again(item: NeutralItem | ItemRecord, study: Study | ReaderStudyView) -> bool:
    """Whether this submit changes an earlier one (True) or is the first (False); a second
    submit is refused unless the study allows answer modification."""
    modified = item.submitted_at is not None
    if modified and not study.allow_answer_modification:
        raise AnswerError(
            f"Item '{item.item_id}' was already submitted and study '{study.study_id}' does not allow changing "
            "answers; ask the study admin for a correction.", code="already_submitted",
        )
    return modified


def active_seconds_of_submit(active_seconds: float | None, item: NeutralItem | ItemRecord, now: datetime) -> float | None:
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


def reader_item(study: Study | ReaderStudyView, item: NeutralItem | ItemRecord, *,
                images: Sequence[tuple[str, Path]], answers: Mapping[str, Any], sessions_total: int,
                items_in_session: int, items_total: int, opens_at: datetime, now: datetime) -> ReaderItem:
    """The blinded view of ``item`` for a reader UI: neutral image handles, references and
    verified paths (``images``: ``(ref, path)`` in the item's source order), the questions and
    the answers given so far.

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
        images=tuple({"handle": h, "ref": ref, "path": str(path)}
                     for h, (ref, path) in zip(image_handles(item.layout), images)),
        display={**study.display, **study.layout},
        questions=tuple(q.spec() for q in task.questions),
        answers=dict(answers),
        done=done,
        editable=not done or study.allow_answer_modification,
        opens_at=None if done or opens_at <= now else iso_utc(opens_at),
    )


def reader_progress(reader_id: str, group: str | None, counts: ReaderCounts, *, next_item: NeutralItem | ItemRecord | None,
                    next_opens_at: datetime | None, now: datetime) -> ReaderProgress:
    """The progress of an enrolled reader (one not enrolled is ``ReaderProgress(id, group, enrolled=False)``).

    Args:
        counts: the reader's items (total, submitted), training items and sessions.
        next_item: the reader's next unfinished item (None when finished).
        next_opens_at: when that item's session opens.
        now: the store's current time (a later opening is a washout still running).
    """
    return ReaderProgress(
        reader_id, group, True,
        items_total=counts.items_total,
        items_done=counts.items_done,
        training_total=counts.training_total,
        training_done=counts.training_done,
        sessions_total=counts.sessions_total,
        current_session=next_item.session_no if next_item else None,
        next_item_id=next_item.item_id if next_item else None,
        next_opens_at=iso_utc(next_opens_at) if next_item and next_opens_at and next_opens_at > now else None,
        last_submit_at=counts.last_submit_at,
    )
