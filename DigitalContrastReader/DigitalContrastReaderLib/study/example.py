"""Example studies: a study file for a folder of cases, and a small demo study with dummy images.

A *case folder* holds one sub-folder per case; inside it the images are recognised by name:
``real.*`` (contrast CT), ``synthetic.*`` (one model) or ``synthetic-<model>.*`` (several
models), optionally ``noncontrast.*``, and optionally ``truth.json`` (``{"disease_present": 1}``).
Images may be files (``.nrrd``, ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nhdr``) or DICOM
series folders named the same way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_bytes, atomic_write_text

from .errors import StudyError
from .study import TASK_TYPES

IMAGE_SUFFIXES = (".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr")

STUDY_HEADER = """\
# DigitalContrast reader study (format: study.schema.json in DigitalContrastReaderLib).
# Paths are relative to this file. Questions are frozen once the first answer is stored:
# change them before readers start. Check it with: digital-contrast-reader init THIS_FILE --db study.sqlite
"""


def _image_in(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / stem if (folder / stem).is_dir() else None


def _stem_of(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _relative(path: Path, study_dir: Path) -> str:
    try:
        return path.resolve().relative_to(study_dir.resolve()).as_posix()
    except ValueError:
        import os

        return Path(os.path.relpath(path.resolve(), study_dir.resolve())).as_posix()


def study_config_from_folder(
    cases_dir: str | Path,
    study_dir: str | Path,
    *,
    study_id: str = "example-study",
    ifu: str = "aorta",
    readers: Sequence[str] = ("reader1", "reader2", "reader3"),
    tasks: Sequence[str] = ("grading", "turing"),
    training_cases: int = 0,
    washout_days: float = 28,
) -> dict[str, Any]:
    """A study configuration (a dict, ready for :func:`write_study_file`) for a case folder.

    Args:
        cases_dir: one sub-folder per case (see the module docstring).
        study_dir: where the study file will be written (image paths are made relative to it).
        training_cases: how many of the cases (the first, in name order) become training cases.
        tasks: task types, among grading, turing, preference, detection (detection needs a
            ``disease_present`` truth for every case).
    """
    cases_dir, study_dir = Path(cases_dir), Path(study_dir)
    if not cases_dir.is_dir():
        raise StudyError(f"{cases_dir}: the case folder does not exist; check the path.")
    unknown = [t for t in tasks if t not in TASK_TYPES]
    if unknown:
        raise StudyError(f"Task type '{unknown[0]}' is unknown; use {', '.join(TASK_TYPES)}.")
    cases = []
    for folder in sorted(p for p in cases_dir.iterdir() if p.is_dir()):
        real = _image_in(folder, "real")
        synthetic = _image_in(folder, "synthetic")
        models = {}
        for path in sorted(folder.iterdir()):
            stem = _stem_of(path)
            if stem.startswith("synthetic-"):
                models[stem[len("synthetic-"):]] = path
        if real is None or (synthetic is None and not models):
            raise StudyError(f"{folder}: a case folder needs real.<ext> and synthetic.<ext> (or synthetic-<model>.<ext>); "
                             "add them or move the folder out.")
        case: dict[str, Any] = {"id": folder.name}
        noncontrast = _image_in(folder, "noncontrast")
        if noncontrast is not None:
            case["noncontrast"] = _relative(noncontrast, study_dir)
        case["real"] = _relative(real, study_dir)
        case["synthetic"] = (
            _relative(synthetic, study_dir) if synthetic is not None and not models
            else {m: _relative(p, study_dir) for m, p in models.items()}
        )
        truth_file = folder / "truth.json"
        if truth_file.is_file():
            try:
                case["truth"] = json.loads(truth_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise StudyError(f"{truth_file}: not valid JSON (line {error.lineno}); fix it.") from None
        cases.append(case)
    if len(cases) <= training_cases:
        raise StudyError(f"{cases_dir}: found {len(cases)} case folders, need more than {training_cases} (the training "
                         "cases); add cases.")
    for case in cases[:training_cases]:
        case["training"] = True
    task_list: list[dict[str, Any]] = []
    for kind in tasks:
        task: dict[str, Any] = {"type": kind}
        if kind == "grading":
            task["template"] = ifu
        if kind == "detection":
            task["truth"] = "disease_present"
            task["finding"] = "a dissection or aneurysm" if ifu == "aorta" else "the finding"
        task_list.append(task)
    return {
        "schema_version": 1,
        "study_id": study_id,
        "title": f"Synthetic versus real contrast CT ({ifu})",
        "version": "1.0",
        "ifu": ifu,
        "allow_answer_modification": False,
        "display": {"window": 700, "level": 200},
        "layout": {"views": ["axial", "coronal", "sagittal"], "link_views": True},
        "design": {"type": "fully-crossed", "washout_days": washout_days},
        "readers": [{"id": r} for r in readers],
        "tasks": task_list,
        "cases": cases,
    }


def write_study_file(config: dict[str, Any], path: str | Path) -> Path:
    """Write a study configuration as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps(config, indent=2) + "\n")
    import yaml

    return atomic_write_text(path, STUDY_HEADER + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


# --------------------------------------------------------------------------------------------
# Demo study with dummy images
# --------------------------------------------------------------------------------------------


def _nrrd_bytes(volume_hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> bytes:
    """A tiny raw NRRD (int16, LPS), ``volume_hu`` indexed ``[z, y, x]``, spacing ``(x, y, z)`` mm."""
    nz, ny, nx = volume_hu.shape
    sx, sy, sz = spacing_mm
    header = (
        "NRRD0004\n"
        "type: int16\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {nx} {ny} {nz}\n"
        f"space directions: ({sx},0,0) (0,{sy},0) (0,0,{sz})\n"
        "kinds: domain domain domain\n"
        "endian: little\n"
        "encoding: raw\n"
        "space origin: (0,0,0)\n\n"
    )
    return header.encode("ascii") + volume_hu.astype("<i2").tobytes()


def _dummy_case_volumes(rng: np.random.Generator, diseased: bool, size: int = 24) -> dict[str, np.ndarray]:
    """Non-contrast, real and synthetic dummy volumes ``[z, y, x]`` in HU: a tube (the "aorta")
    in soft tissue; the contrast images enhance the lumen; a diseased case has a dark flap."""
    z, y, x = np.mgrid[0:size // 2, 0:size, 0:size]
    lumen = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size / 5) ** 2
    body = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size / 2.2) ** 2
    base = np.where(body, 40.0, -1000.0)
    flap = diseased & (np.abs(x - size / 2) < 1) & lumen
    noncontrast = base + rng.normal(0, 12, base.shape)
    real = np.where(lumen, 320.0, base) + rng.normal(0, 15, base.shape)
    synthetic = np.where(lumen, 300.0, base) + rng.normal(0, 9, base.shape)
    real[flap] = 60.0
    synthetic[flap] = 90.0
    return {k: np.clip(v, -1024, 3071).astype(np.int16) for k, v in
            {"noncontrast": noncontrast, "real": real, "synthetic": synthetic}.items()}


def write_example_study(
    out_dir: str | Path,
    *,
    cases: int = 12,
    training_cases: int = 2,
    readers: int = 3,
    tasks: Sequence[str] = ("grading", "turing", "preference", "detection"),
    ifu: str = "aorta",
    design: str = "fully-crossed",
    washout_days: float = 28,
    max_items_per_session: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a small demo study: dummy NRRD images per case and ``study.yaml``; returns its path.

    The study is marked ``demo: true`` so that simulated readers may fill it. Half of the cases
    (about) have ``disease_present: 1``. With ``design="split-plot"`` the readers are put in two
    groups, each reading half of the cases.
    """
    out_dir = Path(out_dir)
    cases_dir = out_dir / "cases"
    if (out_dir / "study.yaml").exists():
        raise StudyError(f"{out_dir / 'study.yaml'}: an example study is already there; choose an empty folder.")
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    for k in range(cases):
        folder = cases_dir / f"case{k + 1:03d}"
        diseased = pick.random() < 0.5
        for name, volume in _dummy_case_volumes(rng, diseased).items():
            atomic_write_bytes(folder / f"{name}.nrrd", _nrrd_bytes(volume, (1.0, 1.0, 2.0)))
        atomic_write_text(folder / "truth.json", json.dumps({"disease_present": int(diseased)}) + "\n")
    config = study_config_from_folder(
        cases_dir, out_dir, study_id="demo-aorta", ifu=ifu,
        readers=[f"r{j + 1:02d}" for j in range(readers)], tasks=tasks, training_cases=training_cases,
        washout_days=washout_days,
    )
    config["title"] = "DEMO: synthetic versus real CTA of the aorta (dummy images)"
    config["demo"] = True
    if design == "split-plot":
        config["design"]["type"] = "split-plot"
        for j, reader in enumerate(config["readers"]):
            reader["group"] = "A" if j % 2 == 0 else "B"
    if max_items_per_session:
        config["design"]["max_items_per_session"] = max_items_per_session
    return write_study_file(config, out_dir / "study.yaml")
