"""What a reading client may know of a study: its tasks with their questions and instructions,
how images are displayed, and the reading rules (washout, answer modification), and nothing
of the answer key.

A :class:`ReaderStudyView` has no cases, no image paths or sources, no truth and no model ids.
The SQLite store makes it from the :class:`~DigitalContrastReaderLib.study.study.Study` in
force; a PostgreSQL store keeps its JSON (:meth:`ReaderStudyView.to_dict`) beside each study
version, and the reader role reads only that. The domain rules
(:mod:`~DigitalContrastReaderLib.store.rules`) that a reading client applies take either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import AnswerError
from .questions import Question
from .study import Study


@dataclass(frozen=True)
class ReaderTask:
    """A task as a reader sees it: its id, type, instructions and questions."""

    task_id: str
    type: str
    instructions: str
    questions: tuple[Question, ...]

    def question(self, key: str) -> Question:
        for q in self.questions:
            if q.key == key:
                return q
        raise AnswerError(f"Task '{self.task_id}' has no question '{key}'; use one of "
                          f"{', '.join(q.key for q in self.questions)}.", code="unknown_question")


@dataclass(frozen=True)
class ReaderStudyView:
    """The reader's view of one study version (``sha256`` names the version).

    Attributes:
        display: window/level in HU. layout: the views shown.
        washout_days: days between readings of the same case in different waves.
    """

    study_id: str
    title: str
    version: str
    sha256: str
    display: dict[str, Any]
    layout: dict[str, Any]
    allow_answer_modification: bool
    washout_days: float
    demo: bool
    tasks: tuple[ReaderTask, ...]

    def task(self, task_id: str) -> ReaderTask:
        for t in self.tasks:
            if t.task_id == task_id:
                return t
        raise AnswerError(f"Study '{self.study_id}' has no task '{task_id}'; use one of "
                          f"{', '.join(t.task_id for t in self.tasks)}.", code="unknown_task")

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id, "title": self.title, "version": self.version, "sha256": self.sha256,
            "display": dict(self.display), "layout": dict(self.layout),
            "allow_answer_modification": self.allow_answer_modification, "washout_days": self.washout_days,
            "demo": self.demo,
            "tasks": [{"task_id": t.task_id, "type": t.type, "instructions": t.instructions,
                       "questions": [q.spec() for q in t.questions]} for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReaderStudyView:
        tasks = tuple(ReaderTask(t["task_id"], t["type"], t["instructions"],
                                 tuple(Question.from_config(q) for q in t["questions"])) for t in data["tasks"])
        return cls(data["study_id"], data["title"], data["version"], data["sha256"], dict(data["display"]),
                   dict(data["layout"]), bool(data["allow_answer_modification"]), float(data["washout_days"]),
                   bool(data["demo"]), tasks)


def reader_view(study: Study) -> ReaderStudyView:
    """The reader's view of ``study`` (nothing of cases, sources or truth)."""
    return ReaderStudyView(
        study_id=study.study_id, title=study.title, version=study.version, sha256=study.sha256,
        display=dict(study.display), layout=dict(study.layout),
        allow_answer_modification=study.allow_answer_modification, washout_days=study.design.washout_days,
        demo=study.demo,
        tasks=tuple(ReaderTask(t.task_id, t.type, t.instructions, t.questions) for t in study.tasks),
    )
