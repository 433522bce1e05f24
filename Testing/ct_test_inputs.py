"""Real test inputs written to disk: small CT-like volumes and DICOM series made with pydicom.

Not a test module: the I/O and gate tests import it. The DICOM files are genuine Part 10 files
(file meta, CT Image Storage, Image Position/Orientation, Rescale Slope/Intercept), written with
pydicom, optionally compressed (RLE or JPEG 2000 lossless), with shuffled file names so that
readers cannot rely on the order of the names.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def ct_like_volume(
    shape_zyx: tuple[int, int, int] = (40, 96, 96),
    pixel_mm: float = 3.0,
    aorta_hu: float = 40.0,
    noise_hu: float = 12.0,
    seed: int = 0,
) -> np.ndarray:
    """A small body-like int16 HU volume ``[z, y, x]``: air, fat rim, soft tissue, two lungs,
    a vertebral body (cortex ring around trabecular bone) and a round aorta of ``aorta_hu``.

    With ``pixel_mm`` in-plane spacing the body is about 0.85 of the field of view wide, the aorta
    24 mm across; y increases posteriorly (LPS), so the spine sits at large y.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    cy, cx = ny / 2, nx / 2
    r_body = 0.42 * nx
    ellipse = ((x - cx) / r_body) ** 2 + ((y - cy) / (0.75 * r_body)) ** 2
    slice_hu = np.full((ny, nx), -1000.0)
    slice_hu[ellipse <= 1.0] = -100.0  # fat
    slice_hu[ellipse <= 0.8] = 45.0  # soft tissue
    for side in (-1, 1):  # lungs
        lung = ((x - (cx + side * 0.45 * r_body)) / (0.3 * r_body)) ** 2 + ((y - cy + 0.05 * ny) / (0.4 * r_body)) ** 2
        slice_hu[lung <= 1.0] = -850.0
    spine_r = 16.0 / pixel_mm
    spine_y = cy + 0.45 * r_body
    d_spine = np.hypot(x - cx, y - spine_y)
    slice_hu[d_spine <= spine_r] = 900.0  # cortex
    slice_hu[d_spine <= spine_r - max(1.0, 2.5 / pixel_mm)] = 230.0  # trabecular bone
    aorta = np.hypot(x - (cx + 18.0 / pixel_mm), y - (spine_y - spine_r - 14.0 / pixel_mm)) <= 12.0 / pixel_mm
    slice_hu[aorta] = aorta_hu
    volume = np.repeat(slice_hu[None], nz, axis=0)
    volume += rng.normal(0.0, noise_hu, volume.shape)
    return np.clip(np.rint(volume), -1024, 3071).astype(np.int16)


def _uid(rng: random.Random) -> str:
    return "2.25." + str(rng.getrandbits(100))


def write_dicom_series(
    folder: Path,
    hu_zyx: np.ndarray,
    spacing_xyz_mm: Sequence[float] = (0.8, 0.8, 2.0),
    origin_lps_mm: Sequence[float] = (-100.0, -120.0, -60.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    *,
    positions_lps_mm: Sequence[Sequence[float]] | None = None,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "test axial",
    contrast_agent: str | None = None,
    rescale: tuple[float, float] = (1.0, -1024.0),
    compression: str | None = None,
    slice_thickness_mm: float | None = None,
    seed: int = 0,
    prefix: str = "",
) -> list[Path]:
    """Write ``hu_zyx`` (int HU) as a single-frame DICOM series; return the files in slice order.

    Slice ``k`` lies at ``origin + k * spacing_z * normal`` (normal = row x column cosines) unless
    ``positions_lps_mm`` gives every Image Position (Patient). File names are random.
    ``compression`` is None (explicit VR little endian), ``"rle"`` or ``"jpeg2000"`` (lossless).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or _uid(rng)
    study_uid = study_uid or _uid(rng)
    frame_uid = _uid(rng)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    sx, sy, sz = spacing_xyz_mm
    if positions_lps_mm is None:
        positions_lps_mm = [np.asarray(origin_lps_mm, float) + k * sz * normal for k in range(hu_zyx.shape[0])]
    slope, intercept = rescale
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    names = [f"{prefix}{rng.getrandbits(48):012x}.dcm" for _ in range(hu_zyx.shape[0])]
    paths = []
    for k, (plane, position) in enumerate(zip(hu_zyx, positions_lps_mm)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = _uid(rng)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "DC-TEST-1"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.SeriesNumber = 3
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = description
        ds.Manufacturer = "DigitalContrast tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{float(v):.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{float(v):.8f}" for v in orientation]
        ds.PixelSpacing = [f"{sy:g}", f"{sx:g}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{slice_thickness_mm if slice_thickness_mm is not None else sz:g}"
        ds.KVP = "120"
        if contrast_agent is not None:
            ds.ContrastBolusAgent = contrast_agent
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        stored = np.rint((plane.astype(np.float64) - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        if compression == "rle":
            ds.compress(RLELossless, stored)
        elif compression == "jpeg2000":
            ds.compress(JPEG2000Lossless, stored)
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
