"""What a client uploads, made into a job's input, or refused in one sentence with an HTTP status.

An upload is one file: a non-contrast CT as ``.nrrd``, ``.nii``, ``.nii.gz`` or ``.mha``, or a
``.zip`` of ONE DICOM series. It is refused (and nothing of it is kept) when:

* it is larger than the limit (413), or its name has another extension (415);
* a zip is damaged, has a member whose path leaves its folder (absolute, ``..``, a link), unpacks to
  more than the limit or holds no or several DICOM series (422);
* the volume cannot be read (a truncated NRRD...) or the input gate finds an error (not a CT in
  HU, too few slices...) (422). The gate's warnings are left to the worker's gate, which runs on
  every job: they reach the client as the job's ``warning`` events.

Messages name the upload by the name the client gave, never by a path on the server.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from DigitalContrastLib.common.errors import EXIT_BAD_INPUT, InputError

VOLUME_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")
ZIP_SUFFIX = ".zip"
MAX_ZIP_MEMBERS = 20000
NAME_PATTERN = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")


class UploadRefused(Exception):
    """An upload the service will not take: ``status`` (HTTP), ``code`` and a one-sentence ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.exit_code = EXIT_BAD_INPUT


@dataclass
class PreparedInput:
    """A job's input: ``path`` (a file or a DICOM folder), the gate's warnings, a DICOM series' facts."""

    path: Path
    gate_warnings: list[dict[str, str]] = field(default_factory=list)
    dicom_meta: dict[str, Any] | None = None


def upload_suffix(filename: str) -> str:
    """The upload's kind from its name (``.nrrd``, ``.nii.gz``, ``.zip``...); refuses other names."""
    if not NAME_PATTERN.match(filename or ""):
        raise UploadRefused(422, "bad_filename", "The upload needs a file name without folders (the filename "
                                                 "parameter), such as ncct.nrrd or series.zip.")
    lower = filename.lower()
    for suffix in (*VOLUME_SUFFIXES, ZIP_SUFFIX):
        if lower.endswith(suffix):
            return suffix
    raise UploadRefused(415, "unsupported_format",
                        f"{filename} is not a format the service takes; upload a non-contrast CT as .nrrd, .nii, "
                        ".nii.gz or .mha, or a .zip of one DICOM series.")


def too_large(filename: str, limit_bytes: int) -> UploadRefused:
    return UploadRefused(413, "too_large", f"{filename} is larger than the service's upload limit of "
                                           f"{limit_bytes / 2**20:.0f} MiB; crop the volume or ask the administrator "
                                           "to raise --max-upload-mb.")


def extract_dicom_zip(archive: Path, folder: Path, filename: str, limit_bytes: int) -> None:
    """Unpack ``archive`` into ``folder``, refusing members outside it, links and zip bombs."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadRefused(422, "too_many_files", f"{filename} holds {len(members)} files, more than "
                                                           f"{MAX_ZIP_MEMBERS}; zip one DICOM series only.")
            total = 0
            for member in members:
                name = PurePosixPath(member.filename.replace("\\", "/"))
                mode = member.external_attr >> 16
                if name.is_absolute() or ".." in name.parts or re.match(r"^[A-Za-z]:", member.filename) \
                        or stat.S_ISLNK(mode):
                    raise UploadRefused(422, "unsafe_zip", f"{filename} has a member {member.filename!r} whose path "
                                                           "leaves the archive's folder; zip the series folder itself.")
                total += member.file_size
                if total > limit_bytes:
                    raise too_large(filename + " (unpacked)", limit_bytes)
            folder.mkdir(parents=True, exist_ok=True)
            for member in members:
                if member.is_dir():
                    continue
                target = folder / PurePosixPath(member.filename.replace("\\", "/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, ValueError) as error:
        raise UploadRefused(422, "bad_zip", f"{filename} is not a readable zip archive ({error}); zip the DICOM "
                                            "series folder again.") from None


def prepare_input(folder: Path, upload: Path, filename: str, limit_bytes: int,
                  series_uid: str | None = None) -> PreparedInput:
    """Make ``upload`` a job input in ``folder`` and run the input gate on it (see the module docstring).

    A zip of several DICOM series is taken only when ``series_uid`` names one of them.
    """
    from DigitalContrastLib.ct.io import list_dicom_series
    from DigitalContrastLib.synthesis.gate import check_path

    suffix = upload_suffix(filename)
    if suffix == ZIP_SUFFIX:
        path = folder / "input"
        extract_dicom_zip(upload, path, filename, limit_bytes)
        upload.unlink(missing_ok=True)
        try:
            series = list_dicom_series(path)
        except InputError as error:
            raise refused_input(error, filename, folder) from None
        if len(series) == 0:
            raise UploadRefused(422, "no_dicom_series", f"{filename} holds no DICOM image series; zip the folder of "
                                                        "the non-contrast CT series.")
        if series_uid is not None and series_uid not in {info.series_uid for info in series}:
            raise UploadRefused(422, "no_such_series", f"{filename} holds no DICOM series {series_uid}; check the "
                                                       "series parameter.")
        if len(series) > 1 and series_uid is None:
            raise UploadRefused(422, "several_series", f"{filename} holds {len(series)} DICOM series; zip one series "
                                                       "(the non-contrast CT) per upload.")
    else:
        path = folder / ("upload" + suffix)
        if upload != path:
            os.replace(upload, path)
    # the errors refuse the upload here; the warnings (the image evidence of contrast takes seconds on a
    # full CT) come from the worker's own gate as the job's warning events
    report, volume = check_path(path, series_uid, with_warnings=False)
    if not report.ok:
        first = report.errors[0]
        raise refused_input(InputError(first.message, code=first.code), filename, folder)
    prepared = PreparedInput(path, [{"code": w.code, "message": public_message(w.message, filename, folder)}
                                    for w in report.warnings])
    meta = volume.metadata.get("dicom") if volume is not None else None
    if isinstance(meta, dict):
        prepared.dicom_meta = meta
        (folder / "dicom_meta.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
    return prepared


def public_message(message: str, filename: str, folder: Path) -> str:
    """``message`` with the job folder's paths replaced by the upload's name."""
    for path in sorted({str(p) for base in (folder, folder.resolve())
                        for p in (base / "input", base / f"upload{upload_suffix(filename)}", base)}, key=len,
                       reverse=True):
        message = message.replace(path, filename)
    return message


def refused_input(error: InputError, filename: str, folder: Path) -> UploadRefused:
    return UploadRefused(422, error.code, public_message(error.message, filename, folder))
