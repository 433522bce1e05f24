"""``prepare``: every pair of a cohort CSV made into a training case, resumable, locally or on Dask.

Outputs in ``CASES``::

    <case_id>/            a prepared case (see :mod:`.case`): complete, or absent
    excluded/<case_id>.json   an excluded or failed case's record (reason); excluded/<case_id>.png
                          the QC picture of a pair that failed the registration check
    prepare.json          counts, settings, every case's status and figures (no patient identity)
    report.html           the QC pictures and the registration figures, case by case
    run.log               one JSON line per event
    .patient-key          the pseudonymisation key of the patient keys (owner-only; never copy it)

**Resuming.** A case whose ``case.json`` (or exclusion record) was made from the same inputs with
the same settings, its files matching their SHA-256, is kept; failed and unfinished cases are
redone. **Where cases run**: as ``evaluate`` (:func:`DigitalContrastLib.cohort.run.plan_local_pool`):
one process using every core by default, ``workers=N`` processes, or ``scheduler=ADDRESS`` for a
Dask cluster (inputs and ``CASES`` on a file system every worker sees).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from DigitalContrastLib import __version__
from DigitalContrastLib.cohort.run import RunLog, plan_local_pool, run_cases
from DigitalContrastLib.cohort.table import read_cohort_csv
from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import JobError, OutputError
from DigitalContrastLib.common.json_values import jsonable

from .case import (
    STAGING_DIR,
    STATUS_EXCLUDED,
    STATUS_FAILED,
    STATUS_PREPARED,
    PrepareSettings,
    finished_record,
    prepare_case,
)

SUMMARY_FILE = "prepare.json"
REPORT_FILE = "report.html"
RUN_LOG = "run.log"


@dataclass
class PrepareRun:
    """What :func:`prepare_cohort` did: every case's record (CSV order), the cases kept from an earlier run."""

    out_dir: Path
    records: list[dict[str, Any]]
    kept: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.get("status") == status)

    @property
    def report_html(self) -> Path:
        return self.out_dir / REPORT_FILE

    @property
    def summary_json(self) -> Path:
        return self.out_dir / SUMMARY_FILE


def prepare_cohort(csv_path: str | os.PathLike, out_dir: str | os.PathLike, settings: PrepareSettings | None = None, *,
                   workers: int | None = None, scheduler: str | None = None,
                   on_case: Callable[[dict[str, Any], bool], None] | None = None,
                   on_plan: Callable[[str], None] | None = None) -> PrepareRun:
    """Prepare every case of ``csv_path`` into ``out_dir`` (see the module docstring).

    Raises:
        InputError: the cohort CSV is bad (nothing is written then).
        OutputError: ``out_dir`` cannot be written.
        JobError: both ``workers`` and ``scheduler``, or a Dask scheduler that cannot be reached.
    """
    from .facts import folder_secret

    started = time.perf_counter()
    if scheduler and workers is not None:
        raise JobError("--workers sizes the local pool and --scheduler sends the cases to a Dask cluster: give one of them.")
    cases = read_cohort_csv(csv_path)
    out = Path(out_dir).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        secret = folder_secret(out)
    except OSError as error:
        raise OutputError(f"{out} cannot be written ({error.strerror}); choose a folder you can write to.") from None
    shutil.rmtree(out / STAGING_DIR, ignore_errors=True)  # left by a killed run: never a case
    settings = replace(settings or PrepareSettings(), patient_secret=secret)
    log = RunLog(out / RUN_LOG, uuid.uuid4().hex[:12])
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for case in cases:
        done = finished_record(case, out, settings)
        if done is None:
            todo.append(case)
        else:
            records[case.case_id] = done
    plan = None if scheduler else plan_local_pool(workers, "cpu", settings.threads, gpus=0)
    where = f"Dask cluster at {scheduler}" if scheduler else plan.policy  # type: ignore[union-attr]
    if on_plan:
        on_plan(where)
    log.write("run_started", cases=len(cases), to_do=len(todo), kept=sorted(records), where=where,
              settings=settings.to_dict(), version=__version__)
    kept = [c.case_id for c in cases if c.case_id in records]
    for record in records.values():
        if on_case:
            on_case(record, True)
    for record in run_cases(todo, out, settings, plan, scheduler, task=prepare_case):
        records[record["case_id"]] = record
        log.write("case_finished", case_id=record["case_id"], status=record["status"], reason=record.get("reason", ""),
                  seconds=record.get("seconds"))
        if on_case:
            on_case(record, False)
    try:
        (out / STAGING_DIR).rmdir()  # empty once every case is renamed into place
    except OSError:
        pass
    ordered = [records[c.case_id] for c in cases]
    summary = summarize(ordered, settings, where, Path(csv_path).resolve())
    atomic_write_text(out / SUMMARY_FILE, json.dumps(jsonable(summary), indent=1, allow_nan=False) + "\n")
    from .report import write_prepare_report

    write_prepare_report(out, summary)
    seconds = time.perf_counter() - started
    log.write("run_finished", prepared=summary["counts"][STATUS_PREPARED], excluded=summary["counts"][STATUS_EXCLUDED],
              failed=summary["counts"][STATUS_FAILED], seconds=seconds)
    return PrepareRun(out, ordered, kept, seconds)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """One case's line of ``prepare.json``: status, reason and the figures a reader of the report needs."""
    quality = record.get("quality") or {}
    enhancement = record.get("enhancement") or {}
    registration = record.get("registration") or {}
    return {"case_id": record["case_id"], "status": record["status"], "reason": record.get("reason", ""),
            "patient_key": record.get("patient_key"),
            **{k: quality.get(k) for k in ("bone_dice_before", "bone_dice_after", "ncc_before", "ncc_after",
                                           "mattes_mi_before", "mattes_mi_after")},
            "registration_final_stage": registration.get("final_stage"),
            "seconds_registration": registration.get("seconds"),
            "vessel_ml": enhancement.get("vessel_ml"), "enhancing_tissue_ml": enhancement.get("enhancing_tissue_ml"),
            "qc_picture": (f"{record['case_id']}/qc.png" if record["status"] == STATUS_PREPARED
                           else record.get("qc_picture")),
            "seconds": record.get("seconds")}


def summarize(records: list[dict[str, Any]], settings: PrepareSettings, where: str, cohort_csv: Path) -> dict[str, Any]:
    """The content of ``prepare.json``."""
    counts = {status: sum(1 for r in records if r.get("status") == status)
              for status in (STATUS_PREPARED, STATUS_EXCLUDED, STATUS_FAILED)}
    return {
        "digital_contrast_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cohort_csv": str(cohort_csv),
        "where": where,
        "settings": settings.to_dict(),
        "counts": {"cases": len(records), **counts,
                   "patients": len({r.get("patient_key") for r in records if r.get("status") == STATUS_PREPARED})},
        "cases": [_row(r) for r in records],
    }
