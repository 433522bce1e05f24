"""Simulated reading tables for demonstrations, tests and the example report.

Every table has the long layout of ``long_table.py`` (``reader_id, case_id, modality, truth, score``)
and is reproducible from its seed. The numbers mean nothing clinically: they exercise the analyses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["reader_id", "case_id", "modality", "truth", "score"]


def grading_study(
    n_readers: int = 5,
    n_cases: int = 60,
    modalities: Sequence[str] = ("real", "synthetic"),
    modality_shift: Sequence[float] = (0.0, -0.2),
    n_grades: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Image-quality grades 1..``n_grades`` of every case in every modality by every reader (truth empty).

    Latent quality = case effect (sd 1) + reader effect (sd 0.3) + ``modality_shift`` + noise (sd 0.7),
    cut into grades at equal steps around the middle grade.
    """
    rng = np.random.default_rng(seed)
    case = rng.normal(0, 1, n_cases)
    reader = rng.normal(0, 0.3, n_readers)
    rows = []
    middle = (n_grades + 1) / 2
    for j in range(n_readers):
        for k in range(n_cases):
            for modality, shift in zip(modalities, modality_shift):
                latent = middle + case[k] + reader[j] + shift + rng.normal(0, 0.7)
                grade = int(np.clip(np.round(latent), 1, n_grades))
                rows.append((f"R{j + 1}", f"case{k + 1:03d}", modality, np.nan, float(grade)))
    return pd.DataFrame(rows, columns=COLUMNS)


def detection_study(
    n_readers: int = 5,
    n_negative: int = 40,
    n_positive: int = 40,
    modalities: Sequence[str] = ("real", "synthetic"),
    separation: Sequence[float] = (1.5, 1.3),
    seed: int = 0,
) -> pd.DataFrame:
    """5-point confidence ratings that a finding is present, with 0/1 truth (an ROC study)."""
    rng = np.random.default_rng(seed)
    truth = np.r_[np.zeros(n_negative), np.ones(n_positive)]
    case = rng.normal(0, np.sqrt(0.3), truth.size)
    rows = []
    for j in range(n_readers):
        reader = rng.normal(0, 0.1)
        for modality, mu in zip(modalities, separation):
            latent = mu * truth + reader * truth + case + rng.normal(0, np.sqrt(0.7), truth.size)
            rating = np.digitize(latent, [-0.25, 0.5, 1.0, 1.6]) + 1
            for k in range(truth.size):
                rows.append((f"R{j + 1}", f"case{k + 1:03d}", modality, truth[k], float(rating[k])))
    return pd.DataFrame(rows, columns=COLUMNS)


def turing_study(
    n_readers: int = 6,
    n_cases: int = 50,
    detectability: float = 0.0,
    synthetic_label: str = "synthetic",
    real_label: str = "real",
    seed: int = 0,
) -> pd.DataFrame:
    """Each reader judges every image alone; score = confidence in [0, 1] that the image is synthetic.

    ``detectability`` is the shift (in latent sd) of synthetic images: 0 = readers guess.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_readers):
        for k in range(n_cases):
            for modality, synthetic in ((real_label, 0.0), (synthetic_label, 1.0)):
                latent = detectability * synthetic + rng.normal(0, 1) - detectability / 2
                rows.append((f"R{j + 1}", f"case{k + 1:03d}", modality, synthetic, round(float(stats.norm.cdf(latent)), 3)))
    return pd.DataFrame(rows, columns=COLUMNS)
