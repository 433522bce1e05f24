"""Questions and their answers: what a question asks, and how its answers are parsed, validated,
coded for analysis and labelled.

The rules live with the data (as in grand-challenge.org reader studies): every entry point (a
reader UI, the CLI, an admin correction, the store) validates answers with
:meth:`Question.validate`, so the same answer is accepted or refused everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .canonical import sha256_json
from .errors import AnswerError

QUESTION_TYPES = ("likert", "single_choice", "multiple_choice", "yes_no", "number", "text")
#: Question key reserved for the derived 1-10 rating of Turing and detection tasks.
RESERVED_KEYS = ("rating",)

#: Typed yes/no answers (lower case).
_TRUE = {"yes", "y", "true", "t", "1"}
_FALSE = {"no", "n", "false", "f", "0"}


@dataclass(frozen=True)
class Option:
    """One answer option (choice) or one anchored level (Likert): a stored value and its label."""

    value: str | int
    label: str


@dataclass(frozen=True)
class Question:
    """One question of a task. Answers are validated here, so every entry point (UI, CLI,
    admin correction) applies the same rules.

    ``likert`` answers are the integer level values; ``single_choice`` an option value;
    ``multiple_choice`` a list of option values; ``yes_no`` a bool; ``number`` a number within
    ``minimum``/``maximum`` on the ``step`` grid; ``text`` a string.
    """

    key: str
    type: str
    text: str
    required: bool = True
    help: str = ""
    levels: tuple[Option, ...] = ()
    options: tuple[Option, ...] = ()
    min_selected: int | None = None
    max_selected: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unit: str = ""
    max_length: int | None = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Question:
        def options(items: Iterable[Any]) -> tuple[Option, ...]:
            return tuple(Option(o, o) if isinstance(o, str) else Option(o["value"], o["label"]) for o in items)

        return cls(
            key=data["key"],
            type=data["type"],
            text=data["text"],
            required=bool(data.get("required", True)),
            help=data.get("help", ""),
            levels=tuple(Option(int(lv["value"]), lv["label"]) for lv in data.get("levels", ())),
            options=options(data.get("options", ())),
            min_selected=data.get("min_selected"),
            max_selected=data.get("max_selected"),
            minimum=data.get("min"),
            maximum=data.get("max"),
            step=data.get("step"),
            unit=data.get("unit", ""),
            max_length=data.get("max_length"),
        )

    def spec(self) -> dict[str, Any]:
        """The canonical JSON-able description (stored, hashed to freeze it, and shown by UIs)."""
        spec: dict[str, Any] = {"key": self.key, "type": self.type, "text": self.text, "required": self.required}
        if self.help:
            spec["help"] = self.help
        if self.levels:
            spec["levels"] = [{"value": o.value, "label": o.label} for o in self.levels]
        if self.options:
            spec["options"] = [{"value": o.value, "label": o.label} for o in self.options]
        for name in ("min_selected", "max_selected", "max_length"):
            if getattr(self, name) is not None:
                spec[name] = getattr(self, name)
        for name, attr in (("min", "minimum"), ("max", "maximum"), ("step", "step")):
            if getattr(self, attr) is not None:
                spec[name] = getattr(self, attr)
        if self.unit:
            spec["unit"] = self.unit
        return spec

    def spec_sha256(self) -> str:
        return sha256_json(self.spec())

    # -- answers -------------------------------------------------------------------------------
    def _bad(self, value: Any, expected: str) -> AnswerError:
        return AnswerError(
            f"The answer to '{self.key}' must be {expected} (got {value!r}); correct it and submit again.",
            code="bad_value",
        )

    def _choices(self) -> tuple[Option, ...]:
        return self.levels if self.type == "likert" else self.options

    def _allowed(self) -> str:
        return ", ".join(f"{o.value!s}" for o in self._choices())

    def is_empty(self, value: Any) -> bool:
        return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value)

    def validate(self, value: Any) -> Any:
        """Return the normalised answer, or raise :class:`AnswerError` naming the question.

        ``None`` (or an empty text/list) means "not answered"; it is refused for required
        questions and returned as ``None`` otherwise.
        """
        if self.is_empty(value):
            if self.required:
                raise AnswerError(
                    f"The question '{self.key}' is required; give an answer and submit again.", code="required"
                )
            return None
        kind = self.type
        if kind == "likert":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
                raise self._bad(value, f"one of the levels {self._allowed()}")
            value = int(value)
            if value not in {o.value for o in self.levels}:
                raise self._bad(value, f"one of the levels {self._allowed()}")
            return value
        if kind == "single_choice":
            for option in self.options:
                if value == option.value and type(value) is type(option.value):
                    return option.value
            raise self._bad(value, f"one of {self._allowed()}")
        if kind == "multiple_choice":
            if not isinstance(value, (list, tuple)):
                raise self._bad(value, f"a list of options from {self._allowed()}")
            chosen = []
            for item in value:
                matches = [o.value for o in self.options if o.value == item and type(o.value) is type(item)]
                if not matches:
                    raise self._bad(item, f"one of {self._allowed()}")
                if matches[0] in chosen:
                    raise self._bad(value, "a list without repeated options")
                chosen.append(matches[0])
            if self.min_selected is not None and len(chosen) < self.min_selected:
                raise self._bad(value, f"at least {self.min_selected} options")
            if self.max_selected is not None and len(chosen) > self.max_selected:
                raise self._bad(value, f"at most {self.max_selected} options")
            order = [o.value for o in self.options]
            return sorted(chosen, key=order.index)
        if kind == "yes_no":
            if not isinstance(value, bool):
                raise self._bad(value, "yes or no")
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise self._bad(value, "a number")
            if self.minimum is not None and value < self.minimum:
                raise self._bad(value, f"at least {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise self._bad(value, f"at most {self.maximum:g}")
            if self.step:
                base = self.minimum or 0.0
                steps = (value - base) / self.step
                if abs(steps - round(steps)) > 1e-6:
                    raise self._bad(value, f"a multiple of {self.step:g} from {base:g}")
            return value
        if kind == "text":
            if not isinstance(value, str):
                raise self._bad(value, "text")
            if self.max_length is not None and len(value) > self.max_length:
                raise self._bad(value[:20] + "...", f"at most {self.max_length} characters long")
            return value
        raise AssertionError(kind)

    def parse(self, text: str) -> Any:
        """Turn typed text (a CLI ``key=value``) into an answer value, then validate it.

        Likert and choices accept the value or the label; yes/no accepts yes/no/true/false/1/0;
        multiple choice takes a comma-separated list.
        """
        text = text.strip()
        if not text:
            return self.validate(None)
        kind = self.type
        if kind in ("likert", "single_choice"):
            for option in self._choices():
                if text == str(option.value) or text.lower() == option.label.lower():
                    return self.validate(option.value)
            raise self._bad(text, f"one of {self._allowed()}")
        if kind == "multiple_choice":
            values = []
            for part in (p.strip() for p in text.split(",")):
                found = [o.value for o in self.options if part == str(o.value) or part.lower() == o.label.lower()]
                if not found:
                    raise self._bad(part, f"one of {self._allowed()}")
                values.append(found[0])
            return self.validate(values)
        if kind == "yes_no":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise self._bad(text, "yes or no")
        if kind == "number":
            try:
                number = float(text)
            except ValueError:
                raise self._bad(text, "a number") from None
            return self.validate(int(number) if number.is_integer() and "." not in text else number)
        return self.validate(text)

    def code(self, value: Any) -> float | None:
        """The numeric code of an answer (for analysis), or None for text and multiple choice.

        Likert: the level value; single choice: the option value when it is an integer, else its
        1-based position; yes/no: 1/0; number: the number.
        """
        if value is None:
            return None
        if self.type == "likert":
            return float(value)
        if self.type == "single_choice":
            if isinstance(value, int):
                return float(value)
            return float([o.value for o in self.options].index(value) + 1)
        if self.type == "yes_no":
            return 1.0 if value else 0.0
        if self.type == "number":
            return float(value)
        return None

    def label(self, value: Any) -> str:
        """The human label of an answer (the anchored text for Likert levels and options)."""
        if value is None:
            return ""
        if self.type in ("likert", "single_choice"):
            return next(o.label for o in self._choices() if o.value == value)
        if self.type == "multiple_choice":
            return "; ".join(next(o.label for o in self.options if o.value == v) for v in value)
        if self.type == "yes_no":
            return "Yes" if value else "No"
        if self.type == "number":
            return f"{value:g} {self.unit}".strip()
        return str(value)
