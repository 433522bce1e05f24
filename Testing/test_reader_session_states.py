"""The reading state machine on its own: any display will do, and nothing of Slicer is needed.

``ReadingSession`` drives a reader over the ``AnswerStore`` protocol and a ``ReaderDisplay``. The
display here keeps what it is given, as a web reading station would send it to a browser;
the MRML display is tested in ``test_reader_session.py``.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from DigitalContrastReaderLib.reading.session import ReadingSession
from DigitalContrastReaderLib.reading.simulate import SimulatedClock, random_form_answers
from DigitalContrastReaderLib.store.sqlite import create_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.example import write_example_study

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


class KeepingDisplay:
    """A ReaderDisplay that keeps every item it is asked to show."""

    def __init__(self) -> None:
        self.shown = []
        self.on_interaction = None

    def show(self, item, on_interaction) -> None:
        self.shown.append(item)
        self.on_interaction = on_interaction

    def clear(self) -> None:
        self.on_interaction = None


def test_a_whole_schedule_with_a_washout_through_a_plain_display(tmp_path):
    study = load_study(write_example_study(tmp_path / "ex", cases=3, training_cases=1, readers=1,
                                           tasks=("grading", "preference"), washout_days=14))
    clock = SimulatedClock(START)
    store = create_store(tmp_path / "study.sqlite", study, clock=clock)
    display = KeepingDisplay()
    session = ReadingSession(store, display, "r01", token=store.enrol("r01").token)
    rng = random.Random(3)
    item = session.start()
    given, waits = {}, 0
    while session.state != "finished":
        if session.state == "washout":
            assert not session.washout_is_over(clock())
            clock.jump_to(datetime.fromisoformat(session.progress().opens_at) + timedelta(minutes=1))
            assert session.washout_is_over(clock())
            item = session.next()
            waits += 1
            continue
        assert display.shown[-1] is item and session.current_item is item
        display.on_interaction()  # the reader scrolls
        given[item.item_id] = random_form_answers(item.questions, rng)
        clock.advance(30)
        session.submit(given[item.item_id])
        item = session.next()
    assert waits >= 1
    scheduled = [i.item_id for i in store.schedule("r01").items]
    assert [i.item_id for i in display.shown] == scheduled == list(given)
    assert all(r.first_interaction_at and r.submitted_at for r in store.items("r01"))
    stored = {}
    for response in store.responses():
        stored.setdefault(response.item_id, {})[response.question_key] = response.value
    assert stored == given and store.integrity_check().ok
    assert display.on_interaction is None  # the last item was taken off the screen
    store.close()


def _loaded_after_import(modules: str, watched: set[str]) -> list[str]:
    code = f"import sys; import {modules}; print(sorted(set({sorted(watched)!r}) & set(sys.modules)))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_reading_only_install_loads_neither_slicer_nor_pandas():
    """The state machine, the store and the study need none of Slicer, VTK, Qt, pandas, PyYAML or
    jsonschema to import (the last two are imported when a study file is read); the MRML display
    needs no pandas."""
    reading = ("DigitalContrastReaderLib.reading.session, DigitalContrastReaderLib.reading.form, "
               "DigitalContrastReaderLib.reading.simulate, DigitalContrastReaderLib.store.sqlite, "
               "DigitalContrastReaderLib.study.config")
    assert _loaded_after_import(reading, {"slicer", "vtk", "qt", "pandas", "yaml", "jsonschema"}) == "[]"
    assert _loaded_after_import("DigitalContrastReaderLib.mrml.reader_display", {"pandas"}) == "[]"
