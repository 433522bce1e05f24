"""Simulated readers, for demos, load tests and the crash test: never for a real study.

A simulated reader answers a demo study (``demo: true``) through the same store API as a
person would (resume, open, interact, submit), with plausible answers: real images graded a
little better than synthetic ones, detection right about 80% of the time, the Turing test near
chance. Its clock is simulated too: it starts after the last event in the store, advances a few
seconds per item, and jumps over washouts, so a whole multi-month schedule fills in seconds.

Every answer given while a study is a demo is marked ``simulated`` in the store and in every
export; ``demo`` cannot be switched on in a store with real answers, nor off in one with
simulated answers (:func:`~DigitalContrastReaderLib.store.rules.check_study_update`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from DigitalContrastReaderLib.store.base import AnswerStore, SubmitReceipt
from DigitalContrastReaderLib.study.blinding import ReaderItem
from DigitalContrastReaderLib.study.errors import AnswerError
from DigitalContrastReaderLib.study.questions import Question
from DigitalContrastReaderLib.study.study import Study, Task, source_kind

from .form import QuestionForm


class SimulatedClock:
    """A clock for the store that only moves when told to (timezone-aware UTC)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def jump_to(self, moment: datetime) -> None:
        self.now = max(self.now, moment)


def _random_answer(question: Question, rng: random.Random) -> Any:
    if question.type == "likert":
        return rng.choice(question.levels).value
    if question.type == "single_choice":
        return rng.choice(question.options).value
    if question.type == "multiple_choice":
        low = question.min_selected or 0
        high = min(question.max_selected or len(question.options), len(question.options))
        return [o.value for o in rng.sample(question.options, rng.randint(max(low, 1), high))]
    if question.type == "yes_no":
        return rng.random() < 0.5
    if question.type == "number":
        low = question.minimum if question.minimum is not None else 0.0
        high = question.maximum if question.maximum is not None else low + 100.0
        if question.step:
            return low + question.step * rng.randint(0, int((high - low) / question.step))
        return rng.uniform(low, high)
    return "simulated answer" if question.required else None


def _likert_around(question: Question, mean: float, rng: random.Random) -> int:
    values = sorted(o.value for o in question.levels)
    target = min(max(round(rng.gauss(mean, 0.8)), values[0]), values[-1])
    return min(values, key=lambda v: abs(v - target))


def simulated_answers(task: Task, sources: tuple[str, ...], truth: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Plausible answers to one item of ``task`` showing ``sources`` (admin-side knowledge)."""
    kinds = [source_kind(s) for s in sources]
    answers: dict[str, Any] = {}
    for q in task.questions:
        value = _random_answer(q, rng)
        if task.type == "grading" and q.type == "likert":
            value = _likert_around(q, 4.1 if kinds[0] == "real" else 3.7, rng)
        elif task.type == "grading" and q.key == "non_diagnostic":
            value = rng.random() < (0.03 if kinds[0] == "real" else 0.07)
        elif task.type == "turing" and q.key == "synthetic_or_real":
            correct = rng.random() < 0.58
            value = kinds[0] if correct else ("real" if kinds[0] == "synthetic" else "synthetic")
        elif task.type == "detection" and q.key == "finding_present":
            present = bool(truth.get(task.truth_column or "", 0))
            value = present if rng.random() < (0.82 if kinds[0] == "real" else 0.78) else not present
        elif task.type == "preference" and q.key == "preferred":
            real_side = "A" if kinds[0] == "real" else "B"
            other = "B" if real_side == "A" else "A"
            value = rng.choices([real_side, other, "equal"], weights=[0.45, 0.3, 0.25])[0]
        elif q.type == "likert" and q.key == "confidence":
            value = _likert_around(q, 3.5, rng)
        if value is not None:
            answers[q.key] = value
    return answers


def random_form_answers(questions: Sequence[Mapping[str, Any]], rng: random.Random) -> dict[str, Any]:
    """What a simulated reader clicks in an item's question form (``ReaderItem.questions``, all a
    reader UI knows): a random choice for every question with choices, nothing typed.

    Raises:
        AnswerError: a required question without choices (a number or text) stays unanswered.
    """
    form = QuestionForm(questions)
    for spec in form.fields:
        if spec.choices:
            form.set_value(spec.key, rng.choice(spec.choices).value)
    return form.answers()


def check_demo(study: Study) -> None:
    """Simulated readers only fill demo studies (``demo: true``), never a real one."""
    if not study.demo:
        raise AnswerError(
            f"Study '{study.study_id}' is not a demo study; simulated readers only fill studies marked "
            "'demo: true', never a real one.", code="not_demo",
        )


def simulate_reader(
    store: AnswerStore,
    reader_id: str,
    rng: random.Random,
    *,
    clock: SimulatedClock,
    token: str | None = None,
    count: int | None = None,
    on_submit: Callable[[SubmitReceipt], None] | None = None,
) -> int:
    """Answer up to ``count`` items (all remaining when None) of ``reader_id``; returns how many.

    ``store`` must have been opened with ``clock``. ``token``: the reader's token; None issues a
    new one (the reader's earlier token stops working: demo studies only). ``on_submit`` is
    called after each submit has returned, i.e. once the answer is on disk.
    """
    check_demo(store.study)
    if token is None:
        token = store.issue_token(reader_id)
    done = 0
    while count is None or done < count:
        item: ReaderItem | None = store.resume(reader_id, token=token)
        if item is None:
            break
        if item.opens_at:
            clock.jump_to(datetime.fromisoformat(item.opens_at) + timedelta(minutes=rng.randint(1, 600)))
        store.open_item(reader_id, item.item_id, token=token)
        clock.advance(rng.uniform(1, 6))
        store.mark_interaction(reader_id, item.item_id, token=token)
        clock.advance(rng.uniform(5, 40))
        record = store.item(item.item_id)
        task = store.study.task(record.task_id)
        answers = simulated_answers(task, record.sources, store.study.case(record.case_id).truth, rng)
        receipt = store.submit(reader_id, item.item_id, answers, token=token)
        done += 1
        if on_submit is not None:
            on_submit(receipt)
        clock.advance(rng.uniform(1, 4))
    return done
