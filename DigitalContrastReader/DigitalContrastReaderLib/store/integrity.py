"""The integrity check of an answer store, over the :class:`~DigitalContrastReaderLib.store.base.AnswerStore`
protocol's read methods, so that every store is checked alike.

What must hold (a problem makes the report fail):

* the events form an unbroken hash chain, and the JSONL copy holds exactly the same events;
* every answer belongs to a submitted item of its reader and task, answers a question of that
  task, once, and matches the last of its revisions; every submitted item has its required
  answers, and is submitted in the events too;
* every answer is a valid value of its question (a client that bypassed the rules is caught);
* every reader's items are their stored schedule (whose sha256 matches), submitted in order,
  with the washout between readings of a case;
* every image of the study is where it was recorded, with the sha256 recorded when it was
  loaded (a missing or changed image is a problem: the answers were given on other images).

A store adds its own low-level checks in front (SQLite: ``PRAGMA integrity_check`` and the
foreign keys) and its recovery notes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import AnswerError
from DigitalContrastReaderLib.study.images import ImageVerifier

from .base import AnswerStore, ImageRecord, IntegrityReport, ResponseRecord, RevisionRecord
from .eventlog import JsonlLog, chain_problems
from .rules import washout_problems


def event_log_problems(log: JsonlLog, db_events: list[dict]) -> list[str]:
    """Differences between the JSONL copy of the events and the store's events."""
    problems = []
    name = log.path.name
    try:
        logged, tail = log.read()
        if tail:
            problems.append(f"{name} ends in an unfinished line; reopen the store to repair it")
        if len(logged) != len(db_events):
            problems.append(f"{name} holds {len(logged)} events, the database {len(db_events)}")
        for a, b in zip(logged, db_events):
            if a != b:
                problems.append(f"{name} and the database disagree from event {b['seq']} on")
                break
    except ValueError as error:
        problems.append(str(error))
    return problems


def check_integrity(store: AnswerStore, *, event_log: JsonlLog | None, low_level_problems: Sequence[str] = (),
                    notes: Sequence[str] = (), verifier: ImageVerifier | None = None) -> IntegrityReport:
    """Check everything that must hold (see the module docstring).

    Args:
        store: the store to check (read through the protocol only).
        event_log: the store's JSONL copy of the events (None: the store keeps none).
        low_level_problems: the store's own checks of its storage, reported first.
        notes: the store's notes (e.g. what recovery repaired when it was opened), reported first.
        verifier: checks the images against their sha256 (default: a new one).
    """
    problems = list(low_level_problems)
    notes = list(notes)
    db_events = store.events()
    problems += [f"hash chain: {p}" for p in chain_problems(db_events)]
    if event_log is not None:
        problems += event_log_problems(event_log, db_events)

    items = {i.item_id: i for i in store.items()}
    task_questions = {t.task_id: {q.key: q for q in t.questions} for t in store.study.tasks}
    responses = store.responses()
    answered: dict[str, set[str]] = {}
    for r in responses:
        item = items.get(r.item_id)
        if item is None:
            problems.append(f"response {r.response_id} belongs to no scheduled item ('{r.item_id}')")
            continue
        if item.reader_id != r.reader_id or item.task_id != r.task_id:
            problems.append(f"response {r.response_id} names reader/task {r.reader_id}/{r.task_id} but its item is "
                            f"{item.reader_id}/{item.task_id}")
        question = task_questions.get(item.task_id, {}).get(r.question_key)
        if question is None:
            problems.append(f"response {r.response_id} answers '{r.question_key}', not a question of task '{item.task_id}'")
        else:
            try:
                question.validate(r.value)
            except AnswerError:
                problems.append(f"response {r.response_id} ('{r.question_key}' of item '{r.item_id}') holds "
                                f"{r.value!r}, not a valid answer to that question")
        if item.submitted_at is None:
            problems.append(f"response {r.response_id} belongs to item '{r.item_id}' that was never submitted")
        answered.setdefault(r.item_id, set()).add(r.question_key)
    repeated = Counter((r.reader_id, r.item_id, r.question_key) for r in responses)
    for (_reader, item_id, key), n in sorted(repeated.items()):
        if n > 1:
            problems.append(f"{n} answers to '{key}' of item '{item_id}' (one allowed)")
    for item in items.values():
        if item.submitted_at is None:
            continue
        missing = [k for k, q in task_questions[item.task_id].items()
                   if q.required and k not in answered.get(item.item_id, set())]
        if missing:
            problems.append(f"item '{item.item_id}' was submitted without the required answer '{missing[0]}'")
    problems += revision_problems(responses, store.revisions())

    submitted_by_event = {e["item_id"] for e in db_events if e["kind"] == "submit"}
    submitted = {i.item_id for i in items.values() if i.submitted_at is not None}
    if submitted_by_event != submitted:
        odd = sorted(submitted_by_event ^ submitted)
        problems.append(f"item '{odd[0]}' is submitted in the items table but not in the events, or the reverse")

    readers = store.readers()
    for reader in readers:
        schedule = store.schedule(reader.reader_id)
        if schedule.sha256() != reader.schedule_sha256:
            problems.append(f"the stored schedule of reader '{reader.reader_id}' does not match its sha256")
        stored = [(i.item_id, i.case_id, i.sources, i.session_no, i.order_index, i.task_id)
                  for i in schedule.items]
        table = [(i.item_id, i.case_id, i.sources, i.session_no, i.order_index, i.task_id)
                 for i in items.values() if i.reader_id == reader.reader_id]
        if stored != table:
            problems.append(f"the items of reader '{reader.reader_id}' differ from their stored schedule")
        order = [i for i in items.values() if i.reader_id == reader.reader_id]
        done_flags = [i.submitted_at is not None for i in order]
        if False in done_flags and True in done_flags[done_flags.index(False):]:
            problems.append(f"reader '{reader.reader_id}' has a submitted item after an unfinished one")
        problems += washout_problems(order, store.study.design.washout_days)

    images = store.images()
    problems += image_problems(images, verifier or ImageVerifier())

    counts = {
        "readers": len(readers),
        "items": len(items),
        "submitted": len(submitted),
        "responses": len(responses),
        "events": len(db_events),
        "images": len(images),
    }
    return IntegrityReport(ok=not problems, problems=problems, notes=notes, counts=counts)


def revision_problems(responses: Sequence[ResponseRecord], revisions: Sequence[RevisionRecord]) -> list[str]:
    """Answers whose revision number, revision count or value differ from their revision history."""
    history: dict[int, list[RevisionRecord]] = {}
    for v in revisions:
        history.setdefault(v.response_id, []).append(v)
    problems = []
    for r in sorted(responses, key=lambda r: r.response_id):
        revisions = history.get(r.response_id, [])
        top = max((v.revision for v in revisions), default=None)
        last = next((canonical_json(v.value) for v in revisions if v.revision == top), None)
        if len(revisions) != r.revision or top != r.revision or last != canonical_json(r.value):
            problems.append(f"response {r.response_id} does not match its revision history")
    return problems


def image_problems(images: Sequence[ImageRecord], verifier: ImageVerifier) -> list[str]:
    """Images that are missing, or whose bytes differ from the sha256 recorded when they were loaded."""
    problems = []
    for image in images:
        problem = verifier.problem(image.path, image.sha256)
        if problem is not None:
            problems.append(f"the {image.source} image of case '{image.case_id}' is {problem}: {image.path}"
                            + ("" if image.sha256 is None else f" (recorded sha256 {image.sha256[:12]}...)"))
    return problems
