"""Many phantoms at once: case folders for training and validation, kept when already written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.paired_case import CASE_FILES

from .generator import make_phantom, write_phantom


def generate_phantom_cases(folder: str | Path, count: int, seed_start: int,
                           progress: ProgressCallback | None = None, prefix: str = "phantom",
                           **phantom_kwargs: Any) -> list[Path]:
    """Write phantoms ``seed_start .. seed_start+count-1`` into ``folder/<prefix>-<seed>/`` (kept if present).

    ``phantom_kwargs`` go to :func:`~DigitalContrastLib.phantoms.generator.make_phantom` (size, spacing, z centre).
    """
    if count < 0 or seed_start < 0:
        raise JobError("Phantom count and seed start must be non-negative; fix --generate-phantoms / --seed-start.")
    progress = progress or no_progress
    folder = Path(folder)
    made = []
    for k in range(count):
        seed = seed_start + k
        case_dir = folder / f"{prefix}-{seed:05d}"
        if not all((case_dir / name).is_file() for name in CASE_FILES.values()):
            write_phantom(make_phantom(seed, **phantom_kwargs), case_dir)
        made.append(case_dir)
        progress("phantoms", k + 1, count)
    return made
