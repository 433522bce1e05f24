"""The input gate: is this a usable non-contrast CT volume? Errors stop a job, warnings travel on.

:func:`check_path` reads an input and never raises for a problem the user caused: a file that
cannot be read becomes an error in the report. :func:`check_volume` judges a volume already in
memory (from a file, from Slicer, from a phantom).

Every message is one sentence that names the input and says what to do. Codes are stable
(tools and tests rely on them):

Errors (the job stops; ``digital-contrast check`` exits 2)
    ===========================  ==============================================================
    ``not_found``                the path does not exist
    ``unreadable``               damaged or truncated file (also empty files, undecodable DICOM)
    ``unknown_format``           not DICOM, NRRD, NIfTI or MetaImage
    ``empty_folder``             a folder without DICOM images
    ``not_3d_scalar``            2D, colour/vector, 4D or complex image
    ``several_series``           a DICOM folder with several series and no ``--series``
    ``series_not_found``         ``--series`` names a UID that is not in the folder
    ``inconsistent_series``      slices of one series differ in size, orientation or pixel size
    ``multiframe_unsupported``   enhanced multi-frame DICOM
    ``missing_geometry``         DICOM without position/orientation/pixel spacing
    ``not_ct_modality``          DICOM Modality other than CT
    ``non_finite``               NaN or infinite voxels
    ``bad_spacing``              zero, negative or non-finite voxel spacing
    ``bad_direction``            direction cosines that are not a rotation (singular, not unit)
    ``too_few_slices``           fewer than :data:`MIN_SLICES` slices
    ``too_small``                fewer than :data:`MIN_IN_PLANE` voxels across a slice
    ``not_ct_hu``                intensities that are not CT Hounsfield units
    ``missing_slices``           a DICOM series with gaps
    ``duplicate_slices``         two slices at one position
    ``uneven_spacing``           slices off the regular grid by more than 20% of the step
    ``gantry_tilt``              slices sheared by a tilted gantry
    ===========================  ==============================================================

Warnings (the job may go on; the user is told)
    ``contrast_enhanced`` (DICOM Contrast/Bolus Agent, or image evidence: see
    :mod:`DigitalContrastLib.synthesis.contrast_evidence`), ``thick_slices`` (slice thickness or
    spacing above :data:`MAX_SLICE_THICKNESS_MM`), ``large_volume`` (synthesis working memory
    above :data:`LARGE_VOLUME_MB`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.io import read_volume
from DigitalContrastLib.ct.volume import CTVolume

from .contrast_evidence import find_contrast_evidence

MIN_SLICES = 16                 # a volume with fewer slices is not a CT scan to synthesize
MIN_IN_PLANE = 16               # voxels across a slice
MAX_SLICE_THICKNESS_MM = 3.0    # thicker slices: warning
LARGE_VOLUME_MB = 4096.0        # synthesis working memory above this: warning
WORKING_COPIES_FLOAT32 = 6      # float32 copies synthesis keeps (input, normalised, output, weights, blend, uncertainty)
AIR_HU = (-1100.0, -700.0)      # air and lung in a CT (padding such as -2000 or -3024 HU lies below)
MIN_AIR_FRACTION = 0.001        # a CT has at least 0.1% air or lung (outside the body, lungs, bowel)
TISSUE_HU = (-200.0, 300.0)     # fat, water, soft tissue, blood
MIN_TISSUE_FRACTION = 0.01
MIN_HU_RANGE = 200.0            # p99 - p1 below this: a flat or normalised image
BODY_HU = -500.0                # body_fraction counts voxels above this
MAX_GRID_ERROR_FRACTION = 0.2   # uneven: a slice off the regular grid by more than this × step
MAX_TILT_SHIFT_PIXELS = 1.0     # gantry tilt: last slice shifted sideways by more than a pixel
STATS_MAX_VOXELS = 4_000_000    # percentiles on a regular subsample above this


@dataclass
class GateMessage:
    """One finding: a stable ``code`` and one sentence for the user."""

    code: str
    message: str


@dataclass
class GateReport:
    """The result of checking one input.

    Attributes:
        ok: True when there is no error (warnings allowed).
        errors, warnings: findings (see the module docstring for the codes).
        contrast_enhanced: True (DICOM tag or image evidence), False (no evidence), None (not judged).
        shape_zyx: array shape; spacing_xyz_mm: voxel size (x, y, z) in mm.
        hu_stats: ``min``, ``max``, ``mean``, ``p1``, ``p50``, ``p99`` (HU), ``air_fraction``
            (air or lung, −1100…−700 HU), ``tissue_fraction`` (−200…300 HU), ``body_fraction`` (> −500 HU).
        source: the path checked (or the volume's ``source_path``).
        memory_estimate_mb: float32 working memory synthesis needs for this volume.
        format: ``dicom``, ``nrrd``, ``nifti``, ``metaimage`` or None.
        slice_thickness_mm: DICOM Slice Thickness, else the z spacing.
        contrast_evidence: the image detector's finding (see ``ContrastEvidence.to_dict``).
        contrast_reasons: why ``contrast_enhanced`` is True (DICOM tag, image evidence).
        series_uid: the DICOM series read, if any.
    """

    ok: bool
    errors: list[GateMessage] = field(default_factory=list)
    warnings: list[GateMessage] = field(default_factory=list)
    contrast_enhanced: bool | None = None
    shape_zyx: list[int] | None = None
    spacing_xyz_mm: list[float] | None = None
    hu_stats: dict[str, float] | None = None
    source: str = ""
    memory_estimate_mb: float | None = None
    format: str | None = None
    slice_thickness_mm: float | None = None
    contrast_evidence: dict[str, Any] | None = None
    contrast_reasons: list[str] = field(default_factory=list)
    series_uid: str | None = None

    def to_dict(self) -> dict:
        """JSON-able dict (the ``--json`` output of ``digital-contrast check``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GateReport":
        """The report :meth:`to_dict` gave (as it crosses from a worker process to the GUI)."""
        fields = dict(data)
        fields["errors"] = [GateMessage(**m) for m in fields.get("errors") or []]
        fields["warnings"] = [GateMessage(**m) for m in fields.get("warnings") or []]
        return cls(**fields)

    def error_codes(self) -> list[str]:
        return [m.code for m in self.errors]

    def warning_codes(self) -> list[str]:
        return [m.code for m in self.warnings]


class _Findings:
    def __init__(self) -> None:
        self.errors: list[GateMessage] = []
        self.warnings: list[GateMessage] = []

    def error(self, code: str, message: str) -> None:
        self.errors.append(GateMessage(code, message))

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(GateMessage(code, message))


def _name(volume: CTVolume) -> str:
    return str(volume.metadata.get("source_path") or "the volume")


def _hu_sample(array: np.ndarray) -> np.ndarray:
    """A regular subsample (every k-th voxel per axis) small enough for percentiles."""
    step = max(1, math.ceil((array.size / STATS_MAX_VOXELS) ** (1 / 3))) if array.ndim == 3 else 1
    sample = array[::step, ::step, ::step] if array.ndim == 3 else array
    return np.asarray(sample, dtype=np.float32).ravel()


def hu_statistics(array: np.ndarray) -> dict[str, float]:
    """HU summary of the finite voxels (percentiles on a subsample of at most ~4 M voxels)."""
    finite = np.isfinite(array) if np.issubdtype(array.dtype, np.floating) else None
    values = _hu_sample(array)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    full = array[finite] if finite is not None else array
    p1, p50, p99 = (float(v) for v in np.percentile(values, [1, 50, 99]))
    return {
        "min": float(full.min()),
        "max": float(full.max()),
        "mean": round(float(values.mean()), 2),
        "p1": p1,
        "p50": p50,
        "p99": p99,
        "air_fraction": round(float(np.mean((values >= AIR_HU[0]) & (values <= AIR_HU[1]))), 5),
        "tissue_fraction": round(float(np.mean((values >= TISSUE_HU[0]) & (values <= TISSUE_HU[1]))), 5),
        "body_fraction": round(float(np.mean(values > BODY_HU)), 5),
    }


def memory_estimate_mb(shape_zyx: tuple[int, ...]) -> float:
    """Float32 working memory (MiB) synthesis needs: :data:`WORKING_COPIES_FLOAT32` copies."""
    return round(float(np.prod(shape_zyx)) * 4 * WORKING_COPIES_FLOAT32 / 2**20, 1)


# ----------------------------------------------------------------------------- the checks
def _check_geometry(volume: CTVolume, f: _Findings, name: str) -> None:
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        f.error(
            "bad_spacing",
            f"{name} has an invalid voxel spacing {tuple(float(s) for s in spacing)} mm (zero, negative or not a number); fix the spacing in the file header or export the volume again.",
        )
    direction = volume.direction_matrix
    if not np.all(np.isfinite(direction)) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        f.error(
            "bad_direction",
            f"{name} has direction cosines that are not a rotation (axes not unit length or not perpendicular); export the volume again from the scanner or 3D Slicer.",
        )
    shape = volume.shape_zyx
    if shape[0] < MIN_SLICES:
        single_file = volume.metadata.get("format") == "dicom" and shape[0] == 1
        fix = "pass the folder that holds the whole series, not one file" if single_file else "pass the complete CT series"
        f.error(
            "too_few_slices",
            f"{name} has {shape[0]} slice{'s' if shape[0] != 1 else ''}, but synthesis needs at least {MIN_SLICES}; {fix}.",
        )
    if min(shape[1:]) < MIN_IN_PLANE:
        f.error(
            "too_small",
            f"{name} has only {shape[2]}x{shape[1]} voxels per slice, but synthesis needs at least {MIN_IN_PLANE}x{MIN_IN_PLANE}; pass the full CT volume, not a crop or thumbnail.",
        )


def _check_dicom(volume: CTVolume, f: _Findings, name: str) -> None:
    meta = volume.metadata.get("dicom") or {}
    modality = str(meta.get("Modality") or "").upper()
    if modality and modality != "CT":
        f.error(
            "not_ct_modality",
            f"{name} is a DICOM series of modality {modality}, not CT; choose the non-contrast CT series of the study.",
        )
    geometry = meta.get("slice_geometry") or {}
    step = geometry.get("step_median_mm") or 0.0
    if geometry.get("duplicate_slices"):
        f.error(
            "duplicate_slices",
            f"{name} has {geometry['duplicate_slices']} slice(s) at the same position as another (several acquisitions mixed in one series); export one reconstruction of the series on its own.",
        )
    if geometry.get("missing_slices"):
        where = ", ".join(f"{p:g}" for p in geometry.get("gaps_after_mm", [])[:3])
        f.error(
            "missing_slices",
            f"{name} is missing {geometry['missing_slices']} slice(s) (gap after position {where} mm along the slice normal); copy or export the complete series again.",
        )
    elif step > 0 and geometry.get("max_grid_error_mm", 0.0) > MAX_GRID_ERROR_FRACTION * step:
        f.error(
            "uneven_spacing",
            f"{name} has unevenly spaced slices (steps from {geometry['step_min_mm']:.3g} to {geometry['step_max_mm']:.3g} mm, a slice {geometry['max_grid_error_mm']:.2f} mm off the regular grid); resample it to even spacing (e.g. in 3D Slicer) or export a regular reconstruction.",
        )
    if geometry.get("tilt_shift_pixels", 0.0) > MAX_TILT_SHIFT_PIXELS:
        f.error(
            "gantry_tilt",
            f"{name} was acquired with a gantry tilt of {geometry['gantry_tilt_deg']:.1f}° (slices shifted {geometry['tilt_shift_mm']:.1f} mm sideways); resample it to an untilted grid first (e.g. 3D Slicer's DICOM import with acquisition geometry regularization) and pass the result.",
        )


def _check_intensities(volume: CTVolume, f: _Findings, name: str) -> dict[str, float] | None:
    array = volume.array
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        f.error("not_ct_hu", f"{name} holds {array.dtype} values, not CT Hounsfield units; pass the CT volume itself, not a mask or label map.")
        return None
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            f.error(
                "non_finite",
                f"{name} has {bad} voxel{'s' if bad != 1 else ''} that {'are' if bad != 1 else 'is'} NaN or infinite; export the CT again (or replace them, e.g. by −1024 HU outside the body) before synthesis.",
            )
    stats = hu_statistics(array)
    if not stats:
        return None
    lo, hi = stats["min"], stats["max"]
    if (
        stats["air_fraction"] < MIN_AIR_FRACTION
        or stats["tissue_fraction"] < MIN_TISSUE_FRACTION
        or stats["p99"] - stats["p1"] < MIN_HU_RANGE
    ):
        if lo >= 0 and hi <= 255:
            looks = f"its values lie between {lo:g} and {hi:g} like an 8-bit picture"
        elif lo >= 0:
            looks = f"it has no negative values ({lo:g} to {hi:g}) like an MR image or a CT exported without its rescale"
        elif stats["p99"] - stats["p1"] < MIN_HU_RANGE:
            looks = f"its values barely vary (1st to 99th percentile {stats['p1']:.3g} to {stats['p99']:.3g}) like a normalised image"
        else:
            looks = f"it has almost no air or lung between −1100 and −700 HU ({100 * stats['air_fraction']:.2f}% of voxels) or soft tissue ({100 * stats['tissue_fraction']:.1f}%)"
        f.error(
            "not_ct_hu",
            f"{name} does not look like CT in Hounsfield units: {looks}; pass the original CT in HU (with Rescale Slope/Intercept applied).",
        )
    return stats


def _check_warnings(volume: CTVolume, f: _Findings, name: str, report: GateReport, judge_image: bool) -> None:
    meta = volume.metadata.get("dicom") or {}
    thickness = meta.get("SliceThickness")
    thickness = float(thickness) if isinstance(thickness, (int, float)) and thickness > 0 else None
    z_mm = float(volume.spacing_mm[2])
    report.slice_thickness_mm = thickness if thickness is not None else z_mm
    if report.slice_thickness_mm > MAX_SLICE_THICKNESS_MM + 1e-6:
        f.warn(
            "thick_slices",
            f"{name} has {report.slice_thickness_mm:g} mm slices, thicker than {MAX_SLICE_THICKNESS_MM:g} mm, which blurs small vessels in the synthesis; use a thin-slice reconstruction if there is one.",
        )
    if report.memory_estimate_mb is not None and report.memory_estimate_mb > LARGE_VOLUME_MB:
        f.warn(
            "large_volume",
            f"{name} is large ({'x'.join(str(s) for s in volume.size_xyz)} voxels): synthesis needs about {report.memory_estimate_mb / 1024:.1f} GB of working memory; crop it to the region of interest if the machine has less.",
        )
    evidence_from_tag = bool(meta.get("contrast_agent_given"))
    evidence = None
    if judge_image:

        evidence = find_contrast_evidence(volume)
        report.contrast_evidence = evidence.to_dict()
    if evidence_from_tag or (evidence is not None and evidence.enhanced):
        report.contrast_enhanced = True
        reasons = []
        if evidence_from_tag:
            reasons.append(f"its DICOM Contrast/Bolus Agent is '{meta.get('ContrastBolusAgent')}'")
        if evidence is not None and evidence.enhanced:
            reasons.append(f"the image shows {evidence.reason}")
        report.contrast_reasons = reasons
        f.warn(
            "contrast_enhanced",
            f"{name} looks already contrast-enhanced ({' and '.join(reasons)}); synthesis expects a non-contrast CT, so use the non-contrast series if there is one.",
        )
    elif evidence is not None:
        report.contrast_enhanced = evidence.enhanced


def check_volume(volume: CTVolume, with_warnings: bool = True) -> GateReport:
    """Judge a volume in memory; never raises for a bad volume (its problems become errors).

    Args:
        volume: the candidate input, ``array[z, y, x]`` in HU with LPS geometry.
        with_warnings: also look for what only warns (thick slices, a large volume, signs of
            contrast: the image evidence is most of the time); False gives the errors alone, which
            decide whether the input is refused (the synthesis service's check at upload).

    Returns:
        A :class:`GateReport`; ``ok`` is False when there is at least one error.
    """
    name = _name(volume)
    f = _Findings()
    report = GateReport(ok=False, source=name, format=volume.metadata.get("format"), series_uid=volume.metadata.get("series_uid"))
    array = np.asarray(volume.array)
    if array.ndim != 3:
        f.error("not_3d_scalar", f"{name} has {array.ndim} dimensions {tuple(array.shape)}, not a 3D scalar CT volume; pass a 3D CT volume.")
        report.errors = f.errors
        return report
    report.shape_zyx = list(volume.shape_zyx)
    report.spacing_xyz_mm = [float(s) for s in volume.spacing_mm]
    report.memory_estimate_mb = memory_estimate_mb(volume.shape_zyx)
    _check_geometry(volume, f, name)
    _check_dicom(volume, f, name)
    report.hu_stats = _check_intensities(volume, f, name)
    codes = {m.code for m in f.errors}
    # the image detector needs HU and a usable grid; otherwise contrast is judged by the tag alone
    judge_image = not codes & {"not_ct_hu", "non_finite", "bad_spacing", "bad_direction", "too_small"}
    if with_warnings:
        _check_warnings(volume, f, name, report, judge_image)
    report.errors, report.warnings = f.errors, f.warnings
    report.ok = not f.errors
    return report


def check_path(path: str | os.PathLike, series_uid: str | None = None,
               with_warnings: bool = True) -> tuple[GateReport, CTVolume | None]:
    """Read ``path`` (see :func:`DigitalContrastLib.ct.io.read_volume`) and judge it.

    Never raises for a problem the user caused: a file that cannot be read gives a report with
    one error (its code and sentence) and ``None`` for the volume.
    """

    try:
        volume = read_volume(path, series_uid=series_uid)
    except InputError as error:
        report = GateReport(ok=False, source=str(Path(path).expanduser()), errors=[GateMessage(error.code, error.message)])
        return report, None
    report = check_volume(volume, with_warnings)
    return report, volume


def gate_or_raise(volume: CTVolume, on_warning: Callable[[str, str], None] | None = None) -> list[GateMessage]:
    """The input gate as synthesis runs it: the first error raises ``InputError``; warnings go to
    ``on_warning(code, message)`` and are returned (they belong in the provenance)."""
    report = check_volume(volume)
    if not report.ok:
        first = report.errors[0]
        raise InputError(first.message, code=first.code)
    for warning in report.warnings:
        if on_warning is not None:
            on_warning(warning.code, warning.message)
    return list(report.warnings)
