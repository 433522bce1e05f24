"""Summary statistics of a cohort's metrics: mean, median, SD and a seeded bootstrap CI of the
mean per metric, and Bland–Altman agreement of paired measurements (synthetic vs real).

Bootstrap: percentile interval of the mean over :data:`BOOTSTRAP_RESAMPLES` resamples of the
cases with a finite value, drawn with ``numpy.random.default_rng(seed)`` (the seed and ``n`` are
reported with every interval, so a figure can be reproduced exactly). With fewer than 2 values
there is no interval (``None``).

Bland–Altman (Bland & Altman, Lancet 1986;327:307–310): per case the difference
``synthetic − real`` and the mean of the two; the bias is the mean difference, the 95% limits of
agreement are ``bias ± 1.96 SD`` of the differences (SD with ``n − 1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240
CONFIDENCE = 0.95
LOA_Z = 1.96


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def bootstrap_ci(values: Iterable[float], statistic: str = "mean", resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the ``statistic`` (``"mean"`` or ``"median"``) of the finite
    ``values``; None for n < 2."""
    x = _finite(values)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    resampled = x[rng.integers(0, x.size, size=(int(resamples), x.size))]
    stats = {"mean": np.mean, "median": np.median}[statistic](resampled, axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(values: Iterable[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                      confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of the finite ``values``; None for n < 2."""
    return bootstrap_ci(values, "mean", resamples, seed, confidence)


def describe(values: Iterable[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """``n`` (finite values), ``mean``, ``median``, ``sd`` (n − 1), ``min``, ``max`` and
    ``ci95_mean`` ([low, high] or None); NaN statistics are None."""
    x = _finite(values)
    ci = bootstrap_mean_ci(x, resamples, seed)

    def stat(f) -> float | None:
        return float(f(x)) if x.size else None

    return {
        "n": int(x.size),
        "mean": stat(np.mean),
        "median": stat(np.median),
        "sd": float(np.std(x, ddof=1)) if x.size >= 2 else None,
        "min": stat(np.min),
        "max": stat(np.max),
        "ci95_mean": list(ci) if ci else None,
    }


def bland_altman(synthetic: Sequence[float], real: Sequence[float]) -> dict[str, Any]:
    """Agreement of paired values (pairs with a non-finite member are dropped).

    Returns ``n``, ``bias`` (mean of synthetic − real), ``sd`` of the differences, ``loa_low`` and
    ``loa_high`` (bias ∓ 1.96 SD), and the per-pair ``means`` and ``differences`` (for plots).
    Undefined statistics are None (no pair; SD and limits need 2 pairs).
    """
    a = np.asarray([float(v) for v in synthetic], dtype=np.float64)
    b = np.asarray([float(v) for v in real], dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = a - b
    mean = (a + b) / 2.0
    n = int(diff.size)
    bias = float(diff.mean()) if n else None
    sd = float(diff.std(ddof=1)) if n >= 2 else None
    return {
        "n": n,
        "bias": bias,
        "sd": sd,
        "loa_low": bias - LOA_Z * sd if sd is not None and bias is not None else None,
        "loa_high": bias + LOA_Z * sd if sd is not None and bias is not None else None,
        "means": mean.tolist(),
        "differences": diff.tolist(),
    }


def finite_or_none(value: Any) -> float | None:
    """A float for JSON: None for missing or NaN values."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
