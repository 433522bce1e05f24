"""One pair of a site's cohort made into a training case: checks, registration, quality, masks, files.

:func:`prepare_case` takes one :class:`~DigitalContrastLib.cohort.table.CohortCase` (non-contrast and
contrast scan: DICOM folders, NRRD, NIfTI or MHA) and ends in one of three states:

* ``prepared``: ``CASES/<case_id>/`` holds the pair on the non-contrast grid (``noncontrast.nrrd``,
  the registered ``contrast.nrrd``), ``enhancement.nrrd``, ``labels.nrrd`` when the CSV gave labels,
  ``registration.tfm``, ``qc.png`` and ``case.json`` (:mod:`.facts`: no patient identity). The
  folder is built beside the others and renamed into place complete, so ``CASES`` never holds a
  half-written case;
* ``excluded``: the data are not a usable pair, with one sentence (the non-contrast scan looks
  enhanced, the contrast scan does not, different patients, no overlap, a registration that fails
  the quality check, an input the gate refuses); recorded in ``CASES/excluded/<case_id>.json``;
* ``failed``: the files could not be read (a missing file, a DICOM folder of several series without
  its column in the CSV); recorded there too, and redone by the next run.

Steps: the input gate on both scans (:mod:`DigitalContrastLib.synthesis.gate`); registration of the
contrast scan onto the non-contrast grid, rigid then B-spline (:mod:`DigitalContrastLib.evaluation.registration`:
SimpleITK, Mattes mutual information, fixed seed); the non-contrast grid cropped to the slices the
contrast scan covers; the quality figures (:mod:`.quality`); the enhancement mask (:mod:`.enhancement`).
Arrays ``[z, y, x]``, HU, LPS geometry throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.cohort.case import input_fingerprint
from DigitalContrastLib.cohort.table import CohortCase
from DigitalContrastLib.common.atomic import atomic_write_text, publish_folder
from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.common.json_values import jsonable
from DigitalContrastLib.ct.paired_case import (
    CASE_FACTS_FILE,
    CASE_FILES,
    ENHANCEMENT_FILE,
    QC_PICTURE_FILE,
    REGISTRATION_FILE,
)
from DigitalContrastLib.ct.volume import CTVolume

PREPARE_VERSION = "1"
STATUS_PREPARED, STATUS_EXCLUDED, STATUS_FAILED = "prepared", "excluded", "failed"
EXCLUDED_DIR = "excluded"
STAGING_DIR = ".staging"
#: A body slice counts as covered when this share of its body lies inside the contrast scan.
MIN_SLICE_COVERAGE = 0.98
MIN_SLICES = 16
REGISTRATIONS = {"rigid": "rigid", "deformable": "bspline"}


@dataclass(frozen=True)
class PrepareSettings:
    """What every case of a ``prepare`` run shares (picklable: it travels to pool and Dask workers).

    Attributes:
        register: ``deformable`` (rigid, then a cubic B-spline kept only where it matches better) or ``rigid``.
        threads: SimpleITK threads per case (None: the physical cores, or the pool's share).
        registration_seed: seed of the metric's sampling (fixed: reproducible).
        bspline_iterations, bspline_metric_samples: the deformable stage's effort per level.
        patient_secret: the folder's pseudonymisation key (:func:`.facts.folder_secret`); never written.
    """

    register: str = "deformable"
    threads: int | None = None
    registration_seed: int = 0
    bspline_iterations: int = 10
    bspline_metric_samples: int = 3000
    patient_secret: bytes = b""

    def __post_init__(self) -> None:
        if self.register not in REGISTRATIONS:
            raise JobError(f"--register {self.register} is unknown; choose rigid or deformable.")

    def result_key(self) -> dict[str, Any]:
        """The settings that change a prepared case (a case made with others is redone)."""
        return {"version": PREPARE_VERSION, "register": self.register, "registration_seed": self.registration_seed,
                "bspline_iterations": self.bspline_iterations, "bspline_metric_samples": self.bspline_metric_samples}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "patient_secret"}


class _Stop(Exception):
    """Ends a case as ``excluded`` or ``failed`` with one sentence (``stage: sentence``)."""

    def __init__(self, status: str, stage: str, message: str, picture: tuple | None = None) -> None:
        super().__init__(f"{stage}: {message}")
        self.status, self.stage, self.picture = status, stage, picture


def case_dir(out_dir: str | os.PathLike, case_id: str) -> Path:
    return Path(out_dir) / case_id


def record_path(out_dir: str | os.PathLike, case_id: str) -> Path:
    """Where an excluded or failed case's record goes: ``CASES/excluded/<case_id>.json``."""
    return Path(out_dir) / EXCLUDED_DIR / f"{case_id}.json"


def inputs_digest(case: CohortCase) -> str:
    """A hash of the inputs' fingerprints and series choices (paths stay out of ``case.json``)."""
    fingerprint = {"noncontrast": input_fingerprint(case.noncontrast), "contrast": input_fingerprint(case.contrast),
                   "labels": input_fingerprint(case.labels),
                   "series": [case.noncontrast_series, case.contrast_series]}
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def finished_record(case: CohortCase, out_dir: str | os.PathLike, settings: PrepareSettings) -> dict[str, Any] | None:
    """The record of a case that needs no work: prepared (every file matching its SHA-256) or
    excluded, from the same inputs and settings; None otherwise (failed and unfinished cases)."""
    from DigitalContrastLib.common.checksum import file_sha256

    key, digest = jsonable(settings.result_key()), inputs_digest(case)
    folder = case_dir(out_dir, case.case_id)
    for path in (folder / CASE_FACTS_FILE, record_path(out_dir, case.case_id)):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("settings_key") != key or record.get("inputs_sha256") != digest:
            continue
        if record.get("status") == STATUS_EXCLUDED:
            return record
        if record.get("status") == STATUS_PREPARED:
            try:
                if all(file_sha256(folder / name) == sha for name, sha in (record.get("files") or {}).items()):
                    return record
            except OSError:
                continue
    return None


# ---------------------------------------------------------------------------- reading and checks
def _read(case: CohortCase, role: str) -> CTVolume:
    from DigitalContrastLib.ct.io import read_volume

    path = getattr(case, role)
    series = getattr(case, f"{role}_series")
    try:
        return read_volume(path, series_uid=series)
    except InputError as error:
        if error.code == "several_series":
            listing = error.message.split(": ", 1)[-1].rsplit(";", 1)[0]
            raise _Stop(STATUS_FAILED, role, f"{path} holds several DICOM series ({listing}); add a column "
                        f"'{role}_series' to the cohort CSV with the Series Instance UID to use for case "
                        f"{case.case_id}") from None
        raise _Stop(STATUS_FAILED, role, error.message.rstrip(".")) from None


def _gate(volume: CTVolume, role: str) -> dict[str, Any]:
    """The input gate on one scan; its errors and the wrong phase exclude the case."""
    from DigitalContrastLib.synthesis.gate import check_volume

    report = check_volume(volume)
    if not report.ok:
        first = report.errors[0]
        raise _Stop(STATUS_EXCLUDED, role, f"[{first.code}] {first.message.rstrip('.')}")
    summary = {"contrast_enhanced": report.contrast_enhanced, "reasons": report.contrast_reasons,
               "warnings": report.warning_codes(), "tube": (report.contrast_evidence or {}).get("tube")}
    name = volume.metadata.get("source_path") or role
    if role == "noncontrast" and report.contrast_enhanced:
        raise _Stop(STATUS_EXCLUDED, role, f"the non-contrast scan {name} looks contrast-enhanced "
                    f"({' and '.join(report.contrast_reasons)}); give the unenhanced series of the visit")
    if role == "contrast" and report.contrast_enhanced is not True:
        why = "could not be judged" if report.contrast_enhanced is None else "shows no enhanced aorta"
        raise _Stop(STATUS_EXCLUDED, role, f"the contrast scan {name} does not look enhanced (it {why} and its "
                    "header names no contrast agent); give the arterial-phase series of the visit")
    return summary


def _same_patient(noncontrast: CTVolume, contrast: CTVolume) -> str:
    """The registration's initializer: ``identity`` for one frame of reference, else ``geometry``.

    Raises _Stop when both scans carry DICOM Patient IDs and they differ (neither is written anywhere).
    """
    from .facts import dicom_patient_ids

    first, second = dicom_patient_ids(noncontrast, contrast)
    if first and second and first != second:
        raise _Stop(STATUS_EXCLUDED, "pair", "the two scans belong to different patients (their DICOM Patient IDs "
                    "differ); pair each patient's own non-contrast and contrast scans")
    frames = [((v.metadata.get("dicom") or {}).get("FrameOfReferenceUID")) for v in (noncontrast, contrast)]
    return "geometry" if all(frames) and frames[0] != frames[1] else "identity"


# ---------------------------------------------------------------------------- the pair on one grid
def _covered_slices(body: np.ndarray, covered: np.ndarray) -> tuple[int, int]:
    """The longest run ``[z0, z1)`` of slices whose body the contrast scan covers (:data:`MIN_SLICE_COVERAGE`)."""
    body_count = body.reshape(body.shape[0], -1).sum(axis=1)
    inside = (body & covered).reshape(body.shape[0], -1).sum(axis=1)
    good = (body_count > 0) & (inside >= MIN_SLICE_COVERAGE * np.maximum(body_count, 1))
    best, start = (0, 0), None
    for z, ok in enumerate([*good.tolist(), False]):
        if ok and start is None:
            start = z
        elif not ok and start is not None:
            if z - start > best[1] - best[0]:
                best = (start, z)
            start = None
    return best


def _crop(volume: CTVolume, z0: int, z1: int) -> CTVolume:
    origin = volume.index_to_lps(np.array([[0.0, 0.0, float(z0)]]))[0]
    return CTVolume(np.ascontiguousarray(volume.array[z0:z1]), volume.spacing_mm, tuple(float(v) for v in origin),
                    volume.direction, dict(volume.metadata))


def prepare_case(case: CohortCase, out_dir: str | os.PathLike, settings: PrepareSettings,
                 device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Prepare one case (see the module docstring); returns its record (also written to disk).

    ``device`` is unused (the per-case task signature of ``cohort.run.run_cases``); ``threads`` are
    SimpleITK's (default ``settings.threads``, else the pool's share, else every physical core).
    """
    from DigitalContrastLib.cohort.run import node_slot
    from DigitalContrastLib.common.hardware import physical_cores

    started = time.perf_counter()
    threads = int(threads or settings.threads or node_slot().get("threads") or physical_cores())
    out = Path(out_dir)
    record: dict[str, Any] = {"schema": 1, "case_id": case.case_id, "status": STATUS_FAILED, "reason": "",
                              "settings_key": settings.result_key(), "inputs_sha256": inputs_digest(case)}
    try:
        _prepare(case, out, settings, threads, record)
        record["status"] = STATUS_PREPARED
    except _Stop as stop:
        record.update(status=stop.status, stage=stop.stage, reason=str(stop))
        if stop.picture is not None:
            picture = out / EXCLUDED_DIR / f"{case.case_id}.png"
            picture.parent.mkdir(parents=True, exist_ok=True)
            from .qc_picture import write_qc_picture

            write_qc_picture(picture, *stop.picture, footer=f"case {case.case_id}: EXCLUDED, {stop}"[:160])
            record["qc_picture"] = f"{EXCLUDED_DIR}/{picture.name}"
    except Exception as error:  # noqa: BLE001 - one case's bug must not end a cohort
        record.update(stage="internal", reason=f"internal error ({type(error).__name__}: {error}); see "
                                               f"{EXCLUDED_DIR}/{case.case_id}.error.txt")
        (out / EXCLUDED_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / EXCLUDED_DIR / f"{case.case_id}.error.txt", traceback.format_exc())
    record["seconds"] = round(time.perf_counter() - started, 2)
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record = jsonable(record)
    if record["status"] != STATUS_PREPARED:
        atomic_write_text(record_path(out, case.case_id), json.dumps(record, indent=1) + "\n")
        shutil.rmtree(case_dir(out, case.case_id), ignore_errors=True)  # a stale case must not be trained on
    return record


def _prepare(case: CohortCase, out: Path, settings: PrepareSettings, threads: int, record: dict[str, Any]) -> None:
    from DigitalContrastLib.ct.masks import body_mask_from_ct
    from DigitalContrastLib.evaluation.registration import register, resample_to

    from .enhancement import enhancement_mask, mask_volumes_ml
    from .facts import patient_key, scan_facts, seconds_between
    from .quality import registration_quality

    if case.contrast is None:
        raise _Stop(STATUS_EXCLUDED, "contrast", "the cohort CSV gives no contrast scan for this case; add its path "
                    "in the 'contrast' column")
    noncontrast, contrast = _read(case, "noncontrast"), _read(case, "contrast")
    gate = {"noncontrast": _gate(noncontrast, "noncontrast"), "contrast": _gate(contrast, "contrast")}
    initializer = _same_patient(noncontrast, contrast)
    t = time.perf_counter()
    try:
        result = register(noncontrast, contrast, method=REGISTRATIONS[settings.register], seed=settings.registration_seed,
                          initializer=initializer, threads=threads, bspline_iterations=settings.bspline_iterations,
                          bspline_metric_samples=settings.bspline_metric_samples)
    except InputError as error:
        share = re.search(r"only (\d+%)", error.message)
        raise _Stop(STATUS_EXCLUDED, "registration", "the contrast scan does not overlap the non-contrast scan in space"
                    + (f" (only {share.group(1)} of the body lies inside it)" if share else "")
                    + ": different patients or body regions; pair scans of the same patient and region") from None
    seconds_registration = time.perf_counter() - t
    ones = contrast.with_array(np.ones(contrast.shape_zyx, np.uint8))
    covered = resample_to(ones, noncontrast, result.transform, default_hu=0, interpolator="nearest").array > 0
    covered_before = resample_to(ones, noncontrast, None, default_hu=0, interpolator="nearest").array > 0
    before = resample_to(contrast, noncontrast, None)
    body = body_mask_from_ct(noncontrast.array)
    quality = registration_quality(noncontrast.array, before.array, result.registered.array, body & covered_before,
                                   body & covered, result.stage_metric_values)
    z0, z1 = _covered_slices(body, covered)
    if not quality["passed"]:
        record["quality"] = quality
        mask = np.zeros(noncontrast.shape_zyx, np.uint8)
        raise _Stop(STATUS_EXCLUDED, "quality", quality["reason"], picture=(noncontrast, before, result.registered, mask))
    if z1 - z0 < MIN_SLICES:
        raise _Stop(STATUS_EXCLUDED, "overlap", f"the contrast scan covers the whole body on only {z1 - z0} slices of "
                    f"the non-contrast scan (at least {MIN_SLICES} needed); give scans of the same body region")
    nc = _crop(noncontrast, z0, z1)
    registered = _crop(result.registered, z0, z1)
    inside = covered[z0:z1]
    body_c = body[z0:z1]
    # voxels the contrast scan does not show keep the non-contrast HU: no enhancement is taught there
    contrast_array = np.where(inside, registered.array, nc.array).astype(np.int16)
    mask = enhancement_mask(nc.array, contrast_array, nc.spacing_mm, body_c, inside)
    record.update({
        "patient_key": patient_key(settings.patient_secret, _patient_identifier(case, noncontrast)[0]),
        "patient_key_from": _patient_identifier(case, noncontrast)[1],
        "grid": nc.geometry(),
        "crop": {"z_slices": [z0, z1], "of_slices": noncontrast.shape_zyx[0],
                 "uncovered_body_fraction": round(float((body_c & ~inside).sum() / max(body_c.sum(), 1)), 5)},
        "noncontrast": scan_facts(noncontrast), "contrast": scan_facts(contrast),
        "seconds_between_scans": seconds_between(noncontrast, contrast),
        "gate": gate,
        "registration": {"method": settings.register, "final_stage": result.final_stage, "initializer": initializer,
                         "mattes_mi": result.stage_metric_values, "iterations": result.iterations,
                         "rigid_parameters": result.rigid_parameters, "seconds": round(seconds_registration, 2)},
        "quality": quality,
        "enhancement": {**mask_volumes_ml(mask, nc.spacing_mm), "codes": {"1": "vessel", "2": "enhancing tissue"}},
    })
    labels = _labels(case, noncontrast, z0, z1)
    record["labels"] = "from the cohort CSV (used for training and scoring instead of the mask)" if labels is not None else None
    _write_case(out, case, record, nc, nc.with_array(contrast_array), mask, labels, result.transform,
                (nc, _crop(before, z0, z1), registered.with_array(contrast_array)))


def _patient_identifier(case: CohortCase, noncontrast: CTVolume) -> tuple[str, str]:
    """The text that names the patient (never stored) and where it came from."""
    if (case.extra.get("patient") or "").strip():
        return case.extra["patient"].strip(), "the cohort CSV's patient column"
    patient_id = (noncontrast.metadata.get("dicom") or {}).get("PatientID")
    if patient_id:
        return str(patient_id), "the DICOM Patient ID"
    return case.case_id, "the case id (no patient column, no DICOM Patient ID: every case its own patient)"


def _labels(case: CohortCase, noncontrast: CTVolume, z0: int, z1: int) -> CTVolume | None:
    from DigitalContrastLib.ct.io import read_volume
    from DigitalContrastLib.evaluation.registration import resample_to

    if case.labels is None:
        return None
    try:
        labels = read_volume(case.labels)
    except InputError as error:
        raise _Stop(STATUS_FAILED, "labels", error.message.rstrip(".")) from None
    if not labels.same_geometry(noncontrast):
        labels = resample_to(labels, noncontrast, None, default_hu=0, interpolator="nearest")
    return _crop(labels, z0, z1)


def _write_case(out: Path, case: CohortCase, record: dict[str, Any], noncontrast: CTVolume, contrast: CTVolume,
                mask: np.ndarray, labels: CTVolume | None, transform: Any, pictures: tuple) -> None:
    """Build the case folder beside the others and rename it into place (old folder replaced)."""
    import SimpleITK as sitk

    from DigitalContrastLib.common.checksum import file_sha256
    from DigitalContrastLib.ct.io import write_volume

    from .qc_picture import write_qc_picture

    staging = out / STAGING_DIR / f"{case.case_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        write_volume(noncontrast.with_array(noncontrast.array.astype(np.int16)), staging / CASE_FILES["noncontrast"])
        write_volume(contrast, staging / CASE_FILES["contrast"])
        write_volume(noncontrast.with_array(mask), staging / ENHANCEMENT_FILE, compress=True)
        if labels is not None:
            write_volume(labels.with_array(labels.array.astype(np.int16)), staging / CASE_FILES["labels"], compress=True)
        sitk.WriteTransform(transform, str(staging / REGISTRATION_FILE))
        quality = record["quality"]
        write_qc_picture(staging / QC_PICTURE_FILE, *pictures, mask,
                         footer=(f"case {case.case_id}: bone Dice {quality['bone_dice_before']:.2f} -> "
                                 f"{quality['bone_dice_after']:.2f}, NCC {quality['ncc_before']:.2f} -> "
                                 f"{quality['ncc_after']:.2f}"))
        record["files"] = {p.name: file_sha256(p) for p in sorted(staging.iterdir())}
        atomic_write_text(staging / CASE_FACTS_FILE, json.dumps(jsonable({**record, "status": STATUS_PREPARED}),
                                                                 indent=1) + "\n")
        publish_folder(staging, case_dir(out, case.case_id))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record_path(out, case.case_id).unlink(missing_ok=True)
