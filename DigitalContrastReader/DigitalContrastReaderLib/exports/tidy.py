"""The tidy table of a study's answers, and the long analysis table made from it.

* **Tidy CSV** (``responses_tidy.csv``, the master): one row per reader × case × source ×
  question, with design and timing columns, the answer as JSON, its numeric code and its label
  (columns: :data:`~DigitalContrastReaderLib.exports.columns.TIDY_COLUMNS`).
  :func:`read_tidy_csv` reads it back to the same table.
* **Analysis table** (:func:`analysis_table`): ``reader_id, case_id, modality, truth, score``
  for one question of one task (training excluded) -- the input of the MRMC engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import UsageError
from DigitalContrastReaderLib.study.study import Study, source_kind, source_model
from DigitalContrastReaderLib.study.templates import RATING_QUESTIONS

from .columns import (
    TIDY_COLUMNS,
    TRUTH_PREFIX,
    as_dtype,
    csv_text,
    frame_of_rows,
    read_csv_columns,
    require_pandas,
    truth_dtype,
)

if TYPE_CHECKING:  # pandas is in the `reader` extra; imported when a table is made
    import pandas as pd


# --------------------------------------------------------------------------------------------
# The tidy table
# --------------------------------------------------------------------------------------------


def _task_truth(study: Study, task_id: str, case_id: str, source: str) -> int | None:
    task = study.task(task_id)
    if task.type == "turing":
        return int(source_kind(source) == "synthetic")
    if task.type == "detection" and task.truth_column:
        value = study.case(case_id).truth.get(task.truth_column)
        return None if value is None else int(value)
    return None


def tidy_rows(store: AnswerStore) -> list[dict[str, Any]]:
    """One dict per reader × case × source × question answered (see ``TIDY_COLUMNS``), in
    reader and schedule order; plus ``truth_<name>`` for every case truth column."""
    study = store.study
    versions = {v["study_sha256"]: v["version"] for v in store.study_versions()}
    groups = {r.reader_id: r.group for r in store.readers()}
    items = {i.item_id: i for i in store.items()}
    rows = []
    for response in store.responses():
        item = items[response.item_id]
        task = study.task(item.task_id)
        question = task.question(response.question_key)
        case = study.case(item.case_id)
        if item.layout == "single":
            source, handle, compared_with = item.source_a, "Image", None
        else:
            test, reference = task.compare or (item.source_a, item.source_b)
            source, compared_with = test, reference
            handle = "Image A" if item.source_a == test else "Image B"
        value = response.value
        preferred = None
        if task.type == "preference" and question.type == "single_choice" and value in ("A", "B", "equal"):
            preferred = {"A": item.source_a, "B": item.source_b, "equal": "equal"}[value]
        row = {
            "study_id": study.study_id,
            "study_version": versions.get(response.study_sha256, ""),
            "study_sha256": response.study_sha256,
            "reader_id": item.reader_id,
            "reader_group": groups.get(item.reader_id),
            "design": study.design.type,
            "case_id": item.case_id,
            "case_block": case.block,
            "training": item.training,
            "task_id": task.task_id,
            "task_type": task.type,
            "item_id": item.item_id,
            "session_no": item.session_no,
            "session_kind": "training" if item.training else "reading",
            "wave": item.wave,
            "position_in_session": item.position_in_session,
            "order_index": item.order_index,
            "layout": item.layout,
            "source": source,
            "source_kind": source_kind(source),
            "model_id": source_model(source),
            "image_handle": handle,
            "compared_with": compared_with,
            "question_key": question.key,
            "question_type": question.type,
            "question_text": question.text,
            "value": canonical_json(value),
            "value_code": question.code(value),
            "value_label": question.label(value),
            "scale_max": float(max(o.value for o in question.levels)) if question.type == "likert" else None,
            "preferred_source": preferred,
            "task_truth": _task_truth(study, task.task_id, item.case_id, source),
            "revision": response.revision,
            "answered_at": response.answered_at,
            "modified_at": response.modified_at,
            "shown_at": item.shown_at,
            "first_interaction_at": item.first_interaction_at,
            "submitted_at": item.submitted_at,
            "active_seconds": item.active_seconds,
            "visits": item.visits,
            "simulated": response.simulated,
        }
        for name in study.truth_columns:
            row[TRUTH_PREFIX + name] = case.truth.get(name)
        rows.append(row)
    order = {(t.task_id, q.key): k for t in study.tasks for k, q in enumerate(t.questions)}
    rows.sort(key=lambda r: (r["reader_id"], r["order_index"], order[(r["task_id"], r["question_key"])]))
    return rows


def tidy_table(store: AnswerStore) -> pd.DataFrame:
    """The tidy table as a pandas DataFrame (dtypes as in ``TIDY_COLUMNS``; truth columns
    numeric when all their values are numbers)."""
    rows = tidy_rows(store)
    frame = frame_of_rows(rows, TIDY_COLUMNS)
    for name in store.study.truth_columns:
        column = [r.get(TRUTH_PREFIX + name) for r in rows]
        frame[TRUTH_PREFIX + name] = as_dtype(require_pandas().Series(column, dtype="object"), truth_dtype(column))
    return frame


def write_tidy_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a tidy table (from :func:`tidy_table`) as CSV, atomically."""
    return atomic_write_text(path, csv_text(table))


def read_tidy_csv(path: str | Path) -> pd.DataFrame:
    """Read a tidy CSV written by :func:`write_tidy_csv` back into the same table."""
    return read_csv_columns(path, TIDY_COLUMNS, extra_dtype=lambda col: truth_dtype(col.tolist()))


# --------------------------------------------------------------------------------------------
# The analysis table
# --------------------------------------------------------------------------------------------


def analysis_table(
    source: AnswerStore | pd.DataFrame,
    question: str,
    task: str | None = None,
    *,
    include_training: bool = False,
    truth_column: str | None = None,
) -> pd.DataFrame:
    """The long table ``reader_id, case_id, modality, truth, score`` for one question.

    Args:
        source: an answer store, or a tidy table (:func:`tidy_table` / :func:`read_tidy_csv`).
        question: a question key, or ``rating`` for the derived 1..2L rating of a Turing or
            detection task (decision positive -> L + confidence, negative -> L + 1 - confidence,
            L = number of confidence levels; positive = "synthetic" / "present").
        task: the task id; needed only when several tasks have a question with that key.
        include_training: keep training items (default: excluded from analysis).
        truth_column: take ``truth`` from this case truth column instead of the task's truth
            (detection: its truth column; Turing: 1 = synthetic; otherwise empty).

    Returns:
        One row per reader × case × modality (dtypes: strings, ``truth`` Int64, ``score``
        float64), sorted by modality, reader, case. For a preference task the modality is the
        test source and the score of ``preferred`` is 1 (test chosen), 0 (reference), 0.5 (equal).
    """
    pd = require_pandas()
    tidy = source if isinstance(source, pd.DataFrame) else tidy_table(source)
    if not include_training:
        tidy = tidy[~tidy["training"].astype(bool)]
    tasks = sorted(set(tidy["task_id"].dropna()))
    if question == "rating":
        candidates = sorted(set(tidy.loc[tidy["task_type"].isin(list(RATING_QUESTIONS)), "task_id"].dropna()))
    else:
        candidates = sorted(set(tidy.loc[tidy["question_key"] == question, "task_id"].dropna()))
    if task is None:
        if len(candidates) != 1:
            where = f"tasks {', '.join(candidates)}" if candidates else f"no task with answers (tasks: {', '.join(tasks)})"
            raise UsageError(f"Question '{question}' is in {where}; name the task to analyse.")
        task = candidates[0]
    rows = tidy[tidy["task_id"] == task]
    if rows.empty:
        raise UsageError(f"Task '{task}' has no answers to '{question}' yet; check the task and question names.")
    task_type = rows["task_type"].iloc[0]
    keys = ["reader_id", "case_id", "source"]
    if question == "rating":
        if task_type not in RATING_QUESTIONS:
            raise UsageError(f"The derived 'rating' exists for Turing and detection tasks, not for '{task}'; name a question.")
        decision_key, confidence_key, positive = RATING_QUESTIONS[task_type]
        decision = rows[rows["question_key"] == decision_key].set_index(keys)
        confidence = rows[rows["question_key"] == confidence_key].set_index(keys)
        truth_columns = [c for c in decision.columns if c.startswith(TRUTH_PREFIX)]
        joined = decision[["value", "task_truth", *truth_columns]].join(
            confidence[["value_code", "scale_max"]], how="inner")
        is_positive = joined["value"].map(lambda v: json.loads(v) == positive).astype(bool)
        levels = joined["scale_max"].astype("float64")
        conf = joined["value_code"].astype("float64")
        score = (levels + conf).where(is_positive, levels + 1 - conf)
        picked = joined.assign(score=score).reset_index()
    else:
        picked = rows[rows["question_key"] == question]
        if picked.empty:
            raise UsageError(f"Task '{task}' has no answers to '{question}'; check the question key.")
        if picked["question_type"].iloc[0] in ("text", "multiple_choice"):
            raise UsageError(f"Question '{question}' has no numeric score (it is {picked['question_type'].iloc[0]}); "
                             "analyse a Likert, choice, yes/no or number question.")
        if task_type == "preference" and picked["preferred_source"].notna().any():
            score = picked.apply(
                lambda r: 0.5 if r["preferred_source"] == "equal" else float(r["preferred_source"] == r["source"]), axis=1)
        else:
            score = picked["value_code"].astype("float64")
        picked = picked.assign(score=score)
    if truth_column and TRUTH_PREFIX + truth_column not in picked:
        raise UsageError(f"There is no truth column '{truth_column}'; use one of the study's truth columns.")
    truth = picked[TRUTH_PREFIX + truth_column] if truth_column else picked["task_truth"]
    table = pd.DataFrame({
        "reader_id": picked["reader_id"].astype("string"),
        "case_id": picked["case_id"].astype("string"),
        "modality": picked["source"].astype("string"),
        "truth": pd.to_numeric(truth, errors="coerce").round().astype("Int64"),
        "score": picked["score"].astype("float64"),
    })
    if table.duplicated(["reader_id", "case_id", "modality"]).any():
        raise UsageError(f"Task '{task}' has several answers per reader, case and modality to '{question}'; "
                         "analyse one question at a time.")
    return table.sort_values(["modality", "reader_id", "case_id"]).reset_index(drop=True)
