"""The facts of a DICOM series that travel with its volume: what a synthetic export needs to join the study.

Study, series and frame-of-reference UIDs, the SOP class and instance UIDs in slice order, the
patient/study module values, and what the input gate reads (Modality, Contrast/Bolus Agent, Slice
Thickness). Read from headers only; kept on a volume (``CTVolume.metadata["dicom"]``) or a node
(``DigitalContrast.DicomMeta``) as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .dicom import contrast_agent_given
from .dicom_export import PATIENT_STUDY_KEYWORDS

#: DICOM facts kept on a node (what the export and the input gate read).
DICOM_META_KEYS = (
    "Modality", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUIDs",
    "SeriesDescription", "SeriesNumber", "SliceThickness", "ContrastBolusAgent", "contrast_agent_given",
    *PATIENT_STUDY_KEYWORDS,
)


def jsonable_value(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars unwrapped, anything else as its text)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def dicom_meta_subset(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a series' DICOM facts (``CTVolume.metadata["dicom"]``) a node keeps."""
    return {key: jsonable_value(meta[key]) for key in DICOM_META_KEYS if key in meta and meta[key] not in (None, "")}


def dicom_meta_from_files(paths: Sequence[str | os.PathLike], slices: int,
                          direction: Sequence[float]) -> dict[str, Any]:
    """The series facts of DICOM ``paths`` (headers only), SOP instances in the volume's slice order.

    ``slices`` is the volume's slice count and ``direction`` its row-major LPS direction matrix.

    For a node that Slicer's DICOM module loaded: the files of its ``DICOM.instanceUIDs`` (from
    ``slicer.dicomDatabase.fileForInstance``). The instances are sorted by the position of each
    slice along the volume's slice axis, so instance ``k`` is the file of slice ``k``.

    Raises:
        ValueError: a file is not DICOM, or the file count differs from the slice count.
    """
    import pydicom

    headers = []
    for path in paths:
        try:
            headers.append(pydicom.dcmread(os.fspath(path), stop_before_pixels=True))
        except Exception as error:  # noqa: BLE001 - pydicom raises several types for non-DICOM files
            raise ValueError(f"{path} is not a readable DICOM file ({type(error).__name__})") from None
    if len(headers) != slices:
        raise ValueError(f"{len(headers)} DICOM files for a volume of {slices} slices")
    normal = np.asarray(direction, dtype=float).reshape(3, 3)[:, 2]
    positions = [float(np.dot([float(v) for v in h.get("ImagePositionPatient", [0, 0, 0])], normal)) for h in headers]
    ordered = [headers[i] for i in sorted(range(len(headers)), key=lambda i: positions[i])]
    first = ordered[0]

    def uid(ds: Any, keyword: str, meta_keyword: str) -> str:
        value = str(ds.get(keyword, "") or "")
        return value or str(getattr(getattr(ds, "file_meta", None), meta_keyword, "") or "")

    meta: dict[str, Any] = {}
    for keyword in ("Modality", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SeriesDescription",
                    "SeriesNumber", "SliceThickness", "ContrastBolusAgent", *PATIENT_STUDY_KEYWORDS):
        value = first.get(keyword)
        if value not in (None, ""):
            meta[keyword] = float(value) if keyword == "SliceThickness" else jsonable_value(
                str(value) if not isinstance(value, (int, float)) else value)
    meta["SOPClassUID"] = uid(first, "SOPClassUID", "MediaStorageSOPClassUID")
    meta["SOPInstanceUIDs"] = [uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID") for ds in ordered]
    meta["contrast_agent_given"] = contrast_agent_given(first.get("ContrastBolusAgent"))
    return dicom_meta_subset(meta)
