"""The study: a versioned, hashed configuration of cases, images, readers, tasks, questions and
design, loaded from a JSON or YAML file and checked against ``study.schema.json``.

The data model follows grand-challenge.org reader studies (study, case, question, answer), with
the validation rules living next to the data: a :class:`Question` knows how to parse, validate,
code and label its answers; a :class:`Study` knows which cases a reader reads.

Sources (also called modalities in the analysis): each case has a ``real`` contrast image, one or
more ``synthetic`` images (a path, or a mapping ``model id -> path``; the sources are then named
``synthetic:<model id>``) and optionally a ``noncontrast`` image. Paths are relative to the study
file. Every problem found is reported as one sentence naming the file, the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import templates
from .errors import AnswerError, StudyError

SCHEMA_VERSION = 1
TASK_TYPES = ("grading", "turing", "preference", "detection")
QUESTION_TYPES = ("likert", "single_choice", "multiple_choice", "yes_no", "number", "text")
SOURCE_KINDS = ("noncontrast", "real", "synthetic")
#: Task types that show one image at a time (the others show a pair side by side).
SINGLE_IMAGE_TASKS = ("grading", "turing", "detection")
DEFAULT_WASHOUT_DAYS = 28.0
DEFAULT_DISPLAY = {"window": 700.0, "level": 200.0}
DEFAULT_LAYOUT = {"views": ["axial"], "link_views": True}
DEFAULT_DETECTION_TRUTH = "disease_present"
#: Question key reserved for the derived 1-10 rating of Turing and detection tasks.
RESERVED_KEYS = ("rating",)


# --------------------------------------------------------------------------------------------
# Questions and answers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One answer option (choice) or one anchored level (Likert): a stored value and its label."""

    value: str | int
    label: str


_TRUE = {"yes", "y", "true", "t", "1"}
_FALSE = {"no", "n", "false", "f", "0"}


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


# --------------------------------------------------------------------------------------------
# Study parts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One case: its images by source name (absolute paths), truth columns, training flag, block."""

    case_id: str
    images: dict[str, Path]
    truth: dict[str, Any] = field(default_factory=dict)
    training: bool = False
    block: str | None = None


@dataclass(frozen=True)
class Task:
    """One reading task. ``sources`` (single-image tasks) are read one image per item;
    ``compare`` (preference) is the ``(test, reference)`` pair shown side by side."""

    task_id: str
    type: str
    questions: tuple[Question, ...]
    instructions: str
    sources: tuple[str, ...] = ()
    compare: tuple[str, str] | None = None
    truth_column: str | None = None
    finding: str = ""

    @property
    def layout(self) -> str:
        return "pair" if self.type == "preference" else "single"

    def question(self, key: str) -> Question:
        return _lookup(self.questions, "key", key, f"Task '{self.task_id}' has no question", "unknown_question")


@dataclass(frozen=True)
class Reader:
    reader_id: str
    group: str | None = None
    name: str = ""


@dataclass(frozen=True)
class Design:
    """``fully-crossed``: every reader reads every case. ``split-plot``: reader group g reads
    the cases of the blocks ``group_blocks[g]``. Training cases are read by everyone."""

    type: str = "fully-crossed"
    washout_days: float = DEFAULT_WASHOUT_DAYS
    max_items_per_session: int | None = None
    group_blocks: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A loaded, validated study. ``sha256`` is the hash of the study file as written."""

    study_id: str
    title: str
    version: str
    ifu: str
    cases: tuple[Case, ...]
    readers: tuple[Reader, ...]
    tasks: tuple[Task, ...]
    design: Design
    display: dict[str, float]
    layout: dict[str, Any]
    allow_answer_modification: bool
    demo: bool
    config: dict[str, Any]
    sha256: str
    path: Path | None
    base_dir: Path
    warnings: tuple[str, ...] = ()

    def case(self, case_id: str) -> Case:
        return _lookup(self.cases, "case_id", case_id, f"Study '{self.study_id}' has no case", "unknown_case")

    def task(self, task_id: str) -> Task:
        return _lookup(self.tasks, "task_id", task_id, f"Study '{self.study_id}' has no task", "unknown_task")

    def reader(self, reader_id: str) -> Reader:
        for r in self.readers:
            if r.reader_id == reader_id:
                return r
        raise AnswerError(
            f"Reader '{reader_id}' is not listed in study '{self.study_id}'; add them to the readers of the "
            "study file and run 'init' again, or check the spelling.",
            code="unknown_reader",
        )

    def cases_for_reader(self, reader_id: str) -> list[Case]:
        """The cases a reader reads, in study-file order: all training cases, and the main cases
        of every case block of the reader's group (split-plot) or all main cases."""
        reader = self.reader(reader_id)
        if self.design.type != "split-plot":
            return list(self.cases)
        blocks = set(self.design.group_blocks.get(reader.group or "", ()))
        return [c for c in self.cases if c.training or c.block in blocks]

    @property
    def truth_columns(self) -> list[str]:
        """Names of the case truth columns, in order of first appearance."""
        return list(dict.fromkeys(name for c in self.cases for name in c.truth))

    @property
    def sources(self) -> list[str]:
        """Source names of the images, in order of first appearance."""
        return list(dict.fromkeys(name for c in self.cases for name in c.images))

    def config_json(self) -> str:
        return canonical_json(self.config)


def _lookup(items: Iterable[Any], attribute: str, wanted: str, missing: str, code: str) -> Any:
    """The item whose ``attribute`` is ``wanted``, else AnswerError "<missing> '<wanted>'; use one of ..."."""
    items = list(items)
    for item in items:
        if getattr(item, attribute) == wanted:
            return item
    known = ", ".join(str(getattr(i, attribute)) for i in items[:20]) + (", ..." if len(items) > 20 else "")
    raise AnswerError(f"{missing} '{wanted}'; use one of {known}.", code=code)


def source_kind(source: str) -> str:
    """``noncontrast``, ``real`` or ``synthetic`` for a source name (``synthetic:<model>`` included)."""
    return "synthetic" if source.startswith("synthetic") else source


def source_model(source: str) -> str | None:
    """The model id of a ``synthetic:<model>`` source, else None."""
    return source.split(":", 1)[1] if source.startswith("synthetic:") else None


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def canonical_json(data: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): what is hashed and stored."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def study_schema() -> dict[str, Any]:
    """The JSON schema of study files (``study.schema.json`` shipped in this package)."""
    text = resources.files(__package__).joinpath("study.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


_TYPE_WORDS = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of names to values",
    "null": "empty",
}


def _field_name(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_error_sentence(error: Any, filename: str) -> str:
    """One sentence for a jsonschema error: the file, the field (``cases[3].real``) and the fix."""
    where = _field_name(error.absolute_path)
    subject = f"field '{where}'" if where else "the top level"
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "required":
        missing = [name for name in expected if name not in instance]
        return f"{filename}: {subject} lacks the required field '{missing[0]}'; add it."
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{filename}: {subject} has an unknown field '{extra[0]}'; remove it or correct its spelling{hint}."
    if validator == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
        return f"{filename}: {subject} must be {words}, not {instance!r}; correct it."
    if validator == "enum":
        return f"{filename}: {subject} must be one of {', '.join(map(str, expected))}, not {instance!r}; correct it."
    if validator == "const":
        return f"{filename}: {subject} must be {expected!r}, not {instance!r}; correct it."
    if validator == "pattern":
        return (
            f"{filename}: {subject} ({instance!r}) may use only letters, digits, '_', '.' and '-' and must start "
            "with a letter or digit; rename it."
        )
    if validator in ("minItems", "minProperties"):
        return f"{filename}: {subject} needs at least {expected} entries; add the missing ones."
    if validator == "maxItems":
        return f"{filename}: {subject} takes at most {expected} entries; remove the extra ones."
    if validator == "minLength":
        return f"{filename}: {subject} must not be empty; fill it in."
    if validator == "maxLength":
        return f"{filename}: {subject} is longer than {expected} characters; shorten it."
    if validator == "uniqueItems":
        return f"{filename}: {subject} repeats an entry; list each entry once."
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most",
                    "exclusiveMaximum": "less than"}[validator]
        return f"{filename}: {subject} must be {relation} {expected}, not {instance!r}; correct it."
    if validator == "oneOf":
        return (
            f"{filename}: {subject} must be a path, or a mapping of model ids to paths, not {instance!r}; correct it."
            if where.endswith("synthetic")
            else f"{filename}: {subject} has an invalid value {instance!r}; correct it (see study.schema.json)."
        )
    return f"{filename}: {subject} is invalid ({error.message}); correct it (see study.schema.json)."


def read_study_file(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Parse a study file (``.yaml``/``.yml``/``.json``); returns the data and the raw bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StudyError(f"{path}: the study file does not exist; check the path.", code="missing") from None
    except OSError as error:
        raise StudyError(f"{path}: the study file cannot be read ({error.strerror}); check its permissions.") from None
    text = raw.decode("utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise StudyError(
                f"{path.name}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); fix the syntax."
            ) from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise StudyError(f"{path.name}: not valid YAML ({where}{problem}); fix the syntax.") from None
    else:
        raise StudyError(f"{path.name}: a study file must end in .yaml, .yml or .json; rename it.")
    if not isinstance(data, dict):
        raise StudyError(f"{path.name}: the study file must hold a mapping (study_id, cases, readers, tasks...); see the README.")
    return data, raw


def validate_study_config(config: Mapping[str, Any], filename: str = "study") -> None:
    """Check ``config`` against the JSON schema; raise :class:`StudyError` with one sentence."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(study_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise StudyError(_schema_error_sentence(error, filename), code="schema")


def load_study(path: str | Path, *, check_files: bool = True) -> Study:
    """Load, schema-check and cross-check a study file.

    Args:
        path: the study ``.yaml``/``.yml``/``.json`` file; image paths inside are relative to it.
        check_files: also check that every image file exists.

    Raises:
        StudyError: one sentence naming the file, the field and the fix.
    """
    path = Path(path)
    config, raw = read_study_file(path)
    return study_from_config(
        config, base_dir=path.resolve().parent, sha256=hashlib.sha256(raw).hexdigest(), path=path,
        check_files=check_files,
    )


def study_from_config(
    config: Mapping[str, Any],
    *,
    base_dir: str | Path,
    sha256: str | None = None,
    path: str | Path | None = None,
    check_files: bool = True,
) -> Study:
    """Build a :class:`Study` from already-parsed data (a stored config, a template, a test).

    ``sha256`` defaults to the hash of the canonical JSON of ``config``.
    """
    config = json.loads(json.dumps(config, default=str))  # a private, JSON-clean copy
    filename = Path(path).name if path else "study"
    validate_study_config(config, filename)
    base_dir = Path(base_dir)
    return _Builder(config, filename, base_dir, check_files).build(
        sha256=sha256 or sha256_json(config), path=Path(path) if path else None
    )


class _Builder:
    """Turns schema-valid config data into a :class:`Study`, checking what a schema cannot."""

    def __init__(self, config: dict[str, Any], filename: str, base_dir: Path, check_files: bool) -> None:
        self.config = config
        self.filename = filename
        self.base_dir = base_dir
        self.check_files = check_files
        self.warnings: list[str] = []

    def fail(self, field_name: str, problem: str, fix: str) -> StudyError:
        return StudyError(f"{self.filename}: field '{field_name}' {problem}; {fix}.", code="invalid")

    def build(self, *, sha256: str, path: Path | None) -> Study:
        cfg = self.config
        ifu = cfg.get("ifu", "aorta")
        cases = self._cases()
        readers = self._readers()
        design, blocks = self._design(cases, readers)
        cases = [replace(c, block=blocks.get(c.case_id, c.block)) for c in cases]
        tasks = self._tasks(cases, ifu)
        display = {**DEFAULT_DISPLAY, **{k: float(v) for k, v in cfg.get("display", {}).items()}}
        layout = {**DEFAULT_LAYOUT, **cfg.get("layout", {})}
        return Study(
            study_id=cfg["study_id"],
            title=cfg.get("title", cfg["study_id"]),
            version=str(cfg.get("version", "1")),
            ifu=ifu,
            cases=tuple(cases),
            readers=tuple(readers),
            tasks=tuple(tasks),
            design=design,
            display=display,
            layout=layout,
            allow_answer_modification=bool(cfg.get("allow_answer_modification", False)),
            demo=bool(cfg.get("demo", False)),
            config=cfg,
            sha256=sha256,
            path=path,
            base_dir=self.base_dir,
            warnings=tuple(self.warnings),
        )

    # -- cases ---------------------------------------------------------------------------------
    def _image(self, where: str, relative: str) -> Path:
        resolved = (self.base_dir / relative).resolve()
        if self.check_files and not resolved.exists():
            raise self.fail(where, f"names a file that does not exist ({resolved})",
                            "fix the path (relative to the study file) or add the file")
        return resolved

    def _cases(self) -> list[Case]:
        cases: list[Case] = []
        seen: set[str] = set()
        synthetic_sets: set[tuple[str, ...]] = set()
        for i, data in enumerate(self.config["cases"]):
            where = f"cases[{i}]"
            case_id = data["id"]
            if case_id in seen:
                raise self.fail(f"{where}.id", f"repeats the case id '{case_id}'", "give every case its own id")
            seen.add(case_id)
            images: dict[str, Path] = {}
            if "noncontrast" in data:
                images["noncontrast"] = self._image(f"{where}.noncontrast", data["noncontrast"])
            images["real"] = self._image(f"{where}.real", data["real"])
            synthetic = data["synthetic"]
            if isinstance(synthetic, str):
                images["synthetic"] = self._image(f"{where}.synthetic", synthetic)
            else:
                for model, rel in synthetic.items():
                    images[f"synthetic:{model}"] = self._image(f"{where}.synthetic.{model}", rel)
            synthetic_sets.add(tuple(s for s in images if s.startswith("synthetic")))
            suffixes = {_suffix(p) for s, p in images.items() if s != "noncontrast"}
            if len(suffixes) > 1:
                self.warnings.append(
                    f"{self.filename}: case '{case_id}' stores its contrast images in different formats "
                    f"({', '.join(sorted(suffixes))}); readers could tell the sources apart, so convert them to one format."
                )
            cases.append(
                Case(case_id, images, dict(data.get("truth", {})), bool(data.get("training", False)), data.get("block"))
            )
        if len(synthetic_sets) > 1:
            raise self.fail("cases", "mixes synthetic image sets (some cases name other models than others)",
                            "give every case the same synthetic sources")
        if all(c.training for c in cases):
            raise self.fail("cases", "has training cases only", "add the cases to be analysed (training: false)")
        return cases

    # -- readers and design -------------------------------------------------------------------
    def _readers(self) -> list[Reader]:
        readers: list[Reader] = []
        for i, data in enumerate(self.config["readers"]):
            if any(r.reader_id == data["id"] for r in readers):
                raise self.fail(f"readers[{i}].id", f"repeats the reader id '{data['id']}'", "give every reader their own id")
            readers.append(Reader(data["id"], data.get("group"), data.get("name", "")))
        return readers

    def _design(self, cases: list[Case], readers: list[Reader]) -> tuple[Design, dict[str, str]]:
        """The design, and the block of every main case (dealt to the groups when none is given)."""
        data = self.config.get("design", {})
        kind = data.get("type", "fully-crossed")
        washout = float(data.get("washout_days", DEFAULT_WASHOUT_DAYS))
        per_session = data.get("max_items_per_session")
        if kind != "split-plot":
            return Design(kind, washout, per_session, {}), {}
        groups = sorted({r.group for r in readers if r.group})
        for i, r in enumerate(readers):
            if not r.group:
                raise self.fail(f"readers[{i}]", "has no group, which a split-plot design needs",
                                "add 'group' to every reader")
        main = [c for c in cases if not c.training]
        if all(c.block is None for c in main):
            # No blocks given: deal the main cases to the groups in study-file order.
            case_blocks = {c.case_id: groups[k % len(groups)] for k, c in enumerate(main)}
        else:
            case_blocks = {c.case_id: c.block for c in main if c.block is not None}
        for i, case in enumerate(cases):
            if not case.training and case.case_id not in case_blocks:
                raise self.fail(f"cases[{i}]", "has no block while other cases have one",
                                "give every case a 'block' (or none, to deal them to the groups)")
        group_blocks = {g: tuple(b) for g, b in data.get("group_blocks", {}).items()} or {g: (g,) for g in groups}
        blocks = set(case_blocks.values())
        for g in groups:
            if g not in group_blocks:
                raise self.fail("design.group_blocks", f"does not say which blocks group '{g}' reads", f"add '{g}: [BLOCK]'")
            for b in group_blocks[g]:
                if b not in blocks:
                    raise self.fail(f"design.group_blocks.{g}", f"names block '{b}' that no case has",
                                    "use the block names of the cases")
        unread = sorted(blocks - {b for bs in group_blocks.values() for b in bs})
        if unread:
            raise self.fail("design.group_blocks", f"leaves block '{unread[0]}' unread by every group",
                            "assign it to a reader group")
        return Design(kind, washout, per_session, group_blocks), case_blocks

    # -- tasks and questions ------------------------------------------------------------------
    def _tasks(self, cases: list[Case], ifu: str) -> list[Task]:
        tasks: list[Task] = []
        available = list(cases[0].images)
        synthetic = [s for s in available if s.startswith("synthetic")]
        for i, data in enumerate(self.config["tasks"]):
            where = f"tasks[{i}]"
            kind = data["type"]
            task_id = data.get("id", kind)
            if any(t.task_id == task_id for t in tasks):
                raise self.fail(f"{where}.id", f"repeats the task id '{task_id}'", "give each task of the same type its own 'id'")
            finding = data.get("finding", "the finding")
            question_data = list(templates.grading_questions(data["template"])) if "template" in data else []
            question_data += data.get("questions", [])
            if not question_data:
                question_data = templates.default_questions(kind, ifu=ifu, finding=finding)
            questions = self._questions(f"{where}.questions", question_data, explicit="questions" in data)
            sources: tuple[str, ...] = ()
            compare = None
            truth_column = None
            if kind == "preference":
                if "sources" in data:
                    raise self.fail(f"{where}.sources", "does not apply to a preference task",
                                    "use 'compare: [TEST, REFERENCE]' instead")
                compare = tuple(data.get("compare", [synthetic[0], "real"]))
                for s in compare:
                    self._check_source(f"{where}.compare", s, available)
            else:
                if "compare" in data:
                    raise self.fail(f"{where}.compare", f"does not apply to a {kind} task",
                                    "use 'sources: [...]' instead")
                sources = tuple(data.get("sources", ["real", *synthetic]))
                for s in sources:
                    self._check_source(f"{where}.sources", s, available)
                if kind == "turing" and not ({"real"} & set(sources) and set(synthetic) & set(sources)):
                    raise self.fail(f"{where}.sources", "must hold 'real' and at least one synthetic source",
                                    "list both in the Turing task")
            if kind == "detection":
                truth_column = data.get("truth", DEFAULT_DETECTION_TRUTH)
                for k, case in enumerate(cases):
                    value = case.truth.get(truth_column)
                    if not case.training and value not in (0, 1):  # True/False compare equal to 1/0
                        raise self.fail(f"cases[{k}].truth.{truth_column}",
                                        f"is {'missing' if value is None else repr(value)} but the detection task "
                                        f"'{task_id}' needs 0 or 1 for every case",
                                        "set it to 1 (present) or 0 (absent)")
            tasks.append(
                Task(task_id, kind, questions, data.get("instructions", templates.DEFAULT_INSTRUCTIONS[kind]),
                     sources, compare, truth_column, finding)
            )
        return tasks

    def _check_source(self, where: str, source: str, available: list[str]) -> None:
        if source not in available:
            raise self.fail(where, f"names source '{source}' that the cases do not have",
                            f"use one of {', '.join(available)}")

    def _questions(self, where: str, items: list[dict[str, Any]], *, explicit: bool) -> tuple[Question, ...]:
        questions: list[Question] = []
        for j, data in enumerate(items):
            at = f"{where}[{j}]" if explicit else f"{where} (template question '{data['key']}')"
            q = Question.from_config(data)
            if any(other.key == q.key for other in questions):
                raise self.fail(f"{at}.key", f"repeats the question key '{q.key}'", "give every question of a task its own key")
            if q.key in RESERVED_KEYS:
                raise self.fail(f"{at}.key", f"uses the reserved key '{q.key}'", "rename the question")
            values = [o.value for o in (q.levels if q.type == "likert" else q.options)]
            if len(set(map(str, values))) != len(values):
                raise self.fail(at, "repeats a level or option value", "give every level/option its own value")
            if q.type != "likert" and "levels" in data:
                raise self.fail(f"{at}.levels", f"does not apply to a {q.type} question", "remove it")
            if q.type not in ("single_choice", "multiple_choice") and "options" in data:
                raise self.fail(f"{at}.options", f"does not apply to a {q.type} question", "remove it")
            if q.minimum is not None and q.maximum is not None and q.minimum > q.maximum:
                raise self.fail(f"{at}.min", "is larger than 'max'", "swap or correct them")
            if (q.min_selected or 0) > (q.max_selected or len(q.options) or 1):
                raise self.fail(f"{at}.min_selected", "is larger than 'max_selected' or the number of options",
                                "lower it")
            questions.append(q)
        return tuple(questions)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else (path.suffix.lower() or "(folder)")
