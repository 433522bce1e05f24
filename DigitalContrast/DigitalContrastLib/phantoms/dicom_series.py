"""A phantom scan written as a plain CT DICOM series (one file per slice), as a PACS export holds it.

For test and demo cohorts that look like a site's own data (:mod:`.site_pairs`): CT Image Storage,
ORIGINAL\\PRIMARY, uncompressed, with the patient, study, frame-of-reference and acquisition facts
given by the caller (a phantom's made-up patient, never a real one). Written to a temporary folder
and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import publish_folder
from DigitalContrastLib.common.errors import OutputError
from DigitalContrastLib.ct.dicom_export import hu_to_stored, write_dicom_file
from DigitalContrastLib.ct.volume import CTVolume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Header fields the caller may set (DICOM keywords); anything else is refused (a typo would be lost).
HEADER_FIELDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription",
    "SeriesDate", "SeriesTime", "SeriesNumber", "SeriesDescription", "AcquisitionDate", "AcquisitionTime",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "BodyPartExamined", "ProtocolName", "KVP",
    "ConvolutionKernel", "ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume",
    "ContrastBolusStartTime", "PatientPosition",
)


def new_uid() -> str:
    """A fresh DICOM UID (pydicom's root)."""
    from pydicom.uid import generate_uid

    return str(generate_uid())


def write_ct_series(volume: CTVolume, folder: str | os.PathLike, header: Mapping[str, Any]) -> list[Path]:
    """Write ``volume`` (int16 HU ``[z, y, x]``, LPS) as a CT series into ``folder`` (replaced if present).

    ``header`` holds DICOM keywords of :data:`HEADER_FIELDS`; Series and Study Instance UIDs and
    the Frame of Reference UID are made when absent. Slice ``k`` lies at ``origin + k * spacing_z *
    direction[:, 2]``; Slice Thickness is the z spacing unless the header gives one.

    Raises:
        OutputError: the folder cannot be written.
        ValueError: a header keyword outside :data:`HEADER_FIELDS` (a programming error).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    unknown = sorted(set(header) - set(HEADER_FIELDS) - {"SliceThickness"})
    if unknown:
        raise ValueError(f"unknown DICOM header fields {unknown}")
    folder = Path(folder)
    pixels, intercept = hu_to_stored(np.asarray(volume.array))
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(volume.origin_mm, dtype=float)
    sx, sy, sz = volume.spacing_mm
    common = {"SeriesInstanceUID": new_uid(), "StudyInstanceUID": new_uid(), "FrameOfReferenceUID": new_uid(),
              "SliceThickness": f"{sz:g}", **{k: v for k, v in header.items() if v is not None}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    except OSError as error:
        raise OutputError(f"Cannot write the DICOM series {folder} ({error.strerror}); choose a writable folder.") from None
    names = [f"IM{k + 1:05d}.dcm" for k in range(pixels.shape[0])]
    try:
        for k, name in enumerate(names):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = new_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
            ds.Modality = "CT"
            for key, value in common.items():
                setattr(ds, key, value)
            ds.InstanceNumber = k + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            position = origin + k * sz * direction[:, 2]
            ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
            ds.PixelSpacing = [f"{sy:g}", f"{sx:g}"]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept}", "1", "HU"
            ds.PixelData = np.ascontiguousarray(pixels[k]).astype("<i2").tobytes()
            write_dicom_file(ds, staging / name)
        publish_folder(staging, folder)
    except OSError as error:
        raise OutputError(f"Cannot write the DICOM series {folder} ({error.strerror}); check space and permissions.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / name for name in names]
