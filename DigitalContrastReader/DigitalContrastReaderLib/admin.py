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
from typing import Any

from DigitalContrastReaderLib.analysis.long_table import complete_crossed_subset
from DigitalContrastReaderLib.exports.bundle import ExportResult, export_all
from DigitalContrastReaderLib.exports.tidy import analysis_table
from DigitalContrastReaderLib.store.base import AnswerStore, ReaderStore
from DigitalContrastReaderLib.store.location import is_url, open_reading_store, open_store
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, UsageError

STUDY_FILE_SUFFIXES = (".yaml", ".yml", ".json")
STORE_SUFFIX = ".sqlite"


def store_url(text: str) -> str | None:
    """The ``postgresql://`` URL that ``text`` names, or None. A URL kept in a path field comes
    back with one slash (``postgresql:/user@host/db``: a path collapses ``//``); it is restored."""
    import re

    text = re.sub(r"^(postgres(?:ql)?):/(?!/)", r"\1://", str(text).strip())
    return text if is_url(text) else None


def locate_store(path: str | os.PathLike) -> Path | str:
    """The answer store a study path stands for.

    Args:
        path: the store itself (``.sqlite``, or a ``postgresql://`` URL, returned as is); a study
            file (``study.yaml``: the store is ``study.sqlite`` beside it, as
            ``digital-contrast-reader init`` names it by default in the README); or a folder
            holding exactly one store.

    Raises:
        StoreError: no store (or several) found; the sentence says what to do.
    """
    url = store_url(str(path))
    if url is not None:
        return url
    path = Path(path).expanduser()
    if path.is_dir():
        stores = sorted(p for p in path.glob(f"*{STORE_SUFFIX}") if p.is_file())
        if len(stores) == 1:
            return stores[0]
        if not stores:
            raise StoreError(f"{path}: no answer store (*.sqlite) in this folder; choose the study's .sqlite file, or "
                             "create it with 'digital-contrast-reader init STUDY.yaml --db STUDY.sqlite'.")
        raise StoreError(f"{path}: {len(stores)} answer stores in this folder ({', '.join(p.name for p in stores)}); "
                         "choose one of them.")
    if path.suffix.lower() in STUDY_FILE_SUFFIXES:
        store = path.with_suffix(STORE_SUFFIX)
        if store.is_file():
            return store
        raise StoreError(f"{path}: this study has no answer store yet ({store.name}); create it with "
                         f"'digital-contrast-reader init {path.name} --db {store.name}', then choose it here.")
    if path.is_file():
        return path
    raise StoreError(f"{path}: no study there; choose the study's .sqlite file, study file or folder.")


def open_study_store(path: str | os.PathLike, **options: Any) -> AnswerStore:
    """Open the admin store that ``path`` stands for (see :func:`locate_store`)."""
    return open_store(locate_store(path), **options)


def open_reading_study_store(path: str | os.PathLike) -> ReaderStore:
    """Open the store that ``path`` stands for as a reading station does (see :func:`locate_store`):
    a PostgreSQL URL through the reading functions only (the study's reader role is enough; the
    blinded images are in ``$DIGITAL_CONTRAST_READER_IMAGES``), a SQLite store as it is."""
    return open_reading_store(locate_store(path))


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


def _report_question(store: AnswerStore, question: str | None) -> tuple[str, str]:
    """``(task_id, question_key)`` of the grade the report compares (default: the overall
    confidence of the first grading task, else its last Likert question)."""
    grading = [t for t in store.study.tasks if t.type == "grading"]
    for task in grading:
        keys = [q.key for q in task.questions if q.type == "likert"]
        if question is not None and question in keys:
            return task.task_id, question
        if question is None and keys:
            return task.task_id, "overall_confidence" if "overall_confidence" in keys else keys[-1]
    raise UsageError("The HTML report compares a graded question, but this study has no grading task with "
                     f"{'the question ' + repr(question) if question else 'a Likert question'}; export the tables instead.")


def write_study_report(store: AnswerStore, out_dir: str | os.PathLike, *, question: str | None = None,
                       title: str | None = None) -> Path:
    """The HTML report of the study (``report.write_report``) from the store's answers.

    The grading table is the chosen Likert question (training excluded) of the first synthetic
    source against ``real``; the Turing table (when the study has a Turing task with answers) is
    its derived 1-10 rating (higher = more sure the image is synthetic).

    Raises:
        UsageError: the report module is not part of this installation, or the study has no
            graded question with answers.
    """
    if not report_available():
        raise UsageError("The HTML report is not part of this version of the reader library (no "
                         "DigitalContrastReaderLib.exports.report); use Export and the statistics tools instead.")
    if not str(out_dir).strip() or Path(out_dir) == Path("."):
        raise UsageError("Choose an export folder first.")
    report = importlib.import_module(f"{__package__}.exports.report")
    task_id, key = _report_question(store, question)
    grading = analysis_table(store, key, task_id)
    synthetic = sorted(m for m in set(grading["modality"]) if str(m).startswith("synthetic"))
    if not synthetic or "real" not in set(grading["modality"]):
        raise UsageError(f"Question '{key}' has no answers for both a synthetic and the real image yet; "
                         "the report compares them, so wait for more answers.")
    test = synthetic[0]
    # a study still being read is analysed on its complete, fully crossed part (said in the title)
    grading, note = complete_crossed_subset(grading[grading["modality"].isin([test, "real"])])
    if grading.empty:
        raise UsageError(f"No case has answers to '{key}' from every reader for both images yet; "
                         "the report compares them, so wait for more answers.")
    turing = None
    turing_tasks = [t.task_id for t in store.study.tasks if t.type == "turing"]
    if turing_tasks:
        try:
            turing, _ = complete_crossed_subset(analysis_table(store, "rating", turing_tasks[0]))
        except UsageError:
            turing = None  # no Turing answers yet
        if turing is not None and turing.empty:
            turing = None
        # the derived rating is L + confidence for "synthetic", L + 1 - confidence for "real"
        levels = turing["score"].max() // 2 if turing is not None else 5
    title = title or f"{store.study.title}: {key}"
    return Path(report.write_report(grading, out_dir, title=f"{title} ({note})" if note else title, test=test,
                                    reference="real", turing=turing, synthetic_label=test,
                                    turing_threshold=float(levels) + 0.5 if turing_tasks else 0.5))


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
