"""The question form of the web reading station as browser state, over the library's
:class:`~DigitalContrastReaderLib.reading.form.QuestionForm` (the same form the Slicer module renders).

The browser holds one ``answers`` object, question key -> what the reader chose or typed (a
Likert level, an option value, ``true``/``false``, a list of option values, or the text of a
number or text field). :class:`BrowserForm` applies each change to a ``QuestionForm`` (which
validates exactly as the store does), and says what the page shows: the status line, the error
of each field, whether Submit is enabled, and which question the digit keys answer.

What the browser receives of a question is :func:`field_view`: its key, text, widget and
choices (with a ``tag`` per choice for the ``data-testid`` hooks ``q-<key>-<tag>``: the level or
option value, ``yes``/``no`` for a yes/no question). Nothing here names an image or a source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from DigitalContrastReaderLib.reading.form import (
    WIDGET_CHECKBOXES,
    WIDGET_NUMBER,
    WIDGET_TEXT,
    WIDGET_YES_NO,
    FieldSpec,
    KeyAction,
    QuestionForm,
)
from DigitalContrastReaderLib.study.errors import AnswerError

#: The key that submits a complete form in the browser (Ctrl+N opens a window in every browser).
SUBMIT_KEY_TEXT = "Ctrl+Enter"
_TEXT_WIDGETS = (WIDGET_NUMBER, WIDGET_TEXT)


def choice_tag(spec: FieldSpec, value: Any) -> str:
    """The ``data-testid`` suffix of one choice: ``yes``/``no`` for yes/no, else the value."""
    if spec.widget == WIDGET_YES_NO:
        return "yes" if value is True else "no"
    return str(value)


def field_view(spec: FieldSpec) -> dict[str, Any]:
    """What the browser needs to render one question (JSON-ready)."""
    return {
        "key": spec.key,
        "widget": spec.widget,
        "title": spec.title,
        "help": spec.help,
        "required": spec.required,
        "keyboard": spec.keyboard,
        "choices": [{"value": c.value, "label": c.label, "text": c.text, "tag": choice_tag(spec, c.value)}
                    for c in spec.choices],
        "unit": spec.unit,
        "max_length": spec.max_length,
        "hint": _number_hint(spec) if spec.widget == WIDGET_NUMBER else "",
    }


def _number_hint(spec: FieldSpec) -> str:
    parts = []
    if spec.minimum is not None and spec.maximum is not None:
        parts.append(f"{spec.minimum:g} to {spec.maximum:g}")
    elif spec.minimum is not None:
        parts.append(f"at least {spec.minimum:g}")
    elif spec.maximum is not None:
        parts.append(f"at most {spec.maximum:g}")
    if spec.step:
        parts.append(f"in steps of {spec.step:g}")
    return ", ".join(parts)


class BrowserForm:
    """The form of the item on screen, fed by the browser's ``answers`` object.

    Args:
        questions: the item's question specs (``ReaderItem.questions``).
        answers: the reader's earlier answers (a revisited item), else ``{}``.
        editable: False for a submitted item that may not be changed.
    """

    def __init__(self, questions: Sequence[Mapping[str, Any]], answers: Mapping[str, Any] | None = None, *,
                 editable: bool = True) -> None:
        self.form = QuestionForm(questions, answers, editable=editable)
        self._applied: dict[str, Any] = self.browser_answers()

    @property
    def fields(self) -> list[dict[str, Any]]:
        return [field_view(spec) for spec in self.form.fields]

    def browser_answers(self) -> dict[str, Any]:
        """The ``answers`` object the browser shows for the form's current values."""
        shown: dict[str, Any] = {}
        for spec in self.form.fields:
            if spec.widget in _TEXT_WIDGETS:
                text = self.form.text(spec.key)
                if text:
                    shown[spec.key] = text
            else:
                value = self.form.value(spec.key)
                if value is not None:
                    shown[spec.key] = value
        return shown

    def apply(self, answers: Mapping[str, Any]) -> bool:
        """Apply what the browser holds now; returns whether anything changed.

        Unknown keys are ignored (a stale page of another item); a value a widget cannot hold
        (a number where a choice is expected) is refused by the question's validation and shown
        as that field's error, never stored.
        """
        if not self.form.editable:
            return False
        changed = False
        for spec in self.form.fields:
            value = answers.get(spec.key)
            if _same(value, self._applied.get(spec.key)):
                continue
            changed = True
            self._applied[spec.key] = value
            if spec.widget in _TEXT_WIDGETS:
                self.form.set_text(spec.key, "" if value is None else str(value))
            elif spec.widget == WIDGET_CHECKBOXES:
                self.form.set_value(spec.key, list(value) if isinstance(value, (list, tuple)) else value)
            elif spec.keyboard and value is not None:
                self.form.choose(spec.key, value)  # the next unanswered question takes the digit keys
            else:
                self.form.set_value(spec.key, value)
        return changed

    def press_key(self, key: str, *, ctrl: bool = False, in_text_entry: bool = False) -> KeyAction:
        """A key pressed on the page: a digit answers the current keyboard question;
        Ctrl+Enter asks to submit (``kind == "submit"`` when the form is complete)."""
        if ctrl and key == "Enter":
            key = "N"  # the form's own submit shortcut
        action = self.form.press_key(key, ctrl=ctrl, in_text_entry=in_text_entry)
        if action.kind == "chosen":
            self._applied[action.key] = action.value
        return action

    def view(self) -> dict[str, Any]:
        """Status of the form for the page: ``form_status``, ``field_errors``, ``can_submit``,
        ``current_key`` (the question the digit keys answer)."""
        status = self.form.status_text().replace("(Ctrl+N)", f"({SUBMIT_KEY_TEXT})")
        return {
            "form_status": status,
            "field_errors": self.form.errors(),
            "can_submit": self.form.can_submit,
            "current_key": self.form.current_key or "",
        }

    def answers(self) -> dict[str, Any]:
        """The validated answers to submit (AnswerError: one sentence, the first problem)."""
        return self.form.answers()


def answers_for_submit(questions: Sequence[Mapping[str, Any]], answers: Mapping[str, Any]) -> dict[str, Any]:
    """Validated answers from what the browser sent with Submit (the browser's copy is the one
    the reader saw, even if a change never reached the server before a lost connection).

    Raises:
        AnswerError: a required answer is missing or a value is invalid (one sentence).
    """
    if not isinstance(answers, Mapping):
        raise AnswerError("The page sent no answers; answer the questions and press Submit again.",
                          code="bad_value")
    form = BrowserForm(questions)
    form.apply(answers)
    return form.answers()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
