"""Which answer store a study path stands for: the store itself (a ``.sqlite`` file or a
``postgresql://`` URL), a study file beside it, or a folder; opened through :mod:`.location`.

What a reading workstation opens: it needs nothing beyond reading (no pandas, no exports).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.errors import StoreError

from .base import AnswerStore, ReaderStore
from .location import is_url, open_reading_store, open_store

#: Study files; the store of ``study.yaml`` is ``study.sqlite`` beside it.
STUDY_FILE_SUFFIXES = (".yaml", ".yml", ".json")
STORE_SUFFIX = ".sqlite"


def store_url(text: str) -> str | None:
    """The ``postgresql://`` URL that ``text`` names, or None. A URL kept in a path field comes
    back with one slash (``postgresql:/user@host/db``: a path collapses ``//``); it is restored."""
    text = re.sub(r"^(postgres(?:ql)?):/(?!/)", r"\1://", str(text).strip())
    return text if is_url(text) else None


def locate_store(path: str | os.PathLike) -> Path | str:
    """The answer store a study path stands for.

    Args:
        path: the store itself (``.sqlite``, or a ``postgresql://`` URL, returned as is); a study
            file (``study.yaml``: the store is ``study.sqlite`` beside it, as
            ``digital-contrast-reader init`` names it by default in the README); or a folder
            holding exactly one store.

    Raises:
        StoreError: no store (or several) found; the sentence says what to do.
    """
    url = store_url(str(path))
    if url is not None:
        return url
    path = Path(path).expanduser()
    if path.is_dir():
        stores = sorted(p for p in path.glob(f"*{STORE_SUFFIX}") if p.is_file())
        if len(stores) == 1:
            return stores[0]
        if not stores:
            raise StoreError(f"{path}: no answer store (*.sqlite) in this folder; choose the study's .sqlite file, or "
                             "create it with 'digital-contrast-reader init STUDY.yaml --db STUDY.sqlite'.")
        raise StoreError(f"{path}: {len(stores)} answer stores in this folder ({', '.join(p.name for p in stores)}); "
                         "choose one of them.")
    if path.suffix.lower() in STUDY_FILE_SUFFIXES:
        store = path.with_suffix(STORE_SUFFIX)
        if store.is_file():
            return store
        raise StoreError(f"{path}: this study has no answer store yet ({store.name}); create it with "
                         f"'digital-contrast-reader init {path.name} --db {store.name}', then choose it here.")
    if path.is_file():
        return path
    raise StoreError(f"{path}: no study there; choose the study's .sqlite file, study file or folder.")


def open_study_store(path: str | os.PathLike, **options: Any) -> AnswerStore:
    """Open the admin store that ``path`` stands for (see :func:`locate_store`)."""
    return open_store(locate_store(path), **options)


def open_reading_study_store(path: str | os.PathLike) -> ReaderStore:
    """Open the store that ``path`` stands for as a reading station does (see :func:`locate_store`):
    a PostgreSQL URL through the reading functions only (the study's reader role is enough; the
    blinded images are in ``$DIGITAL_CONTRAST_READER_IMAGES``), a SQLite store as it is."""
    return open_reading_store(locate_store(path))
