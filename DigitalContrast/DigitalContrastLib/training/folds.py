"""Cross-validation folds of prepared cases, split by patient.

Cases of one patient (one pseudonymous ``patient_key`` in their ``case.json``; a case without one is
its own patient) always fall in the same fold, so no fold is scored on a patient it was trained on.
Patients are shuffled with a fixed seed, then dealt largest first to the fold with the fewest cases
so far: folds of near-equal size, reproducible from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.ct.paired_case import read_case_facts


def patient_of(folder: Path) -> str:
    """The case's patient key (``case.json``), else its folder name."""
    facts = read_case_facts(folder) or {}
    return str(facts.get("patient_key") or f"case:{folder.name}")


def assign_folds(case_dirs: Sequence[Path], folds: int, seed: int = 0) -> list[list[str]]:
    """The case names of each of ``folds`` folds (each sorted), split by patient.

    Raises:
        JobError: fewer than 2 folds, or fewer patients than folds.
    """
    if int(folds) < 2:
        raise JobError(f"--folds {folds} must be at least 2.")
    by_patient: dict[str, list[str]] = {}
    for folder in case_dirs:
        by_patient.setdefault(patient_of(Path(folder)), []).append(Path(folder).name)
    if len(by_patient) < int(folds):
        raise JobError(f"{len(by_patient)} patient(s) cannot fill {folds} folds split by patient; give --folds "
                       f"{max(2, len(by_patient))} or fewer, or prepare more patients.")
    patients = sorted(by_patient)
    order = np.random.default_rng(int(seed)).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    shuffled.sort(key=lambda p: -len(by_patient[p]))  # stable: the shuffle breaks ties
    out: list[list[str]] = [[] for _ in range(int(folds))]
    for patient in shuffled:
        smallest = min(range(int(folds)), key=lambda k: (len(out[k]), k))
        out[smallest].extend(by_patient[patient])
    return [sorted(names) for names in out]
