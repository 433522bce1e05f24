"""Input files of the reference MRMC tools, written from an analysis table
(``reader_id, case_id, modality, truth, score`` with a binary truth per case).

* **iMRMC** ``.imrmc`` (:func:`write_imrmc` / :func:`read_imrmc`): free header lines (with the
  id mappings), ``NR/N0/N1/NM``, ``BEGIN DATA:``, truth rows ``-1,<case>,truth,<0|1>``, then
  ``<reader>,<case>,<modality>,<score>`` with integer ids, so RJafroc reads it too.
* **RJafroc JAFROC** ``.xlsx`` (:func:`write_jafroc_xlsx`): sheets TRUTH, FP, TP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from DigitalContrastLib.common.atomic import atomic_path, atomic_write_text
from DigitalContrastReaderLib.study.errors import StudyError, UsageError

from .columns import ANALYSIS_COLUMNS, as_dtype, require_pandas

if TYPE_CHECKING:  # pandas is in the `reader` extra; imported when a table is made
    import pandas as pd


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
    pd = require_pandas()
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
        table[c.name] = as_dtype(table[c.name], c.dtype) if c.dtype != "float64" else table[c.name].astype("float64")
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
