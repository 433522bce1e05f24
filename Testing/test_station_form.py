"""The reading station's form as browser state (no browser): the same rules as the Slicer form and
the store, what the browser receives of a question, the keys, and what Submit accepts."""

from __future__ import annotations

import pytest

pytest.importorskip("trame", reason="the web extra is not installed (pip install -e .[web])")

from DigitalContrastReaderLib.station.form_state import BrowserForm, answers_for_submit, field_view  # noqa: E402
from DigitalContrastReaderLib.study.errors import AnswerError  # noqa: E402
from DigitalContrastReaderLib.study.questions import Question  # noqa: E402
from DigitalContrastReaderLib.study.templates import PREFERENCE_QUESTIONS, grading_questions  # noqa: E402

NUMBER = {"key": "diameter_mm", "type": "number", "text": "Lumen diameter", "required": True, "min": 0, "max": 60,
          "step": 0.5, "unit": "mm"}
CHECKS = {"key": "findings", "type": "multiple_choice", "text": "Findings", "required": False,
          "options": [{"value": "flap", "label": "Flap"}, {"value": "thrombus", "label": "Thrombus"}]}


def _questions() -> list[dict]:
    return [Question.from_config(q).spec() for q in grading_questions("aorta") + [NUMBER, CHECKS]]


def test_every_question_reaches_the_browser_with_its_test_hooks_and_nothing_else():
    form = BrowserForm(_questions())
    views = {f["key"]: f for f in form.fields}
    assert [c["tag"] for c in views["lumen_conspicuity"]["choices"]] == ["1", "2", "3", "4", "5"]
    assert [c["tag"] for c in views["non_diagnostic"]["choices"]] == ["yes", "no"]
    assert [c["value"] for c in views["non_diagnostic"]["choices"]] == [True, False]
    assert views["diameter_mm"]["widget"] == "number" and views["diameter_mm"]["unit"] == "mm"
    assert views["diameter_mm"]["hint"] == "0 to 60, in steps of 0.5"
    assert views["findings"]["widget"] == "checkboxes"
    assert set(views["comment"]) == set(field_view(form.form.fields[0]))  # one shape for every question


def test_the_browser_answers_are_checked_by_the_questions_own_rules():
    form = BrowserForm(_questions())
    assert form.view()["can_submit"] is False
    form.apply({"lumen_conspicuity": 4, "diameter_mm": "12.3"})  # off the 0.5 mm grid
    view = form.view()
    assert "diameter_mm" in view["field_errors"] and not view["can_submit"]
    assert view["current_key"] == "edge_sharpness"  # the next unanswered question takes the digit keys
    answers = {q["key"]: 3 for q in _questions() if q["type"] == "likert"}
    answers.update({"non_diagnostic": False, "diameter_mm": "12.5", "findings": ["thrombus", "flap"]})
    form.apply(answers)
    assert form.view()["can_submit"] is True and form.view()["field_errors"] == {}
    stored = form.answers()
    assert stored["diameter_mm"] == 12.5 and stored["findings"] == ["flap", "thrombus"]  # option order
    assert "comment" not in stored  # optional and unanswered


def test_digit_keys_answer_the_current_question_and_ctrl_enter_submits_only_a_complete_form():
    form = BrowserForm([Question.from_config(q).spec() for q in PREFERENCE_QUESTIONS])
    assert form.press_key("Enter", ctrl=True).kind == "blocked"
    assert form.press_key("2").kind == "chosen"
    assert form.browser_answers() == {"preferred": "B"}
    assert form.press_key("5", in_text_entry=True).kind == "ignored"
    assert form.press_key("Enter", ctrl=True).kind == "submit"
    assert "Ctrl+Enter" in form.view()["form_status"]


def test_submit_takes_the_answers_the_page_sent_and_refuses_incomplete_ones_in_one_sentence():
    questions = [Question.from_config(q).spec() for q in PREFERENCE_QUESTIONS]
    assert answers_for_submit(questions, {"preferred": "A", "comment": "sharper"}) == {"preferred": "A",
                                                                                       "comment": "sharper"}
    for bad in ({}, {"preferred": "C"}, None):
        with pytest.raises(AnswerError) as error:
            answers_for_submit(questions, bad)
        assert str(error.value).count(".") >= 1 and "\n" not in str(error.value)


def test_a_submitted_item_shows_its_answers_read_only():
    questions = [Question.from_config(q).spec() for q in PREFERENCE_QUESTIONS]
    form = BrowserForm(questions, {"preferred": "equal"}, editable=False)
    assert form.apply({"preferred": "A"}) is False
    assert form.browser_answers() == {"preferred": "equal"} and form.view()["can_submit"] is False
