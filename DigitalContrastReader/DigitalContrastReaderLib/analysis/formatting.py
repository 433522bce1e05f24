"""How the analyses report: p-values, degrees of freedom, plain-text tables, t/z confidence
intervals, and result objects that turn into JSON (shared by MRMC, VGC, agreement and the Turing
test, and by the HTML report)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from scipy import stats

from DigitalContrastLib.common.json_values import jsonable


class JsonResult:
    """Mixin for result dataclasses: ``to_dict()`` is ``asdict`` made JSON-ready (NaN → None, inf → "inf")."""

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


def format_p(p: float) -> str:
    """A p-value as text: four decimals, ``<0.0001`` below that, ``nan`` when undefined."""
    return "nan" if not np.isfinite(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def format_df(df: float) -> str:
    """Degrees of freedom as text (``z`` for a normal interval, df = inf)."""
    return "z" if np.isinf(df) else f"{df:.2f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned plain-text table lines (header, rule, rows)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*map(str, r)).rstrip() for r in rows
    ]


def interval(estimate: float, std_error: float, df: float, alpha: float) -> tuple[float, float, float, float]:
    """(statistic, two-sided p, lower, upper) for a t (finite df) or z (df = inf) interval."""
    dist = stats.norm if np.isinf(df) else stats.t(df)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = estimate / std_error if std_error > 0 else math.nan
    p_value = float(2 * dist.sf(abs(statistic))) if np.isfinite(statistic) else math.nan
    half = float(dist.ppf(1 - alpha / 2)) * std_error
    return float(statistic), p_value, estimate - half, estimate + half
