"""The columns of every exported table, and frames and CSV files with exact round trips.

A :class:`Column` (name, pandas dtype, description) is defined once here: the writers, the
readers and the data dictionary all use these definitions. :func:`csv_text` writes a frame so
that :func:`read_csv_columns` reads back the same values and dtypes (floats as shortest
round-trip decimals, booleans as true/false, missing values as empty cells).

pandas is in the ``reader`` extra: it is imported when a table is made (:func:`require_pandas`),
so a reading-only install never needs it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from DigitalContrastReaderLib.study.errors import StudyError, UsageError

if TYPE_CHECKING:  # pandas is in the `reader` extra; imported when a table is made
    import pandas as pd


def require_pandas():
    """The pandas module, or UsageError naming the extra to install."""
    try:
        import pandas  # lazy: pandas is in the `reader` extra (module docstring)
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
    Column("simulated", "boolean", "True for an answer given while the study was a demo (simulated readers or trial "
                                   "reads): never a real reading."),
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
    Column("simulated", "boolean", "True for an answer given while the study was a demo (never a real reading)."),
)


STUDY_VERSION_COLUMNS: tuple[Column, ...] = (
    Column("version", "string", "The store's name of the version: the file's version string, with +1, +2... when "
                                "the file changed but kept its version string."),
    Column("study_sha256", "string", "sha256 of the study file."),
    Column("loaded_at", "string", "UTC time the version was loaded (init)."),
    Column("active", "boolean", "The version in force now."),
    Column("accepted_change", "string", "The admin's reason for changing how items are shown or scheduled in a study "
                                        "that had answers (init --accept-change); empty otherwise."),
    Column("changes", "string", "What changed in display or scheduling, as JSON: [\"field: old -> new\", ...]."),
)


# --------------------------------------------------------------------------------------------
# Frames and CSV with exact round trips
# --------------------------------------------------------------------------------------------


def frame_of_rows(rows: list[dict[str, Any]], columns: Sequence[Column]) -> pd.DataFrame:
    """A frame with exactly ``columns`` (in order, with their dtypes) from dict rows (missing keys: empty)."""
    pd = require_pandas()
    data = {c.name: [r.get(c.name) for r in rows] for c in columns}
    frame = pd.DataFrame(data, columns=[c.name for c in columns])
    for c in columns:
        frame[c.name] = as_dtype(frame[c.name], c.dtype)
    return frame


def as_dtype(series: pd.Series, dtype: str) -> pd.Series:
    """``series`` as a column of ``dtype`` (``string``, ``boolean`` or a numeric dtype); empty
    strings and None become missing values."""
    pd = require_pandas()
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
        if require_pandas().isna(value):
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


def csv_text(frame: pd.DataFrame) -> str:
    """The CSV text of ``frame`` (header, then rows; cells as :func:`read_csv_columns` reads them back)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in frame.itertuples(index=False, name=None):
        writer.writerow([_format_cell(v) for v in row])
    return buffer.getvalue()


def read_csv_columns(path: str | Path, columns: Sequence[Column], *, extra_dtype=None) -> pd.DataFrame:
    """Read a CSV written by :func:`csv_text` back into ``columns`` (StudyError when a column is
    missing or the file is not CSV); other columns are kept when ``extra_dtype(column)`` names
    their dtype."""
    pd = require_pandas()
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
        frame[c.name] = as_dtype(raw[c.name], c.dtype)
    for name in raw.columns:
        if name not in expected and extra_dtype is not None:
            frame[name] = as_dtype(raw[name], extra_dtype(raw[name]))
    return frame.reset_index(drop=True)


def truth_dtype(values: Iterable[Any]) -> str:
    """``Float64`` when every given value of a case truth column is a number, else ``string``."""
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
