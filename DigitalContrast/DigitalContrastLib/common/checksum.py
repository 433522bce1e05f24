"""SHA-256 of files: how the worker, the client and the model loader tell a file is the one meant."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The lowercase hex SHA-256 of the file at ``path``, read in ``chunk_bytes`` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
