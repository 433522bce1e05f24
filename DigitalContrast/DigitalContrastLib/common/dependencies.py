"""Which Python packages a module still needs, and how to install them without touching Slicer's own.

One plan for both modules. Each module ships a requirements file with a module-specific name
(``DigitalContrast/Resources/DigitalContrast-requirements.txt``,
``DigitalContrastReader/Resources/DigitalContrastReader-requirements.txt``: Slicer installs every
module's resources into one folder, so two ``requirements.txt`` would collide). A file is split into
*features* by ``[feature]`` lines; a module asks only for the features the user is about to use (the
panel, the worker, reading, analysis), so a reading-only workstation never needs PyTorch.

This module only decides *what* is missing (from ``importlib.util.find_spec`` and the installed
versions) and *what pip must be told*; the Slicer module asks the user and runs Slicer's installer
(``slicer.packaging.pip_ensure`` where it exists, else ``slicer.util.pip_install``) with exactly
:meth:`DependencyPlan.pip_arguments`. Three rules hold:

* a package that 3D Slicer bundles (:data:`SLICER_BUNDLED`: numpy, scipy, SimpleITK, pydicom, Pillow,
  requests and their own dependencies) is never installed or upgraded: it is left out of every plan,
  and pip gets a constraints file pinning each one to the version installed, so no other package can
  pull in a new one;
* torch comes from the PyTorch extension, never from pip; a package that needs torch
  (:data:`NEEDS_TORCH`: MONAI) is installed only once torch is there, or pip would fetch a
  multi-gigabyte build of torch of its own;
* after an install, ``importlib.invalidate_caches()`` makes the new packages importable in the
  running Slicer (no restart: none of them was imported before).

Requirement lines are ``name`` or ``name>=version``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import MODULE_DIR

#: The synthesis module's requirements file (a resource with the module's name in it).
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "DigitalContrast-requirements.txt"

#: Distribution names (lower case) that 3D Slicer 5.10 and 5.12 bundle (their SuperBuild
#: ``External_python-*.cmake`` pins, plus SimpleITK): never installed, upgraded or removed here.
SLICER_BUNDLED: frozenset[str] = frozenset({
    "certifi", "cffi", "chardet", "charset-normalizer", "couchdb", "cryptography", "dcmqi", "deprecated",
    "dicomweb-client", "gitdb", "gitpython", "highdicom", "idna", "numpy", "packaging", "pillow", "pip",
    "pycparser", "pydicom", "pygithub", "pyjpegls", "pyjwt", "pynacl", "pyparsing", "python-dateutil", "requests",
    "retrying", "scipy", "setuptools", "simpleitk", "six", "smmap", "typing-extensions", "urllib3", "wheel", "wrapt",
})

#: Packages whose installation would pull torch from the package registry when torch is absent.
NEEDS_TORCH: frozenset[str] = frozenset({"monai"})

#: The torch version the engine needs (handed to the PyTorch extension's installer).
TORCH_REQUIREMENT = ">=2.4"

#: Distribution name (lower case) -> the module it is imported as, where they differ.
IMPORT_NAMES: dict[str, str] = {
    "pylibjpeg-openjpeg": "openjpeg",
    "pyyaml": "yaml",
    "pillow": "PIL",
    "simpleitk": "SimpleITK",
    "scikit-learn": "sklearn",
}

_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.+-]*))?\s*$")
_FEATURE = re.compile(r"^\s*\[([a-z][a-z0-9_-]*)\]\s*$")


def normalized(name: str) -> str:
    """A distribution name as pip compares it (PEP 503: lower case, runs of ``-_.`` as ``-``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One line of a requirements file.

    Attributes:
        line: the line as written (``"jsonschema>=4.18"``), what pip is given.
        name: the distribution name (``"jsonschema"``).
        import_name: the top-level module it provides (``"yaml"`` for PyYAML).
        minimum: the lowest acceptable version, or None.
        feature: the ``[feature]`` section it is listed under (``"panel"``, ``"worker"``...).
    """

    line: str
    name: str
    import_name: str
    minimum: str | None = None
    feature: str = "default"


@dataclass(frozen=True)
class DependencyPlan:
    """What must be installed before the features asked for can run.

    Attributes:
        requester: who asks (``"Digital Contrast"``), for the dialogs.
        torch_missing: torch cannot be imported (install it through the PyTorch extension).
        missing: requirements whose module cannot be imported.
        outdated: ``(requirement, installed version)`` pairs below the minimum.
        waiting_for_torch: requirements left out until torch is installed (they would pull torch from pip).
        bundled_problems: requirements on packages Slicer bundles that are missing or too old: never
            installed here (the remedy is another Slicer release), reported instead.
    """

    requester: str
    torch_missing: bool
    missing: tuple[Requirement, ...] = ()
    outdated: tuple[tuple[Requirement, str], ...] = ()
    waiting_for_torch: tuple[Requirement, ...] = ()
    bundled_problems: tuple[str, ...] = ()

    @property
    def to_install(self) -> list[str]:
        """Requirement lines for pip now (missing, then outdated), in file order."""
        return [r.line for r in self.missing] + [r.line for r, _ in self.outdated]

    @property
    def satisfied(self) -> bool:
        """Nothing to install and nothing waiting."""
        return not self.torch_missing and not self.to_install and not self.waiting_for_torch and \
            not self.bundled_problems

    def pip_arguments(self, constraints_file: str | Path) -> list[str]:
        """The arguments after ``pip install``: the constraints file that pins Slicer's packages, then the lines."""
        return ["--constraint", str(constraints_file), *self.to_install] if self.to_install else []

    def message(self) -> str:
        """What the confirmation dialog says (empty when nothing is needed)."""
        parts = []
        if self.torch_missing:
            parts.append("PyTorch (installed by the PyTorch extension, a large download that picks the build for "
                         "this computer's GPU)")
        if self.missing:
            parts.append("the Python packages " + ", ".join(r.name for r in self.missing))
        if self.outdated:
            parts.append("newer versions of " + ", ".join(f"{r.name} (installed {v}, needs {r.minimum} or later)"
                                                          for r, v in self.outdated))
        if self.waiting_for_torch:
            parts.append(", ".join(r.name for r in self.waiting_for_torch) + " (after PyTorch)")
        text = ""
        if parts:
            text = (f"{self.requester} needs " + "; ".join(parts) + ". They are installed into Slicer's Python once, "
                    "without changing any package that Slicer itself ships.")
        if self.bundled_problems:
            text = (text + " " if text else "") + " ".join(self.bundled_problems)
        return text


def parse_requirements(text: str) -> list[Requirement]:
    """The requirements of a requirements file's ``text`` (comments and blank lines skipped).

    Lines before the first ``[feature]`` line belong to feature ``default``.

    Raises:
        ValueError: a line is neither ``[feature]``, ``name`` nor ``name>=version``.
    """
    requirements, feature = [], "default"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        section = _FEATURE.match(line)
        if section:
            feature = section.group(1)
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"requirements line {number} ({line!r}) is not '[feature]', 'name' or 'name>=version'")
        name, minimum = match.group(1), match.group(2)
        requirements.append(Requirement(line, name, IMPORT_NAMES.get(name.lower(), name.replace("-", "_")), minimum,
                                        feature))
    return requirements


def read_requirements(path: str | Path = REQUIREMENTS_FILE) -> list[Requirement]:
    """:func:`parse_requirements` of the file at ``path`` (default: the synthesis module's own)."""
    return parse_requirements(Path(path).read_text(encoding="utf-8"))


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: ``"2.3.1.post1"`` -> ``(2, 3, 1)``."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(numbers)


def _is_older(installed: str, minimum: str) -> bool:
    have, need = version_tuple(installed), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def _importable(name: str, find_spec: Callable[[str], object | None]) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-installed package
        return False


def installed_version(name: str) -> str | None:
    """The installed distribution's version, or None (not installed, or no metadata)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan_dependencies(
    requirements: Iterable[Requirement] | None = None,
    *,
    features: Sequence[str] | None = None,
    need_torch: bool = True,
    requester: str = "Digital Contrast",
    find_spec: Callable[[str], object | None] = importlib.util.find_spec,
    version_of: Callable[[str], str | None] = installed_version,
) -> DependencyPlan:
    """Decide what is missing before the given features can run.

    Args:
        requirements: default: the synthesis module's requirements file.
        features: the ``[feature]`` sections needed (None: all of the file's).
        need_torch: the real synthesis engine will run (needs torch); False for the dummy worker,
            a device probe or the reader module.
        requester: who asks, for the dialogs.
        find_spec: ``importlib.util.find_spec`` (injectable for tests).
        version_of: installed version of a distribution, or None when unknown.

    Returns:
        A :class:`DependencyPlan`; ``plan.satisfied`` when nothing needs installing.
    """
    requirements = list(read_requirements() if requirements is None else requirements)
    wanted = None if features is None else set(features)
    torch_present = _importable("torch", find_spec)
    missing, outdated, waiting, bundled = [], [], [], []
    for requirement in requirements:
        if wanted is not None and requirement.feature not in wanted:
            continue
        key = normalized(requirement.name)
        importable = _importable(requirement.import_name, find_spec)
        installed = version_of(requirement.name) if importable and requirement.minimum else None
        too_old = bool(installed and requirement.minimum and _is_older(installed, requirement.minimum))
        if importable and not too_old:
            continue
        if key in SLICER_BUNDLED:
            bundled.append(f"{requirement.name} {'is missing' if not importable else f'{installed} is too old'} in "
                           f"this Slicer, which ships it ({requirement.line} is needed): use a newer 3D Slicer.")
        elif key in NEEDS_TORCH and not torch_present:
            waiting.append(requirement)
        elif not importable:
            missing.append(requirement)
        else:
            outdated.append((requirement, installed))
    return DependencyPlan(requester, need_torch and not torch_present, tuple(missing), tuple(outdated),
                          tuple(waiting), tuple(bundled))


def bundled_constraints(version_of: Callable[[str], str | None] = installed_version) -> str:
    """A pip constraints file's text pinning every installed :data:`SLICER_BUNDLED` package to its version."""
    lines = ["# Packages 3D Slicer ships, pinned so that no install changes them (DigitalContrast)."]
    for name in sorted(SLICER_BUNDLED):
        version = version_of(name)
        if version:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def write_bundled_constraints(folder: str | Path, version_of: Callable[[str], str | None] = installed_version) -> Path:
    """:func:`bundled_constraints` written to ``folder/DigitalContrast-constraints.txt``; returns the path."""
    path = Path(folder) / "DigitalContrast-constraints.txt"
    path.write_text(bundled_constraints(version_of), encoding="utf-8")
    return path


def after_install() -> None:
    """Make packages installed while this process runs importable (no restart needed)."""
    importlib.invalidate_caches()
