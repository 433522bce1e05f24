"""Build a stand-in for a stock 3D Slicer's Python: its Python version and exactly its bundled packages.

``Testing/stock_slicer/slicer-<release>.txt`` lists what Slicer ``<release>`` bundles, read from its
SuperBuild; slicer-core and vtk stand in for Slicer's own MRML libraries. Nothing else is installed
(``--no-deps``: vtk's wheel would otherwise pull matplotlib, which Slicer does not ship). The base
environment is built once per pin file under ``.stock-slicer/<release>`` (``make test`` does it
first); each test session works on a fresh clone of it made of hard links, so installing into the
clone never touches the base.

    python Testing/stock_slicer_env.py build 5.10.0 5.12.3
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "Testing" / "stock_slicer"
CACHE = ROOT / ".stock-slicer"
#: Slicer's own MRML libraries, from the wheels the project pins.
MRML_WHEELS = ("slicer-core==5.11.0.6", "vtk==9.6.0")
RELEASES = ("5.10.0", "5.12.3")


def python312() -> str | None:
    """A Python 3.12 interpreter (Slicer 5.10 and 5.12 ship 3.12), or None."""
    candidates = [shutil.which("python3.12")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == "(3, 12)":
            return candidate
    return None


def _stamp(release: str, python: str) -> str:
    text = (PINS / f"slicer-{release}.txt").read_bytes() + " ".join((python, *MRML_WHEELS)).encode()
    return hashlib.sha256(text).hexdigest()


def base_env(release: str) -> Path:
    """The stand-in's base environment for ``release`` (built when missing or out of date).

    Raises:
        RuntimeError: no Python 3.12, or pip failed (its output is in the message).
    """
    python = python312()
    if python is None:
        raise RuntimeError("no Python 3.12 found (3D Slicer 5.10 and 5.12 ship 3.12); install it, e.g. with pyenv")
    folder = CACHE / release
    stamp = folder / ".stamp"
    if stamp.is_file() and stamp.read_text() == _stamp(release, python):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(folder)], check=True)
    pins = [line.strip() for line in (PINS / f"slicer-{release}.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    done = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                           "--no-deps", "-q", *pins, *MRML_WHEELS], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the Slicer {release} stand-in failed:\n{done.stdout}\n{done.stderr}")
    stamp.write_text(_stamp(release, python))
    return folder


def clone(base: Path, destination: Path) -> Path:
    """A copy of ``base`` made of hard links (instant; pip writes new files, so the base stays as it is)."""
    subprocess.run(["cp", "-al", str(base), str(destination)], check=True)
    (destination / ".stamp").unlink(missing_ok=True)
    return destination


def freeze(env: Path) -> dict[str, str]:
    """``name -> version`` of every distribution in ``env`` (``pip freeze``)."""
    done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=True)
    pairs = [line.split("==", 1) for line in done.stdout.splitlines() if "==" in line]
    return {name.lower().replace("_", "-"): version for name, version in pairs}


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        for release in sys.argv[2:] or RELEASES:
            print(f"Slicer {release} stand-in: {base_env(release)}")
