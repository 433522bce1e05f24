"""A reader's reading session: the state machine that drives one reader through their stored
schedule, over an :class:`~DigitalContrastReaderLib.store.base.ReaderStore` and a :class:`ReaderDisplay`.

* :meth:`ReadingSession.start` signs the reader in (reader id and token, checked by the store)
  and resumes at the first unfinished item (the order is the stored schedule's; nothing is
  recomputed);
* each item is recorded as displayed (``store.open_item``), handed to the display and timed
  (:class:`~DigitalContrastReaderLib.reading.active_time.ActiveTimeCounter`, idle time left out);
* :meth:`ReadingSession.submit` commits the answers through the store (one transaction, on disk
  when it returns) with the active reading time; :meth:`ReadingSession.next` shows the next
  item, or reports a washout or the end.

The display is where the images appear: :class:`~DigitalContrastReaderLib.mrml.reader_display.MRMLReaderDisplay`
in a MRML scene (Slicer, or headless), a web reading station in a browser. It tells the session
when the reader interacts with the images; the question form calls :meth:`ReadingSession.note_interaction`.
Nothing here imports Slicer, VTK or Qt.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from DigitalContrastReaderLib.store.base import ReaderStore, SubmitReceipt
from DigitalContrastReaderLib.study.blinding import ReaderItem
from DigitalContrastReaderLib.study.errors import AnswerError, TokenError

from .active_time import DEFAULT_IDLE_AFTER_SECONDS, ActiveTimeCounter

STATE_IDLE = "idle"  # not started
STATE_READING = "reading"  # an item is on screen
STATE_SUBMITTED = "submitted"  # the item on screen was submitted; next() shows the next one
STATE_WASHOUT = "washout"  # the next item opens later
STATE_FINISHED = "finished"  # every item is submitted


class ReaderDisplay(Protocol):
    """Where a reading session shows its items (a MRML scene, a web reading station...).

    A display sees only the blinded :class:`~DigitalContrastReaderLib.study.blinding.ReaderItem`:
    neutral handles (``Image``, ``Image A``/``Image B``), paths of neutral links, the study's
    display settings. Whatever it shows must not reveal an image's source.
    """

    def show(self, item: ReaderItem, on_interaction: Callable[[], None]) -> None:
        """Put ``item``'s images on screen, blinded, in place of anything shown before, and call
        ``on_interaction`` whenever the reader changes the view of them (scroll, pan, zoom,
        window/level). When an image cannot be shown, leave nothing on screen and raise
        (``StudyError`` with one sentence that names no file)."""

    def clear(self) -> None:
        """Take the item off the screen and stop watching it (safe when nothing is shown)."""


@dataclass(frozen=True)
class SessionProgress:
    """Where a reader is (what the "k of N" line says).

    Attributes:
        state: ``idle``, ``reading``, ``submitted``, ``washout`` or ``finished``.
        items_done / items_total: submitted and scheduled items (training items included).
        item_number: the number (1-based) of the item on screen among the training items when
            ``training``, else among the main items; None when no item is on screen.
        training: that item is a training item; training_done / training_total count them.
        session_no / sessions_total, position_in_session / items_in_session: the sitting.
        opens_at: ISO time the next item opens (washout), else None.
    """

    reader_id: str
    state: str
    items_done: int
    items_total: int
    item_number: int | None
    training: bool
    training_done: int
    training_total: int
    session_no: int | None
    sessions_total: int
    position_in_session: int | None
    items_in_session: int | None
    opens_at: str | None

    def text(self) -> str:
        """One line for the reader, e.g. ``Item 5 of 40 - session 2 of 3 (item 1 of 20)``."""
        if self.state == STATE_FINISHED:
            return f"All {self.items_total} items done. Thank you!"
        if self.state == STATE_WASHOUT:
            return (f"{self.items_done} of {self.items_total} items done. Session {self.session_no} of "
                    f"{self.sessions_total} opens {_readable_time(self.opens_at)} (washout).")
        if self.item_number is None:
            return f"{self.items_done} of {self.items_total} items done."
        kind = (f"Training item {self.item_number} of {self.training_total} (not scored)" if self.training
                else f"Item {self.item_number} of {self.items_total - self.training_total}")
        return (f"{kind} \u2013 session {self.session_no} of {self.sessions_total} "
                f"(item {self.position_in_session} of {self.items_in_session})")


def _readable_time(iso: str | None) -> str:
    if not iso:
        return "now"
    moment = datetime.fromisoformat(iso).astimezone()
    return "on " + moment.strftime("%Y-%m-%d at %H:%M")


def _weakly(method: Callable[[], None]) -> Callable[[], None]:
    """A callback for the display that does not keep the session alive (no reference cycle
    session -> display -> session; the display's own observers may outlive both)."""
    ref = weakref.WeakMethod(method)

    def callback() -> None:
        target = ref()
        if target is not None:
            target()

    return callback


class ReadingSession:
    """One reader's session.

    Args:
        store: the study's store (open): any :class:`~DigitalContrastReaderLib.store.base.ReaderStore`,
            e.g. a PostgreSQL store connected as the study's reader role.
        display: where the items are shown.
        reader_id: the reader's code (enrolled by the study admin).
        token: the reader's token (printed at enrolment); every call of the store checks it.
        idle_after_seconds: time without interaction after which active time stops counting.
        clock: monotonic seconds for active time (tests pass a fake).

    Typical use (the Slicer widget does exactly this, through
    :func:`~DigitalContrastReaderLib.mrml.reader_display.mrml_reading_session`)::

        session = ReadingSession(store, display, "r01", token=token)
        item = session.start()            # ReaderItem on screen (or None: washout / finished)
        receipt = session.submit(answers) # on disk when it returns
        item = session.next()
    """

    def __init__(self, store: ReaderStore, display: ReaderDisplay, reader_id: str, *, token: str | None = None,
                 idle_after_seconds: float = DEFAULT_IDLE_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.display = display
        self.reader_id = reader_id.strip()
        self.token = (token or "").strip()
        self.active_time = ActiveTimeCounter(idle_after_seconds, clock)
        self.state = STATE_IDLE
        self.current_item: ReaderItem | None = None
        self.last_receipt: SubmitReceipt | None = None
        self.on_interaction: Callable[[], None] | None = None  # the widget refreshes its clock
        self._interaction_marked = False
        self._display_callback = _weakly(self.note_interaction)

    # -- flow ------------------------------------------------------------------------------
    def start(self) -> ReaderItem | None:
        """Sign in (the store checks the reader id and token), then resume at the first
        unfinished item and show it.

        Returns the item on screen, or None when the reader has finished or the next item is
        still closed by a washout (see :attr:`state` and :meth:`progress`).

        Raises:
            AnswerError: no reader code, or a reader who is not enrolled.
            TokenError: no token, or the wrong one.
        """
        if not self.reader_id:
            raise AnswerError("Enter your reader code to start.", code="no_reader")
        if not self.token:
            raise TokenError("Enter your token to start (the study admin gave it to you with your reader code).",
                             code="no_token")
        self.store.reader_progress(self.reader_id, token=self.token)  # one sentence if the sign-in fails
        return self._advance()

    def next(self) -> ReaderItem | None:
        """Show the next unfinished item after a submit (or re-check a washout)."""
        if self.state == STATE_READING:
            raise AnswerError("Submit the answers to this item first.", code="not_submitted")
        return self._advance()

    def _advance(self) -> ReaderItem | None:
        item = self.store.resume(self.reader_id, token=self.token)
        if item is None:
            self._clear()
            self.current_item, self.state = None, STATE_FINISHED
            return None
        if item.opens_at:
            self._clear()
            self.current_item, self.state = item, STATE_WASHOUT
            return None
        item = self.store.open_item(self.reader_id, item.item_id, token=self.token)
        self.load_item(item)
        return item

    def load_item(self, item: ReaderItem) -> None:
        """Put ``item`` on screen (blinded) and start its active-time count.

        The previous item is taken off first. The caller has recorded the display with
        ``store.open_item`` (:meth:`start`/:meth:`next` do).
        """
        self._clear()
        self.display.show(item, self._display_callback)
        self.current_item = item
        self.state = STATE_READING if item.editable and not item.done else STATE_SUBMITTED
        self._interaction_marked = False
        self.active_time.start()

    def submit(self, answers: Mapping[str, Any]) -> SubmitReceipt:
        """Commit the answers to the item on screen; returns once they are on disk.

        The active time so far is stored with them. Invalid or missing answers raise
        :class:`AnswerError` and change nothing (the item stays on screen, its clock running).
        """
        if self.state != STATE_READING or self.current_item is None:
            raise AnswerError("There is no unanswered item on screen to submit.", code="nothing_to_submit")
        seconds = round(self.active_time.tick(), 3)
        receipt = self.store.submit(self.reader_id, self.current_item.item_id, dict(answers), token=self.token,
                                    active_seconds=seconds)
        self.active_time.stop()
        self.last_receipt = receipt
        self.state = STATE_SUBMITTED
        return receipt

    def submit_and_next(self, answers: Mapping[str, Any]) -> ReaderItem | None:
        """:meth:`submit`, then :meth:`next` (what Ctrl+N does)."""
        self.submit(answers)
        return self.next()

    def note_interaction(self) -> None:
        """The reader did something with the item on screen (the form calls it on every edit;
        the display calls it for view and window/level changes)."""
        if self.state != STATE_READING or self.current_item is None:
            return
        self.active_time.interaction()
        if not self._interaction_marked:
            self._interaction_marked = True
            self.store.mark_interaction(self.reader_id, self.current_item.item_id, token=self.token)
        if self.on_interaction is not None:
            self.on_interaction()

    @property
    def reading_item(self) -> ReaderItem | None:
        """The item on screen that awaits answers (state ``reading``), else None."""
        return self.current_item if self.state == STATE_READING else None

    def set_window_active(self, active: bool) -> None:
        """The reading window came to the front (True) or went to the background (False): active
        time stops counting while it is away, and counts again when it is back."""
        if active:
            self.active_time.resume()
        else:
            self.active_time.pause()

    def washout_is_over(self, now: datetime | None = None) -> bool:
        """Whether the item that waited for a washout can be read now (``now``: UTC, default the
        current time); call :meth:`next` then."""
        item = self.current_item
        now = now or datetime.now(timezone.utc)
        return item is not None and item.opens_at is not None and datetime.fromisoformat(item.opens_at) <= now

    def progress(self) -> SessionProgress:
        """Where the reader is, for the "k of N" line."""
        record = self.store.reader_progress(self.reader_id, token=self.token)
        shown = self.current_item if self.state in (STATE_READING, STATE_SUBMITTED) else None
        training = bool(shown and shown.training)
        number = None
        if shown is not None:  # training items come first in every schedule
            number = shown.order_index if training else shown.order_index - record.training_total
        return SessionProgress(
            reader_id=self.reader_id,
            state=self.state,
            items_done=record.items_done,
            items_total=record.items_total,
            item_number=number,
            training=training,
            training_done=record.training_done,
            training_total=record.training_total,
            session_no=shown.session_no if shown else record.current_session,
            sessions_total=record.sessions_total,
            position_in_session=shown.position_in_session if shown else None,
            items_in_session=shown.items_in_session if shown else None,
            opens_at=record.next_opens_at if self.state == STATE_WASHOUT else None,
        )

    def close(self) -> None:
        """Take the item off the screen (answers are already on disk); the store stays open."""
        self._clear()
        self.state = STATE_IDLE

    def _clear(self) -> None:
        self.display.clear()
        if self.active_time.running:
            self.active_time.stop()
