"""What a prepared case may say about its scans, and nothing that identifies the patient.

:func:`scan_facts` keeps the acquisition facts a data sheet needs (scanner, kVp, kernel, slice
thickness, contrast agent and timing, the month of the study) from a volume read by
``ct.io.read_volume``. Never kept: names, IDs, birth dates, sex and age, institution, accession
and study numbers, referring physician, UIDs (they find the record in a PACS), exact dates and
times (a month is the finest date kept; times become the delay between events).

:func:`patient_key` pseudonymises the patient: an HMAC-SHA256 of the patient identifier with a
random key that lives only in the prepared folder (:func:`folder_secret`), so cases of one patient
share a key (cross-validation splits by it) while the key says nothing without that file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from DigitalContrastLib.ct.volume import CTVolume

#: DICOM keywords copied into ``case.json`` (none identifies the patient).
KEPT_FIELDS = ("Modality", "Manufacturer", "ManufacturerModelName", "KVP", "ConvolutionKernel", "SliceThickness",
               "SpacingBetweenSlices", "PixelSpacing", "BodyPartExamined", "ContrastBolusAgent", "ContrastBolusRoute",
               "ContrastBolusVolume", "SeriesDescription")
SECRET_FILE = ".patient-key"


def _seconds(time_text: Any) -> float | None:
    """DICOM TM (``HHMMSS.frac``) as seconds after midnight; None when absent or malformed."""
    text = str(time_text or "").strip()
    if len(text) < 6 or not text[:6].isdigit():
        return None
    try:
        return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])
    except ValueError:
        return None


def study_month(meta: Mapping[str, Any]) -> str | None:
    """``YYYY-MM`` of the study (or acquisition) date, None when absent."""
    for key in ("StudyDate", "AcquisitionDate", "SeriesDate"):
        text = str(meta.get(key) or "").strip()
        if len(text) >= 6 and text[:6].isdigit():
            return f"{text[:4]}-{text[4:6]}"
    return None


def scan_facts(volume: CTVolume) -> dict[str, Any]:
    """The scan's grid and, for DICOM, the :data:`KEPT_FIELDS`, the study month and the contrast delay (s)."""
    facts: dict[str, Any] = {"format": volume.metadata.get("format"), "size_xyz": list(volume.size_xyz),
                             "spacing_xyz_mm": [round(float(s), 4) for s in volume.spacing_mm]}
    meta = volume.metadata.get("dicom")
    if not isinstance(meta, Mapping):
        return facts
    facts["dicom"] = {key: meta.get(key) for key in KEPT_FIELDS if meta.get(key) not in (None, "", [])}
    facts["study_month"] = study_month(meta)
    start, acquired = _seconds(meta.get("ContrastBolusStartTime")), _seconds(meta.get("AcquisitionTime"))
    if start is not None and acquired is not None:
        facts["seconds_after_contrast_start"] = round(acquired - start, 1)
    facts["contrast_agent_given"] = bool(meta.get("contrast_agent_given"))
    return facts


def seconds_between(first: CTVolume, second: CTVolume) -> float | None:
    """Seconds from the first scan's acquisition to the second's (same date), None when unknown."""
    a, b = (v.metadata.get("dicom") if isinstance(v.metadata.get("dicom"), Mapping) else {} for v in (first, second))
    if (a.get("AcquisitionDate") or a.get("StudyDate")) != (b.get("AcquisitionDate") or b.get("StudyDate")):
        return None
    ta, tb = _seconds(a.get("AcquisitionTime")), _seconds(b.get("AcquisitionTime"))
    return round(tb - ta, 1) if ta is not None and tb is not None else None


def dicom_patient_ids(noncontrast: CTVolume, contrast: CTVolume) -> tuple[str | None, str | None]:
    """The two scans' DICOM Patient IDs (None where absent): compared, never stored."""
    out = []
    for volume in (noncontrast, contrast):
        meta = volume.metadata.get("dicom")
        value = meta.get("PatientID") if isinstance(meta, Mapping) else None
        out.append(str(value).strip() or None if value is not None else None)
    return out[0], out[1]


def folder_secret(folder: str | os.PathLike) -> bytes:
    """The prepared folder's pseudonymisation key (32 random bytes in ``.patient-key``, made once, owner-only)."""
    path = Path(folder) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def patient_key(secret: bytes, identifier: str) -> str:
    """16 hex digits of HMAC-SHA256(secret, identifier): one patient, one key; nothing to read back."""
    return hmac.new(secret, identifier.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:16]
