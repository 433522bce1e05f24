"""Which Python packages the module still needs: a pure decision, no installing here.

Inside Slicer the module asks the user before installing anything, on first use (never at
import time): torch through the PyTorch extension (``PyTorchUtils``), everything else from
``Resources/requirements.txt``. This module only decides *what* is missing, from
``importlib.util.find_spec`` and the installed versions, so the decision is tested outside Slicer;
the widget shows the dialogs and calls Slicer's installers.

Requirement lines are ``name`` or ``name>=version`` (the only forms the requirements file uses);
a package counts as missing when it cannot be imported, and as outdated when its installed
distribution is older than the minimum.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import MODULE_DIR

#: The module's requirements file (``DigitalContrast/Resources/requirements.txt``).
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"

#: Distribution name (lower case) -> the module it is imported as, where they differ.
IMPORT_NAMES: dict[str, str] = {
    "pylibjpeg-openjpeg": "openjpeg",
    "pyyaml": "yaml",
    "pillow": "PIL",
    "simpleitk": "SimpleITK",
}

#: Packages only the synthesis engine needs (with torch): a dummy or probe-only run goes without.
ENGINE_PACKAGES = frozenset({"monai", "safetensors"})

#: The torch version the engine needs (handed to the PyTorch extension's installer).
TORCH_REQUIREMENT = ">=2.4"

_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.+-]*))?\s*$")


@dataclass(frozen=True)
class Requirement:
    """One line of the requirements file.

    Attributes:
        line: the line as written (``"SimpleITK>=2.3"``), what pip is given.
        name: the distribution name (``"SimpleITK"``).
        import_name: the top-level module it provides (``"SimpleITK"``, ``"yaml"`` for PyYAML).
        minimum: the lowest acceptable version, or None.
    """

    line: str
    name: str
    import_name: str
    minimum: str | None = None


@dataclass(frozen=True)
class DependencyPlan:
    """What must be installed before a job can run.

    Attributes:
        torch_missing: torch cannot be imported (install it through the PyTorch extension).
        missing: requirements whose module cannot be imported.
        outdated: ``(requirement, installed version)`` pairs below the minimum.
    """

    torch_missing: bool
    missing: tuple[Requirement, ...] = ()
    outdated: tuple[tuple[Requirement, str], ...] = ()

    @property
    def to_install(self) -> list[str]:
        """Requirement lines for pip (missing and outdated), in file order."""
        return [r.line for r in self.missing] + [r.line for r, _ in self.outdated]

    @property
    def satisfied(self) -> bool:
        """Nothing to install."""
        return not self.torch_missing and not self.to_install

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
        if not parts:
            return ""
        return ("Digital Contrast needs " + "; ".join(parts) + ". They are installed into Slicer's Python once; "
                "Slicer may ask to restart afterwards.")


def parse_requirements(text: str) -> list[Requirement]:
    """The requirements of a requirements file's ``text`` (comments and blank lines skipped).

    Raises:
        ValueError: a line uses a form other than ``name`` or ``name>=version``.
    """
    requirements = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"requirements line {number} ({line!r}) is not 'name' or 'name>=version'")
        name, minimum = match.group(1), match.group(2)
        requirements.append(Requirement(line, name, IMPORT_NAMES.get(name.lower(), name.replace("-", "_")), minimum))
    return requirements


def read_requirements(path: str | Path = REQUIREMENTS_FILE) -> list[Requirement]:
    """:func:`parse_requirements` of the file at ``path`` (default: the module's own)."""
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
    need_engine: bool = True,
    find_spec: Callable[[str], object | None] = importlib.util.find_spec,
    version_of: Callable[[str], str | None] = installed_version,
    skip: Sequence[str] = (),
) -> DependencyPlan:
    """Decide what is missing for a run.

    Args:
        requirements: default: the module's requirements file.
        need_engine: the real synthesis engine will run (needs torch, MONAI, safetensors); False
            for the dummy worker or a device probe, which need only the core packages.
        find_spec: ``importlib.util.find_spec`` (injectable for tests).
        version_of: installed version of a distribution, or None when unknown.
        skip: distribution names never to install (e.g. packages Slicer bundles).

    Returns:
        A :class:`DependencyPlan`; ``plan.satisfied`` when nothing needs installing.
    """
    requirements = list(read_requirements() if requirements is None else requirements)
    skipped = {name.lower() for name in skip}
    missing, outdated = [], []
    for requirement in requirements:
        key = requirement.name.lower()
        if key in skipped or (not need_engine and key in ENGINE_PACKAGES):
            continue
        if not _importable(requirement.import_name, find_spec):
            missing.append(requirement)
            continue
        installed = version_of(requirement.name) if requirement.minimum else None
        if installed and requirement.minimum and _is_older(installed, requirement.minimum):
            outdated.append((requirement, installed))
    torch_missing = need_engine and not _importable("torch", find_spec)
    return DependencyPlan(torch_missing, tuple(missing), tuple(outdated))
