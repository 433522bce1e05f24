"""Read and write CT volumes: a DICOM series or a .nrrd/.nhdr/.nii/.nii.gz/.mha/.mhd file.

:func:`read_volume` is the one entry point for inputs; :func:`write_volume` writes .nrrd,
.nii.gz, .nii or .mha atomically, keeping the voxel type (int16 HU stays int16) and the
geometry. Geometry survives a round trip exactly for NRRD and MetaImage (doubles in text);
NIfTI stores its transform as float32, so spacing and direction come back within about 1e-7
(relative) and the origin within about 1e-4 mm.

Every failure a user can cause raises :class:`~DigitalContrastLib.common.errors.InputError` (reading)
or :class:`~DigitalContrastLib.common.errors.OutputError` (writing) with one sentence naming the file
and the fix, and a stable ``code``: ``not_found``, ``unreadable``, ``unknown_format``,
``empty_folder``, ``not_3d_scalar``, ``bad_spacing`` and the DICOM codes of
:mod:`DigitalContrastLib.ct.dicom`.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastLib.common.errors import InputError, OutputError

from . import dicom
from .dicom import DicomSeriesInfo
from .volume import CTVolume

#: Readable file types (lower-case extension -> format name used in metadata).
READ_FORMATS: dict[str, str] = {
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}
#: Writable file types (single files only, so that the write is one atomic rename).
WRITE_EXTENSIONS: tuple[str, ...] = (".nrrd", ".nii.gz", ".nii", ".mha")
_SUPPORTED_TEXT = "a DICOM series folder or a .nrrd, .nhdr, .nii, .nii.gz, .mha or .mhd volume"

__all__ = ["read_volume", "write_volume", "list_dicom_series", "DicomSeriesInfo", "extension_of"]


def extension_of(path: str | os.PathLike) -> str:
    """The lower-case extension, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def list_dicom_series(folder: str | os.PathLike) -> list[DicomSeriesInfo]:
    """The DICOM image series under ``folder`` (recursively): UID, description, modality, file count."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the folder that holds the DICOM files.", "not_found")
    return dicom.list_dicom_series(folder)


def read_volume(path: str | os.PathLike, series_uid: str | None = None) -> CTVolume:
    """Read a CT volume from a DICOM folder or file, or a NRRD, NIfTI or MetaImage file.

    Args:
        path: DICOM series folder (searched recursively), a single DICOM file, or a
            .nrrd/.nhdr/.nii/.nii.gz/.mha/.mhd file.
        series_uid: which series to read when a DICOM folder holds several (ignored otherwise).

    Returns:
        A :class:`CTVolume` with ``array[z, y, x]`` as stored (int16 HU for CT; other types are
        kept so that the input gate can judge them), LPS geometry, and ``metadata`` with
        ``source_path``, ``format`` (``dicom``, ``nrrd``, ``nifti``, ``metaimage``),
        ``pixel_type`` and, for DICOM, ``dicom`` (see :func:`dicom.read_dicom_series`).

    Raises:
        InputError: with ``code`` ``not_found``, ``unreadable``, ``unknown_format``,
            ``empty_folder``, ``not_3d_scalar``, ``bad_spacing`` or a DICOM-specific code.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path and pass {_SUPPORTED_TEXT}.", "not_found")
    try:
        volume = _read_any(path, series_uid)
    except OSError as error:  # permissions, a file vanishing mid-read, an unreadable disk
        raise InputError(
            f"{path} could not be read ({error.strerror or type(error).__name__}); check that the file is readable and complete.",
            "unreadable",
        ) from None
    volume.metadata.setdefault("pixel_type", str(volume.array.dtype))
    return volume


def _read_any(path: Path, series_uid: str | None) -> CTVolume:
    if path.is_dir():
        return dicom.read_dicom_series(path, series_uid)
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); copy or export the file again.", "unreadable")
    ext = extension_of(path)
    if ext in READ_FORMATS:
        return _read_with_sitk(path, READ_FORMATS[ext])
    if dicom.is_dicom_file(path):
        return dicom.read_dicom_series(path, series_uid)
    kind = f"a '{ext}' file" if ext else "a file without extension that is not DICOM"
    raise InputError(f"{path} is {kind}, which DigitalContrast cannot read; pass {_SUPPORTED_TEXT}.", "unknown_format")


# ----------------------------------------------------------------------------- SimpleITK formats
@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[list[str]]:
    """Capture what ITK's C++ code prints on file descriptor 2 (it bypasses Python's sys.stderr).

    ITK's warnings are about the file being read; they are folded into the error message
    instead of reaching the user's terminal as stray lines.
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreter): nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _nifti_expected_bytes(path: Path) -> tuple[int, int] | None:
    """(header bytes before the data, data bytes) from a NIfTI-1/2 header, or None if unparsable."""
    opener = gzip.open if extension_of(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(540)
    except (OSError, EOFError):
        return None
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    count = 1
    for size in dims[1 : ndim + 1]:
        count *= max(int(size), 1)
    return max(offset, 348), count * bitpix // 8


def _nifti_is_truncated(path: Path) -> bool:
    """True when a NIfTI file holds fewer bytes than its header announces.

    ITK reads a short NIfTI file without complaint (the missing voxels become zeros), so the
    size is checked first. For .nii.gz the gzip trailer (uncompressed size modulo 2**32) is
    compared first; only when it disagrees is the stream decompressed to the end.
    """
    expected = _nifti_expected_bytes(path)
    if expected is None:
        return False
    total = sum(expected)
    if extension_of(path) == ".nii":
        return path.stat().st_size < total
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        if struct.unpack("<I", handle.read(4))[0] == total % (1 << 32):
            return False
    count = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                count += len(chunk)
    except (OSError, EOFError, ValueError):
        return True
    return count < total


def _read_with_sitk(path: Path, fmt: str) -> CTVolume:
    import SimpleITK as sitk

    label = {"nrrd": "NRRD", "nifti": "NIfTI", "metaimage": "MetaImage"}[fmt]

    def unreadable(lines: list[str], reason: str = "damaged or truncated") -> InputError:
        text = " ".join(lines)
        if "spacing" in text.lower():
            return InputError(
                f"{path} has a zero, negative or invalid voxel spacing in its {label} header; fix the spacing (export the volume again) and retry.",
                "bad_spacing",
            )
        return InputError(f"{path} could not be read: the {label} file is {reason}; copy or export it again.", "unreadable")

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _native_stderr_captured() as native:
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise unreadable([str(error), *native]) from None
    dimension = reader.GetDimension()
    components = reader.GetNumberOfComponents()
    size = list(reader.GetSize())
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if components != 1 or "complex" in pixel.lower():
        what = "a colour (RGB) image" if components in (3, 4) else f"a vector image with {components} values per voxel"
        if "complex" in pixel.lower():
            what = "a complex-valued image"
        raise InputError(
            f"{path} is {what}, not a 3D scalar CT volume; pass the CT volume itself (one HU value per voxel).",
            "not_3d_scalar",
        )
    if dimension == 2:
        raise InputError(
            f"{path} is a 2D image ({size[0]}x{size[1]}), not a 3D CT volume; pass the whole series or volume, not one slice.",
            "not_3d_scalar",
        )
    if dimension == 4 and size[3] != 1:
        raise InputError(
            f"{path} is a 4D image ({size[3]} volumes of {size[0]}x{size[1]}x{size[2]}), not one 3D CT volume; extract the CT phase you want (e.g. in 3D Slicer) and pass it.",
            "not_3d_scalar",
        )
    if dimension not in (3, 4):
        raise InputError(
            f"{path} is a {dimension}D image, not a 3D CT volume; pass a 3D CT volume.",
            "not_3d_scalar",
        )
    if fmt == "nifti" and _nifti_is_truncated(path):
        raise unreadable([], "truncated (shorter than its header says)")
    with _native_stderr_captured() as native:
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise unreadable([str(error), *native]) from None
    if dimension == 4:
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    return CTVolume.from_sitk(image, metadata={"source_path": str(path), "format": fmt})


# ----------------------------------------------------------------------------- writing
def write_volume(volume: CTVolume, path: str | os.PathLike, *, compress: bool = False) -> Path:
    """Write ``volume`` to ``path`` (.nrrd, .nii.gz, .nii or .mha, chosen by extension) atomically.

    The voxel type is kept (int16 HU stays int16) and so is the geometry (see the module
    docstring for NIfTI's float32 precision). ``compress`` gzips NRRD/MetaImage data (smaller,
    slower); .nii.gz is always compressed. Nothing is left at ``path`` if the write fails.

    Returns:
        ``Path(path)``.

    Raises:
        OutputError: unknown extension (``unknown_extension``) or the file cannot be written
            (``not_writable``).
    """
    import SimpleITK as sitk

    path = Path(path).expanduser()
    ext = extension_of(path)
    if ext not in WRITE_EXTENSIONS:
        raise OutputError(
            f"{path} has the extension '{ext}', which DigitalContrast does not write; use .nrrd, .nii.gz, .nii or .mha.",
            "unknown_extension",
        )
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise ValueError(f"write_volume needs a 3D array, got shape {array.shape}")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    image = volume.with_array(array).to_sitk() if array is not volume.array else volume.to_sitk()
    try:
        with atomic_path(path) as tmp, _native_stderr_captured() as native:
            try:
                sitk.WriteImage(image, str(tmp), compress or ext == ".nii.gz")
            except RuntimeError as error:
                raise OSError(" ".join([str(error).strip().splitlines()[-1], *native])) from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"{path} cannot be written ({reason.strip()[:120]}); choose a folder you can write to, with free space.",
            "not_writable",
        ) from None
    return path
