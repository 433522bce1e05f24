"""Exports (and importers) of a reader study: readable tables for people, exact inputs for the
reference MRMC tools, and the long table the statistics engine reads.

* **Tidy CSV** (``responses_tidy.csv``, the master): one row per reader × case × source ×
  question, with design and timing columns, the answer as JSON, its numeric code and its label.
  :func:`read_tidy_csv` reads it back to the same table.
* **Analysis table** (:func:`analysis_table`): ``reader_id, case_id, modality, truth, score``
  for one question of one task (training excluded) -- the input of the MRMC engine.
* **iMRMC** ``.imrmc`` (:func:`write_imrmc` / :func:`read_imrmc`): free header lines (with the
  id mappings), ``NR/N0/N1/NM``, ``BEGIN DATA:``, truth rows ``-1,<case>,truth,<0|1>``, then
  ``<reader>,<case>,<modality>,<score>`` with integer ids, so RJafroc reads it too.
* **RJafroc JAFROC** ``.xlsx`` (:func:`write_jafroc_xlsx`): sheets TRUTH, FP, TP.
* **Schedules** (CSV and JSON), **revisions** (every change of an answer), a **data
  dictionary** (CSV and Markdown) of every column, and a ``manifest.json`` with checksums.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from DigitalContrastLib.common.atomic import atomic_path, atomic_write_text

from DigitalContrastReaderLib.study.errors import StudyError, UsageError
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.study.study import Study, source_kind, source_model
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.templates import RATING_QUESTIONS

if TYPE_CHECKING:  # pandas is in the `reader` extra; imported when a table is made
    import pandas as pd


def _pandas():
    try:
        import pandas
    except ImportError:
        raise UsageError("pandas is not installed; install the reader extra (pip install 'digital-contrast[reader]').") from None
    return pandas


# --------------------------------------------------------------------------------------------
# Column definitions (one place: the writers, the readers and the data dictionary use them)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype: "string", "Int64", "Float64", "boolean"
    description: str


TIDY_COLUMNS: tuple[Column, ...] = (
    Column("study_id", "string", "Study identifier from the study file."),
    Column("study_version", "string", "The study's version string in force when the answer was last changed."),
    Column("study_sha256", "string", "sha256 of the study file in force when the answer was last changed."),
    Column("reader_id", "string", "Reader identifier."),
    Column("reader_group", "string", "Reader group (split-plot designs); empty otherwise."),
    Column("design", "string", "fully-crossed or split-plot."),
    Column("case_id", "string", "Case identifier."),
    Column("case_block", "string", "Case block (split-plot designs); empty otherwise."),
    Column("training", "boolean", "True for training items (excluded from analysis)."),
    Column("task_id", "string", "Task identifier."),
    Column("task_type", "string", "grading, turing, preference or detection."),
    Column("item_id", "string", "Neutral item identifier <reader>-<position>."),
    Column("session_no", "Int64", "Session (sitting) number, 1-based."),
    Column("session_kind", "string", "training or reading."),
    Column("wave", "Int64", "Washout wave: 0 training, then 1, 2, ... (a case appears once per wave)."),
    Column("position_in_session", "Int64", "Position of the item in its session, 1-based."),
    Column("order_index", "Int64", "Position of the item in the reader's whole schedule, 1-based."),
    Column("layout", "string", "single (one image) or pair (side by side)."),
    Column("source", "string", "The image source this row is about (the modality): real, noncontrast, synthetic or "
           "synthetic:<model>; for pairs, the test source of the comparison."),
    Column("source_kind", "string", "real, noncontrast or synthetic."),
    Column("model_id", "string", "Model id of a synthetic:<model> source; empty otherwise."),
    Column("image_handle", "string", "The neutral name the reader saw for that source: Image, Image A (left) or Image B (right)."),
    Column("compared_with", "string", "Pairs: the reference source shown beside it; empty for single images."),
    Column("question_key", "string", "Question key."),
    Column("question_type", "string", "likert, single_choice, multiple_choice, yes_no, number or text."),
    Column("question_text", "string", "The question as shown."),
    Column("value", "string", "The answer as JSON (a number, a string, true/false or a list)."),
    Column("value_code", "Float64", "Numeric code: the Likert level, the option value (or 1-based position), 1/0 for "
           "yes/no, the number; empty for text and multiple choice."),
    Column("value_label", "string", "Human label of the answer (the anchored text of the level or option)."),
    Column("scale_max", "Float64", "Highest level of a Likert question; empty otherwise."),
    Column("preferred_source", "string", "Preference questions: the source of the image chosen, or 'equal'."),
    Column("task_truth", "Int64", "The truth the task is scored against: detection, the case's truth column (1 present); "
           "Turing, 1 if the image is synthetic; empty otherwise."),
    Column("revision", "Int64", "1 for an answer never changed; each change (reader or admin) adds one."),
    Column("answered_at", "string", "UTC time of the first answer (ISO 8601)."),
    Column("modified_at", "string", "UTC time of the last change of the answer."),
    Column("shown_at", "string", "UTC time the item was first displayed (empty if answered without display)."),
    Column("first_interaction_at", "string", "UTC time of the first interaction with the displayed item."),
    Column("submitted_at", "string", "UTC time of the first submit of the item."),
    Column("active_seconds", "Float64", "Seconds spent on the item (reported by the UI, else display to submit)."),
    Column("visits", "Int64", "Number of displays of the item (revisits = visits - 1)."),
)
TRUTH_PREFIX = "truth_"
TRUTH_COLUMN_DESCRIPTION = "Case truth column <name> from the study file (one column per name)."

ANALYSIS_COLUMNS: tuple[Column, ...] = (
    Column("reader_id", "string", "Reader identifier."),
    Column("case_id", "string", "Case identifier."),
    Column("modality", "string", "Image source (real, synthetic, synthetic:<model>, noncontrast)."),
    Column("truth", "Int64", "Case truth for the task (0/1), empty when the task has none."),
    Column("score", "float64", "The score: the answer's numeric code, a derived rating, or the preference score."),
)

SCHEDULE_COLUMNS: tuple[Column, ...] = (
    Column("reader_id", "string", "Reader identifier."),
    Column("reader_group", "string", "Reader group (split-plot)."),
    Column("seed", "Int64", "Random seed the schedule was generated with (recorded at enrolment)."),
    Column("session_no", "Int64", "Session number."),
    Column("session_kind", "string", "training or reading."),
    Column("wave", "Int64", "Washout wave."),
    Column("session_opens_at", "string", "Planned earliest opening of the session (UTC)."),
    Column("washout_after_wave", "Int64", "The wave whose last submit starts this session's washout."),
    Column("order_index", "Int64", "Position in the reader's schedule."),
    Column("position_in_session", "Int64", "Position in the session."),
    Column("item_id", "string", "Neutral item id."),
    Column("task_id", "string", "Task identifier."),
    Column("case_id", "string", "Case identifier."),
    Column("training", "boolean", "Training item."),
    Column("layout", "string", "single or pair."),
    Column("source_a", "string", "Source shown as 'Image' (single) or 'Image A' (left)."),
    Column("source_b", "string", "Source shown as 'Image B' (right); empty for single images."),
    Column("submitted_at", "string", "UTC time of the submit; empty while unfinished."),
)

REVISION_COLUMNS: tuple[Column, ...] = (
    Column("reader_id", "string", "Reader whose answer it is."),
    Column("item_id", "string", "Item id."),
    Column("question_key", "string", "Question key."),
    Column("revision", "Int64", "Revision number (1 = the first answer)."),
    Column("value", "string", "The value of this revision, as JSON."),
    Column("changed_at", "string", "UTC time of the change."),
    Column("changed_by", "string", "reader, or admin:<name> for a correction."),
    Column("reason", "string", "Reason given for an admin correction."),
    Column("study_sha256", "string", "sha256 of the study file in force."),
)


# --------------------------------------------------------------------------------------------
# Frames and CSV with exact round trips
# --------------------------------------------------------------------------------------------


def _frame(rows: list[dict[str, Any]], columns: Sequence[Column]) -> pd.DataFrame:
    pd = _pandas()
    data = {c.name: [r.get(c.name) for r in rows] for c in columns}
    frame = pd.DataFrame(data, columns=[c.name for c in columns])
    for c in columns:
        frame[c.name] = _as_dtype(frame[c.name], c.dtype)
    return frame


def _as_dtype(series: pd.Series, dtype: str) -> pd.Series:
    pd = _pandas()
    if dtype == "string":
        series = series.astype("object").where(series.notna(), None)
        series = series.map(lambda v: None if v is None or v == "" else str(v))
        return series.astype("string")
    if dtype == "boolean":
        return series.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
                          else (v if isinstance(v, bool) else str(v).lower() == "true")).astype("boolean")
    numbers = pd.to_numeric(series.astype("object").map(lambda v: None if v is None or v == "" else v), errors="raise")
    return numbers.astype(dtype)


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    try:
        if _pandas().isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in frame.itertuples(index=False, name=None):
        writer.writerow([_format_cell(v) for v in row])
    return buffer.getvalue()


def _read_csv(path: str | Path, columns: Sequence[Column], *, extra_dtype=None) -> pd.DataFrame:
    pd = _pandas()
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise StudyError(f"{path}: the file does not exist; check the path.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise StudyError(f"{path}: not a readable CSV ({str(error).splitlines()[0]}); export it again.") from None
    expected = [c.name for c in columns]
    missing = [n for n in expected if n not in raw.columns]
    if missing:
        raise StudyError(f"{path}: column '{missing[0]}' is missing; import a file written by this tool's export.")
    frame = pd.DataFrame(index=raw.index)
    for c in columns:
        frame[c.name] = _as_dtype(raw[c.name], c.dtype)
    for name in raw.columns:
        if name not in expected and extra_dtype is not None:
            frame[name] = _as_dtype(raw[name], extra_dtype(raw[name]))
    return frame.reset_index(drop=True)


def _truth_dtype(values: Iterable[Any]) -> str:
    for v in values:
        if v is None or v == "":
            continue
        if isinstance(v, bool):
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            return "string"
    return "Float64"


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
    frame = _frame(rows, TIDY_COLUMNS)
    for name in store.study.truth_columns:
        column = [r.get(TRUTH_PREFIX + name) for r in rows]
        frame[TRUTH_PREFIX + name] = _as_dtype(_pandas().Series(column, dtype="object"), _truth_dtype(column))
    return frame


def write_tidy_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a tidy table (from :func:`tidy_table`) as CSV, atomically."""
    return atomic_write_text(path, _csv_text(table))


def read_tidy_csv(path: str | Path) -> pd.DataFrame:
    """Read a tidy CSV written by :func:`write_tidy_csv` back into the same table."""
    return _read_csv(path, TIDY_COLUMNS, extra_dtype=lambda col: _truth_dtype(col.tolist()))


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
    pd = _pandas()
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


# --------------------------------------------------------------------------------------------
# iMRMC
# --------------------------------------------------------------------------------------------


def _integer_ids(values: Iterable[str]) -> dict[str, int]:
    """Integer ids: the values themselves when they all are canonical integers, else 1..n."""
    values = sorted(set(values))
    if values and all(re.fullmatch(r"[1-9][0-9]*", v) for v in values):
        return {v: int(v) for v in values}
    return {v: k for k, v in enumerate(values, start=1)}


def _binary_truth(table: pd.DataFrame, target: str) -> dict[str, int]:
    truth = table.groupby("case_id")["truth"].agg(lambda s: set(s.dropna().tolist()))
    result = {}
    for case, values in truth.items():
        if len(values) != 1 or next(iter(values)) not in (0, 1):
            raise UsageError(f"Case '{case}' has no single 0/1 truth, which {target} needs; analyse a detection "
                             "question or name a binary truth column.")
        result[case] = int(next(iter(values)))
    return result


def write_imrmc(table: pd.DataFrame, path: str | Path, *, description: Sequence[str] = ()) -> Path:
    """Write an analysis table (binary truth per case) as an iMRMC ``.imrmc`` file.

    Integer reader, case and modality ids are used; the header lines ``reader <n> = <id>``,
    ``case <n> = <id>`` and ``modality <n> = <id>`` record the mapping (read back by
    :func:`read_imrmc`). Scores are written exactly (shortest round-trip decimal).
    """
    path = Path(path)
    if path.suffix != ".imrmc":
        raise UsageError(f"{path.name}: an iMRMC file must end in .imrmc (RJafroc checks it); rename it.")
    truth = _binary_truth(table, "an iMRMC file")
    if table["score"].isna().any():
        raise UsageError("The analysis table has rows without a score; drop them before writing an iMRMC file.")
    readers = _integer_ids(table["reader_id"])
    cases = _integer_ids(table["case_id"])
    modalities = _integer_ids(table["modality"])
    lines = ["DigitalContrast reader study export in iMRMC format (also read by RJafroc)"]
    lines += [line.replace("\n", " ") for line in description]
    lines += [f"reader {n} = {v}" for v, n in readers.items()]
    lines += [f"case {n} = {v}" for v, n in cases.items()]
    lines += [f"modality {n} = {v}" for v, n in modalities.items()]
    lines += [
        f"NR: {len(readers)}",
        f"N0: {sum(1 for t in truth.values() if t == 0)}",
        f"N1: {sum(1 for t in truth.values() if t == 1)}",
        f"NM: {len(modalities)}",
        "",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{cases[c]},truth,{t}" for c, t in sorted(truth.items(), key=lambda kv: cases[kv[0]])]
    for row in table.itertuples(index=False):
        lines.append(f"{readers[row.reader_id]},{cases[row.case_id]},{modalities[row.modality]},{float(row.score):.17g}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_imrmc(path: str | Path) -> pd.DataFrame:
    """Read an ``.imrmc`` file into the analysis table format (ids mapped back when the header
    holds ``reader/case/modality <n> = <id>`` lines, else the integers as text)."""
    pd = _pandas()
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StudyError(f"{path}: the file does not exist; check the path.") from None
    names: dict[str, dict[str, str]] = {"reader": {}, "case": {}, "modality": {}}
    try:
        start = [line.strip() for line in lines].index("BEGIN DATA:")
    except ValueError:
        raise StudyError(f"{path}: no 'BEGIN DATA:' line; this is not an iMRMC file.") from None
    for line in lines[:start]:
        match = re.fullmatch(r"\s*(reader|case|modality) (\S+) = (.*?)\s*", line)
        if match:
            names[match.group(1)][match.group(2)] = match.group(3)
    truth: dict[str, int] = {}
    rows = []
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            raise StudyError(f"{path}: line {number} does not have 4 comma-separated fields; fix or re-export it.")
        reader, case, modality, score = parts
        case_id = names["case"].get(case, case)
        if reader in ("-1", "truth"):
            truth[case_id] = int(float(score))
        else:
            rows.append((names["reader"].get(reader, reader), case_id, names["modality"].get(modality, modality), float(score)))
    table = pd.DataFrame(rows, columns=["reader_id", "case_id", "modality", "score"])
    table["truth"] = table["case_id"].map(truth)
    table = table[["reader_id", "case_id", "modality", "truth", "score"]]
    for c in ANALYSIS_COLUMNS:
        table[c.name] = _as_dtype(table[c.name], c.dtype) if c.dtype != "float64" else table[c.name].astype("float64")
    return table.sort_values(["modality", "reader_id", "case_id"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# RJafroc JAFROC workbook
# --------------------------------------------------------------------------------------------


def jafroc_design(table: pd.DataFrame) -> str | None:
    """``crossed`` (every reader read every case), ``split-plot-c`` (no case shared by two
    readers) or None (neither; RJafroc reads only those two)."""
    readers_per_case = table.groupby("case_id")["reader_id"].nunique()
    n_readers = table["reader_id"].nunique()
    if (readers_per_case == n_readers).all():
        return "crossed"
    if (readers_per_case == 1).all():
        return "split-plot-c"
    return None


def write_jafroc_xlsx(table: pd.DataFrame, path: str | Path) -> Path:
    """Write an analysis table (ROC, binary truth) as an RJafroc JAFROC workbook: sheets TRUTH
    (CaseID, LesionID, Weight, ReaderID, ModalityID, Paradigm), FP (ReaderID, ModalityID,
    CaseID, FP_Rating) for non-diseased cases and TP (ReaderID, ModalityID, CaseID, LesionID,
    TP_Rating) for diseased ones; integer ids as in :func:`write_imrmc`."""
    try:
        from openpyxl import Workbook
    except ImportError:
        raise UsageError("openpyxl is not installed; install the reader extra (pip install 'digital-contrast[reader]').") from None
    design = jafroc_design(table)
    if design is None:
        raise UsageError("RJafroc reads crossed or split-plot-c designs only, and here several readers share some cases "
                         "but not all; use the .imrmc file or the tidy CSV.")
    truth = _binary_truth(table, "a JAFROC workbook")
    readers = _integer_ids(table["reader_id"])
    cases = _integer_ids(table["case_id"])
    modalities = _integer_ids(table["modality"])
    book = Workbook()
    sheet = book.active
    sheet.title = "TRUTH"
    sheet.append(["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm"])
    paradigm = ["ROC", design]
    modality_list = ", ".join(str(n) for n in sorted(modalities.values()))
    for k, (case, t) in enumerate(sorted(truth.items(), key=lambda kv: cases[kv[0]])):
        case_readers = sorted(readers[r] for r in set(table.loc[table["case_id"] == case, "reader_id"]))
        sheet.append([cases[case], t, float(t), ", ".join(map(str, case_readers)), modality_list,
                      paradigm[k] if k < len(paradigm) else None])
    for row in sheet.iter_rows(min_row=2, min_col=4, max_col=5):
        for cell in row:
            cell.number_format = "@"  # text cells, as RJafroc requires for id lists
    fp = book.create_sheet("FP")
    fp.append(["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    tp = book.create_sheet("TP")
    tp.append(["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"])
    for row in table.itertuples(index=False):
        ids = [readers[row.reader_id], modalities[row.modality], cases[row.case_id]]
        if truth[row.case_id] == 0:
            fp.append([*ids, float(row.score)])
        else:
            tp.append([*ids, 1, float(row.score)])
    with atomic_path(path) as tmp:
        book.save(tmp)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Schedules, revisions, data dictionary
# --------------------------------------------------------------------------------------------


def schedule_table(store: AnswerStore) -> pd.DataFrame:
    """Every stored schedule, one row per item (see ``SCHEDULE_COLUMNS``)."""
    timing = {i.item_id: i.submitted_at for i in store.items()}
    rows = []
    for reader in store.readers():
        schedule = store.schedule(reader.reader_id)
        sessions = {s.session_no: s for s in schedule.sessions}
        for item in schedule.items:
            session = sessions[item.session_no]
            rows.append({
                "reader_id": reader.reader_id, "reader_group": reader.group, "seed": schedule.seed,
                "session_no": item.session_no, "session_kind": session.kind, "wave": session.wave,
                "session_opens_at": session.opens_at, "washout_after_wave": session.washout_after_wave,
                "order_index": item.order_index, "position_in_session": item.position_in_session,
                "item_id": item.item_id, "task_id": item.task_id, "case_id": item.case_id, "training": item.training,
                "layout": item.layout, "source_a": item.sources[0],
                "source_b": item.sources[1] if len(item.sources) > 1 else None,
                "submitted_at": timing.get(item.item_id),
            })
    return _frame(rows, SCHEDULE_COLUMNS)


def schedules_json(store: AnswerStore) -> str:
    """The stored schedules exactly as generated, with the study they were made for."""
    data = {
        "study_id": store.study.study_id,
        "study_sha256": store.study.sha256,
        "readers": [store.schedule(r.reader_id).to_dict() for r in store.readers()],
    }
    return json.dumps(data, indent=1) + "\n"


def revision_table(store: AnswerStore) -> pd.DataFrame:
    rows = [{
        "reader_id": r.reader_id, "item_id": r.item_id, "question_key": r.question_key, "revision": r.revision,
        "value": canonical_json(r.value), "changed_at": r.changed_at, "changed_by": r.changed_by, "reason": r.reason,
        "study_sha256": r.study_sha256,
    } for r in store.revisions()]
    return _frame(rows, REVISION_COLUMNS)


def data_dictionary(truth_columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """Every column of every exported table: ``file, column, type, description``."""
    entries = []
    for file, columns in (
        ("responses_tidy.csv", TIDY_COLUMNS),
        ("analysis_<task>_<question>.csv", ANALYSIS_COLUMNS),
        ("schedules.csv", SCHEDULE_COLUMNS),
        ("revisions.csv", REVISION_COLUMNS),
    ):
        for c in columns:
            entries.append({"file": file, "column": c.name, "type": c.dtype, "description": c.description})
        if file == "responses_tidy.csv":
            for name in truth_columns or ["<name>"]:
                entries.append({"file": file, "column": TRUTH_PREFIX + name, "type": "Float64 or string",
                                "description": TRUTH_COLUMN_DESCRIPTION.replace("<name>", name)})
    entries += [
        {"file": "<task>_<question>.imrmc", "column": "header", "type": "text",
         "description": "Free lines incl. 'reader|case|modality <n> = <id>' mappings, then NR/N0/N1/NM and 'BEGIN DATA:'."},
        {"file": "<task>_<question>.imrmc", "column": "data", "type": "text",
         "description": "'-1,<case>,truth,<0|1>' per case, then '<reader>,<case>,<modality>,<score>' (integer ids)."},
        {"file": "<task>_<question>.jafroc.xlsx", "column": "TRUTH", "type": "sheet",
         "description": "CaseID, LesionID (0 non-diseased / 1 diseased), Weight, ReaderID and ModalityID (comma lists), "
                        "Paradigm (ROC; crossed or split-plot-c)."},
        {"file": "<task>_<question>.jafroc.xlsx", "column": "FP", "type": "sheet",
         "description": "ReaderID, ModalityID, CaseID, FP_Rating: ratings of non-diseased cases."},
        {"file": "<task>_<question>.jafroc.xlsx", "column": "TP", "type": "sheet",
         "description": "ReaderID, ModalityID, CaseID, LesionID, TP_Rating: ratings of diseased cases."},
        {"file": "schedules.json", "column": "readers", "type": "JSON",
         "description": "Each reader's stored schedule: seed, sessions (opens_at, wave, washout), items (sources in display order)."},
        {"file": "manifest.json", "column": "files", "type": "JSON",
         "description": "Every exported file with its sha256, the study id and sha256, and notes."},
    ]
    return entries


def _dictionary_markdown(entries: list[dict[str, str]]) -> str:
    lines = ["# Data dictionary of a DigitalContrast reader-study export", ""]
    current = None
    for e in entries:
        if e["file"] != current:
            current = e["file"]
            lines += ["", f"## {current}", "", "| column | type | description |", "|---|---|---|"]
        lines.append(f"| `{e['column']}` | {e['type']} | {e['description'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _scored_questions(store: AnswerStore) -> list[tuple[str, str]]:
    """(task, question) pairs with a numeric score, plus ``rating`` for Turing/detection tasks."""
    pairs = []
    for task in store.study.tasks:
        for q in task.questions:
            if q.type in ("likert", "single_choice", "yes_no", "number"):
                pairs.append((task.task_id, q.key))
        if task.type in RATING_QUESTIONS:
            decision, confidence, _ = RATING_QUESTIONS[task.type]
            keys = {q.key for q in task.questions}
            if decision in keys and confidence in keys:
                pairs.append((task.task_id, "rating"))
    return pairs


def export_all(store: AnswerStore, out_dir: str | Path) -> ExportResult:
    """Write every export of ``store`` into ``out_dir`` (each file atomically):
    ``responses_tidy.csv``, ``revisions.csv``, ``schedules.csv``, ``schedules.json``,
    ``analysis_<task>_<question>.csv`` per scored question, ``<task>_<question>.imrmc`` and
    ``.jafroc.xlsx`` for detection tasks, ``data_dictionary.csv``/``.md`` and ``manifest.json``."""
    pd = _pandas()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    tidy = tidy_table(store)
    result.files.append(write_tidy_csv(tidy, out / "responses_tidy.csv"))
    result.files.append(atomic_write_text(out / "revisions.csv", _csv_text(revision_table(store))))
    result.files.append(atomic_write_text(out / "schedules.csv", _csv_text(schedule_table(store))))
    result.files.append(atomic_write_text(out / "schedules.json", schedules_json(store)))
    study = store.study
    for task_id, key in _scored_questions(store):
        stem = f"{task_id}_{key}"
        try:
            table = analysis_table(tidy, key, task_id)
        except UsageError:
            result.notes.append(f"{stem}: no answers yet, no analysis table")
            continue
        result.files.append(atomic_write_text(out / f"analysis_{stem}.csv", _csv_text(table)))
        if study.task(task_id).type != "detection":
            continue
        description = [f"study: {study.study_id} version {study.version} sha256 {study.sha256}",
                       f"task: {task_id}; question: {key}; training items excluded"]
        try:
            result.files.append(write_imrmc(table, out / f"{stem}.imrmc", description=description))
            result.files.append(write_jafroc_xlsx(table, out / f"{stem}.jafroc.xlsx"))
        except UsageError as error:
            result.notes.append(f"{stem}: {error.message}")
    entries = data_dictionary(study.truth_columns)
    result.files.append(atomic_write_text(out / "data_dictionary.csv", _csv_text(pd.DataFrame(entries))))
    result.files.append(atomic_write_text(out / "data_dictionary.md", _dictionary_markdown(entries)))
    manifest = {
        "study_id": study.study_id,
        "study_version": study.version,
        "study_sha256": study.sha256,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in result.files},
        "notes": result.notes,
    }
    result.files.append(atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n"))
    return result
