"""The reading primitives of :mod:`~DigitalContrastReaderLib.store.reader_access` in SQL and Python,
for a store whose caller may read every table (the SQLite store).

The token is checked here, in the same transaction as the write: the presented key must hash to
the reader's stored digest. An event is appended to the chain and applied to the tables in
the caller's transaction: ``shown`` and ``first_interaction`` update the item's timing,
``submit`` inserts the answers (revision 1) and ``modify`` adds revisions. The PostgreSQL
store applies the same events in its stored functions (``postgres_functions.sql``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from DigitalContrastReaderLib.study.errors import AnswerError

from . import rules
from .base import ImageRef, ReaderState, iso_utc
from .reader_access import wrong_token_error
from .sql_rows import item_record, token_hash
from .tokens import TokenParams, key_matches


class SqlReaderPrimitives:
    """Mixin for a :class:`~DigitalContrastReaderLib.store.sql_store.SqlStore` that reads its tables directly."""

    def _reader_row(self, reader_id: str) -> Mapping[str, Any]:
        row = self._db.one("SELECT reader_id, token_salt, token_n, token_r, token_p, token_digest FROM readers "
                           "WHERE reader_id=?", (reader_id,))
        if row is None:
            raise rules.not_enrolled_error(self.study, reader_id)
        return row

    def _token_params(self, reader_id: str) -> TokenParams | None:
        token = token_hash(self._reader_row(reader_id))
        return None if token is None else token.params

    def _key_ok(self, reader_id: str, key: bytes) -> bool:
        row = self._db.one("SELECT token_digest FROM readers WHERE reader_id=?", (reader_id,))
        return row is not None and key_matches(key, row["token_digest"])

    @contextlib.contextmanager
    def _reader_transaction(self) -> Iterator[None]:
        with self._transaction() as events:
            self._tx_events = events
            try:
                yield
            finally:
                self._tx_events = None

    def _reader_state(self, reader_id: str, key: bytes, item_id: str | None, *, lock: bool) -> ReaderState:
        if not key_matches(key, self._reader_row(reader_id)["token_digest"]):
            raise wrong_token_error(reader_id)
        next_row = self._next_item_row(reader_id)
        if item_id is None:
            row = next_row
        else:
            row = self._db.one("SELECT * FROM items WHERE item_id=?", (item_id,))
            if row is None:
                raise rules.unknown_item_error(item_id, self._name)
            rules.check_owner(item_record(row), reader_id)
        session = answers = None
        images: tuple[ImageRef, ...] = ()
        in_session = 0
        last = None
        if row is not None:
            session = self._db.one("SELECT opens_at, washout_after_wave FROM sessions WHERE reader_id=? AND "
                                   "session_no=?", (reader_id, row["session_no"]))
            if session["washout_after_wave"] is not None:
                last = self._db.scalar("SELECT MAX(submitted_at) FROM items WHERE reader_id=? AND wave=?",
                                       (reader_id, session["washout_after_wave"]))
            in_session = self._db.scalar("SELECT COUNT(*) FROM items WHERE reader_id=? AND session_no=?",
                                         (reader_id, row["session_no"]))
            answers = {r["question_key"]: (json.loads(r["value_json"]), r["revision"]) for r in self._db.all(
                "SELECT question_key, value_json, revision FROM responses WHERE item_id=?", (row["item_id"],))}
            refs = []
            for source in (row["source_a"], row["source_b"]):
                if source is not None:
                    image = self._db.one("SELECT blind_name, sha256 FROM images WHERE case_id=? AND source=?",
                                         (row["case_id"], source))
                    refs.append(ImageRef(image["blind_name"], image["sha256"]))
            images = tuple(refs)
        return ReaderState(
            now=iso_utc(self._now()), study_sha256=self.study.sha256,
            item=None if row is None else item_record(row).neutral(),
            next_item_id=None if next_row is None else next_row["item_id"],
            session_opens_at=None if session is None else session["opens_at"],
            washout_after_wave=None if session is None else session["washout_after_wave"],
            washout_wave_last_submit=last, items_in_session=in_session, counts=self._counts(reader_id),
            answers=answers or {}, images=images, head=self._head() if lock else None,
        )

    def _reader_write(self, state: ReaderState, reader_id: str, key: bytes, kind: str, item_id: str,
                      payload: dict[str, Any]) -> dict[str, Any]:
        """Append the event and apply it to the tables (inside ``_reader_transaction``)."""
        event = self._event(self._tx_events, kind, reader_id, item_id, payload, at=state.now)
        at = state.now
        if kind == "shown":
            self._db.execute("UPDATE items SET shown_at = COALESCE(shown_at, ?), last_shown_at = ?, visits = visits + 1 "
                             "WHERE item_id=?", (at, at, item_id))
        elif kind == "first_interaction":
            self._db.execute("UPDATE items SET first_interaction_at = ? WHERE item_id=? AND first_interaction_at IS NULL "
                             "AND submitted_at IS NULL", (at, item_id))
        elif kind == "submit":
            for question, value in payload["answers"].items():
                self._set_response(item_id, reader_id, state.item.task_id, question, value, at, "reader", "",
                                   event["seq"], payload["study_sha256"], self.study.demo)
            self._db.execute("UPDATE items SET submitted_at=?, active_seconds=? WHERE item_id=?",
                             (at, payload["active_seconds"], item_id))
            self._submits_since_backup = getattr(self, "_submits_since_backup", 0) + 1
        elif kind == "modify":
            for question, change in payload["changes"].items():
                self._set_response(item_id, reader_id, state.item.task_id, question, change["to"], at, "reader", "",
                                   event["seq"], payload["study_sha256"], self.study.demo)
            if payload["active_seconds"] is not None:
                self._db.execute("UPDATE items SET active_seconds = COALESCE(active_seconds, 0) + ? WHERE item_id=?",
                                 (payload["active_seconds"], item_id))
        else:
            raise AnswerError(f"'{kind}' is not an event a reader writes.", code="bad_event")
        return event
