"""What the Slicer modules ask to install on first use: decided from find_spec and installed versions.

The real requirements files are parsed; "installed" is this venv where the test says so, and a
stand-in find_spec/version lookup where a missing or outdated package must be simulated (nothing is
installed or removed here: Testing/test_stock_slicer.py installs for real, into a stand-in of Slicer).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from DigitalContrastLib.common.dependencies import (
    NEEDS_TORCH,
    REQUIREMENTS_FILE,
    SLICER_BUNDLED,
    bundled_constraints,
    normalized,
    parse_requirements,
    plan_dependencies,
    read_requirements,
    version_tuple,
)

ROOT = Path(__file__).resolve().parents[1]
READER_REQUIREMENTS = ROOT / "DigitalContrastReader" / "Resources" / "DigitalContrastReader-requirements.txt"
STOCK_SLICER = ROOT / "Testing" / "stock_slicer"


def without(*absent: str):
    return lambda name: None if name in absent else importlib.util.find_spec(name)


def test_each_module_has_its_own_requirements_file_with_features():
    synthesis = read_requirements()
    reader = read_requirements(READER_REQUIREMENTS)
    assert REQUIREMENTS_FILE.name == "DigitalContrast-requirements.txt"
    assert {r.feature for r in synthesis} == {"panel", "worker"}
    assert {r.feature for r in reader} == {"reading", "analysis"}
    names = {r.name: r for r in synthesis + reader}
    assert names["PyYAML"].import_name == "yaml" and names["pylibjpeg-openjpeg"].import_name == "openjpeg"
    assert names["scikit-learn"].import_name == "sklearn"
    assert "torch" not in names, "torch comes from the PyTorch extension"
    assert not any(r.name.lower() in ("monai", "torch", "safetensors") for r in reader), "reading needs no PyTorch"


def test_no_requirement_names_a_package_that_slicer_bundles():
    for path in (REQUIREMENTS_FILE, READER_REQUIREMENTS):
        bundled = [r.name for r in read_requirements(path) if normalized(r.name) in SLICER_BUNDLED]
        assert bundled == [], f"{path.name} asks for {bundled}, which Slicer ships: never install or upgrade them"


def test_the_bundled_list_covers_both_supported_slicer_releases():
    for pins in sorted(STOCK_SLICER.glob("slicer-*.txt")):
        names = {normalized(line.split("==")[0]) for line in pins.read_text().splitlines()
                 if line and not line.startswith("#")}
        assert names <= SLICER_BUNDLED, f"{pins.name}: {sorted(names - SLICER_BUNDLED)} missing from SLICER_BUNDLED"


def test_everything_is_satisfied_in_the_project_venv():
    """The test venv has every package both modules list (pip installed them from pyproject.toml)."""
    for path in (REQUIREMENTS_FILE, READER_REQUIREMENTS):
        plan = plan_dependencies(read_requirements(path))
        assert plan.satisfied, plan.message()
        assert plan.message() == "" and plan.to_install == []


def test_missing_packages_and_torch_are_planned_in_file_order():
    plan = plan_dependencies(find_spec=without("jsonschema", "openjpeg", "torch", "monai"))
    assert plan.torch_missing
    assert plan.to_install == ["jsonschema>=4.18", "pylibjpeg-openjpeg>=2.3"]
    assert [r.name for r in plan.waiting_for_torch] == ["monai"], "MONAI would pull torch from pip: it waits"
    assert not plan.satisfied
    message = plan.message()
    assert "PyTorch" in message and "jsonschema" in message and "monai (after PyTorch)" in message


def test_features_decide_what_is_asked_for():
    absent = without("torch", "monai", "safetensors", "jsonschema", "yaml", "pandas")
    panel_only = plan_dependencies(features=["panel"], need_torch=False, find_spec=absent)
    assert panel_only.to_install == ["jsonschema>=4.18"] and not panel_only.torch_missing
    reading = plan_dependencies(read_requirements(READER_REQUIREMENTS), features=["reading"], need_torch=False,
                                requester="Digital Contrast Reader", find_spec=absent)
    assert reading.to_install == ["jsonschema>=4.18", "PyYAML>=6"]
    assert not reading.torch_missing and reading.message().startswith("Digital Contrast Reader needs")
    engine = plan_dependencies(find_spec=absent)
    assert engine.torch_missing and [r.name for r in engine.missing] == ["jsonschema", "safetensors"]


def test_once_torch_is_there_monai_is_installed_like_any_other():
    plan = plan_dependencies(find_spec=without("monai"))
    assert not plan.torch_missing and plan.to_install == ["monai>=1.4"] and not plan.waiting_for_torch
    assert NEEDS_TORCH == {"monai"}


def test_outdated_versions_are_planned_and_bundled_packages_never_are():
    requirements = parse_requirements("[x]\njsonschema>=4.18\nscipy>=1.10\n")
    versions = {"jsonschema": "4.0.1", "scipy": "1.9.0"}
    plan = plan_dependencies(requirements, need_torch=False, version_of=lambda name: versions.get(name, "99"))
    assert [(r.name, v) for r, v in plan.outdated] == [("jsonschema", "4.0.1")]
    assert plan.to_install == ["jsonschema>=4.18"], "scipy is Slicer's: never upgraded"
    assert "jsonschema (installed 4.0.1, needs 4.18 or later)" in plan.message()
    assert plan.bundled_problems and "scipy 1.9.0 is too old in this Slicer" in plan.message()
    assert not plan.satisfied


def test_pip_is_given_a_constraints_file_pinning_slicers_packages(tmp_path):
    plan = plan_dependencies(find_spec=without("jsonschema"), need_torch=False, features=["panel"])
    assert plan.pip_arguments(tmp_path / "c.txt") == ["--constraint", str(tmp_path / "c.txt"), "jsonschema>=4.18"]
    text = bundled_constraints(lambda name: {"numpy": "2.0.2", "pydicom": "2.4.4"}.get(name))
    assert text.splitlines()[1:] == ["numpy==2.0.2", "pydicom==2.4.4"]
    assert plan_dependencies(need_torch=False, features=["panel"]).pip_arguments("c.txt") == []


def test_a_broken_package_counts_as_missing():
    def find_spec(name):
        if name == "jsonschema":
            raise ValueError("jsonschema.__spec__ is None")
        return importlib.util.find_spec(name)

    assert [r.name for r in plan_dependencies(find_spec=find_spec).missing] == ["jsonschema"]


def test_requirement_lines_and_versions():
    parsed = parse_requirements("# comment\n\nfoo-bar>=1.2.3  # why\n[gui]\nbaz\n")
    assert [(r.name, r.import_name, r.minimum, r.line, r.feature) for r in parsed] == [
        ("foo-bar", "foo_bar", "1.2.3", "foo-bar>=1.2.3", "default"), ("baz", "baz", None, "baz", "gui")]
    with pytest.raises(ValueError, match="line 1"):
        parse_requirements("numpy<2\n")
    assert version_tuple("2.3.1.post1") == (2, 3, 1)
    assert version_tuple("10.0rc1") == (10, 0)
    assert version_tuple("1.10") > version_tuple("1.9")
    assert normalized("Typing_Extensions") == "typing-extensions"
