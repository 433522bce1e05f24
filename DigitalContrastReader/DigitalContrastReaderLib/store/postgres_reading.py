"""Reading from a PostgreSQL store through its stored functions: what a reading station does,
connected as the study's reader role (:class:`PostgresReadingStore`), and what the admin store
does for its own reading calls (the same :class:`PgReaderPrimitives`).

A reading station needs three things, none of which reveals the key:

* the URL of the reader role, ``postgresql://<database>_reader@HOST:PORT/<database>``, with the
  role's password in ``PGPASSWORD`` or ``~/.pgpass`` (``init`` prints both);
* each reader's id and token (``enrol`` prints the token once);
* the folder of blinded images (``digital-contrast-reader images DB --out FOLDER``): each image
  under its neutral name, checked against its sha256 whenever it is shown.

:class:`PostgresReadingStore` implements :class:`~DigitalContrastReaderLib.store.base.ReaderStore`
and nothing more; the reader role could not do more (``postgres_schema.py``). A web reading
station signs a reader in with :meth:`~DigitalContrastReaderLib.store.reader_access.ReaderAccess.verify_token`
and then calls ``resume``/``open_item``/``submit`` with the same token.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import StoreError
from DigitalContrastReaderLib.study.images import ImageVerifier
from DigitalContrastReaderLib.study.reader_view import ReaderStudyView

from .base import Clock, ImageRef, NeutralItem, ReaderCounts, ReaderState, iso_utc
from .postgres_schema import connect, reading_error, safe_location, store_error
from .reader_access import ReaderAccess
from .sql_store import image_problem_error
from .tokens import TokenParams


class PgReaderPrimitives:
    """The reading primitives of :mod:`~DigitalContrastReaderLib.store.reader_access` as calls of
    the ``dcstore.reader_*`` functions (the server checks the key and the item's owner)."""

    _conn: Any
    _clock: Clock | None
    location: str

    def _p_at(self) -> str | None:
        """A client clock's time (honoured for the admin role only), else None: the server's."""
        return None if self._clock is None else iso_utc(self._clock())

    def _call(self, sql: str, params: tuple[Any, ...], reader_id: str, item_id: str | None = None) -> Any:
        import psycopg

        try:
            row = self._conn.execute(sql, params).fetchone()
        except psycopg.Error as error:
            if isinstance(error, psycopg.OperationalError) and self._conn.closed:
                raise StoreError(f"{self.location}: the connection to the server was lost; nothing more was "
                                 "written, reconnect and carry on.", code="connection_lost") from None
            raise reading_error(error, self.location, reader_id, item_id) from None
        return None if row is None else row[0]

    def _token_params(self, reader_id: str) -> TokenParams | None:
        text = self._call("SELECT dcstore.reader_token_params(%s)", (reader_id,), reader_id)
        if text is None:
            return None
        data = json.loads(text)
        return TokenParams(data["salt"], int(data["n"]), int(data["r"]), int(data["p"]))

    def _key_ok(self, reader_id: str, key: bytes) -> bool:
        return bool(self._call("SELECT dcstore.reader_verify(%s, %s)", (reader_id, key), reader_id))

    @contextlib.contextmanager
    def _reader_transaction(self) -> Iterator[None]:
        import psycopg

        try:
            with self._conn.transaction():
                yield
        except psycopg.Error as error:
            raise store_error(error, self.location) from None

    def _reader_state(self, reader_id: str, key: bytes, item_id: str | None, *, lock: bool) -> ReaderState:
        text = self._call("SELECT dcstore.reader_state(%s, %s, %s, %s, %s)",
                          (reader_id, key, item_id, lock, self._p_at()), reader_id, item_id)
        data = json.loads(text)
        self._active_sha256 = data["study_sha256"]
        item = data["item"]
        counts = data["counts"]
        return ReaderState(
            now=data["now"], study_sha256=data["study_sha256"],
            item=None if item is None else NeutralItem(**item),
            next_item_id=data["next_item_id"], session_opens_at=data["session_opens_at"],
            washout_after_wave=data["washout_after_wave"], washout_wave_last_submit=data["washout_wave_last_submit"],
            items_in_session=int(data["items_in_session"]),
            counts=ReaderCounts(int(counts["items_total"]), int(counts["items_done"]), int(counts["training_total"]),
                                int(counts["training_done"]), int(counts["sessions_total"]), counts["last_submit_at"]),
            answers={k: (json.loads(v[0]), int(v[1])) for k, v in data["answers"].items()},
            images=tuple(ImageRef(i["ref"], i["sha256"]) for i in data["images"]),
            head=None if data["head"] is None else (int(data["head"][0]), data["head"][1]),
        )

    def _reader_write(self, state: ReaderState, reader_id: str, key: bytes, kind: str, item_id: str,
                      payload: dict[str, Any]) -> dict[str, Any]:
        """Send the event (its canonical body; the server hashes it and checks that it links to
        the chain head) with the canonical text of each answer value."""
        seq, prev = state.head
        body = {"seq": seq + 1, "at": state.now, "kind": kind, "reader_id": reader_id, "item_id": item_id,
                "payload": payload, "prev_hash": prev}
        if kind == "submit":
            values = {k: canonical_json(v) for k, v in payload["answers"].items()}
        elif kind == "modify":
            values = {k: canonical_json(c["to"]) for k, c in payload["changes"].items()}
        else:
            values = {}
        from psycopg.types.json import Jsonb

        digest = self._call("SELECT dcstore.reader_write(%s, %s, %s, %s, %s, %s)",
                            (reader_id, key, canonical_json(body), canonical_json(payload), Jsonb(values),
                             self._p_at()), reader_id, item_id)
        return {**body, "hash": digest}

    def _after_submit(self) -> list[str]:
        return []


class PostgresReadingStore(PgReaderPrimitives, ReaderAccess):
    """A :class:`~DigitalContrastReaderLib.store.base.ReaderStore` on a PostgreSQL store, for a
    reading station connected as the study's reader role (any role may use it).

    Args:
        url: ``postgresql://ROLE@HOST:PORT/DBNAME`` (password from PGPASSWORD or ~/.pgpass).
        images_dir: the folder of blinded images (``digital-contrast-reader images``); default
            ``$DIGITAL_CONTRAST_READER_IMAGES``.
    """

    def __init__(self, url: str, *, images_dir: str | os.PathLike | None = None) -> None:
        self.location = safe_location(url)
        self._clock = None  # the server's clock: a reader role cannot choose the time
        self._conn = connect(url)
        folder = images_dir or os.environ.get("DIGITAL_CONTRAST_READER_IMAGES")
        self.images_dir = Path(folder) if folder else None
        self._verifier = ImageVerifier()
        self._view: ReaderStudyView | None = None
        self._active_sha256: str | None = None

    def _reader_view(self) -> ReaderStudyView:
        if self._view is None or (self._active_sha256 and self._view.sha256 != self._active_sha256):
            text = self._call("SELECT dcstore.reader_study()", (), "")
            if text is None:
                raise StoreError(f"{self.location}: the store holds no study.", code="no_study")
            self._view = ReaderStudyView.from_dict(json.loads(text))
        return self._view

    def _image_path(self, ref: ImageRef, item_id: str) -> Path:
        if self.images_dir is None:
            raise no_images_error(self.location)
        path = self.images_dir / ref.ref
        if self._verifier.problem(path, ref.sha256) is not None:
            raise image_problem_error(item_id)
        return path

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> PostgresReadingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def no_images_error(location: str) -> StoreError:
    return StoreError(f"{location}: a reading station needs the folder of blinded images; pass --images FOLDER or set "
                      "DIGITAL_CONTRAST_READER_IMAGES (the study admin makes it with 'digital-contrast-reader images').",
                      code="no_images")
