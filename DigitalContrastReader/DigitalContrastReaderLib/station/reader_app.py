"""One reader's reading page: a trame-slicer app over the Slicer module's reading logic.

One process, one signed-in reader (:mod:`.reader_process` runs it; the front process starts one
per reader session, so trame's state, which every browser connected to a process shares, never
mixes two readers). The page is the Slicer module's reading flow in a browser:

* the item's images in linked slice views rendered on the server (trame-slicer's remote views),
  laid out by the study's hanging protocol (:func:`~DigitalContrastReaderLib.mrml.reader_display.reader_layout`:
  one column per image, one row per orientation) and shown by
  :class:`~DigitalContrastReaderLib.mrml.reader_display.MRMLReaderDisplay` (neutral node names,
  voxels only, the study's window/level, locked here: scroll, zoom and pan stay free);
* the form (:mod:`.form_state` over :class:`~DigitalContrastReaderLib.reading.form.QuestionForm`),
  the active reading time and the order of items (:class:`~DigitalContrastReaderLib.reading.session.ReadingSession`),
  the store's reading calls with the reader's token on every call.

Submit is a trigger that answers only once the store has made the answers durable; it carries
the item's neutral id and the answers the browser holds, so a second submit of an item (two
tabs, a retry after a lost connection) is recognised and stored once. ``static/station.js``
keeps unsent answers in the tab and shows the banner of a lost connection.

What the browser receives is neutral: item ids, question texts, the progress line, pixels.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trame.app import TrameApp
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_rca import module as rca_module
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from DigitalContrastReaderLib.reading.active_time import DEFAULT_IDLE_AFTER_SECONDS
from DigitalContrastReaderLib.reading.session import STATE_FINISHED, STATE_READING, STATE_WASHOUT, ReadingSession
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError, StudyError, TokenError

from .form_state import SUBMIT_KEY_TEXT, BrowserForm, answers_for_submit
from .page_form import build_form, testid
from .pages import SIGN_IN_REFUSED
from .station_display import StationDisplay

if TYPE_CHECKING:
    from DigitalContrastReaderLib.store.base import ReaderStore

STATIC = Path(__file__).resolve().parent / "static"
#: trame module: the station's script and style, served from the installed package (no CDN).
STATION_MODULE = {"serve": {"__dc_station": str(STATIC)}, "scripts": ["__dc_station/station.js"],
                  "styles": ["__dc_station/station.css"]}
#: How often a washout page asks whether the next session has opened.
WASHOUT_CHECK_S = 30.0

PHASE_WAITING = "waiting"  # no reader signed in (a spare process)
PHASE_READING = "reading"
PHASE_WASHOUT = "washout"
PHASE_FINISHED = "finished"
PHASE_ERROR = "error"  # the item cannot be shown (one sentence in message)
PHASE_SIGNED_OUT = "signed_out"


class ReaderPageApp(TrameApp):
    """The reading page of one reader (state shared by every tab of that reader).

    Args:
        idle_after_seconds: the active reading time stops counting after this long without an
            interaction (as in the Slicer module).
    """

    def __init__(self, server: Any = None, *, idle_after_seconds: float = DEFAULT_IDLE_AFTER_SECONDS) -> None:
        super().__init__(server)
        self.idle_after_seconds = idle_after_seconds
        self.server.enable_module(trame_slicer_module)
        self.server.enable_module(rca_module)  # now: the views are made after the server started
        self.server.enable_module(STATION_MODULE)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=_slice_view_overlay)
        self.layouts = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.display = StationDisplay(self.slicer.scene, self.slicer.app_logic, self.slicer.view_manager, self.layouts)
        self.session: ReadingSession | None = None
        self.store: ReaderStore | None = None
        self.form: BrowserForm | None = None
        self._washout_task: asyncio.Task | None = None
        self.state.update({
            "trame__title": "Reading station", "phase": PHASE_WAITING, "item_id": "", "progress_text": "",
            "instructions": "", "fields": [], "answers": {}, "field_errors": {}, "form_status": "",
            "can_submit": False, "current_key": "", "message": "", "message_type": "info", "notice": "",
            "submit_key": SUBMIT_KEY_TEXT,
        })
        self.state.change("answers")(self._on_answers)
        for name, handler in (("station_submit", self.submit), ("station_key", self.press_key),
                              ("station_focus", self.set_window_active)):
            self.server.trigger(name)(handler)
        self._build_ui()
        # A lost connection keeps the page as it is (station.js shows the banner and keeps what the
        # reader entered) instead of trame's default of replacing it with a loading message.
        self.state.trame__template_error = self.state.trame__template_main

    # ------------------------------------------------------------------ page
    def _build_ui(self) -> None:
        with VAppLayout(self.server, full_height=True) as page:
            with v3.VAppBar(density="compact", flat=True, color="grey-darken-4"):
                v3.VToolbarTitle("Reading station", classes="text-body-1", style="flex: 0 0 auto;")
                html.Div("{{ progress_text }}", classes="mx-4 text-body-2", **testid("item-progress"))
                v3.VSpacer()
                with html.Form(action="./sign-out", method="post", classes="mr-2"):
                    v3.VBtn("Sign out", type="submit", variant="text", size="small", **testid("sign-out"))
            with v3.VMain(), html.Div(classes="station-main"):
                v3.VAlert(v_if=("message",), text=("message",), type=("message_type",), density="compact",
                          classes="ma-2", **testid("message"))
                with v3.VCard(v_if=("phase === 'washout'",), classes="ma-6 pa-6", **testid("washout")):
                    html.Div("Not open yet", classes="text-h6 mb-2")
                    html.Div("{{ notice }}")
                with v3.VCard(v_if=("phase === 'finished'",), classes="ma-6 pa-6", **testid("finished")):
                    html.Div("{{ notice }}", classes="text-h6")
                with v3.VCard(v_if=("phase === 'signed_out'",), classes="ma-6 pa-6", **testid("signed-out")):
                    html.Div("{{ notice }}")
                with html.Div(v_show=("phase === 'reading'",), classes="station-reading"):
                    with html.Div(classes="station-views", **testid("views")):
                        self.layouts.initialize_layout_grid(page)
                    with html.Div(classes="station-form"):
                        build_form()

    # ------------------------------------------------------------------ signing in
    def sign_in(self, store: ReaderStore, reader_id: str, token: str) -> str | None:
        """Sign ``reader_id`` in on ``store`` and show their next item; returns None when signed
        in, else the sentence to show (nothing is stored for a refused sign-in)."""
        reader_id, token = reader_id.strip(), token.strip()
        if not reader_id or not token:
            return "Enter your reader id and your token."
        try:
            if not store.verify_token(reader_id, token):
                return SIGN_IN_REFUSED
        except StoreError as error:
            return str(error)
        self.store = store
        self.session = ReadingSession(store, self.display, reader_id, token=token,
                                      idle_after_seconds=self.idle_after_seconds)
        self._run(self.session.start)
        return None

    def same_reader(self, reader_id: str, token: str) -> bool:
        """Whether ``reader_id``/``token`` are the signed-in reader's (a second tab signing in)."""
        session = self.session
        return (session is not None and session.reader_id == reader_id.strip() and self.store is not None
                and self.store.verify_token(session.reader_id, token.strip()))

    def sign_out(self) -> None:
        """Take the item off screen (every submitted answer is durable already)."""
        if self.session is not None:
            self.session.close()
        self.session = None
        with self.state:
            self.state.update({"phase": PHASE_SIGNED_OUT, "notice": "You are signed out. Your answers are saved.",
                               "fields": [], "answers": {}, "item_id": "", "progress_text": ""})

    # ------------------------------------------------------------------ the flow
    def _run(self, step: Any) -> None:
        """Run a step of the session (start, next) and show where it left the reader."""
        try:
            step()
        except TokenError as error:
            self._show_signed_out(str(error))
            return
        except (AnswerError, StudyError, StoreError) as error:  # an image that cannot be shown, a store problem
            with self.state:
                self.state.update({"phase": PHASE_ERROR, "message": str(error), "message_type": "error"})
            return
        self._show_session()

    def _show_session(self) -> None:
        session = self.session
        assert session is not None
        progress = session.progress()
        item = session.reading_item
        updates: dict[str, Any] = {"progress_text": progress.text(), "message": "", "notice": ""}
        if item is not None and session.state == STATE_READING:
            self.form = BrowserForm(item.questions, item.answers, editable=item.editable)
            updates.update({"phase": PHASE_READING, "item_id": item.item_id, "instructions": item.instructions,
                            "fields": self.form.fields, "answers": self.form.browser_answers(),
                            **self.form.view()})
        else:
            self.form = None
            finished = session.state == STATE_FINISHED
            updates.update({"phase": PHASE_FINISHED if finished else PHASE_WASHOUT, "item_id": "", "fields": [],
                            "answers": {}, "can_submit": False,
                            "notice": progress.text() + ("" if finished else " Your answers so far are saved.")})
            if session.state == STATE_WASHOUT:
                self._watch_washout()
        with self.state:
            self.state.update(updates)

    def _show_signed_out(self, sentence: str) -> None:
        self.session = None
        with self.state:
            self.state.update({"phase": PHASE_SIGNED_OUT, "notice": sentence + " Sign in again to continue.",
                               "fields": [], "answers": {}, "item_id": ""})

    def _watch_washout(self) -> None:
        if self._washout_task is not None and not self._washout_task.done():
            return

        async def watch() -> None:
            while self.session is not None and self.session.state == STATE_WASHOUT:
                await asyncio.sleep(WASHOUT_CHECK_S)
                if self.session is not None and self.session.washout_is_over():
                    self._run(self.session.next)

        self._washout_task = asyncio.ensure_future(watch())

    # ------------------------------------------------------------------ browser events
    def _on_answers(self, answers: dict[str, Any], **_: Any) -> None:
        form, session = self.form, self.session
        if form is None or session is None or not isinstance(answers, dict):
            return
        if form.apply(answers):
            session.note_interaction()
            with self.state:
                self.state.update(form.view())

    def press_key(self, key: str, ctrl: bool = False, in_text_entry: bool = False) -> dict[str, Any]:
        """A key on the page: digits answer the current question, Ctrl+Enter submits."""
        form, session = self.form, self.session
        if form is None or session is None:
            return {"kind": "ignored"}
        action = form.press_key(str(key), ctrl=bool(ctrl), in_text_entry=bool(in_text_entry))
        if action.kind == "chosen":
            session.note_interaction()
            with self.state:
                self.state.answers = form.browser_answers()
                self.state.update(form.view())
        elif action.kind == "blocked":
            with self.state:
                self.state.form_status = action.message
        return {"kind": action.kind}

    def set_window_active(self, active: bool) -> None:
        """The tab came to the front or went to the background (active time pauses, as in Slicer)."""
        if self.session is not None:
            self.session.set_window_active(bool(active))

    def submit(self, item_id: str, answers: dict[str, Any]) -> dict[str, Any]:
        """Store the answers to ``item_id``; answers once they are durable, then shows the next item.

        Returns ``{"status": "saved"}``, ``{"status": "already_saved"}`` (this item was stored by an
        earlier submit: another tab, or a retry whose first reply was lost) or
        ``{"status": "refused", "message": <one sentence>}`` (nothing stored).
        """
        session = self.session
        if session is None:
            return {"status": "refused", "message": "You are signed out; sign in again to continue."}
        item = session.reading_item
        if item is None or item.item_id != item_id:
            return self._earlier_submit(str(item_id))
        try:
            values = answers_for_submit(item.questions, answers)
            receipt = session.submit(values)
        except TokenError as error:
            self._show_signed_out(str(error))
            return {"status": "refused", "message": str(error)}
        except (AnswerError, StoreError) as error:
            with self.state:
                self.state.update({"message": str(error), "message_type": "error"})
            return {"status": "refused", "message": str(error)}
        self._run(session.next)
        if receipt.warnings:  # e.g. a backup copy that could not be written: the answer is saved
            with self.state:
                self.state.update({"message": " ".join(receipt.warnings), "message_type": "warning"})
        return {"status": "saved"}

    def _earlier_submit(self, item_id: str) -> dict[str, Any]:
        session = self.session
        assert session is not None
        try:
            item = session.store.peek_item(session.reader_id, item_id, token=session.token)
        except (AnswerError, StoreError):
            item = None
        if item is not None and item.done:
            return {"status": "already_saved"}
        return {"status": "refused", "message": "This page was out of date; it shows the current item now."}

    def close(self) -> None:
        """Take the item off screen (the store belongs to the caller, who closes it)."""
        if self.session is not None:
            self.session.close()


def _slice_view_overlay(server: Any, view_id: str, view: Any) -> None:
    """What each slice view shows over its image: its neutral label and a slice slider."""
    from trame_slicer.app.logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider

    properties = getattr(view, "_view_properties", None)  # the layout's label: "Image A (axial)"
    html.Div(getattr(properties, "label", None) or "", classes="station-view-label")
    with html.Div(classes="station-view-slider"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), theme="dark", density="compact")
