"""The cohort CSV a scientist writes, and the ``metrics.csv`` table a cohort evaluation writes.

Cohort CSV (UTF-8, comma-separated, one row per case, a header row)::

    case_id,noncontrast,contrast,labels,site,age
    c001,c001/ncct.nrrd,c001/cta.nrrd,c001/labels.nrrd,oxford,71
    c002,/data/c002/ncct,,,leeds,65

* ``case_id`` (required): unique (letter case ignored), usable as a folder name: letters, digits,
  ``.``, ``_`` and ``-``, not starting with ``.``, at most 128 characters.
* ``noncontrast`` (required): the non-contrast CT (a DICOM folder or a volume file).
* ``contrast`` (optional): the real contrast-enhanced CT of the same patient, for the metrics.
* ``labels`` (optional): a label map of ROIs on the non-contrast grid (aortic lumen 10,
  thrombus 11, calcification 12, wall 13, as the phantom's labels).
* ``noncontrast_series``, ``contrast_series`` (optional): the Series Instance UID to read when the
  scan's DICOM folder holds several series (``digital-contrast check FOLDER`` lists them).
* any other column is carried through to ``metrics.csv`` unchanged.

Relative paths are relative to the CSV's folder. Reading never touches the images: a missing
image is the case's own failure later (its reason in ``metrics.csv``), not a bad CSV.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import InputError

REQUIRED_COLUMNS = ("case_id", "noncontrast")
OPTIONAL_COLUMNS = ("contrast", "labels", "noncontrast_series", "contrast_series")
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")

#: Columns of ``metrics.csv``, in order, before the carried-through columns of the cohort CSV
#: and after them the measured ones (:data:`METRIC_COLUMNS`, :data:`RUN_COLUMNS`).
IDENTITY_COLUMNS = ("case_id", "status", "reason")
#: Metrics (see metrics.py): body image metrics, ROI metrics, registration.
METRIC_COLUMNS = (
    "body_mae_hu", "body_psnr_db", "body_ssim",
    "lumen_mae_hu", "lumen_bias_hu", "lumen_median_hu_pred", "lumen_median_hu_ref",
    "thrombus_mae_hu", "thrombus_bias_hu", "thrombus_median_hu_pred", "thrombus_median_hu_ref",
    "lumen_dice",
    "max_diameter_mm_pred", "max_diameter_mm_ref", "max_diameter_error_mm",
    "diameter_mae_mm", "diameter_bias_mm", "diameter_max_abs_error_mm", "diameter_slices",
    "sac_max_diameter_mm",
    "body_voxels",
)
#: How the case ran: gate, registration, timings, device, model, energy and carbon.
RUN_COLUMNS = (
    "gate_warnings", "ood_warning", "ood_distance", "ood_threshold",
    "registration_method", "registration_final_stage", "registration_metric",
    "seconds_gate", "seconds_model_load", "seconds_synthesis", "seconds_job", "seconds_registration",
    "seconds_metrics", "seconds_on_case",
    "device", "model_id", "model_version", "model_weights_sha256", "synthetic_sha256",
    "energy_j", "energy_method", "energy_window_s", "co2e_g", "grid_g_per_kwh",
)
#: Status values of a row.
STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class CohortCase:
    """One row of the cohort CSV, paths made absolute.

    Attributes:
        case_id: the case's id (also its folder name under ``cases/``).
        noncontrast: the non-contrast CT.
        contrast: the real contrast CT, or None.
        labels: the ROI label map, or None.
        noncontrast_series, contrast_series: the DICOM series to read from a folder of several, or None.
        extra: the other columns of the row, in CSV order, as text.
        row: the row's line number in the CSV (the header is line 1).
    """

    case_id: str
    noncontrast: Path
    contrast: Path | None = None
    labels: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    noncontrast_series: str | None = None
    contrast_series: str | None = None
    row: int = 0


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}", code="bad_cohort_csv")


def read_cohort_csv(path: str | os.PathLike) -> list[CohortCase]:
    """Read and check a cohort CSV (see the module docstring).

    Raises:
        InputError: the file cannot be read, a required column is missing, a case id is empty,
            duplicated or unusable as a folder name, a non-contrast path is empty, a carried-through
            column's name clashes with a ``metrics.csv`` column, or there is no case. The message
            is one sentence naming the file and the fix.
    """
    csv_path = Path(path).expanduser()
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise _bad(csv_path, "the cohort CSV does not exist; give the path of a CSV with the columns case_id and noncontrast.") from None
    except IsADirectoryError:
        raise _bad(csv_path, "is a folder, not a cohort CSV; give the path of the CSV file.") from None
    except UnicodeDecodeError:
        raise _bad(csv_path, "is not UTF-8 text; save the cohort as a UTF-8 CSV file.") from None
    except OSError as error:
        raise _bad(csv_path, f"cannot be read ({error.strerror}); check its permissions.") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise _bad(csv_path, f"is not a valid CSV ({error}); save it as a comma-separated file.") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise _bad(csv_path, "is empty; write a header row (case_id,noncontrast,...) and one row per case.")
    header = [h.strip() for h in rows[0]]
    for name in REQUIRED_COLUMNS:
        if name not in header:
            raise _bad(csv_path, f"has no '{name}' column; the header needs case_id and noncontrast "
                                 "(contrast and labels are optional).")
    seen_names: set[str] = set()
    reserved = set(IDENTITY_COLUMNS) | set(METRIC_COLUMNS) | set(RUN_COLUMNS)
    for name in header:
        if not name:
            raise _bad(csv_path, "has a column without a name in its header; name it or remove it.")
        if name in seen_names:
            raise _bad(csv_path, f"has two columns named '{name}'; rename one of them.")
        seen_names.add(name)
        if name in reserved and name not in REQUIRED_COLUMNS:
            raise _bad(csv_path, f"has a column '{name}', which metrics.csv uses for a result; rename that column.")
    if len(rows) == 1:
        raise _bad(csv_path, "lists no case; add one row per case under the header.")

    folder = csv_path.resolve().parent
    cases: list[CohortCase] = []
    first_row_of: dict[str, int] = {}
    for offset, raw in enumerate(rows[1:], start=2):
        if len(raw) > len(header):
            raise _bad(csv_path, f"row {offset} has {len(raw)} cells but the header has {len(header)}; "
                                 "quote cells that contain commas.")
        cells = {name: (raw[k].strip() if k < len(raw) else "") for k, name in enumerate(header)}
        case_id = cells["case_id"]
        if not case_id:
            raise _bad(csv_path, f"row {offset} has no case_id; give every case an id.")
        if not CASE_ID_PATTERN.match(case_id):
            raise _bad(csv_path, f"row {offset}: case id {case_id!r} cannot be a folder name; use letters, digits, "
                                 "'.', '_' and '-' only (not starting with '.'; at most 128 characters).")
        key = case_id.lower()
        if key in first_row_of:
            raise _bad(csv_path, f"case id {case_id!r} appears twice (rows {first_row_of[key]} and {offset}, letter case "
                                 "ignored); give every case a unique id.")
        first_row_of[key] = offset
        if not cells["noncontrast"]:
            raise _bad(csv_path, f"row {offset} (case {case_id}) has no noncontrast path; give the non-contrast CT.")

        def resolve(value: str) -> Path | None:
            if not value:
                return None
            p = Path(value).expanduser()
            return p if p.is_absolute() else folder / p

        extra = {name: cells[name] for name in header if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        cases.append(CohortCase(case_id=case_id, noncontrast=resolve(cells["noncontrast"]),  # type: ignore[arg-type]
                                contrast=resolve(cells.get("contrast", "")), labels=resolve(cells.get("labels", "")),
                                extra=extra, row=offset, noncontrast_series=cells.get("noncontrast_series") or None,
                                contrast_series=cells.get("contrast_series") or None))
    return cases


def write_cohort_csv(path: str | os.PathLike, cases: Sequence[Mapping[str, Any]]) -> Path:
    """Write a cohort CSV (atomically): ``cases`` are dicts with ``case_id``, ``noncontrast`` and
    optionally ``contrast``, ``labels`` and other columns (paths written as given)."""
    columns: list[str] = list(REQUIRED_COLUMNS)
    for case in cases:
        for name in case:
            if name not in columns:
                columns.append(name)
    return atomic_write_text(path, _csv_text(columns, [{k: _cell(v) for k, v in c.items()} for c in cases]))


# ---------------------------------------------------------------------------- metrics.csv
def metrics_columns(extra_columns: Iterable[str]) -> list[str]:
    """The column order of ``metrics.csv``: identity, the carried-through columns, metrics, run."""
    return [*IDENTITY_COLUMNS, *extra_columns, *METRIC_COLUMNS, *RUN_COLUMNS]


def _cell(value: Any) -> str:
    """A value as text: floats as the shortest text that reads back as the same float, nan as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))  # float(): numpy scalars print as np.float64(...)
    if isinstance(value, (list, tuple)):
        return ";".join(_cell(v) for v in value)
    return str(value)


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def write_metrics_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], extra_columns: Sequence[str]) -> Path:
    """Write ``metrics.csv`` atomically: one row per case in the given order (see :func:`metrics_columns`)."""
    return atomic_write_text(path, _csv_text(metrics_columns(extra_columns), rows))


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` as dicts of text (empty cells are ``""``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def as_float(text: Any) -> float:
    """A ``metrics.csv`` cell as a float (``nan`` for an empty or non-numeric cell)."""
    try:
        return float(text) if text not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")
