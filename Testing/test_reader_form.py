"""The question form a reader fills (without Qt) and the active-time count.

The form is built from the study's real question templates (aorta grading, Turing, preference,
detection) plus hand-written number, multiple-choice and text questions; every answer it lets
through is accepted by a real answer store.
"""

from __future__ import annotations

import pytest

from DigitalContrastReaderLib.reading.active_time import ActiveTimeCounter
from DigitalContrastReaderLib.reading.form import (
    WIDGET_CHECKBOXES,
    WIDGET_NUMBER,
    WIDGET_RADIO,
    WIDGET_TEXT,
    WIDGET_YES_NO,
    QuestionForm,
)
from DigitalContrastReaderLib.study.errors import AnswerError
from DigitalContrastReaderLib.study.templates import PREFERENCE_QUESTIONS, TURING_QUESTIONS, grading_questions

EXTRA_QUESTIONS = [
    {"key": "diameter", "type": "number", "text": "Maximal aortic diameter", "required": True, "min": 10, "max": 90,
     "step": 0.5, "unit": "mm"},
    {"key": "findings", "type": "multiple_choice", "text": "Findings", "required": False, "max_selected": 2,
     "options": [{"value": "dissection", "label": "Dissection"}, {"value": "aneurysm", "label": "Aneurysm"},
                 {"value": "thrombus", "label": "Thrombus"}]},
]


def test_every_question_type_gets_its_widget_with_anchored_labels():
    form = QuestionForm(grading_questions("aorta") + EXTRA_QUESTIONS)
    widgets = {f.key: f.widget for f in form.fields}
    assert widgets["lumen_conspicuity"] == WIDGET_RADIO
    assert widgets["non_diagnostic"] == WIDGET_YES_NO
    assert widgets["comment"] == WIDGET_TEXT
    assert widgets["diameter"] == WIDGET_NUMBER
    assert widgets["findings"] == WIDGET_CHECKBOXES
    lumen = form.field("lumen_conspicuity")
    assert [c.value for c in lumen.choices] == [1, 2, 3, 4, 5]
    assert [c.shortcut for c in lumen.choices] == ["1", "2", "3", "4", "5"]
    assert lumen.choices[0].label.startswith("Not visible") and lumen.choices[4].text.startswith("5  Excellent")
    assert lumen.title.endswith(" *") and not form.field("comment").title.endswith(" *")
    diameter = form.field("diameter")
    assert (diameter.minimum, diameter.maximum, diameter.step, diameter.decimals, diameter.unit) == (10, 90, 0.5, 1, "mm")
    turing = QuestionForm(TURING_QUESTIONS).field("synthetic_or_real")
    assert [(c.shortcut, c.label) for c in turing.choices] == [("1", "Synthetic"), ("2", "Real")]


def test_submit_is_blocked_until_every_required_answer_is_given():
    form = QuestionForm(grading_questions("aorta"))
    required = [f.key for f in form.fields if f.required]
    assert not form.can_submit and form.missing() == required
    assert "7 required answers missing" in form.status_text()
    with pytest.raises(AnswerError):
        form.answers()
    for key in required[:-1]:
        form.set_value(key, 4 if key != "non_diagnostic" else False)
    assert form.missing() == ["non_diagnostic"] and not form.can_submit
    form.set_value("non_diagnostic", False)
    assert form.can_submit and form.status_text().startswith("Ready")
    answers = form.answers()
    assert "comment" not in answers  # optional and empty: not sent
    assert answers["non_diagnostic"] is False and answers["lumen_conspicuity"] == 4
    form.set_value("lumen_conspicuity", None)  # clearing a required answer blocks again
    assert not form.can_submit


def test_keyboard_digits_answer_the_current_question_then_move_on():
    form = QuestionForm(grading_questions("aorta"))
    assert form.current_key == "lumen_conspicuity"
    action = form.press_key("4")
    assert (action.kind, action.key, action.value) == ("chosen", "lumen_conspicuity", 4)
    assert form.value("lumen_conspicuity") == 4 and form.current_key == "edge_sharpness"
    assert form.press_key("7").kind == "ignored"  # no level 7
    assert form.press_key("3", in_text_entry=True).kind == "ignored"  # typing a comment
    assert form.value("edge_sharpness") is None
    for digit in "35521":
        form.press_key(digit)
    assert [form.value(k) for k in ("edge_sharpness", "thrombus_delineation", "branch_conspicuity",
                                    "noise_artefacts", "overall_confidence")] == [3, 5, 5, 2, 1]
    blocked = form.press_key("N", ctrl=True)  # non_diagnostic (yes/no) still missing
    assert blocked.kind == "blocked" and "non-diagnostic" in blocked.message
    form.set_value("non_diagnostic", True)
    assert form.press_key("n", ctrl=True).kind == "submit"
    form.set_current("noise_artefacts")
    form.press_key("4")
    assert form.value("noise_artefacts") == 4


def test_a_click_on_a_level_makes_its_question_current_then_moves_on():
    form = QuestionForm(grading_questions("aorta"))
    form.choose("thrombus_delineation", 2)  # clicked out of order
    assert form.value("thrombus_delineation") == 2 and form.current_key == "branch_conspicuity"
    form.press_key("5")
    assert form.value("branch_conspicuity") == 5 and form.value("lumen_conspicuity") is None


def test_keyboard_skips_answered_questions_and_picks_choice_positions():
    form = QuestionForm(TURING_QUESTIONS, {"confidence": 3})
    assert form.current_key == "synthetic_or_real"
    assert form.press_key("2").value == "real"
    assert form.current_key == "synthetic_or_real"  # the only other keyboard question is answered
    assert form.answers() == {"synthetic_or_real": "real", "confidence": 3}


def test_number_and_text_fields_parse_like_the_store_and_report_bad_input():
    form = QuestionForm(EXTRA_QUESTIONS)
    form.set_text("diameter", "abc")
    assert "diameter" in form.errors() and not form.can_submit
    assert "Check 'Maximal aortic diameter'" in form.status_text()
    form.set_text("diameter", "42.3")  # not on the 0.5 grid
    assert "multiple of 0.5" in form.errors()["diameter"]
    form.set_text("diameter", "42.5")
    assert form.errors() == {} and form.value("diameter") == 42.5 and form.text("diameter") == "42.5"
    form.set_checked("findings", "thrombus", True)
    form.set_checked("findings", "dissection", True)
    assert form.value("findings") == ["dissection", "thrombus"]  # option order
    form.set_checked("findings", "aneurysm", True)
    assert "at most 2" in form.errors()["findings"]
    form.set_checked("findings", "thrombus", False)
    assert form.answers() == {"diameter": 42.5, "findings": ["dissection", "aneurysm"]}
    form.set_text("diameter", "")
    assert form.missing() == ["diameter"]


def test_submitted_answers_are_shown_read_only():
    form = QuestionForm(PREFERENCE_QUESTIONS, {"preferred": "B", "comment": "sharper"}, editable=False)
    assert form.value("preferred") == "B" and form.text("comment") == "sharper"
    assert not form.can_submit and "can no longer be changed" in form.status_text()
    with pytest.raises(AnswerError):
        form.set_value("preferred", "A")
    assert form.press_key("1").kind == "ignored"


def test_every_answer_the_form_accepts_is_accepted_by_the_store(tmp_path):
    import random

    from DigitalContrastReaderLib.store.sqlite import create_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import write_example_study

    study = load_study(write_example_study(tmp_path / "ex", cases=2, training_cases=0, readers=1, washout_days=0))
    store = create_store(tmp_path / "s.sqlite", study)
    token = store.enrol("r01", seed=3).token
    rng = random.Random(1)
    submitted = 0
    while (item := store.resume("r01", token=token)) is not None:
        form = QuestionForm(item.questions)
        for spec in form.fields:
            if spec.choices:
                form.set_value(spec.key, rng.choice(spec.choices).value)
        store.submit("r01", item.item_id, form.answers(), token=token)
        submitted += 1
    assert submitted == len(store.items("r01")) and store.integrity_check().ok


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_active_time_leaves_out_idle_stretches_whatever_the_tick_rate():
    clock = FakeClock()
    counter = ActiveTimeCounter(idle_after_seconds=30, clock=clock)
    counter.start()
    clock.now += 10
    counter.interaction()  # 10 s active
    clock.now += 100  # 30 s count, then idle
    for _ in range(7):
        counter.tick()  # ticks change nothing
    assert counter.seconds == pytest.approx(40)
    counter.interaction()
    clock.now += 5
    counter.pause()  # Slicer in the background
    clock.now += 20
    assert counter.tick() == pytest.approx(45)
    counter.interaction()  # back
    clock.now += 2
    assert counter.stop() == pytest.approx(47)
    clock.now += 50
    counter.interaction()  # not running: ignored
    assert counter.tick() == pytest.approx(47) and not counter.running
    with pytest.raises(ValueError):
        ActiveTimeCounter(idle_after_seconds=0)
