"""What the study admin does from the Slicer module: find the study's store, follow progress,
check integrity, export, write the HTML report and correct an answer (with a logged reason).

Each function takes an open :class:`~DigitalContrastReaderLib.store.base.AnswerStore` (or a
path) and returns plain data or text, so the admin panel stays a thin view and the same calls
work from a notebook. The command line offers the same operations (``digital-contrast-reader``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from DigitalContrastReaderLib.exports.bundle import ExportResult, export_all
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.study.errors import AnswerError, UsageError

#: Column titles of the admin's progress table (one per field of :class:`ProgressRow`).
PROGRESS_HEADERS = ("reader", "group", "status", "items", "training", "session", "next opens", "last submit")


@dataclass(frozen=True)
class ProgressRow:
    """One row of the admin's progress table."""

    reader_id: str
    group: str
    status: str  # not enrolled | reading | waiting (washout) | finished
    items: str  # "done/total"
    training: str
    session: str
    next_opens_at: str
    last_submit_at: str

    def cells(self) -> tuple[str, ...]:
        """The row's texts, in the order of :data:`PROGRESS_HEADERS`."""
        return (self.reader_id, self.group, self.status, self.items, self.training, self.session,
                self.next_opens_at, self.last_submit_at)


def progress_rows(store: AnswerStore) -> list[ProgressRow]:
    """Progress of every reader of the study (enrolled or not), for a table."""
    rows = []
    for p in store.progress():
        if not p.enrolled:
            rows.append(ProgressRow(p.reader_id, p.group or "", "not enrolled", "", "", "", "", ""))
            continue
        status = "finished" if p.finished else ("waiting (washout)" if p.next_opens_at else "reading")
        rows.append(ProgressRow(
            p.reader_id, p.group or "", status, f"{p.items_done}/{p.items_total}",
            f"{p.training_done}/{p.training_total}", f"{p.current_session or '-'}/{p.sessions_total}",
            (p.next_opens_at or "")[:16].replace("T", " "), (p.last_submit_at or "")[:16].replace("T", " "),
        ))
    return rows


def integrity_text(store: AnswerStore) -> tuple[bool, str]:
    """``(ok, the report as text)`` of the store's integrity check."""
    report = store.integrity_check()
    return report.ok, report.summary()


def export_study(store: AnswerStore, out_dir: str | os.PathLike) -> ExportResult:
    """Every export of the study into ``out_dir`` (see :func:`~DigitalContrastReaderLib.exports.bundle.export_all`)."""
    if not str(out_dir).strip() or Path(out_dir) == Path("."):
        raise UsageError("Choose an export folder first.")
    return export_all(store, out_dir)


def report_available() -> bool:
    """Whether this installation has the HTML report (``DigitalContrastReaderLib.exports.report``)."""
    return importlib.util.find_spec(f"{__package__}.exports.report") is not None


def write_study_report(store: AnswerStore, out_dir: str | os.PathLike, *, question: str | None = None,
                       title: str | None = None) -> Path:
    """The HTML report of the whole study from the store's answers: every task and question type,
    fully crossed or split-plot (``exports.study_report.write_study_report``; ``question`` is the
    grade given the full section, default overall confidence).

    Raises:
        UsageError: the report module is not part of this installation, or no task has complete answers yet.
    """
    if not report_available():
        raise UsageError("The HTML report is not part of this version of the reader library (no "
                         "DigitalContrastReaderLib.exports.report); use Export and the statistics tools instead.")
    if not str(out_dir).strip() or Path(out_dir) == Path("."):
        raise UsageError("Choose an export folder first.")
    report = importlib.import_module(f"{__package__}.exports.study_report")
    return Path(report.write_study_report(store, out_dir, question=question, title=title))


def correct_answer(store: AnswerStore, item_id: str, question_key: str, value_text: str, *, reason: str,
                   corrected_by: str) -> str:
    """An admin correction of one submitted answer, typed as text (as on the command line:
    a Likert level or its label, an option, yes/no, a number...). Returns a confirmation line.

    The reason and the admin's name are stored with the new revision and in the audit trail.
    """
    item_id, question_key = item_id.strip(), question_key.strip()
    if not item_id or not question_key:
        raise AnswerError("Give the item id and the question key of the answer to correct.", code="usage")
    record = store.item(item_id)
    question = store.study.task(record.task_id).question(question_key)
    value = question.parse(value_text)
    revision = store.correct_answer(item_id, question_key, value, reason=reason, corrected_by=corrected_by)
    return f"{item_id} {question_key} = {question.label(value) or value!r} (revision {revision}, by {corrected_by.strip()})"
