"""What the station's admin view shows: progress per reader and site, never answers.

The progress is read from the store: for a SQLite store, the store's own
:meth:`~DigitalContrastReaderLib.store.base.AnswerStore.progress` (whoever runs a SQLite station
can open the file anyway); for PostgreSQL, the reader role's progress call, which returns counts
and times only (the key stays out of the station).
"""

from __future__ import annotations

import os
from typing import Any

from DigitalContrastReaderLib.store.base import ReaderProgress
from DigitalContrastReaderLib.store.location import is_url, open_reading_store, open_store


class ProgressSource:
    """Reads every reader's progress from the store at ``location``.

    Args:
        site: the name shown in the Site column (default: the store's site).
    """

    def __init__(self, location: str | os.PathLike, *, images_dir: str | os.PathLike | None = None,
                 site: str | None = None) -> None:
        if is_url(location):
            self.store: Any = open_reading_store(location, images_dir=images_dir)
        else:
            self.store = open_store(location)
        self.site = site or getattr(self.store, "site", "") or ""

    def readers(self) -> list[ReaderProgress]:
        return self.store.progress()

    def close(self) -> None:
        self.store.close()


def progress_rows(source: ProgressSource, rss_by_reader: dict[str, int | None]) -> list[dict[str, Any]]:
    """One row per reader: items and training items done, session, last submit, whether the
    reader has a page open now and that page process's memory (MB)."""
    rows = []
    for record in source.readers():
        rss = rss_by_reader.get(record.reader_id)
        main_total = record.items_total - record.training_total
        rows.append({
            "site": source.site,
            "reader_id": record.reader_id,
            "group": record.group or "",
            "enrolled": record.enrolled,
            "items": f"{record.items_done - record.training_done} of {main_total}" if record.enrolled else "not enrolled",
            "items_done": record.items_done,
            "items_total": record.items_total,
            "training": f"{record.training_done} of {record.training_total}" if record.training_total else "",
            "session": (f"{record.current_session} of {record.sessions_total}" if record.current_session
                        else ("finished" if record.finished else "")),
            "last_submit_at": (record.last_submit_at or "")[:19].replace("T", " "),
            "reading_now": record.reader_id in rss_by_reader,
            "memory_mb": "" if rss is None else f"{rss / 2**20:.0f}",
        })
    return rows
