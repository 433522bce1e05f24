"""Read a CT series from DICOM files (pydicom): group, choose, sort, rescale to HU, build geometry.

One folder may hold several series and non-image files; files are grouped by Series Instance UID
(DICOMDIR and files without pixel rows/columns are skipped) and one series is chosen, by UID when
several are present. Slices are sorted along the slice normal, the cross product of the
Image Orientation (Patient) row and column cosines, by the projection of Image Position
(Patient) on it. Geometry (LPS, mm):

* direction columns: row cosine (x: along a row, increasing column), column cosine (y),
  slice normal (z);
* spacing ``(x, y, z)``: Pixel Spacing is (between rows, between columns) so ``x`` = its second
  value and ``y`` its first; ``z`` from the slice positions (least-squares slope of position
  against slice number, equal to the median step for a regular series);
* origin: Image Position (Patient) of the first sorted slice.

Irregular stacks (missing or duplicate slices, uneven steps, gantry tilt) are *recorded* in
``metadata["dicom"]["slice_geometry"]`` rather than refused here: the input gate
(:mod:`DigitalContrastLib.synthesis.gate`) turns them into errors with a sentence a user can act on.

Compressed transfer syntaxes (JPEG 2000 and JPEG lossless included) are decoded by pydicom
through ``pylibjpeg`` and ``pylibjpeg-openjpeg``. Enhanced (multi-frame) CT is refused with a
message saying how to convert it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import InputError

from .volume import CTVolume

#: Files larger than this that are not DICOM are not even opened while scanning a folder.
_PREAMBLE_BYTES = 132
#: Image Orientation cosines that differ by more than this between slices cannot be stacked.
_ORIENTATION_TOLERANCE = 1e-4
#: Steps shorter than this (mm) mean two slices at the same position.
_DUPLICATE_STEP_MM = 0.01
#: Non-pixel data elements kept for a later DICOM export are dropped above this size (bytes).
_MAX_KEPT_ELEMENT_BYTES = 4096
#: Contrast/Bolus Agent values that mean "no contrast" (upper case, stripped).
NO_CONTRAST_VALUES = frozenset({"", "NONE", "NO", "N", "NIL", "NULL", "0", "-", "NO CONTRAST", "WITHOUT", "NATIVE"})


@dataclass
class DicomSeriesInfo:
    """One series found in a folder.

    Attributes:
        series_uid: Series Instance UID ("" when the files carry none).
        description: Series Description ("" when absent).
        modality: Modality (CT, MR, ...).
        n_files: number of image files of the series.
        study_uid: Study Instance UID.
        series_number: Series Number, if present.
        rows, columns: image size of the first file.
        first_file: path of one file of the series.
    """

    series_uid: str
    description: str
    modality: str
    n_files: int
    study_uid: str = ""
    series_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    first_file: str = ""

    def summary(self) -> str:
        """``UID ('description', N slices)`` as used in messages."""
        uid = self.series_uid or "(no UID)"
        desc = self.description or self.modality or "no description"
        return f"{uid} ('{desc}', {self.n_files} slice{'s' if self.n_files != 1 else ''})"

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- scanning
def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` starts with the DICOM preamble (128 bytes then ``DICM``)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PREAMBLE_BYTES)
    except OSError:
        return False
    return len(head) == _PREAMBLE_BYTES and head[128:132] == b"DICM"


def _read_header(path: Path):
    """The dataset without pixel data, or None for files that are not DICOM images."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if path.name.upper() == "DICOMDIR" or not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except Exception as error:  # a DICOM file (it has the prefix) that cannot be parsed
        raise InputError(
            f"{path} is a damaged DICOM file ({type(error).__name__}); remove it from the folder or export the series again.",
            "unreadable",
        ) from None
    if "Rows" not in ds or "Columns" not in ds:  # reports, structure sets, presentation states
        return None
    return ds


def _headers_by_series(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = _read_header(path)
        if ds is not None:
            groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((path, ds))
    return groups


def _int_or(value: Any, default: int) -> int:
    """An integer tag value, or ``default`` when it is absent or not a number."""
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _series_info(uid: str, members: list[tuple[Path, Any]]) -> DicomSeriesInfo:
    path, ds = members[0]
    number = _int_or(ds.get("SeriesNumber"), -1)
    return DicomSeriesInfo(
        series_uid=uid,
        description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        n_files=len(members),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_number=number if number >= 0 else None,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        first_file=str(path),
    )


def list_dicom_series(folder: str | Path) -> list[DicomSeriesInfo]:
    """The image series found under ``folder`` (searched recursively), by series number then UID."""
    folder = Path(folder)
    infos = [_series_info(uid, members) for uid, members in _headers_by_series(folder).items()]
    return sorted(infos, key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))


def _no_images_message(folder: Path) -> str:
    volumes = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith((".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd"))
    ) if folder.is_dir() else []
    if volumes:
        return f"{folder} holds no DICOM images but holds {volumes[0]}; pass that file instead of the folder."
    return f"{folder} holds no DICOM image files; choose the folder that contains the series' DICOM files."


def _choose_series(folder: Path, groups: dict[str, list[tuple[Path, Any]]], series_uid: str | None):
    if not groups:
        raise InputError(_no_images_message(folder), "empty_folder")
    infos = sorted((_series_info(uid, m) for uid, m in groups.items()), key=lambda s: s.series_uid)
    listing = "; ".join(info.summary() for info in infos)
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(
                f"{folder} has no series with UID {series_uid}; it holds {listing}: pass one of these to --series.",
                "series_not_found",
            )
        return series_uid, groups[series_uid]
    if len(groups) > 1:
        raise InputError(
            f"{folder} holds {len(groups)} series: {listing}; pass --series UID to choose one.",
            "several_series",
        )
    uid = next(iter(groups))
    return uid, groups[uid]


# ----------------------------------------------------------------------------- geometry
def _floats(value, count: int) -> list[float] | None:
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(math.isfinite(v) for v in values) else None


def slice_geometry(positions_lps: np.ndarray, normal: np.ndarray, pixel_spacing_mm: float) -> dict[str, Any]:
    """Facts about a sorted stack of slice positions (no judgement: the gate applies limits).

    Args:
        positions_lps: ``(n, 3)`` Image Position (Patient) of the sorted slices, LPS mm.
        normal: unit slice normal (LPS); positions increase along it.
        pixel_spacing_mm: mean in-plane pixel size, used to express the tilt shear in pixels.

    Returns:
        ``n_slices``; ``positions_mm`` (projections on the normal); ``step_median_mm``,
        ``step_min_mm``, ``step_max_mm``; ``spacing_mm`` (least-squares step with gaps counted);
        ``missing_slices`` (slices absent from gaps that are whole multiples of the step) and
        ``gaps_after_mm`` (positions after which they are missing); ``duplicate_slices``;
        ``max_grid_error_mm`` (largest distance of a slice from the regular grid the volume
        assumes); ``gantry_tilt_deg`` and ``tilt_shift_mm`` (angle between the stack direction
        and the normal, and the sideways shift of the last slice against the first);
        ``tilt_shift_pixels``.
    """
    positions = np.asarray(positions_lps, dtype=float).reshape(-1, 3)
    n = len(positions)
    proj = positions @ normal
    facts: dict[str, Any] = {"n_slices": n, "positions_mm": [round(float(p), 6) for p in proj]}
    if n < 2:
        facts.update(spacing_mm=None, step_median_mm=None, missing_slices=0, duplicate_slices=0,
                     gaps_after_mm=[], max_grid_error_mm=0.0, gantry_tilt_deg=0.0, tilt_shift_mm=0.0,
                     tilt_shift_pixels=0.0)
        return facts
    steps = np.diff(proj)
    duplicates = int(np.sum(steps < _DUPLICATE_STEP_MM))
    real_steps = steps[steps >= _DUPLICATE_STEP_MM]
    median = float(np.median(real_steps)) if real_steps.size else 0.0
    missing = 0
    gaps_after: list[float] = []
    index = np.zeros(n)
    if median > 0:
        k = np.maximum(np.rint(steps / median), 0)
        for i, (step, multiple) in enumerate(zip(steps, k)):
            if multiple >= 2 and abs(step - multiple * median) <= 0.25 * median:
                missing += int(multiple) - 1
                gaps_after.append(round(float(proj[i]), 3))
        index = np.concatenate([[0.0], np.cumsum(k)])
    if median > 0 and np.ptp(index) > 0:
        slope, intercept = np.polyfit(index, proj, 1)
        grid_error = float(np.max(np.abs(proj - (intercept + slope * index))))
        # the volume puts slice i at proj[0] + i * spacing; measure that grid too
        grid_error = max(grid_error, float(np.max(np.abs(proj - (proj[0] + slope * index)))))
    else:
        slope, grid_error = 0.0, 0.0
    if median > 0 and abs(slope - median) < 1e-9 * max(1.0, median):
        slope = median  # a regular series: keep the exact step, not the fit's rounding
    offset = positions[-1] - positions[0]
    along = float(offset @ normal)
    sideways = offset - along * normal
    shift = float(np.linalg.norm(sideways))
    tilt = math.degrees(math.atan2(shift, abs(along))) if (abs(along) > 0 or shift > 0) else 0.0
    facts.update(
        spacing_mm=float(slope) if slope > 0 else None,
        step_median_mm=median,
        step_min_mm=float(steps.min()),
        step_max_mm=float(steps.max()),
        missing_slices=missing,
        gaps_after_mm=gaps_after,
        duplicate_slices=duplicates,
        max_grid_error_mm=grid_error,
        gantry_tilt_deg=tilt,
        tilt_shift_mm=shift,
        tilt_shift_pixels=shift / pixel_spacing_mm if pixel_spacing_mm > 0 else 0.0,
    )
    return facts


# ----------------------------------------------------------------------------- metadata
def _plain(value: Any) -> Any:
    """DICOM values as JSON-able Python values (numbers stay numbers, MultiValue -> list)."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import IS, DSdecimal, DSfloat

    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, (DSfloat, DSdecimal, float)):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes):
        return None
    return str(value)


#: Header fields copied into ``metadata["dicom"]`` (first slice; identical across a series).
SERIES_FIELDS = (
    "Modality", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "SeriesDescription", "SeriesNumber", "StudyDescription", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "SeriesDate", "SeriesTime", "PatientID", "PatientName", "PatientBirthDate",
    "PatientSex", "PatientAge", "ReferringPhysicianName", "Manufacturer", "ManufacturerModelName",
    "InstitutionName", "BodyPartExamined", "ProtocolName", "ImageType", "KVP", "SliceThickness",
    "SpacingBetweenSlices", "ConvolutionKernel", "GantryDetectorTilt", "PatientPosition",
    "ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume", "PixelSpacing",
    "ImageOrientationPatient", "RescaleType", "PixelPaddingValue", "PhotometricInterpretation",
    "BitsStored", "PixelRepresentation",
)


def contrast_agent_given(agent: Any) -> bool:
    """True when a Contrast/Bolus Agent value says that contrast was given (not empty, not 'NONE')."""
    if agent is None:
        return False
    text = " ".join(str(v) for v in agent) if isinstance(agent, (list, tuple)) else str(agent)
    return text.strip().upper() not in NO_CONTRAST_VALUES


def _strip_for_export(ds) -> None:
    """Remove private tags, pixel data and large binary elements, in place (sequences included)."""
    ds.remove_private_tags()
    for tag in list(ds.keys()):
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _strip_for_export(item)
        elif tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) or (
            element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN")
            and element.value is not None
            and len(element.value) > _MAX_KEPT_ELEMENT_BYTES
        ):
            del ds[tag]


def header_json(ds) -> dict:
    """The first slice's non-pixel tags in the DICOM JSON model (PS3.18 F), for a later export.

    Rebuild a :class:`pydicom.Dataset` with :func:`first_slice_dataset`.
    """
    kept = copy.deepcopy(ds)
    _strip_for_export(kept)
    return kept.to_json_dict()


def first_slice_dataset(volume: CTVolume):
    """The first sorted slice's header (no pixel data) of a volume read from DICOM, as a Dataset.

    Holds the patient, study, series and frame-of-reference modules needed to write a derived
    series in the same study (new Series/SOP UIDs are the writer's job). Raises ``KeyError`` when
    the volume did not come from DICOM.
    """
    import pydicom

    return pydicom.Dataset.from_json(volume.metadata["dicom"]["first_slice_header"])


def _sop_uids(ds) -> tuple[str, str]:
    """SOP Class and Instance UIDs, falling back to the file meta (de-identified files may blank them)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "") or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or (meta.get("MediaStorageSOPInstanceUID", "") if meta else "") or "")
    return sop_class, sop_instance


# ----------------------------------------------------------------------------- reading
def _geometry_of(path: Path, ds) -> tuple[np.ndarray, np.ndarray, list[float]]:
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if orientation is None or position is None or spacing is None:
        missing = [n for n, v in (("Image Orientation", orientation), ("Image Position", position), ("Pixel Spacing", spacing)) if v is None]
        raise InputError(
            f"{path} has no valid {', '.join(missing)} (Patient) tag, so its geometry is unknown; export the series again from the scanner or PACS with full CT image headers.",
            "missing_geometry",
        )
    return np.asarray(orientation), np.asarray(position), spacing


def _stack_members(folder: Path, members: list[tuple[Path, Any]]):
    """Drop localizers, refuse what cannot be stacked, return members sorted along the normal."""
    if len(members) > 1:
        not_localizer = [(p, ds) for p, ds in members if "LOCALIZER" not in [str(v).upper() for v in (ds.get("ImageType") or [])]]
        members = not_localizer or members
    for path, ds in members:
        frames = _int_or(ds.get("NumberOfFrames"), 1)
        if frames > 1:
            raise InputError(
                f"{path} is a multi-frame (enhanced) DICOM image with {frames} frames, which DigitalContrast does not read; convert it to a classic single-frame series or to NRRD/NIfTI (e.g. with 3D Slicer or dcm2niix) and pass that.",
                "multiframe_unsupported",
            )
        if _int_or(ds.get("SamplesPerPixel"), 1) != 1:
            raise InputError(
                f"{path} is a colour image ({ds.get('PhotometricInterpretation', 'RGB')}), not a 3D scalar CT volume; choose the CT series itself, not a screenshot or secondary capture.",
                "not_3d_scalar",
            )
    first_path, first = members[0]
    orientation0, _, spacing0 = _geometry_of(first_path, first)
    shape0 = (int(first.Rows), int(first.Columns))
    items = []
    for path, ds in members:
        orientation, position, spacing = _geometry_of(path, ds)
        if (int(ds.Rows), int(ds.Columns)) != shape0:
            raise InputError(
                f"{folder} mixes images of {shape0[0]}x{shape0[1]} and {int(ds.Rows)}x{int(ds.Columns)} pixels in one series (e.g. {path.name}); export the CT series on its own again.",
                "inconsistent_series",
            )
        if np.max(np.abs(orientation - orientation0)) > _ORIENTATION_TOLERANCE:
            raise InputError(
                f"{folder} mixes slices of different orientations in one series (e.g. {path.name}); export the axial CT series on its own, without localizer or reformatted images.",
                "inconsistent_series",
            )
        if np.max(np.abs(np.asarray(spacing) - np.asarray(spacing0))) > 1e-4:
            raise InputError(
                f"{folder} mixes slices of different pixel spacing in one series (e.g. {path.name}); export the CT series on its own again.",
                "inconsistent_series",
            )
        items.append((path, ds, position))
    row, col = orientation0[:3], orientation0[3:]
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise InputError(
            f"{first_path} has an invalid Image Orientation (Patient) (its row and column directions are parallel); export the series again.",
            "missing_geometry",
        )
    normal = normal / norm

    def order(item):
        return (float(item[2] @ normal), _int_or(item[1].get("InstanceNumber"), 0))

    items.sort(key=order)
    return items, row / np.linalg.norm(row), col / np.linalg.norm(col), normal, spacing0


def _rescale(ds, pixels: np.ndarray) -> np.ndarray:
    """Stored values to HU with Rescale Slope/Intercept (per slice; they may differ)."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == 0:
        return pixels
    if slope == 1 and intercept.is_integer():
        return pixels.astype(np.int32) + int(intercept)
    return pixels.astype(np.float64) * slope + intercept


def _pixels(path: Path) -> tuple[Any, np.ndarray]:
    """The full dataset and its decoded pixel array; damaged files become an InputError."""
    import pydicom

    ds = None
    try:
        ds = pydicom.dcmread(path)
        return ds, ds.pixel_array
    except Exception as error:  # truncated data, unsupported compression, broken encapsulation
        meta = getattr(ds, "file_meta", None)
        syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
        syntax_text = f" ({syntax.name})" if syntax is not None else ""
        raise InputError(
            f"{path} could not be decoded{syntax_text}: the file is truncated or damaged ({type(error).__name__}); copy or export the series again.",
            "unreadable",
        ) from None


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> CTVolume:
    """Read one DICOM series (a folder, searched recursively, or a single file) as a CT volume in HU.

    Args:
        path: a folder of DICOM files or one DICOM file (read as a one-slice volume).
        series_uid: the Series Instance UID to read when the folder holds several series.

    Returns:
        A :class:`CTVolume`: ``array[z, y, x]`` int16 HU (float32 when the rescale is not
        integral or leaves the int16 range), LPS geometry as described in the module docstring,
        and ``metadata["dicom"]`` (see :data:`SERIES_FIELDS`, plus ``SOPInstanceUIDs``,
        ``ImagePositionsPatient`` and ``files`` in slice order, ``slice_geometry`` facts,
        ``contrast_agent_given`` and ``first_slice_header``).

    Raises:
        InputError: no image, several series and no choice, unknown UID, damaged or truncated
            file, multi-frame or colour images, missing geometry, slices that cannot be stacked.
    """
    path = Path(path)
    if path.is_dir():
        folder = path
        groups = _headers_by_series(folder)
        uid, members = _choose_series(folder, groups, series_uid)
    else:
        folder = path.parent
        ds = _read_header(path)
        if ds is None:
            raise InputError(f"{path} is not a DICOM image file; pass a DICOM series folder or a .nrrd, .nii.gz or .mha volume.", "unknown_format")
        uid, members = str(ds.get("SeriesInstanceUID", "") or ""), [(path, ds)]
    items, row, col, normal, pixel_spacing = _stack_members(folder, members)

    rows, cols = int(items[0][1].Rows), int(items[0][1].Columns)
    array = np.empty((len(items), rows, cols), dtype=np.int16)
    first_full = None
    for k, (file_path, _, _) in enumerate(items):
        ds, pixels = _pixels(file_path)
        if first_full is None:
            first_full = ds
        if pixels.shape != (rows, cols):
            raise InputError(
                f"{file_path} holds {pixels.shape} pixels where its header says {rows}x{cols}; the file is damaged: export the series again.",
                "unreadable",
            )
        hu = _rescale(ds, pixels)
        integral = np.issubdtype(hu.dtype, np.integer) or bool(np.all(np.mod(hu, 1) == 0))
        if array.dtype == np.int16 and (not integral or hu.min() < -32768 or hu.max() > 32767):
            array = array.astype(np.float32)
        array[k] = hu

    positions = np.array([item[2] for item in items])
    mean_pixel = (pixel_spacing[0] + pixel_spacing[1]) / 2
    geometry = slice_geometry(positions, normal, mean_pixel)
    header0 = items[0][1]
    z_spacing = geometry["spacing_mm"]
    z_source = "positions"
    if z_spacing is None:  # one slice (or all at one position): the header's own figures
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = header0.get(tag)
            if value not in (None, "") and float(value) > 0:
                z_spacing, z_source = float(value), tag
                break
        else:
            z_spacing, z_source = 1.0, "default"
    geometry["spacing_source"] = z_source

    direction = np.column_stack([row, col, normal])
    dicom_meta: dict[str, Any] = {name: _plain(header0.get(name)) for name in SERIES_FIELDS}
    sop_classes, sop_instances = zip(*(_sop_uids(item[1]) for item in items))
    dicom_meta.update(
        SOPClassUID=dicom_meta.get("SOPClassUID") or sop_classes[0],
        SOPInstanceUIDs=list(sop_instances),
        ImagePositionsPatient=[[float(v) for v in p] for p in positions],
        TransferSyntaxUID=str(getattr(getattr(first_full, "file_meta", None), "TransferSyntaxUID", "") or ""),
        files=[str(item[0]) for item in items],
        slice_geometry=geometry,
        contrast_agent_given=contrast_agent_given(header0.get("ContrastBolusAgent")),
        first_slice_header=header_json(header0),
    )
    return CTVolume(
        array=array,
        spacing_mm=(float(pixel_spacing[1]), float(pixel_spacing[0]), float(z_spacing)),
        origin_mm=tuple(float(v) for v in positions[0]),
        direction=tuple(direction.ravel()),
        metadata={"source_path": str(path), "format": "dicom", "series_uid": uid, "dicom": dicom_meta},
    )
