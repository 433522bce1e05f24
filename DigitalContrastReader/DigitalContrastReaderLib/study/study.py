"""The study model: a versioned, hashed configuration of cases, images, readers, tasks (with
their questions) and design.

The data model follows grand-challenge.org reader studies (study, case, question, answer), with
the validation rules living next to the data: a :class:`~DigitalContrastReaderLib.study.questions.Question`
knows how to parse, validate, code and label its answers; a :class:`Study` knows which cases a
reader reads. :mod:`~DigitalContrastReaderLib.study.config` loads a study file into this model.

Sources (also called modalities in the analysis): each case has a ``real`` contrast image, one or
more ``synthetic`` images (the sources are then named ``synthetic`` or ``synthetic:<model id>``)
and optionally a ``noncontrast`` image; image paths are absolute once loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import canonical_json
from .errors import AnswerError
from .questions import Question

TASK_TYPES = ("grading", "turing", "preference", "detection")
SOURCE_KINDS = ("noncontrast", "real", "synthetic")
#: Task types that show one image at a time (the others show a pair side by side).
SINGLE_IMAGE_TASKS = ("grading", "turing", "detection")
DEFAULT_WASHOUT_DAYS = 28.0


@dataclass(frozen=True)
class Case:
    """One case: its images by source name (absolute paths), truth columns, training flag, block."""

    case_id: str
    images: dict[str, Path]
    truth: dict[str, Any] = field(default_factory=dict)
    training: bool = False
    block: str | None = None


@dataclass(frozen=True)
class Task:
    """One reading task. ``sources`` (single-image tasks) are read one image per item;
    ``compare`` (preference) is the ``(test, reference)`` pair shown side by side."""

    task_id: str
    type: str
    questions: tuple[Question, ...]
    instructions: str
    sources: tuple[str, ...] = ()
    compare: tuple[str, str] | None = None
    truth_column: str | None = None
    finding: str = ""

    @property
    def layout(self) -> str:
        return "pair" if self.type == "preference" else "single"

    def question(self, key: str) -> Question:
        return _lookup(self.questions, "key", key, f"Task '{self.task_id}' has no question", "unknown_question")


@dataclass(frozen=True)
class Reader:
    reader_id: str
    group: str | None = None
    name: str = ""


@dataclass(frozen=True)
class Design:
    """``fully-crossed``: every reader reads every case. ``split-plot``: reader group g reads
    the cases of the blocks ``group_blocks[g]``. Training cases are read by everyone."""

    type: str = "fully-crossed"
    washout_days: float = DEFAULT_WASHOUT_DAYS
    max_items_per_session: int | None = None
    group_blocks: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A loaded, validated study. ``sha256`` is the hash of the study file as written."""

    study_id: str
    title: str
    version: str
    ifu: str
    cases: tuple[Case, ...]
    readers: tuple[Reader, ...]
    tasks: tuple[Task, ...]
    design: Design
    display: dict[str, float]
    layout: dict[str, Any]
    allow_answer_modification: bool
    demo: bool
    config: dict[str, Any]
    sha256: str
    path: Path | None
    base_dir: Path
    warnings: tuple[str, ...] = ()

    def case(self, case_id: str) -> Case:
        return _lookup(self.cases, "case_id", case_id, f"Study '{self.study_id}' has no case", "unknown_case")

    def task(self, task_id: str) -> Task:
        return _lookup(self.tasks, "task_id", task_id, f"Study '{self.study_id}' has no task", "unknown_task")

    def reader(self, reader_id: str) -> Reader:
        for r in self.readers:
            if r.reader_id == reader_id:
                return r
        raise AnswerError(
            f"Reader '{reader_id}' is not listed in study '{self.study_id}'; add them to the readers of the "
            "study file and run 'init' again, or check the spelling.",
            code="unknown_reader",
        )

    def cases_for_reader(self, reader_id: str) -> list[Case]:
        """The cases a reader reads, in study-file order: all training cases, and the main cases
        of every case block of the reader's group (split-plot) or all main cases."""
        reader = self.reader(reader_id)
        if self.design.type != "split-plot":
            return list(self.cases)
        blocks = set(self.design.group_blocks.get(reader.group or "", ()))
        return [c for c in self.cases if c.training or c.block in blocks]

    @property
    def truth_columns(self) -> list[str]:
        """Names of the case truth columns, in order of first appearance."""
        return list(dict.fromkeys(name for c in self.cases for name in c.truth))

    @property
    def sources(self) -> list[str]:
        """Source names of the images, in order of first appearance."""
        return list(dict.fromkeys(name for c in self.cases for name in c.images))

    def config_json(self) -> str:
        return canonical_json(self.config)


def _lookup(items: Iterable[Any], attribute: str, wanted: str, missing: str, code: str) -> Any:
    """The item whose ``attribute`` is ``wanted``, else AnswerError "<missing> '<wanted>'; use one of ..."."""
    items = list(items)
    for item in items:
        if getattr(item, attribute) == wanted:
            return item
    known = ", ".join(str(getattr(i, attribute)) for i in items[:20]) + (", ..." if len(items) > 20 else "")
    raise AnswerError(f"{missing} '{wanted}'; use one of {known}.", code=code)


def source_kind(source: str) -> str:
    """``noncontrast``, ``real`` or ``synthetic`` for a source name (``synthetic:<model>`` included)."""
    return "synthetic" if source.startswith("synthetic") else source


def source_model(source: str) -> str | None:
    """The model id of a ``synthetic:<model>`` source, else None."""
    return source.split(":", 1)[1] if source.startswith("synthetic:") else None
