"""The reading half of every store (:class:`~DigitalContrastReaderLib.store.base.ReaderStore`),
written once over a few primitives that each store implements.

A reading call derives the reader's key from the token (:mod:`~DigitalContrastReaderLib.store.tokens`;
once per reader and token), then, in one transaction, asks the store for the state of one item
(:class:`~DigitalContrastReaderLib.store.base.ReaderState`: the store checks the key and that the
item is the reader's own, and locks the event chain for a write), applies the domain rules
(:mod:`~DigitalContrastReaderLib.store.rules`) in Python, and hands the resulting event to the
store, which appends it to the hash chain and applies it to its tables. The primitives:

* ``_token_params(reader_id)``: the salt and scrypt parameters of the reader's token;
* ``_key_ok(reader_id, key)``: whether a derived key is the reader's;
* ``_reader_view()``: the reader's view of the study in force;
* ``_reader_transaction()``: one transaction (a context manager);
* ``_reader_state(reader_id, key, item_id, lock=...)``: the state of one item (``item_id`` None:
  the reader's next unfinished item);
* ``_reader_write(state, reader_id, key, kind, item_id, payload)``: append and apply an event;
* ``_image_path(ref, item_id)``: the verified local file of a neutral image reference;
* ``_after_submit()``: warnings after a durable submit (a SQLite store's backups).

SQLite implements them in SQL and Python (``store/sql_reading.py``), PostgreSQL through stored
functions that a reader role may execute (``store/postgres_reading.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from DigitalContrastReaderLib.study.blinding import ReaderItem
from DigitalContrastReaderLib.study.errors import AnswerError, TokenError

from . import rules
from .base import ReaderProgress, ReaderState, SubmitReceipt, parse_iso
from .tokens import derive_key


def wrong_token_error(reader_id: str) -> TokenError:
    return TokenError(f"The token given for reader '{reader_id}' is wrong; use the token printed when you were "
                      "enrolled (or ask the study admin for a new one), nothing was stored.", code="bad_token")


def missing_token_error(reader_id: str) -> TokenError:
    return TokenError(f"Reader '{reader_id}' needs their token; pass --token or set DIGITAL_CONTRAST_READER_TOKEN "
                      "(the study admin gave it at enrolment).", code="no_token")


def no_token_issued_error(reader_id: str) -> TokenError:
    return TokenError(f"Reader '{reader_id}' has no token yet; ask the study admin to issue one "
                      f"('digital-contrast-reader token DB --reader {reader_id}').", code="no_token_issued")


class ReaderAccess:
    """Mixin: :class:`~DigitalContrastReaderLib.store.base.ReaderStore` over the primitives above."""

    _keys: dict[tuple[str, str], bytes]

    # -- signing in ----------------------------------------------------------------------------
    def _reader_key(self, reader_id: str, token: str | None) -> bytes:
        """The key derived from ``token`` (cached); the store checks it on every call."""
        if not token or not str(token).strip():
            raise missing_token_error(reader_id)
        if not hasattr(self, "_keys"):
            self._keys = {}
        cached = self._keys.get((reader_id, token))
        if cached is None:
            params = self._token_params(reader_id)
            if params is None:
                raise no_token_issued_error(reader_id)
            cached = self._keys[(reader_id, token)] = derive_key(token, params)
        return cached

    def verify_token(self, reader_id: str, token: str) -> bool:
        """Whether ``token`` is the token of enrolled reader ``reader_id`` (False for an unknown
        reader, a reader without a token, or a wrong token)."""
        try:
            key = self._reader_key(reader_id, token)
        except (TokenError, AnswerError):
            return False
        return self._key_ok(reader_id, key)

    # -- reading -------------------------------------------------------------------------------
    def _item_of(self, state: ReaderState) -> ReaderItem:
        view = self._reader_view()
        item = state.item
        return rules.reader_item(
            view, item,
            images=[(ref.ref, self._image_path(ref, item.item_id)) for ref in state.images],
            answers={key: value for key, (value, _revision) in state.answers.items()},
            sessions_total=state.counts.sessions_total,
            items_in_session=state.items_in_session,
            items_total=state.counts.items_total,
            opens_at=self._opens_at_of(state),
            now=parse_iso(state.now),
        )

    def _opens_at_of(self, state: ReaderState):
        last = state.washout_wave_last_submit
        return rules.session_opens_at(parse_iso(state.session_opens_at), state.washout_after_wave,
                                      None if last is None else parse_iso(last), self._reader_view().washout_days)

    def resume(self, reader_id: str, *, token: str) -> ReaderItem | None:
        """Exactly the next unfinished item of the reader in stored order (None when finished).

        Its ``opens_at`` is set when a washout still blocks it. Records nothing (call
        :meth:`open_item` when it is displayed)."""
        state = self._reader_state(reader_id, self._reader_key(reader_id, token), None, lock=False)
        return None if state.item is None else self._item_of(state)

    def peek_item(self, reader_id: str, item_id: str, *, token: str) -> ReaderItem:
        """One of the reader's own items, as it would be shown, without recording a display."""
        state = self._reader_state(reader_id, self._reader_key(reader_id, token), item_id, lock=False)
        return self._item_of(state)

    def open_item(self, reader_id: str, item_id: str, *, token: str) -> ReaderItem:
        """Display an item: records the first and last display time and counts visits.

        Allowed for the next unfinished item once it is open, and for items already submitted
        (a revisit; editable only when the study allows answer modification)."""
        key = self._reader_key(reader_id, token)
        with self._reader_transaction():
            state = self._reader_state(reader_id, key, item_id, lock=True)
            item = state.item
            if item.submitted_at is None:
                self._check_is_next_and_open(state)
            self._reader_write(state, reader_id, key, "shown", item_id, {"visit": item.visits + 1})
        return self.peek_item(reader_id, item_id, token=token)

    def _check_is_next_and_open(self, state: ReaderState) -> None:
        rules.check_is_next(state.item, state.next_item_id)
        rules.check_is_open(state.item, self._opens_at_of(state), parse_iso(state.now),
                            self._reader_view().washout_days)

    def mark_interaction(self, reader_id: str, item_id: str, *, token: str) -> None:
        """Record the first interaction with a displayed item (scroll, window/level, a click)."""
        key = self._reader_key(reader_id, token)
        state = self._reader_state(reader_id, key, item_id, lock=False)
        if state.item.first_interaction_at is not None or state.item.submitted_at is not None:
            return  # nothing to record: no transaction, no event
        with self._reader_transaction():
            state = self._reader_state(reader_id, key, item_id, lock=True)
            if state.item.first_interaction_at is None and state.item.submitted_at is None:
                self._reader_write(state, reader_id, key, "first_interaction", item_id, {})

    def submit(self, reader_id: str, item_id: str, answers: Mapping[str, Any], *, token: str,
               active_seconds: float | None = None) -> SubmitReceipt:
        """Save the answers to one item in ONE transaction; returns once they are durable.

        Every required question needs an answer, unknown keys are refused, values are validated
        by their question. A second submit of the same item is refused unless the study allows
        answer modification; then changed values become new revisions (an omitted optional
        answer keeps its earlier value).

        Args:
            token: the reader's token (checked by the store; a wrong one stores nothing).
            active_seconds: time the reader actively spent, as measured by the UI (idle time
                excluded). Default: seconds from the last display to this submit.
        """
        rules.check_active_seconds(active_seconds)
        key = self._reader_key(reader_id, token)
        with self._reader_transaction():
            state = self._reader_state(reader_id, key, item_id, lock=True)
            view = self._reader_view()
            item = state.item
            values = rules.validated_answers(view.task(item.task_id), answers)
            modified = rules.check_may_submit_again(item, view)
            if not modified:
                self._check_is_next_and_open(state)
                seconds = rules.active_seconds_of_submit(active_seconds, item, parse_iso(state.now))
                given = {k: v for k, v in values.items() if v is not None}
                event = self._reader_write(state, reader_id, key, "submit", item_id, {
                    "answers": given, "study_sha256": view.sha256, "active_seconds": seconds,
                })
            else:
                changes = rules.answer_changes(values, state.answers)
                event = self._reader_write(state, reader_id, key, "modify", item_id, {
                    "changes": changes, "study_sha256": view.sha256, "active_seconds": active_seconds,
                })
        after = self._reader_state(reader_id, key, None, lock=False)
        nxt = after.item.item_id if after.item else None
        return SubmitReceipt(item_id, state.now, event["seq"], modified, nxt, nxt is None,
                             warnings=tuple(self._after_submit()))

    def reader_progress(self, reader_id: str, *, token: str) -> ReaderProgress:
        """How far the reader is (their own counts, next item and washout only)."""
        state = self._reader_state(reader_id, self._reader_key(reader_id, token), None, lock=False)
        return rules.reader_progress(
            reader_id, None, state.counts, next_item=state.item,
            next_opens_at=self._opens_at_of(state) if state.item else None, now=parse_iso(state.now))
