"""The images of a study as part of its record: opened, their grids checked, their bytes hashed.

At ``init`` every image is opened (:func:`~DigitalContrastLib.ct.io.read_volume`: a truncated or
damaged file is refused with one sentence), the real image and every synthetic image of a case
must lie on one grid (same voxel counts, spacing, origin and direction: otherwise readers could
tell them apart, and the comparison would not be voxel for voxel), and each file's sha256 is
stored with its path relative to the study file. Later the store verifies an image against its
sha256 when it is shown and when ``check`` runs (:class:`ImageVerifier`).

A DICOM folder's sha256 is the sha256 of its files' relative paths and sha256s, sorted.
Geometry is LPS: ``size_xyz`` voxels, ``spacing_mm`` and ``origin_mm`` as ``(x, y, z)``, and the
row-major 3x3 ``direction``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import InputError

from .errors import StudyError
from .study import Study

#: Grids closer than this are one grid (NIfTI stores its geometry in float32).
SPACING_RELATIVE_TOLERANCE = 1e-4
ORIGIN_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ImageFacts:
    """What the store records of one image: sha256, size in bytes (None for a folder), geometry."""

    sha256: str
    size_bytes: int | None
    geometry: dict[str, Any]


def image_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative POSIX path and sha256 of each, sorted)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode("utf-8"))
    return digest.hexdigest()


def image_facts(path: Path) -> ImageFacts:
    """Open the image at ``path`` and hash it.

    Raises:
        InputError: the image cannot be read (missing, truncated, not a 3D scalar volume...).
    """
    from DigitalContrastLib.ct.io import read_volume

    volume = read_volume(path)
    z, y, x = volume.shape_zyx
    geometry = {"size_xyz": [x, y, z], "spacing_mm": list(volume.spacing_mm), "origin_mm": list(volume.origin_mm),
                "direction": list(volume.direction)}
    return ImageFacts(image_sha256(path), path.stat().st_size if path.is_file() else None, geometry)


def same_grid(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two geometries (as in :class:`ImageFacts`) are one grid, within the tolerances."""
    if list(a["size_xyz"]) != list(b["size_xyz"]):
        return False
    if any(abs(s - t) > SPACING_RELATIVE_TOLERANCE * max(abs(s), abs(t)) for s, t in zip(a["spacing_mm"], b["spacing_mm"])):
        return False
    if any(abs(s - t) > ORIGIN_TOLERANCE_MM for s, t in zip(a["origin_mm"], b["origin_mm"])):
        return False
    return all(abs(s - t) <= DIRECTION_TOLERANCE for s, t in zip(a["direction"], b["direction"]))


def _grid_text(geometry: dict[str, Any]) -> str:
    size = "x".join(str(v) for v in geometry["size_xyz"])
    spacing = "x".join(f"{v:g}" for v in geometry["spacing_mm"])
    origin = ", ".join(f"{v:g}" for v in geometry["origin_mm"])
    return f"{size} voxels of {spacing} mm at ({origin})"


def study_image_facts(study: Study, progress: Callable[[int, int], None] | None = None
                      ) -> dict[tuple[str, str], ImageFacts]:
    """Open, check and hash every image of ``study``: ``(case_id, source) -> ImageFacts``.

    Args:
        progress: called with ``(images done, images in all)`` after each image.

    Raises:
        StudyError: one sentence naming the study file, the case and the image: an image that
            cannot be read, or a synthetic image on another grid than the real one.
    """
    name = study.path.name if study.path else "the study file"
    total = sum(len(c.images) for c in study.cases)
    facts: dict[tuple[str, str], ImageFacts] = {}
    for case in study.cases:
        for source, path in case.images.items():
            try:
                facts[(case.case_id, source)] = image_facts(path)
            except InputError as error:
                raise StudyError(f"{name}: the {source} image of case '{case.case_id}' cannot be used: "
                                 f"{error.message}", code="bad_image") from None
            if progress is not None:
                progress(len(facts), total)
        real = facts[(case.case_id, "real")].geometry
        for source in case.images:
            if source.startswith("synthetic") and not same_grid(real, facts[(case.case_id, source)].geometry):
                raise StudyError(
                    f"{name}: case '{case.case_id}' has its real image ({_grid_text(real)}) and its {source} image "
                    f"({_grid_text(facts[(case.case_id, source)].geometry)}) on different grids; resample both onto "
                    "one grid (readers could otherwise tell them apart).", code="grid_mismatch")
    return facts


def relative_image_path(path: Path, base_dir: Path) -> str:
    """``path`` relative to the study folder (POSIX), or absolute when it lies outside it."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


class ImageVerifier:
    """Checks images against their recorded sha256; remembers files already found intact until
    their size, times or inode change (a write changes ``st_ctime``, which no tool can set back)."""

    def __init__(self) -> None:
        self._intact: dict[str, tuple[int, int, int, int, str]] = {}

    def problem(self, path: Path, sha256: str | None) -> str | None:
        """None when ``path`` holds the image with ``sha256``; else what is wrong ("missing",
        "changed"). An image recorded without a sha256 (an old store) only has to exist."""
        try:
            stat = path.stat()
        except OSError:
            return "missing"
        if sha256 is None:
            return None
        key = str(path)
        signature = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, sha256)
        if self._intact.get(key) == signature:
            return None
        try:
            actual = image_sha256(path)
        except OSError:
            return "unreadable"
        if actual != sha256:
            self._intact.pop(key, None)
            return "changed"
        self._intact[key] = signature
        return None


def link_or_copy(original: Path, target: Path) -> Path:
    """Put the content of ``original`` at ``target`` as a hard link, else a copy (another file
    system), never a symbolic link: a link's target would name the original. Folders are
    copied file by file the same way. Written under a temporary name, then renamed."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    if partial.is_dir():
        shutil.rmtree(partial)
    elif partial.exists():
        partial.unlink()

    def place(src: str, dst: str) -> str:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return dst

    if original.is_dir():
        shutil.copytree(original, partial, copy_function=place)
    else:
        place(str(original), str(partial))
    os.replace(partial, target)
    return target
