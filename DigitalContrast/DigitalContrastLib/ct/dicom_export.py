"""Export a synthetic CT as a DICOM series that can never be mistaken for an acquired scan.

One CT Image Storage file per slice (pydicom, explicit VR little endian), labelled as PS3.3
asks for derived, synthetic images:

* Synthetic Data (0008,001C) = ``YES``; Image Type ``DERIVED\\SECONDARY\\AXIAL``;
* Derivation Description (0008,2111) naming the method, the model id/version and the weights'
  sha256, and saying that this is not an acquired contrast study;
* Derivation Code Sequence (0008,9215): ``(123110, DCM, "Artificial Intelligence")`` and a
  local code ``(SYNTHCTA, 99DGCTR, ...)``: CID 7203 "Image Derivation" has no code for learned
  image synthesis, and the context group is extensible;
* Source Image Sequence (0008,2112): slice ``k`` references the non-contrast instance of slice
  ``k`` (purpose ``(121322, DCM, "Source image for image processing operation")``) when the
  source is DICOM and its SOP Instance UIDs are known (de-identified files may blank them);
* Series Description starting with :data:`SERIES_PREFIX` (``"SYNTHETIC "``);
* no Contrast/Bolus module attribute at all (no (0018,0010) Contrast/Bolus Agent...);
* Burned In Annotation ``NO`` (nothing is drawn into the pixels);
* new Series and SOP Instance UIDs; the source's Study Instance UID and Frame of Reference UID
  when the source is DICOM (the synthetic series sits in the same study and overlays the
  non-contrast scan), else new ones with patient/study fields from the provenance or anonymous
  placeholders. A UID the source left empty (some de-identification tools blank them) is
  replaced by a new one.

Geometry comes from the volume (LPS, as DICOM): Image Position (Patient) of slice ``k`` is
``origin + k * spacing_z * direction[:, 2]``; Image Orientation (Patient) is the direction's
first two columns (row = x/column index axis, column = y/row index axis); Pixel Spacing is
``row spacing \\ column spacing`` = ``spacing_y \\ spacing_x``; Slice Thickness is
``spacing_z``. Readers that sort slices along ``row x column`` (GDCM, SimpleITK) rebuild the
same grid when the direction matrix is right-handed, as every CT from a scanner is.

Pixels are int16 with Rescale Slope 1 and an intercept chosen so that every HU value is stored
exactly (intercept 0 whenever the values fit int16). Non-integer HU (float volumes) are rounded
to the nearest HU: the project stores HU as integers.

The source DICOM facts come as a plain dict (the contract below), the one ``io.read_volume``
records in ``CTVolume.metadata["dicom"]`` for DICOM input:

``StudyInstanceUID``, ``FrameOfReferenceUID``, ``SeriesInstanceUID`` (str), ``SOPClassUID``
(str), ``SOPInstanceUIDs`` (list of str, one per slice in the volume's z order; a reader should
fall back to the file meta's Media Storage SOP Instance UID where the data set's is blank), and
optionally the patient/study module values under their DICOM keywords
(:data:`PATIENT_STUDY_KEYWORDS`), copied verbatim. Missing or empty entries are allowed.

The series is written into a temporary folder beside ``out_dir`` and renamed to ``out_dir``
once complete, so no reader ever sees half a series.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import JobError, OutputError
from DigitalContrastLib.common.progress import ProgressCallback

from .display_presets import CONTRAST_PRESET, get_preset
from .volume import CTVolume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SERIES_PREFIX = "SYNTHETIC "
MANUFACTURER = "DigitalContrast"

#: Patient and study module attributes copied from the source DICOM (or the provenance).
#: Synthetic Data (0008,001C): set by tag, because pydicom 2.4's dictionary (3D Slicer 5.10) predates the
#: keyword and would silently drop ``ds.SyntheticData`` from the file.
SYNTHETIC_DATA_TAG = 0x0008001C

PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)

#: Provenance keys the export refuses to go without: the label must name the model exactly.
REQUIRED_PROVENANCE = ("model_id", "model_version", "weights_sha256")

#: The attributes of the Contrast/Bolus module (PS3.3 C.7.6.4), none of which may be written.
CONTRAST_BOLUS_KEYWORDS = (
    "ContrastBolusAgent",
    "ContrastBolusAgentSequence",
    "ContrastBolusRoute",
    "ContrastBolusAdministrationRouteSequence",
    "ContrastBolusVolume",
    "ContrastBolusStartTime",
    "ContrastBolusStopTime",
    "ContrastBolusTotalDose",
    "ContrastFlowRate",
    "ContrastFlowDuration",
    "ContrastBolusIngredient",
    "ContrastBolusIngredientConcentration",
)

ANONYMOUS_PATIENT = {"PatientName": "ANONYMOUS^SYNTHETIC", "PatientID": "ANONYMOUS"}


def derivation_description(provenance: Mapping[str, Any]) -> str:
    """The Derivation Description text (DICOM ST, at most 1024 characters)."""
    method = provenance.get("method", "deep-network contrast synthesis from a non-contrast CT")
    text = (
        f"SYNTHETIC contrast-enhanced CT computed by {method}; "
        f"model {provenance['model_id']} version {provenance['model_version']}, "
        f"weights sha256 {provenance['weights_sha256']}. "
        "Not an acquired contrast study: the enhancement in these images is computed, not imaged."
    )
    return text[:1024]


def series_description(provenance: Mapping[str, Any]) -> str:
    """``"SYNTHETIC CTA <model id> <version>"`` (DICOM LO: at most 64 characters)."""
    extra = provenance.get("series_description") or f"CTA {provenance['model_id']} {provenance['model_version']}"
    return (SERIES_PREFIX + str(extra))[:64]


def _code_item(value: str, scheme: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def hu_to_stored(array: np.ndarray) -> tuple[np.ndarray, int]:
    """``(int16 pixels, rescale intercept)`` so that ``pixels + intercept`` are the HU exactly.

    Raises:
        ValueError: the HU span exceeds 65535 (cannot be stored in 16 bits).
    """
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if high - low > 65535:
        raise ValueError(f"HU range {low}..{high} does not fit 16-bit DICOM pixels")
    intercept = 0 if (low >= -32768 and high <= 32767) else low + 32768
    return (values.astype(np.int64) - intercept).astype(np.int16), intercept


def _ds(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _source_meta(source: CTVolume | None, source_dicom_meta: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if source_dicom_meta is not None:
        return source_dicom_meta
    if source is not None and isinstance(source.metadata.get("dicom"), Mapping):
        return source.metadata["dicom"]
    return None


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"DICOM output {out_dir} is a file: choose a folder name for the series.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputError(
            f"DICOM output folder {out_dir} is not empty: choose a new folder or allow overwriting.", code="exists"
        )


def export_synthetic_dicom(
    volume: CTVolume,
    out_dir: str | os.PathLike,
    provenance: Mapping[str, Any],
    source: CTVolume | None = None,
    source_dicom_meta: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write ``volume`` as a labelled synthetic CT series, one file per slice, atomically.

    Args:
        volume: the synthetic CT, ``[z, y, x]`` HU (int16, or float rounded to whole HU), LPS.
        out_dir: the series folder to create (must not exist or be empty unless ``overwrite``).
        provenance: ``model_id``, ``model_version``, ``weights_sha256`` (required), and
            optionally ``method`` (free text), ``software_version``, ``series_number``,
            ``series_description`` (text after the SYNTHETIC prefix), and, for a non-DICOM source,
            patient/study values under their DICOM keywords (:data:`PATIENT_STUDY_KEYWORDS`).
        source: the non-contrast CT the volume was computed from; its ``metadata["dicom"]`` is used
            when ``source_dicom_meta`` is not given.
        source_dicom_meta: the source series' DICOM facts (contract in the module docstring).
        overwrite: replace a non-empty ``out_dir`` (the old series is removed only once the new
            one is complete).
        progress: called as ``progress("write", slices_done, slices_total)``.

    Returns:
        The written files in slice order (``out_dir/SYN0001.dcm``...).

    Raises:
        JobError: a required provenance key is missing, or the source's SOP instance list does
            not match the volume's slices.
        OutputError: ``out_dir`` is not empty (and not ``overwrite``) or cannot be written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    missing = [key for key in REQUIRED_PROVENANCE if not provenance.get(key)]
    if missing:
        raise JobError(
            f"Synthetic DICOM export needs the provenance keys {', '.join(missing)}: pass the model's id, "
            "version and weights sha256 so the series says exactly what made it.",
            code="missing_provenance",
        )
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)

    array = np.asarray(volume.array)
    nz, ny, nx = array.shape
    pixels, intercept = hu_to_stored(array)
    meta = _source_meta(source, source_dicom_meta)
    source_uids: list[str] = [str(uid) for uid in meta.get("SOPInstanceUIDs", [])] if meta else []
    if not all(source_uids):  # a blanked (de-identified) UID cannot be referenced
        source_uids = []
    if source_uids and len(source_uids) != nz:
        raise JobError(
            f"The source DICOM series has {len(source_uids)} instances but the synthetic volume has {nz} slices: "
            "export the synthesis of this series on its own grid.",
            code="source_mismatch",
        )
    source_class = (meta or {}).get("SOPClassUID") or CT_IMAGE_STORAGE

    study_uid = (meta or {}).get("StudyInstanceUID") or generate_uid()
    frame_uid = (meta or {}).get("FrameOfReferenceUID") or generate_uid()
    series_uid = generate_uid()
    date, time = _now()
    window = get_preset(CONTRAST_PRESET)
    direction = volume.direction_matrix
    sx, sy, sz = volume.spacing_mm
    origin = np.asarray(volume.origin_mm, dtype=float)
    normal = np.cross(direction[:, 0], direction[:, 1])

    patient_study: dict[str, Any] = {}
    for keyword in PATIENT_STUDY_KEYWORDS:
        value = (meta or {}).get(keyword) if meta else provenance.get(keyword)
        if value not in (None, ""):
            patient_study[keyword] = value
    if not meta:
        for keyword, value in ANONYMOUS_PATIENT.items():
            patient_study.setdefault(keyword, value)
        patient_study.setdefault("StudyDate", date)
        patient_study.setdefault("StudyTime", time)

    def dataset_for(k: int) -> Dataset:
        sop_uid = generate_uid()
        file_meta = FileMetaDataset()
        file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        file_meta.MediaStorageSOPInstanceUID = sop_uid
        file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

        ds = Dataset()
        ds.file_meta = file_meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        # SOP common
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        # patient and study (type 2 attributes present even when empty)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            setattr(ds, keyword, "")
        for keyword in ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            setattr(ds, keyword, "")
        for keyword, value in patient_study.items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID = study_uid
        # series
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = int(provenance.get("series_number", 9001))
        ds.SeriesDescription = series_description(provenance)
        ds.SeriesDate, ds.SeriesTime = date, time
        # frame of reference
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        # equipment: what made these pixels
        ds.Manufacturer = MANUFACTURER
        ds.ManufacturerModelName = str(provenance["model_id"])[:64]
        ds.SoftwareVersions = [
            str(provenance.get("software_version", "unknown"))[:64],
            f"model {provenance['model_version']}"[:64],
        ]
        # general image: the synthetic labels
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = date, time
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.add_new(SYNTHETIC_DATA_TAG, "CS", "YES")  # by tag: pydicom 2.4 (Slicer 5.10) lacks its keyword
        ds.DerivationDescription = derivation_description(provenance)
        ds.DerivationCodeSequence = [
            _code_item("123110", "DCM", "Artificial Intelligence"),
            _code_item("SYNTHCTA", "99DGCTR", "Synthetic contrast enhancement, not acquired"),
        ]
        if source_uids:
            reference = Dataset()
            reference.ReferencedSOPClassUID = source_class
            reference.ReferencedSOPInstanceUID = source_uids[k]
            reference.PurposeOfReferenceCodeSequence = [
                _code_item("121322", "DCM", "Source image for image processing operation")
            ]
            ds.SourceImageSequence = [reference]
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        # image plane (LPS)
        position = origin + k * sz * direction[:, 2]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SliceLocation = _ds(float(position @ normal))
        # CT image + image pixel
        ds.KVP = ""
        ds.AcquisitionNumber = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(1.0)
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = _ds(window.level_hu), _ds(window.window_hu)
        ds.WindowCenterWidthExplanation = "CTA"
        ds.PixelData = np.ascontiguousarray(pixels[k]).astype("<i2").tobytes()
        return ds

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = [f"SYN{k + 1:04d}.dcm" for k in range(nz)]
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    except OSError as error:
        raise OutputError(f"Could not write the DICOM series to {out_dir}: {error.strerror}; choose a writable folder.") from error
    try:
        for k, name in enumerate(names):
            write_dicom_file(dataset_for(k), staging / name)
            if progress is not None:
                progress("write", k + 1, nz)
        _publish(staging, out_dir)
    except OSError as error:
        raise OutputError(f"Could not write the DICOM series to {out_dir}: {error.strerror}; check space and permissions.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in names]


def _publish(staging: Path, out_dir: Path) -> None:
    """Rename the complete ``staging`` folder to ``out_dir`` (an old series is removed after)."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.is_dir():
            out_dir.rmdir()
        os.replace(staging, out_dir)


def write_dicom_file(ds: Any, path: Path) -> None:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta, its transfer syntax), with pydicom 2.4 or 3.x.

    3D Slicer up to 5.10 ships pydicom 2.4 (never upgraded by this extension); 5.12 ships 3.0. pydicom 3
    spells "write a standard file" ``enforce_file_format=True``; pydicom 2 spells it
    ``write_like_original=False`` and reads the encoding from ``is_little_endian``/``is_implicit_VR``.
    """
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
        return
    syntax = ds.file_meta.TransferSyntaxUID
    ds.is_little_endian, ds.is_implicit_VR = syntax.is_little_endian, syntax.is_implicit_VR
    ds.save_as(path, write_like_original=False)
