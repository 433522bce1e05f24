"""Write files so that a reader never sees a half-written one.

The data goes to a temporary name in the same folder (so the final ``os.replace`` is an atomic
rename on the same file system) and is renamed only once it is complete. If anything fails, the
temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused path beside ``path`` that keeps its extension (``.nii.gz`` included).

    Writers that choose the format from the extension (SimpleITK) need the suffix kept.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); a finished output gets the usual mode (0666 & ~umask)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to ``path``, else delete it.

    Example::

        with atomic_path("out.nrrd") as tmp:
            sitk.WriteImage(image, str(tmp))
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        with contextlib.suppress(OSError):  # flush to disk before the rename makes it visible
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def publish_folder(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename a complete ``staging`` folder to ``target`` (same file system); an old ``target`` is
    moved aside first and removed after, so ``target`` is at every moment either the old folder,
    absent for an instant, or the new complete one, never a half-written mixture."""
    import shutil

    staging, target = Path(staging), Path(target)
    if target.is_dir() and any(target.iterdir()):
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.is_dir():
            target.rmdir()
        os.replace(staging, target)
    return target
