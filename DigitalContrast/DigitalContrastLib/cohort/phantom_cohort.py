"""Phantom cohorts: a folder of paired phantom cases and the cohort CSV that lists them.

For demos and tests of the cohort evaluation (never patient data). Each case is a phantom of
``phantom.py`` (non-contrast, arterial contrast and labels on one grid) whose contrast scan is
moved by a small random rigid transform (as two real acquisitions are), so the evaluation's
registration has work to do. *Broken* cases have a damaged non-contrast file, of a kind that the
input gate must refuse, so that the report shows a failed case with its reason:

* ``truncated``: the NRRD file cut in half (``unreadable``);
* ``too_few_slices``: a volume of 8 slices (``too_few_slices``);
* ``missing``: the CSV names a file that does not exist (``not_found``).

Layout::

    DIR/cohort.csv                     case_id, noncontrast, contrast, labels, seed, aneurysm,
                                       sac_max_diameter_mm_truth, broken
    DIR/<case_id>/noncontrast.nrrd     (and contrast.nrrd, labels.nrrd, phantom.json)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.phantoms.generator import make_phantom, summary_line, write_phantom
from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

from .table import write_cohort_csv

#: Seeds of cohort phantoms start here: far from the training and validation seeds of the
#: shipped model (a cohort of held-out cases).
DEFAULT_SEED_START = 20001
#: A small grid: 96 × 96 × 48 voxels of 3.6 mm (35 × 35 × 17 cm) runs in seconds per case.
SMALL_SIZE_XYZ = (96, 96, 48)
SMALL_SPACING_XYZ_MM = (3.6, 3.6, 3.6)
BROKEN_KINDS = ("truncated", "too_few_slices", "missing")
COHORT_CSV = "cohort.csv"


def broken_positions(cases: int, broken: int) -> list[int]:
    """Indices (0-based) of the broken cases, spread evenly over the cohort."""
    if broken <= 0:
        return []
    return sorted({min(cases - 1, (k + 1) * cases // (broken + 1)) for k in range(broken)})


def make_phantom_cohort(out_dir: str | os.PathLike, cases: int = 5, seed_start: int = DEFAULT_SEED_START,
                        broken: int = 0, size_xyz=SMALL_SIZE_XYZ, spacing_xyz_mm=SMALL_SPACING_XYZ_MM,
                        misregister: bool = True, on_case: Callable[[str, str], None] | None = None) -> Path:
    """Write ``cases`` phantom cases into ``out_dir`` and return the path of ``cohort.csv``.

    Args:
        out_dir: folder to write (created; existing case folders are overwritten).
        cases: number of cases (>= 1); case ids ``c001``, ``c002``, ...; seeds
            ``seed_start + k``.
        broken: how many of them get a damaged non-contrast file (kinds cycle through
            :data:`BROKEN_KINDS`; positions from :func:`broken_positions`).
        size_xyz, spacing_xyz_mm: the phantom grid (voxels, mm).
        misregister: move each contrast scan by ``RigidMisregistration.random(seed)``.
        on_case: called as ``on_case(case_id, summary_line)`` after each case.

    Raises:
        JobError: ``cases < 1``, ``broken`` outside ``0..cases`` or a negative seed.
        OutputError: the folder cannot be written.
    """
    import SimpleITK as sitk


    if int(cases) < 1:
        raise JobError(f"A cohort needs at least one case, not {cases}: give --cases 1 or more.")
    if not 0 <= int(broken) <= int(cases):
        raise JobError(f"--broken {broken} must lie between 0 and the number of cases ({cases}).")
    if int(seed_start) < 0:
        raise JobError(f"The seed start {seed_start} must be zero or a positive integer.")
    out = Path(out_dir)
    broken_at = broken_positions(int(cases), int(broken))
    rows = []
    for k in range(int(cases)):
        seed = int(seed_start) + k
        case_id = f"c{k + 1:03d}"
        folder = out / case_id
        motion = RigidMisregistration.random(seed) if misregister else None
        case = make_phantom(seed, size_xyz=size_xyz, spacing_xyz_mm=spacing_xyz_mm, misregistration=motion)
        paths = write_phantom(case, folder)
        aneurysm = case.params.get("aneurysm", {})
        kind = BROKEN_KINDS[broken_at.index(k) % len(BROKEN_KINDS)] if k in broken_at else ""
        noncontrast = paths["noncontrast"]
        if kind == "truncated":
            data = noncontrast.read_bytes()
            noncontrast.write_bytes(data[: len(data) // 2])
        elif kind == "too_few_slices":
            image = sitk.ReadImage(str(noncontrast))
            sitk.WriteImage(image[:, :, : min(8, image.GetSize()[2])], str(noncontrast))
        elif kind == "missing":
            noncontrast.unlink()
        rows.append({
            "case_id": case_id,
            "noncontrast": f"{case_id}/{noncontrast.name}",
            "contrast": f"{case_id}/{paths['contrast'].name}",
            "labels": f"{case_id}/{paths['labels'].name}",
            "seed": seed,
            "aneurysm": "yes" if aneurysm.get("present") else "no",
            "sac_max_diameter_mm_truth": round(float(aneurysm.get("max_diameter_mm", 0.0)), 1) if aneurysm.get("present") else "",
            "broken": kind,
        })
        if on_case:
            on_case(case_id, summary_line(case) + (f"; BROKEN on purpose ({kind})" if kind else ""))
    return write_cohort_csv(out / COHORT_CSV, rows)
