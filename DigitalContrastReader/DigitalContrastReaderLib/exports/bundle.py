"""Every export of a study at once (:func:`export_all`): the tidy CSV, the analysis tables and
MRMC files of every scored question, the schedules (CSV and JSON), the revisions (every change
of an answer), the study versions (with the reason of every accepted change of display or
scheduling), a data dictionary (CSV and Markdown) of every column, and a ``manifest.json`` with
checksums. Answers given while the study was a demo are marked ``simulated`` in the tidy CSV, the
revisions and the analysis tables, counted in the manifest and named in the iMRMC header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastReaderLib.store.base import AnswerStore
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import UsageError
from DigitalContrastReaderLib.study.templates import RATING_QUESTIONS

from .columns import (
    ANALYSIS_COLUMNS,
    REVISION_COLUMNS,
    SCHEDULE_COLUMNS,
    STUDY_VERSION_COLUMNS,
    TIDY_COLUMNS,
    TRUTH_COLUMN_DESCRIPTION,
    TRUTH_PREFIX,
    csv_text,
    frame_of_rows,
    require_pandas,
)
from .mrmc_files import write_imrmc, write_jafroc_xlsx
from .tidy import analysis_table, tidy_table, write_tidy_csv

if TYPE_CHECKING:  # pandas is in the `reader` extra; imported when a table is made
    import pandas as pd


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
    return frame_of_rows(rows, SCHEDULE_COLUMNS)


def schedules_json(store: AnswerStore) -> str:
    """The stored schedules exactly as generated, with the study they were made for."""
    data = {
        "study_id": store.study.study_id,
        "study_sha256": store.study.sha256,
        "readers": [store.schedule(r.reader_id).to_dict() for r in store.readers()],
    }
    return json.dumps(data, indent=1) + "\n"


def revision_table(store: AnswerStore) -> pd.DataFrame:
    simulated = {r.response_id: r.simulated for r in store.responses()}
    rows = [{
        "reader_id": r.reader_id, "item_id": r.item_id, "question_key": r.question_key, "revision": r.revision,
        "value": canonical_json(r.value), "changed_at": r.changed_at, "changed_by": r.changed_by, "reason": r.reason,
        "study_sha256": r.study_sha256, "simulated": simulated.get(r.response_id, False),
    } for r in store.revisions()]
    return frame_of_rows(rows, REVISION_COLUMNS)


def study_version_table(store: AnswerStore) -> pd.DataFrame:
    """Every study version loaded into the store, with the reason of an accepted change."""
    rows = [{"version": v["version"], "study_sha256": v["study_sha256"], "loaded_at": v["loaded_at"],
             "active": bool(v["active"]), "accepted_change": v.get("accepted_change"),
             "changes": canonical_json(v.get("changes", []))} for v in store.study_versions()]
    return frame_of_rows(rows, STUDY_VERSION_COLUMNS)


def data_dictionary(truth_columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """Every column of every exported table: ``file, column, type, description``."""
    entries = []
    for file, columns in (
        ("responses_tidy.csv", TIDY_COLUMNS),
        ("analysis_<task>_<question>.csv", ANALYSIS_COLUMNS),
        ("schedules.csv", SCHEDULE_COLUMNS),
        ("revisions.csv", REVISION_COLUMNS),
        ("study_versions.csv", STUDY_VERSION_COLUMNS),
    ):
        for c in columns:
            entries.append({"file": file, "column": c.name, "type": c.dtype, "description": c.description})
        if file == "responses_tidy.csv":
            for name in truth_columns or ["<name>"]:
                entries.append({"file": file, "column": TRUTH_PREFIX + name, "type": "Float64 or string",
                                "description": TRUTH_COLUMN_DESCRIPTION.replace("<name>", name)})
    entries += [
        {"file": "analysis_<task>_<question>.csv", "column": "simulated", "type": "boolean",
         "description": "True when the read is a simulated answer (a demo study): never a real reading."},
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
    ``responses_tidy.csv``, ``revisions.csv``, ``schedules.csv``, ``schedules.json``, ``study_versions.csv``,
    ``analysis_<task>_<question>.csv`` per scored question, ``<task>_<question>.imrmc`` and
    ``.jafroc.xlsx`` for detection tasks, ``data_dictionary.csv``/``.md`` and ``manifest.json``."""
    pd = require_pandas()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    tidy = tidy_table(store)
    result.files.append(write_tidy_csv(tidy, out / "responses_tidy.csv"))
    result.files.append(atomic_write_text(out / "revisions.csv", csv_text(revision_table(store))))
    result.files.append(atomic_write_text(out / "schedules.csv", csv_text(schedule_table(store))))
    result.files.append(atomic_write_text(out / "schedules.json", schedules_json(store)))
    result.files.append(atomic_write_text(out / "study_versions.csv", csv_text(study_version_table(store))))
    study = store.study
    simulated_reads = {(r, c, s) for r, c, s, sim in zip(tidy["reader_id"], tidy["case_id"], tidy["source"],
                                                         tidy["simulated"]) if bool(sim)}
    if simulated_reads:
        result.notes.append(f"{int(tidy['simulated'].astype(bool).sum())} of {len(tidy)} answers are SIMULATED (given "
                            "while the study was a demo); they are marked in every file")
    for task_id, key in _scored_questions(store):
        stem = f"{task_id}_{key}"
        try:
            table = analysis_table(tidy, key, task_id)
        except UsageError:
            result.notes.append(f"{stem}: no answers yet, no analysis table")
            continue
        marked = table.assign(simulated=[(r, c, m) in simulated_reads for r, c, m in
                                         zip(table["reader_id"], table["case_id"], table["modality"])])
        result.files.append(atomic_write_text(out / f"analysis_{stem}.csv", csv_text(marked)))
        if study.task(task_id).type != "detection":
            continue
        description = [f"study: {study.study_id} version {study.version} sha256 {study.sha256}",
                       f"task: {task_id}; question: {key}; training items excluded"]
        if marked["simulated"].any():
            description.append(f"SIMULATED READS: {int(marked['simulated'].sum())} of {len(marked)} scores come from "
                               "simulated readers (a demo study), not real readings")
        try:
            result.files.append(write_imrmc(table, out / f"{stem}.imrmc", description=description))
            result.files.append(write_jafroc_xlsx(table, out / f"{stem}.jafroc.xlsx"))
        except UsageError as error:
            result.notes.append(f"{stem}: {error.message}")
    entries = data_dictionary(study.truth_columns)
    result.files.append(atomic_write_text(out / "data_dictionary.csv", csv_text(pd.DataFrame(entries))))
    result.files.append(atomic_write_text(out / "data_dictionary.md", _dictionary_markdown(entries)))
    manifest = {
        "study_id": study.study_id,
        "study_version": study.version,
        "study_sha256": study.sha256,
        "simulated_answers": int(tidy["simulated"].astype(bool).sum()),
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in result.files},
        "notes": result.notes,
    }
    result.files.append(atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n"))
    return result
