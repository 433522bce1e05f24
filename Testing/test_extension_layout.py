"""The extension's layout: what Slicer packages is exactly what is on disk.

A file missing from a module's CMakeLists.txt is silently absent from the packaged extension;
a listed file missing from disk breaks the build. Both are caught here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["DigitalContrast", "DigitalContrastReader"]
IGNORED_PARTS = {"__pycache__"}
IGNORED_SUFFIXES = {".pyc", ".orig", ".rej"}


def _cmake_list(text: str, variable: str, module: str) -> set[str]:
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set"
    items = set()
    for line in match.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            items.add(line.replace("${MODULE_NAME}", module))
    return items


def _files_on_disk(module_dir: Path) -> set[str]:
    files = set()
    for path in module_dir.rglob("*"):
        rel = path.relative_to(module_dir)
        if path.is_dir() or IGNORED_PARTS & set(rel.parts) or path.suffix in IGNORED_SUFFIXES:
            continue
        if rel.name == "CMakeLists.txt":
            continue
        files.add(rel.as_posix())
    return files


@pytest.mark.parametrize("module", MODULES)
def test_cmakelists_lists_exactly_the_files_on_disk(module):
    module_dir = ROOT / module
    text = (module_dir / "CMakeLists.txt").read_text()
    assert re.search(r"set\(MODULE_NAME\s+" + module + r"\)", text)
    assert "slicerMacroBuildScriptedModule" in text
    listed = _cmake_list(text, "MODULE_PYTHON_SCRIPTS", module) | _cmake_list(text, "MODULE_PYTHON_RESOURCES", module)
    on_disk = _files_on_disk(module_dir)
    assert sorted(on_disk - listed) == [], "files on disk but not in CMakeLists.txt (missing from the package)"
    assert sorted(listed - on_disk) == [], "files in CMakeLists.txt but not on disk (the build would fail)"


def installed_paths(module: str) -> list[str]:
    """Where ``slicerMacroBuildScriptedModule`` (no ``WITH_SUBDIR``) puts a module's files: every SCRIPT
    and RESOURCE by its path relative to the module folder, all modules into one ``qt-scripted-modules/``."""
    text = (ROOT / module / "CMakeLists.txt").read_text()
    return sorted(_cmake_list(text, "MODULE_PYTHON_SCRIPTS", module) | _cmake_list(text, "MODULE_PYTHON_RESOURCES", module))


def clashes(paths_by_module: dict[str, list[str]]) -> list[str]:
    """Installed paths claimed by two modules."""
    seen: dict[str, str] = {}
    found = []
    for module, paths in paths_by_module.items():
        for path in paths:
            if path in seen:
                found.append(f"{path}: {seen[path]} and {module}")
            seen[path] = module
    return found


def test_no_two_files_of_the_extension_are_installed_to_the_same_path():
    """Two modules' ``Resources/requirements.txt`` collided (Ninja stops, Makefiles keep one of them)."""
    paths = {module: installed_paths(module) for module in MODULES}
    assert clashes(paths) == []
    assert "model_weights" not in {p.split("/")[0] for ps in paths.values() for p in ps}, "installed by the top CMakeLists"


def test_the_clash_checker_finds_the_old_requirements_clash():
    old = {"DigitalContrast": ["DigitalContrast.py", "Resources/requirements.txt"],
           "DigitalContrastReader": ["DigitalContrastReader.py", "Resources/requirements.txt"]}
    assert clashes(old) == ["Resources/requirements.txt: DigitalContrast and DigitalContrastReader"]


def test_each_module_reads_the_resources_it_installs():
    """What the code reads at run time is what CMake installs, under the module's own name."""
    from DigitalContrastLib.common.dependencies import REQUIREMENTS_FILE

    assert REQUIREMENTS_FILE.relative_to(ROOT / "DigitalContrast").as_posix() in installed_paths("DigitalContrast")
    reader = (ROOT / "DigitalContrastReader" / "DigitalContrastReader.py").read_text()
    assert "DigitalContrastReader-requirements.txt" in reader
    assert "Resources/DigitalContrastReader-requirements.txt" in installed_paths("DigitalContrastReader")
    for module in MODULES:
        assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in (ROOT / module / "CMakeLists.txt").read_text()


@pytest.mark.parametrize("module", MODULES)
def test_only_the_module_file_sits_directly_in_the_module_folder(module):
    """Slicer takes every .py directly in a module folder for a module: helpers live in <Module>Lib/."""
    py_files = sorted(p.name for p in (ROOT / module).glob("*.py"))
    assert py_files == [f"{module}.py"]


@pytest.mark.parametrize("module", MODULES)
def test_module_file_defines_the_four_classes(module):
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {module, f"{module}Widget", f"{module}Logic", f"{module}Test"} <= classes


def test_top_level_cmakelists_is_a_slicer_extension():
    text = (ROOT / "CMakeLists.txt").read_text()
    for needle in [
        "project(DigitalContrast)",
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        'set(EXTENSION_DEPENDS "PyTorch")',
        "find_package(Slicer REQUIRED)",
        "add_subdirectory(DigitalContrast)",
        "add_subdirectory(DigitalContrastReader)",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
    ]:
        assert needle in text, needle
    for module in MODULES:
        assert (ROOT / module / "CMakeLists.txt").is_file()


def test_pyproject_declares_markers_scripts_and_package_mapping():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    markers = {m.split(":")[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]}
    assert {"mrml", "process", "slow", "realdata"} <= markers
    assert config["project"]["scripts"]["digital-contrast"] == "DigitalContrastLib.commands.cli:main"
    mapping = config["tool"]["setuptools"]["package-dir"]
    assert mapping["DigitalContrastLib"] == "DigitalContrast/DigitalContrastLib"
    assert mapping["DigitalContrastReaderLib"] == "DigitalContrastReader/DigitalContrastReaderLib"
    # every sub-package on disk is declared, or a non-editable install would miss it
    declared = set(config["tool"]["setuptools"]["packages"])
    for top, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([top, *rel.parts]) if rel.parts else top
            assert name in declared, f"package {name} is not listed in pyproject.toml"
    assert "slicer" not in [d.split("=")[0].split(">")[0].strip() for d in config["project"]["dependencies"]]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make demo" in (ROOT / "README.md").read_text()


def test_atomic_write_leaves_a_normally_readable_file_and_no_temporary(tmp_path):
    import os
    import stat

    from DigitalContrastLib.common.atomic import atomic_path, atomic_write_text

    target = atomic_write_text(tmp_path / "report.html", "<p>ok</p>")
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "broken.nrrd") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
