"""Study files: loading, validation sentences, templates, questions and their answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from DigitalContrastReaderLib.study import templates
from DigitalContrastReaderLib.study.config import load_study, study_from_config
from DigitalContrastReaderLib.study.errors import AnswerError, StudyError
from DigitalContrastReaderLib.study.example import study_config_from_folder, write_example_study, write_study_file
from DigitalContrastReaderLib.study.questions import Question


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _minimal(tmp_path: Path) -> dict:
    for name in ("real", "synthetic"):
        for case in ("c1", "c2"):
            _touch(tmp_path / case / f"{name}.nrrd")
    return {
        "schema_version": 1,
        "study_id": "mini",
        "cases": [
            {"id": "c1", "real": "c1/real.nrrd", "synthetic": "c1/synthetic.nrrd", "truth": {"disease_present": 1}},
            {"id": "c2", "real": "c2/real.nrrd", "synthetic": "c2/synthetic.nrrd", "truth": {"disease_present": 0}},
        ],
        "readers": [{"id": "r1"}],
        "tasks": [{"type": "grading"}],
    }


def _write(tmp_path: Path, config: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config) if name.endswith(".yaml") else json.dumps(config))
    return path


def _error(tmp_path: Path, config: dict, name: str = "study.yaml") -> str:
    with pytest.raises(StudyError) as info:
        load_study(_write(tmp_path, config, name))
    message = info.value.message
    assert "\n" not in message and message.endswith(".")
    return message


def test_minimal_study_loads_with_defaults_and_its_file_hash(tmp_path):
    path = _write(tmp_path, _minimal(tmp_path))
    study = load_study(path)
    import hashlib

    assert study.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert study.display == {"window": 700.0, "level": 200.0}
    assert study.design.washout_days == 28
    grading = study.task("grading")
    assert grading.sources == ("real", "synthetic")
    assert [q.key for q in grading.questions][:3] == ["lumen_conspicuity", "edge_sharpness", "thrombus_delineation"]
    assert study.case("c1").images["real"] == (tmp_path / "c1" / "real.nrrd").resolve()


def test_json_study_files_load_too(tmp_path):
    assert load_study(_write(tmp_path, _minimal(tmp_path), "study.json")).study_id == "mini"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["cases"][1].pop("real"), "study.yaml: field 'cases[1]' lacks the required field 'real'; add it."),
        (lambda c: c["cases"][0].update(colour="red"), "field 'cases[0]' has an unknown field 'colour'; remove it"),
        (lambda c: c.update(display={"window": "wide"}), "field 'display.window' must be a number"),
        (lambda c: c["tasks"][0].update(type="ranking"), "field 'tasks[0].type' must be one of grading, turing"),
        (lambda c: c["readers"][0].update(id="bad id!"), "field 'readers[0].id' ('bad id!') may use only letters"),
        (lambda c: c.update(schema_version=2), "field 'schema_version' must be 1, not 2"),
        (lambda c: c["cases"][1].update(id="c1"), "field 'cases[1].id' repeats the case id 'c1'"),
        (lambda c: c["cases"][1].update(real="c2/nothing.nrrd"), "field 'cases[1].real' names a file that does not exist"),
        (lambda c: c["tasks"].append({"type": "grading"}), "field 'tasks[1].id' repeats the task id 'grading'"),
        (lambda c: c["tasks"].append({"type": "detection", "truth": "stenosis"}),
         "field 'cases[0].truth.stenosis' is missing but the detection task 'detection' needs 0 or 1"),
        (lambda c: c["tasks"].append({"type": "turing", "sources": ["real"]}),
         "field 'tasks[1].sources' must hold 'real' and at least one synthetic source"),
        (lambda c: c["tasks"].append({"type": "preference", "compare": ["synthetic", "noncontrast"]}),
         "field 'tasks[1].compare' names source 'noncontrast' that the cases do not have"),
        (lambda c: c["tasks"][0].update(questions=[{"key": "q", "type": "likert", "text": "Q?"}]),
         "field 'tasks[0].questions[0]' lacks the required field 'levels'; add it."),
        (lambda c: c["tasks"][0].update(questions=[
            {"key": "q", "type": "yes_no", "text": "Q?"}, {"key": "q", "type": "text", "text": "again"}]),
         "field 'tasks[0].questions[1].key' repeats the question key 'q'"),
        (lambda c: c.update(design={"type": "split-plot"}), "field 'readers[0]' has no group, which a split-plot"),
    ],
)
def test_every_study_error_is_one_sentence_naming_file_field_and_fix(tmp_path, mutate, expected):
    config = _minimal(tmp_path)
    mutate(config)
    message = _error(tmp_path, config)
    assert message.startswith("study.yaml: ")
    assert expected in message


def test_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("study_id: x\ncases: [\n  - id: 1\n")
    with pytest.raises(StudyError, match=r"study\.yaml: not valid YAML \(line \d+, column \d+"):
        load_study(path)
    with pytest.raises(StudyError, match="the study file does not exist"):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize("ifu", templates.IFUS)
def test_every_ifu_template_is_a_valid_study_with_anchored_five_point_scales(tmp_path, ifu):
    config = _minimal(tmp_path)
    config["ifu"] = ifu
    config["tasks"] = [{"type": "grading", "template": ifu}]
    study = study_from_config(config, base_dir=tmp_path)
    questions = study.task("grading").questions
    likert = [q for q in questions if q.type == "likert"]
    assert len(likert) >= 5
    for q in likert:
        assert [o.value for o in q.levels] == [1, 2, 3, 4, 5]
        assert len({o.label for o in q.levels}) == 5 and all(o.label for o in q.levels)
    keys = [q.key for q in questions]
    assert {"noise_artefacts", "overall_confidence", "non_diagnostic", "comment"} <= set(keys)
    assert next(q for q in questions if q.key == "comment").required is False


def test_aorta_template_has_the_aorta_criteria():
    keys = [q["key"] for q in templates.grading_questions("aorta")]
    for key in ("lumen_conspicuity", "edge_sharpness", "thrombus_delineation", "noise_artefacts", "overall_confidence"):
        assert key in keys


def test_question_validation_parse_code_and_label():
    likert = Question.from_config(templates.grading_questions("aorta")[0])
    assert likert.parse("4") == 4 and likert.code(4) == 4.0
    assert likert.label(4).startswith("Good")
    assert likert.parse("excellent: lumen sharply seen throughout") == 5
    with pytest.raises(AnswerError, match="'lumen_conspicuity' must be one of the levels 1, 2, 3, 4, 5"):
        likert.validate(7)
    with pytest.raises(AnswerError, match="is required"):
        likert.validate(None)
    choice = Question.from_config({"key": "c", "type": "single_choice", "text": "?", "options": ["alpha", "beta"]})
    assert choice.parse("beta") == "beta" and choice.code("beta") == 2.0
    multi = Question.from_config({"key": "m", "type": "multiple_choice", "text": "?", "options": ["a", "b", "c"],
                                  "max_selected": 2})
    assert multi.parse("c, a") == ["a", "c"] and multi.label(["a", "c"]) == "a; c" and multi.code(["a"]) is None
    with pytest.raises(AnswerError, match="at most 2 options"):
        multi.validate(["a", "b", "c"])
    yes_no = Question.from_config({"key": "y", "type": "yes_no", "text": "?"})
    assert yes_no.parse("No") is False and yes_no.code(True) == 1.0 and yes_no.label(False) == "No"
    number = Question.from_config({"key": "n", "type": "number", "text": "?", "min": 0, "max": 10, "step": 0.5,
                                   "unit": "mm"})
    assert number.parse("2.5") == 2.5 and number.label(2.5) == "2.5 mm"
    with pytest.raises(AnswerError, match="a multiple of 0.5"):
        number.validate(2.2)
    with pytest.raises(AnswerError, match="at most 10"):
        number.parse("11")
    text = Question.from_config({"key": "t", "type": "text", "text": "?", "required": False, "max_length": 5})
    assert text.validate("") is None and text.validate("short") == "short"
    with pytest.raises(AnswerError, match="at most 5 characters"):
        text.validate("too long")


def test_different_file_formats_of_one_case_give_a_blinding_warning(tmp_path):
    config = _minimal(tmp_path)
    _touch(tmp_path / "c1" / "synthetic.nii.gz")
    config["cases"][0]["synthetic"] = "c1/synthetic.nii.gz"
    study = load_study(_write(tmp_path, config))
    assert len(study.warnings) == 1 and "case 'c1'" in study.warnings[0] and ".nii.gz" in study.warnings[0]


def test_study_from_a_case_folder_with_several_models(tmp_path):
    cases = tmp_path / "cases"
    for case in ("p1", "p2", "p3"):
        for name in ("real.nii.gz", "synthetic-unet.nii.gz", "synthetic-diffusion.nii.gz", "noncontrast.nii.gz"):
            _touch(cases / case / name)
        (cases / case / "truth.json").write_text('{"disease_present": 0}')
    config = study_config_from_folder(cases, tmp_path, tasks=["grading", "turing", "detection"], training_cases=1)
    path = write_study_file(config, tmp_path / "study.yaml")
    study = load_study(path)
    assert study.sources == ["noncontrast", "real", "synthetic:diffusion", "synthetic:unet"]
    assert study.task("turing").sources == ("real", "synthetic:diffusion", "synthetic:unet")
    assert [c.training for c in study.cases] == [True, False, False]
    assert study.case("p2").images["synthetic:unet"] == (cases / "p2" / "synthetic-unet.nii.gz").resolve()


def test_example_study_is_valid_and_marked_demo(tmp_path):
    path = write_example_study(tmp_path / "ex", cases=6, training_cases=1, readers=2)
    study = load_study(path)
    assert study.demo and len(study.cases) == 6 and [t.type for t in study.tasks] == [
        "grading", "turing", "preference", "detection"]
    assert {c.truth["disease_present"] for c in study.cases} <= {0, 1}
    header = (tmp_path / "ex" / "cases" / "case001" / "real.nrrd").read_bytes()[:8]
    assert header == b"NRRD0004"
    with pytest.raises(StudyError, match="already there"):
        write_example_study(tmp_path / "ex")


def test_the_documented_example_study_is_valid(repo_root, tmp_path):
    readme = (repo_root / "docs" / "reader-study.md").read_text()
    section = readme.split("## A study file", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    study = study_from_config(yaml.safe_load(block), base_dir=tmp_path, check_files=False)
    assert [t.type for t in study.tasks] == ["grading", "turing", "preference", "detection"]
    assert study.case("c001").images.keys() == {"noncontrast", "real", "synthetic:unet-v2", "synthetic:diffusion-v1"}
