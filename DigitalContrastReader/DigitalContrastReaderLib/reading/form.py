"""The question form of a reading item as data: what to show, what is answered, what keys do.

The Slicer widget renders a :class:`QuestionForm` (one Qt widget per :class:`FieldSpec`) and
forwards every edit and key press to it; everything that decides something lives here, so it is
tested without Qt:

* which widget each question gets (:data:`WIDGET_FOR_TYPE`): radio buttons with the anchored
  label of every level for Likert scales and single choices, check boxes for multiple choice,
  a Yes/No pair, a number field, a text box;
* whether the form can be submitted: every required question answered and every given answer
  valid. Validation is :meth:`DigitalContrastReaderLib.study.questions.Question.validate`, the same rule
  the answer store applies, so the form never accepts what the store would refuse;
* the keyboard: ``1``-``9`` choose a level (Likert: the level value; single choice: the option
  position) of the *current* keyboard question, then the next unanswered one becomes current;
  ``Ctrl+N`` submits when the form is complete. Digits typed into a text or number field are
  text, not shortcuts.

Answer values are the store's: Likert levels are ints, choices their option values, yes/no a
bool, numbers int or float, multiple choice a list of option values, text a str.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from DigitalContrastReaderLib.study.errors import AnswerError
from DigitalContrastReaderLib.study.questions import Question

WIDGET_RADIO = "radio"
WIDGET_CHECKBOXES = "checkboxes"
WIDGET_YES_NO = "yes_no"
WIDGET_NUMBER = "number"
WIDGET_TEXT = "text"

#: The widget each question type is rendered with.
WIDGET_FOR_TYPE = {
    "likert": WIDGET_RADIO,
    "single_choice": WIDGET_RADIO,
    "multiple_choice": WIDGET_CHECKBOXES,
    "yes_no": WIDGET_YES_NO,
    "number": WIDGET_NUMBER,
    "text": WIDGET_TEXT,
}

#: The key sequence that submits the item and shows the next one.
SUBMIT_SHORTCUT = "Ctrl+N"
#: Digit keys that choose a level of the current keyboard question.
DIGIT_KEYS = tuple(str(d) for d in range(1, 10))


@dataclass(frozen=True)
class ChoiceSpec:
    """One radio button or check box.

    Attributes:
        value: the answer value stored when it is chosen.
        label: the anchored label of the level or option.
        text: what the button shows (``"3  Fair: lumen seen"``: the shortcut digit, then the label).
        shortcut: the digit key that chooses it, or None.
    """

    value: Any
    label: str
    text: str
    shortcut: str | None


@dataclass(frozen=True)
class FieldSpec:
    """How one question is rendered.

    Attributes:
        key: question key (the answer's key in the store).
        widget: one of ``radio``, ``checkboxes``, ``yes_no``, ``number``, ``text``.
        question_type: the study's question type.
        title: the question text, with ``" *"`` appended when an answer is required.
        help: an optional explanation (a tooltip).
        required: an answer is needed before Submit.
        choices: buttons of radio, check-box and yes/no fields, in display order.
        minimum, maximum, step, decimals, unit: number fields (``decimals`` derived from ``step``).
        max_length: text fields.
        keyboard: digit keys choose its levels when it is the current question.
    """

    key: str
    widget: str
    question_type: str
    title: str
    help: str
    required: bool
    choices: tuple[ChoiceSpec, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    decimals: int = 0
    unit: str = ""
    max_length: int | None = None
    keyboard: bool = False


def _decimals(step: float | None, *bounds: float | None) -> int:
    """Decimals a number field needs to show ``step`` and the bounds exactly (at most 6)."""
    values = [v for v in (step, *bounds) if v is not None]
    decimals = 0
    for value in values:
        text = f"{value:.6f}".rstrip("0")
        decimals = max(decimals, len(text.split(".")[1]) if "." in text else 0)
    return decimals


def field_spec(question: Question) -> FieldSpec:
    """The :class:`FieldSpec` of one question."""
    widget = WIDGET_FOR_TYPE[question.type]
    choices: tuple[ChoiceSpec, ...] = ()
    keyboard = False
    if question.type == "likert":
        digits = [str(o.value) if isinstance(o.value, int) and 1 <= o.value <= 9 else None for o in question.levels]
        if len(set(digits)) != len(digits):  # repeated or missing digit values: fall back to positions
            digits = [str(i + 1) if i < 9 else None for i in range(len(question.levels))]
        choices = tuple(ChoiceSpec(o.value, o.label, f"{o.value}  {o.label}", d) for o, d in zip(question.levels, digits))
        keyboard = True
    elif question.type == "single_choice":
        choices = tuple(
            ChoiceSpec(o.value, o.label, (f"{i + 1}  " if i < 9 else "") + o.label, str(i + 1) if i < 9 else None)
            for i, o in enumerate(question.options)
        )
        keyboard = True
    elif question.type == "multiple_choice":
        choices = tuple(ChoiceSpec(o.value, o.label, o.label, None) for o in question.options)
    elif question.type == "yes_no":
        choices = (ChoiceSpec(True, "Yes", "Yes", None), ChoiceSpec(False, "No", "No", None))
    return FieldSpec(
        key=question.key,
        widget=widget,
        question_type=question.type,
        title=question.text + (" *" if question.required else ""),
        help=question.help,
        required=question.required,
        choices=choices,
        minimum=question.minimum,
        maximum=question.maximum,
        step=question.step,
        decimals=_decimals(question.step, question.minimum, question.maximum) if question.type == "number" else 0,
        unit=question.unit,
        max_length=question.max_length,
        keyboard=keyboard,
    )


@dataclass(frozen=True)
class KeyAction:
    """What a key press did: ``kind`` is ``chosen`` (``key``/``value`` set), ``submit`` (the
    form is complete: submit now), ``blocked`` (``message`` says what is missing) or ``ignored``."""

    kind: str
    key: str | None = None
    value: Any = None
    message: str = ""


IGNORED = KeyAction("ignored")


class QuestionForm:
    """The state of the question form of one item.

    Args:
        questions: the item's question specs (``ReaderItem.questions``).
        answers: earlier answers (``ReaderItem.answers``) to show; ``{}`` for a new item.
        editable: False shows the answers read-only (every edit is refused).
    """

    def __init__(self, questions: Sequence[Mapping[str, Any]], answers: Mapping[str, Any] | None = None, *,
                 editable: bool = True) -> None:
        self.questions: tuple[Question, ...] = tuple(Question.from_config(q) for q in questions)
        self.fields: tuple[FieldSpec, ...] = tuple(field_spec(q) for q in self.questions)
        self.editable = editable
        self._by_key = {q.key: q for q in self.questions}
        self._values: dict[str, Any] = {}
        self._texts: dict[str, str] = {}  # number/text fields: what was typed
        self._parse_errors: dict[str, str] = {}
        for key, value in (answers or {}).items():
            if key in self._by_key:
                self._values[key] = value
                if self._by_key[key].type in ("number", "text"):
                    self._texts[key] = _text_of(value)
        keyboard = [f.key for f in self.fields if f.keyboard]
        self.current_key: str | None = next((k for k in keyboard if k not in self._values), keyboard[0] if keyboard else None)

    # -- reading ---------------------------------------------------------------------------
    def field(self, key: str) -> FieldSpec:
        for spec in self.fields:
            if spec.key == key:
                return spec
        raise AnswerError(f"The form has no question '{key}'; check the key.", code="unknown_question")

    def value(self, key: str) -> Any:
        """The current value of a question (None when unanswered)."""
        self.field(key)
        return self._values.get(key)

    def text(self, key: str) -> str:
        """What a number or text field shows."""
        self.field(key)
        return self._texts.get(key, "")

    def errors(self) -> dict[str, str]:
        """Problems with the answers given so far (not with missing ones), by question key."""
        problems = dict(self._parse_errors)
        for key, value in self._values.items():
            if key in problems:
                continue
            try:
                self._by_key[key].validate(value)
            except AnswerError as error:
                problems[key] = str(error)
        return problems

    def missing(self) -> list[str]:
        """Keys of required questions without an answer, in form order."""
        return [q.key for q in self.questions
                if q.required and q.is_empty(self._values.get(q.key)) and q.key not in self._parse_errors]

    @property
    def can_submit(self) -> bool:
        """Every required question is answered and every answer is valid."""
        return self.editable and not self.missing() and not self.errors()

    def status_text(self) -> str:
        """One line for the reader: what still blocks Submit, or that it is ready."""
        if not self.editable:
            return "These answers were submitted and can no longer be changed."
        errors = self.errors()
        if errors:
            key = next(k for k in (f.key for f in self.fields) if k in errors)
            return f"Check '{self.field(key).title.rstrip(' *')}': {errors[key]}"
        missing = self.missing()
        if missing:
            names = ", ".join(f"'{self.field(k).title.rstrip(' *')}'" for k in missing[:2])
            more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
            return f"{len(missing)} required answer{'s' if len(missing) > 1 else ''} missing: {names}{more}."
        return f"Ready: press Submit ({SUBMIT_SHORTCUT})."

    def answers(self) -> dict[str, Any]:
        """The validated answers to submit (unanswered optional questions left out).

        Raises:
            AnswerError: the form is not complete (the first problem, as one sentence).
        """
        if not self.editable:
            raise AnswerError("These answers were submitted already and cannot be changed.", code="already_submitted")
        if self._parse_errors:
            key = next(iter(self._parse_errors))
            raise AnswerError(self._parse_errors[key], code="bad_value")
        result = {}
        for question in self.questions:
            value = question.validate(self._values.get(question.key))
            if value is not None:
                result[question.key] = value
        return result

    # -- editing ---------------------------------------------------------------------------
    def _check_editable(self) -> None:
        if not self.editable:
            raise AnswerError("These answers were submitted already and cannot be changed.", code="already_submitted")

    def set_value(self, key: str, value: Any) -> None:
        """Set (or with None clear) the answer of a question, as a button or check box does."""
        self._check_editable()
        spec = self.field(key)
        self._parse_errors.pop(key, None)
        if value is None or (isinstance(value, (list, str)) and not value):
            self._values.pop(key, None)
        else:
            self._values[key] = list(value) if isinstance(value, (list, tuple)) else value
        if spec.widget in (WIDGET_NUMBER, WIDGET_TEXT):
            self._texts[key] = _text_of(value)
        if spec.keyboard and key == self.current_key and value is not None:
            self._advance_from(key)

    def choose(self, key: str, value: Any) -> None:
        """A click on a radio button: its question becomes the current keyboard question, then
        takes ``value`` (so the next unanswered keyboard question becomes current)."""
        self.set_current(key)
        self.set_value(key, value)

    def set_checked(self, key: str, option_value: Any, checked: bool) -> None:
        """Tick or untick one option of a multiple-choice question (kept in option order)."""
        spec = self.field(key)
        chosen = list(self._values.get(key) or [])
        if checked and option_value not in chosen:
            chosen.append(option_value)
        if not checked and option_value in chosen:
            chosen.remove(option_value)
        order = [c.value for c in spec.choices]
        self.set_value(key, sorted(chosen, key=lambda v: order.index(v) if v in order else len(order)))

    def set_text(self, key: str, text: str) -> None:
        """What the reader typed into a number or text field (parsed as the CLI parses it)."""
        self._check_editable()
        spec = self.field(key)
        self._texts[key] = text
        self._parse_errors.pop(key, None)
        if not text.strip():
            self._values.pop(key, None)
            return
        if spec.widget == WIDGET_TEXT:
            self._values[key] = text
            return
        try:
            self._values[key] = self._by_key[key].parse(text)
        except AnswerError as error:
            self._values.pop(key, None)
            self._parse_errors[key] = str(error)

    def set_current(self, key: str) -> None:
        """Make a keyboard question current (the reader clicked into it)."""
        if self.field(key).keyboard:
            self.current_key = key

    def _advance_from(self, key: str) -> None:
        keyboard = [f.key for f in self.fields if f.keyboard]
        after = keyboard[keyboard.index(key) + 1:] + keyboard[: keyboard.index(key) + 1]
        self.current_key = next((k for k in after if k not in self._values), key)

    # -- keyboard --------------------------------------------------------------------------
    def press_key(self, key: str, *, ctrl: bool = False, in_text_entry: bool = False) -> KeyAction:
        """Apply a key press and say what it did.

        Args:
            key: the key's text (``"3"``, ``"N"``...).
            ctrl: Ctrl (Cmd on macOS) is held.
            in_text_entry: the keyboard focus is in a text or number field (its digits are text).
        """
        if ctrl and key.upper() == "N":
            if self.can_submit:
                return KeyAction("submit")
            return KeyAction("blocked", message=self.status_text())
        if ctrl or in_text_entry or key not in DIGIT_KEYS or not self.editable or self.current_key is None:
            return IGNORED
        spec = self.field(self.current_key)
        choice = next((c for c in spec.choices if c.shortcut == key), None)
        if choice is None:
            return IGNORED
        chosen_key = spec.key
        self.set_value(chosen_key, choice.value)
        return KeyAction("chosen", chosen_key, choice.value)


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)
