"""The HTML report of a whole study, straight from its answer store: every task, every question type.

:func:`study_report_tables` builds the long tables (``tidy.analysis_table``, training excluded):

- **grading**: the chosen Likert question (default ``overall_confidence``) of the first synthetic
  source against ``real`` gets the full section (distributions, mean difference, VGC, paired grade
  table, agreement); every other Likert question of the grading tasks gets a row of the
  "all graded questions" table (mean difference and AUC_VGC with their CIs);
- **detection**: the derived 1..2L rating against the task's truth column: MRMC ROC AUC of every
  source of the task (``mrmc.py``, fully crossed or split-plot);
- **preference**: the share of reads preferring the test image (ties count half) with its reader-
  and case-aware CI;
- **Turing**: the derived rating (``turing.py``), as before.

The design is the study's: a fully crossed or a split-plot study is analysed whole once every reader
has read every item. While readers are still reading, each table keeps, within each reader group,
the readers and cases that are complete (``reading_design.complete_design_subset``) and the report
says what was left out ("interim ..."); a finished study is never labelled interim.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from DigitalContrastReaderLib.analysis.long_table import complete_design_subset
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.study.errors import UsageError

from .report import write_report
from .tidy import analysis_table, tidy_table


@dataclass
class StudyTables:
    """The long tables of one study's report (see the module docstring); ``notes`` say what an interim
    analysis left out."""

    test: str
    grading: pd.DataFrame | None = None
    grading_question: str | None = None
    other_grades: dict[str, pd.DataFrame] = field(default_factory=dict)
    detection: dict[str, pd.DataFrame] = field(default_factory=dict)
    preference: dict[str, pd.DataFrame] = field(default_factory=dict)
    turing: pd.DataFrame | None = None
    turing_threshold: float = 0.5
    notes: list[str] = field(default_factory=list)


def _likert_keys(task) -> list[str]:
    return [q.key for q in task.questions if q.type == "likert"]


def _chosen_question(store: AnswerStore, question: str | None) -> tuple[str, str] | None:
    """``(task_id, key)`` of the grade given the full section (``question``, else overall confidence)."""
    grading = [t for t in store.study.tasks if t.type == "grading"]
    for task in grading:
        keys = _likert_keys(task)
        if question is not None and question in keys:
            return task.task_id, question
        if question is None and keys:
            return task.task_id, "overall_confidence" if "overall_confidence" in keys else keys[-1]
    if question is not None:
        raise UsageError(f"The study has no graded (Likert) question '{question}'; use one of "
                         f"{', '.join(k for t in grading for k in _likert_keys(t)) or 'none (no grading task)'}.")
    return None


def study_report_tables(store: AnswerStore, question: str | None = None) -> StudyTables:
    """Every analysable table of the study (see the module docstring).

    Raises:
        UsageError: an unknown ``question``, or no task has answers yet.
    """
    study = store.study
    groups = {r.reader_id: r.group for r in study.readers} if study.design.type == "split-plot" else None
    tidy = tidy_table(store)
    answered = set(tidy.loc[~tidy["training"].astype(bool), "task_id"].dropna())
    synthetic = sorted(s for s in study.sources if s.startswith("synthetic"))
    tables = StudyTables(test=synthetic[0] if synthetic else "synthetic")
    chosen = _chosen_question(store, question)

    planned = (len(study.readers), sum(not c.training for c in study.cases))

    def complete(frame: pd.DataFrame, what: str) -> pd.DataFrame | None:
        subset, note = complete_design_subset(frame, groups, planned=planned)
        if note:
            tables.notes.append(f"{what}: {note}")
        return None if subset.empty else subset

    for task in study.tasks:
        if task.task_id not in answered:
            tables.notes.append(f"{task.task_id} ({task.type}): no answers yet")
            continue
        label = f"{task.task_id} ({task.type})"
        if task.type == "grading":
            pair = [tables.test, "real"]
            for key in _likert_keys(task):
                frame = analysis_table(tidy, key, task.task_id)
                frame = complete(frame[frame["modality"].isin(pair)], f"{task.task_id}/{key}")
                if frame is None or frame["modality"].nunique() < 2:
                    continue
                if chosen == (task.task_id, key):
                    tables.grading, tables.grading_question = frame, key
                else:
                    tables.other_grades[f"{task.task_id}/{key}" if len(answered) > 1 else key] = frame
        elif task.type == "detection":
            frame = complete(analysis_table(tidy, "rating", task.task_id), label)
            if frame is not None:
                tables.detection[task.task_id] = frame
        elif task.type == "preference":
            frame = complete(analysis_table(tidy, "preferred", task.task_id), label)
            if frame is not None:
                tables.preference[task.task_id] = frame
        elif task.type == "turing" and tables.turing is None:
            frame = complete(analysis_table(tidy, "rating", task.task_id), label)
            if frame is not None:
                tables.turing = frame
                # the derived rating is L + confidence for "synthetic", L + 1 - confidence for "real"
                tables.turing_threshold = float(frame["score"].max() // 2) + 0.5
    if not (tables.grading is not None or tables.other_grades or tables.detection or tables.preference
            or tables.turing is not None):
        raise UsageError("No task has answers from every reader of a reader group for a whole case yet; "
                         "the report analyses complete reads, so wait for more answers.")
    return tables


def write_study_report(store: AnswerStore, out_dir: str | os.PathLike, *, question: str | None = None,
                       title: str | None = None) -> Path:
    """The HTML report of the whole study (``report.write_report``) from the store's answers."""
    tables = study_report_tables(store, question)
    heading = title or store.study.title
    return Path(write_report(
        tables.grading, out_dir, title=heading, test=tables.test, reference="real", turing=tables.turing,
        synthetic_label=tables.test, turing_threshold=tables.turing_threshold, detection=tables.detection,
        preference=tables.preference, other_grades=tables.other_grades, grading_question=tables.grading_question,
        notes=tables.notes, design=_design_line(store),
    ))


def _design_line(store: AnswerStore) -> str:
    design = store.study.design
    if design.type != "split-plot":
        return f"Design: fully crossed, {len(store.study.readers)} readers; washout {design.washout_days:g} days."
    groups = {}
    for reader in store.study.readers:
        groups.setdefault(reader.group, []).append(reader.reader_id)
    parts = "; ".join(f"group {g}: {', '.join(r)}" for g, r in groups.items())
    return (f"Design: split-plot, each reader group reads its own cases in every source ({parts}); "
            f"washout {design.washout_days:g} days. MRMC inference by the split-plot Obuchowski-Rockette method.")
