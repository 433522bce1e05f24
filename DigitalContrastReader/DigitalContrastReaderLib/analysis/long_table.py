"""The long reading table every analysis takes, its checks, and its complete part while a study is read.

One row per read: ``reader_id, case_id, modality, truth, score``.

- ``reader_id``, ``case_id``, ``modality``: labels (any type; kept as strings in results).
- ``truth``: 1 (diseased / signal present / the image is synthetic, depending on the question),
  0, or empty (NaN) where the question has no ground truth (image-quality grades).
- ``score``: the reader's answer as a number (a rating, a confidence, a grade, a 0/1 call).

The study export writes exactly this table (``exports/tidy.py``); extra columns are kept and ignored.
Its array form by reader group (fully crossed or split-plot) is ``reading_design.py``.
A user who feeds a broken table gets one ``InputError`` sentence naming the table and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from DigitalContrastLib.common.errors import InputError

REQUIRED_COLUMNS: tuple[str, ...] = ("reader_id", "case_id", "modality", "truth", "score")


def _natural_order(values: Sequence) -> list:
    """Labels sorted numerically when they all are numbers (2 before 10), else as text."""

    def key(value):
        try:
            return (0, float(value), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(value))

    return sorted(values, key=key)


def read_long_csv(path: str | Path) -> pd.DataFrame:
    """Read and check a long reading table from a CSV file (columns as in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the CSV exported by the reader study.", code="missing_file")
    try:
        frame = pd.read_csv(path, dtype={"reader_id": str, "case_id": str, "modality": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path}: not a readable CSV ({str(error).splitlines()[0]}); export it again as comma-separated UTF-8 text.",
            code="unreadable",
        ) from None
    return validate_long_table(frame, source=str(path))


def _refuse_first(bad: pd.Series, values: pd.Series, source: str, message: str, code: str) -> None:
    """``InputError`` for the first flagged row; ``message`` may use ``{value}`` and ``{row}`` (1-based)."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{source}: " + message.format(value=values.iloc[row], row=row + 1), code=code)


def validate_long_table(frame: pd.DataFrame, source: str = "the reading table") -> pd.DataFrame:
    """A checked copy of ``frame``: labels as strings, ``truth`` and ``score`` as floats.

    Raises ``InputError`` for a missing column, an empty table, a missing or non-numeric score,
    a truth other than 0/1/empty, an image (case, modality) whose truth differs between rows, or a reader who read
    the same case in the same modality twice.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; the table needs the columns "
            f"{', '.join(REQUIRED_COLUMNS)} (one row per read).",
            code="missing_column",
        )
    if len(frame) == 0:
        raise InputError(f"{source}: the table has no rows; export the answers of at least one reader.", code="empty")
    out = frame.copy()
    for column in ("reader_id", "case_id", "modality"):
        _refuse_first(
            out[column].isna(), out[column], source, f"empty {column} in data row {{row}}; fill it in or remove the row.", "missing_label"
        )
        out[column] = out[column].astype(str).str.strip()
    score = pd.to_numeric(out["score"], errors="coerce")
    bad = score.isna() | ~np.isfinite(score.to_numpy(dtype=float, na_value=np.nan))
    _refuse_first(
        bad, out["score"], source, "score '{value}' in data row {row} is not a number; "
        "every read needs a numeric score (code answers as numbers before the analysis).", "non_numeric_score",
    )
    out["score"] = score.astype(float)
    truth = pd.to_numeric(out["truth"], errors="coerce")
    given = out["truth"].notna() & (out["truth"].astype(str).str.strip() != "")
    bad_truth = (given & truth.isna()) | (truth.notna() & ~truth.isin([0.0, 1.0]))
    _refuse_first(
        bad_truth, out["truth"], source, "truth '{value}' in data row {row} is not 0, 1 or empty; "
        "use 1 for positive, 0 for negative and leave it empty where there is no truth.", "bad_truth",
    )
    out["truth"] = truth.astype(float)
    per_image = out.groupby(["case_id", "modality"])["truth"].agg(lambda t: t.dropna().nunique())
    if (per_image > 1).any():
        case, modality = per_image.index[per_image.to_numpy() > 1][0]
        raise InputError(
            f"{source}: case {case!r} in modality {modality!r} has different truth values in different rows; "
            "an image has one truth, fix it in every row.",
            code="inconsistent_truth",
        )
    duplicated = out.duplicated(["reader_id", "case_id", "modality"], keep=False)
    if duplicated.any():
        first = out[duplicated].iloc[0]
        raise InputError(
            f"{source}: reader {first['reader_id']!r} has more than one score for case {first['case_id']!r} in modality "
            f"{first['modality']!r}; keep one answer per reader, case and modality (the last submitted).",
            code="duplicate_read",
        )
    return out


def complete_crossed_subset(frame: pd.DataFrame, min_cases: int = 2) -> tuple[pd.DataFrame, str]:
    """The largest fully crossed part of a long table that is still being read (interim analyses).

    Keeps the readers and cases for which every reader has read every case in every modality:
    starting from all readers, the reader with the fewest complete cases is dropped until at
    least ``min_cases`` cases are complete for all remaining readers.

    Returns:
        ``(subset, note)``: the crossed subset (possibly empty) and a one-line description of what
        was left out (empty when nothing was).
    """
    modalities = frame["modality"].nunique()
    reads = frame.groupby(["reader_id", "case_id"])["modality"].nunique()
    complete = {reader: set(cases.index.get_level_values("case_id")[cases == modalities])
                for reader, cases in reads.groupby(level="reader_id")}
    readers = sorted(complete, key=lambda r: (-len(complete[r]), str(r)))
    while readers:
        cases = set.intersection(*(complete[r] for r in readers))
        if len(cases) >= min_cases:
            break
        readers.pop()  # the reader with the fewest complete cases
    else:
        cases = set()
    subset = frame[frame["reader_id"].isin(readers) & frame["case_id"].isin(cases)]
    all_readers, all_cases = frame["reader_id"].nunique(), frame["case_id"].nunique()
    note = ""
    if len(readers) < all_readers or len(cases) < all_cases:
        note = (f"interim: {len(readers)} of {all_readers} readers x {len(cases)} of {all_cases} cases are complete "
                "in every modality and analysed")
    return subset.reset_index(drop=True), note


def complete_design_subset(
    frame: pd.DataFrame,
    reader_groups: Mapping[str, str | None] | None = None,
    min_cases: int = 2,
    planned: tuple[int, int] | None = None,
) -> tuple[pd.DataFrame, str]:
    """:func:`complete_crossed_subset` within each reader group of a split-plot study.

    Args:
        frame: a long table of a study still (or no longer) being read.
        reader_groups: reader -> group of the study's design (None: one group, fully crossed).
        min_cases: fewest complete cases a group keeps.
        planned: ``(readers, cases)`` of the whole study (default: those with reads in ``frame``).

    Returns:
        ``(subset, note)``: every group's complete readers and cases, and what was left out ("" when nothing).
    """
    members: dict[str | None, list[str]] = {}
    for reader in frame["reader_id"].unique():
        members.setdefault((reader_groups or {}).get(str(reader)), []).append(reader)
    parts = [complete_crossed_subset(frame[frame["reader_id"].isin(readers)], min_cases)[0] for readers in members.values()]
    subset = pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]
    all_readers, all_cases = planned or (frame["reader_id"].nunique(), frame["case_id"].nunique())
    kept_readers, kept_cases = subset["reader_id"].nunique(), subset["case_id"].nunique()
    note = ""
    if kept_readers < all_readers or kept_cases < all_cases:
        unit = " (within their reader group)" if len(members) > 1 else ""
        note = (f"interim: {kept_readers} of {all_readers} readers x {kept_cases} of {all_cases} cases are complete "
                f"in every modality{unit} and analysed")
    return subset, note
