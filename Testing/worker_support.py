"""Helpers shared by the worker and client process tests: a tiny CT file and process checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import SimpleITK as sitk

from DigitalContrastLib.worker import protocol

REPO = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = REPO / "DigitalContrast" / "Scripts" / "DigitalContrastWorker.py"
LIB_PARENT = REPO / "DigitalContrast"

#: HU of the tiny phantom's parts: air outside, a soft-tissue body, an unenhanced vessel, bone.
AIR_HU, BODY_HU, VESSEL_HU, BONE_HU = -1000, 40, 45, 900


def write_tiny_ct(path: Path, shape_zyx: tuple[int, int, int] = (16, 40, 40),
                  spacing_xyz_mm: tuple[float, float, float] = (0.8, 0.8, 2.0)) -> dict[str, np.ndarray]:
    """Write a small CT (int16 HU) that passes the input gate; return its region masks ``[z, y, x]``."""
    z, y, x = np.mgrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    cy, cx, r = shape_zyx[1] / 2, shape_zyx[2] / 2, min(shape_zyx[1:]) * 0.42
    body = (y - cy) ** 2 + (x - cx) ** 2 < r**2
    vessel = (y - cy) ** 2 + (x - cx - r / 3) ** 2 < (r / 6) ** 2
    bone = (y - cy) ** 2 + (x - cx + r / 2.5) ** 2 < (r / 6) ** 2
    array = np.full(shape_zyx, AIR_HU, np.int16)
    array[body] = BODY_HU
    array[vessel] = VESSEL_HU
    array[bone] = BONE_HU
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz_mm)
    image.SetOrigin((-16.0, -20.0, 100.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return {"array": array, "air": ~body, "soft": body & ~bone, "bone": bone}


def write_mr_like(path: Path, shape_zyx: tuple[int, int, int] = (16, 40, 40)) -> None:
    """A readable volume that is not CT: MR-like intensities 0..1000, no air at -1000 HU."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, shape_zyx).astype(np.int16))
    sitk.WriteImage(image, str(path))


def read_hu(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def worker_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LIB_PARENT), env.get("PYTHONPATH")) if p)
    return env


def run_worker(args: list[str], stdin: str = "", timeout: float = 60) -> tuple[int, list[dict], str]:
    """Run ``python -m DigitalContrastLib.worker ARGS`` to the end: exit code, messages, log text."""
    done = subprocess.run([sys.executable, "-m", "DigitalContrastLib.worker", *args], input=stdin.encode(),
                          capture_output=True, timeout=timeout, env=worker_env())
    lines = done.stdout.decode().splitlines()
    messages = [m for m in map(protocol.decode_line, lines) if m is not None]
    plain = [line for line in lines if protocol.decode_line(line) is None]
    return done.returncode, messages, "\n".join(plain) + done.stderr.decode()


def job_text(**job) -> str:
    return json.dumps(job) + "\n"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
