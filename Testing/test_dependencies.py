"""What the Slicer module asks to install on first use: decided from find_spec and installed versions.

The real requirements file is parsed; "installed" is this venv where the test says so, and a
stand-in find_spec/version lookup where a missing or outdated package must be simulated (nothing is
installed or removed).
"""

from __future__ import annotations

import importlib.util

import pytest

from DigitalContrastLib.common.dependencies import (
    ENGINE_PACKAGES,
    REQUIREMENTS_FILE,
    parse_requirements,
    plan_dependencies,
    read_requirements,
    version_tuple,
)


def test_the_shipped_requirements_file_parses_and_maps_import_names():
    requirements = {r.name: r for r in read_requirements()}
    assert REQUIREMENTS_FILE.name == "requirements.txt" and REQUIREMENTS_FILE.parent.name == "Resources"
    assert requirements["PyYAML"].import_name == "yaml"
    assert requirements["Pillow"].import_name == "PIL"
    assert requirements["pylibjpeg-openjpeg"].import_name == "openjpeg"
    assert requirements["SimpleITK"].minimum == "2.3"
    assert "torch" not in requirements, "torch comes from the PyTorch extension"
    assert ENGINE_PACKAGES <= set(requirements)


def test_everything_is_satisfied_in_the_project_venv():
    """The test venv has every package the module lists (pip installed it from pyproject.toml)."""
    plan = plan_dependencies()
    assert plan.satisfied, plan.message()
    assert plan.message() == ""


def test_missing_packages_and_torch_are_planned_in_file_order():
    absent = {"yaml", "PIL", "torch"}

    def find_spec(name):
        return None if name in absent else importlib.util.find_spec(name)

    plan = plan_dependencies(find_spec=find_spec)
    assert plan.torch_missing
    assert [r.name for r in plan.missing] == ["PyYAML", "Pillow"]
    assert plan.to_install == ["PyYAML>=6", "Pillow>=10"]
    assert not plan.satisfied
    message = plan.message()
    assert "PyTorch" in message and "PyYAML" in message and "Pillow" in message


def test_a_dummy_run_needs_neither_torch_nor_the_engine_packages():
    absent = {"torch", "monai", "safetensors"}
    plan = plan_dependencies(need_engine=False,
                             find_spec=lambda name: None if name in absent else importlib.util.find_spec(name))
    assert plan.satisfied, plan.message()
    engine_run = plan_dependencies(find_spec=lambda name: None if name in absent else importlib.util.find_spec(name))
    assert engine_run.torch_missing and sorted(r.name for r in engine_run.missing) == ["monai", "safetensors"]


def test_outdated_versions_are_planned_and_skipped_names_never_are():
    versions = {"SimpleITK": "2.2.1", "scipy": "1.10.0", "pydicom": "3.0.1"}
    plan = plan_dependencies(version_of=lambda name: versions.get(name, "99"))
    assert [(r.name, v) for r, v in plan.outdated] == [("SimpleITK", "2.2.1")]
    assert plan.to_install == ["SimpleITK>=2.3"]
    assert "SimpleITK (installed 2.2.1, needs 2.3 or later)" in plan.message()
    assert plan_dependencies(version_of=lambda name: versions.get(name, "99"), skip=["simpleitk"]).satisfied


def test_a_broken_package_counts_as_missing():
    def find_spec(name):
        if name == "pydicom":
            raise ValueError("pydicom.__spec__ is None")
        return importlib.util.find_spec(name)

    assert [r.name for r in plan_dependencies(find_spec=find_spec).missing] == ["pydicom"]


def test_requirement_lines_and_versions():
    parsed = parse_requirements("# comment\n\nfoo-bar>=1.2.3  # why\nbaz\n")
    assert [(r.name, r.import_name, r.minimum, r.line) for r in parsed] == [
        ("foo-bar", "foo_bar", "1.2.3", "foo-bar>=1.2.3"), ("baz", "baz", None, "baz")]
    with pytest.raises(ValueError, match="line 1"):
        parse_requirements("numpy<2\n")
    assert version_tuple("2.3.1.post1") == (2, 3, 1)
    assert version_tuple("10.0rc1") == (10, 0)
    assert version_tuple("1.10") > version_tuple("1.9")
