"""Study files: reading a ``.yaml``/``.yml``/``.json`` file, checking it against
``study.schema.json``, and building the :class:`~DigitalContrastReaderLib.study.study.Study` with
the checks a schema cannot make (unique ids, existing image files, sources the cases have,
split-plot blocks, detection truth...).

Every problem found is reported as one sentence naming the file, the field and the fix. Paths in
the file are relative to it; a synthetic image is a path, or a mapping ``model id -> path``.

PyYAML and jsonschema are imported inside the functions that use them (reading a YAML file,
the schema check), not with this module: a stock 3D Slicer does not bundle them, so importing
the library must not need them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import require_package

from . import templates
from .canonical import sha256_json
from .errors import StudyError
from .questions import RESERVED_KEYS, Question
from .study import DEFAULT_WASHOUT_DAYS, Case, Design, Reader, Study, Task

SCHEMA_VERSION = 1
DEFAULT_DISPLAY = {"window": 700.0, "level": 200.0}
DEFAULT_LAYOUT = {"views": ["axial"], "link_views": True}
DEFAULT_DETECTION_TRUTH = "disease_present"


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
        yaml = require_package("yaml", "PyYAML", f"Reading the study file {path.name}")  # not bundled with Slicer

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
    jsonschema = require_package("jsonschema", "jsonschema", "Checking the study file")  # not bundled with Slicer

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
