"""The result objects of an MRMC analysis (:func:`~DigitalContrastReaderLib.analysis.mrmc.mrmc_analysis`):
global tests, pairwise differences, per-modality estimates, the non-inferiority test, and
:class:`MRMCResult` with its JSON form and text summary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from DigitalContrastLib.common.json_values import jsonable

from .formatting import format_df, format_p, format_table
from .or_variance import ORComponents


@dataclass(frozen=True)
class GlobalTest:
    """Test of H0: all modalities have the same figure of merit (``df_denominator`` None for χ²)."""

    statistic_name: str
    statistic: float
    df_numerator: float
    df_denominator: float | None
    p_value: float
    error_term: float


@dataclass(frozen=True)
class Difference:
    """``modality_a − modality_b`` with its standard error, two-sided p and (1 − alpha) CI; df = inf means z."""

    modality_a: str
    modality_b: str
    estimate: float
    std_error: float
    df: float
    statistic: float
    p_value: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class ModalityEstimate:
    """One modality's reader-averaged figure of merit with its (1 − alpha) CI; df = inf means z."""

    modality: str
    estimate: float
    std_error: float
    df: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class ReaderDifference:
    """Single-reader difference ``modality_a − modality_b`` (FRRC, z-based)."""

    reader: str
    modality_a: str
    modality_b: str
    estimate: float
    std_error: float
    statistic: float
    p_value: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class Analysis:
    """One of RRRC, FRRC, RRFC: global test, pairwise differences, per-modality CIs."""

    name: str
    description: str
    test: GlobalTest | None
    differences: tuple[Difference, ...]
    modalities: tuple[ModalityEstimate, ...]
    reader_differences: tuple[ReaderDifference, ...] = ()


@dataclass(frozen=True)
class NonInferiority:
    """One-sided test of H0: Δ ≤ −margin against H1: Δ > −margin, Δ = test − reference (RRRC).

    ``p_value`` is ONE-sided. Non-inferiority is concluded when the lower limit of the two-sided
    (1 − alpha) CI of Δ exceeds −margin, i.e. when the one-sided p < alpha/2 (0.025 for alpha 0.05).
    """

    test_modality: str
    reference_modality: str
    margin: float
    difference: float
    std_error: float
    df: float
    statistic: float
    p_value: float
    sidedness: str
    alpha_one_sided: float
    ci_lower: float
    non_inferior: bool
    hypothesis: str


@dataclass(frozen=True)
class MRMCResult:
    """Everything an MRMC analysis reports. ``to_dict()`` is JSON-ready; ``summary()`` is a text table."""

    fom_name: str
    fom_label: str
    alpha: float
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_positive: int | None
    n_negative: int | None
    reader_fom: np.ndarray  # [modality, reader]
    components: ORComponents
    rrrc: Analysis
    frrc: Analysis
    rrfc: Analysis
    non_inferiority: NonInferiority | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    design: str = "fully crossed"
    reader_groups: tuple[tuple[str, ...], ...] = ()

    @property
    def modality_fom(self) -> dict[str, float]:
        return {m: float(v) for m, v in zip(self.modalities, self.reader_fom.mean(axis=1))}

    def difference(self, modality_a: str, modality_b: str, analysis: str = "rrrc") -> Difference:
        """The ``modality_a − modality_b`` row of an analysis (sign flipped if stored the other way)."""
        return find_difference(getattr(self, analysis.lower()), str(modality_a), str(modality_b))

    def to_dict(self) -> dict:
        out = {
            "method": "Obuchowski-Rockette with Hillis denominator degrees of freedom, jackknife covariances",
            "figure_of_merit": {"name": self.fom_name, "label": self.fom_label},
            "alpha": self.alpha,
            "design": {
                "description": self.design,
                "reader_groups": [list(g) for g in self.reader_groups],
                "modalities": list(self.modalities),
                "readers": list(self.readers),
                "n_cases": self.n_cases,
                "n_positive": self.n_positive,
                "n_negative": self.n_negative,
            },
            "reader_fom": {
                m: {r: _num(self.reader_fom[i, j]) for j, r in enumerate(self.readers)} for i, m in enumerate(self.modalities)
            },
            "modality_fom": {m: _num(v) for m, v in self.modality_fom.items()},
            "components": {k: jsonable(v) for k, v in asdict(self.components).items()},
            "analyses": {a.name: jsonable(asdict(a)) for a in (self.rrrc, self.frrc, self.rrfc)},
            "non_inferiority": jsonable(asdict(self.non_inferiority)) if self.non_inferiority else None,
            "notes": list(self.notes),
        }
        return out

    def summary(self) -> str:
        lines = [
            "MRMC analysis: Obuchowski-Rockette, Hillis ddf, jackknife covariances",
            f"Figure of merit: {self.fom_label}",
        ]
        cases = f"{self.n_cases} cases"
        if self.n_positive is not None:
            cases += f" ({self.n_positive} positive, {self.n_negative} negative)"
        lines.append(f"{len(self.readers)} readers x {cases} x {len(self.modalities)} modalities")
        if len(self.reader_groups) > 1:
            c = self.components
            lines.append(f"Design: {self.design}")
            within = (f"within groups Cov2 = {c.cov2_within_group:.8g}, Cov3 = {c.cov3_within_group:.8g} "
                      f"({100 * c.same_group_pair_fraction:.1f}% of reader pairs share a group)"
                      if c.same_group_pair_fraction > 0 else "one reader per group, so Cov2 = Cov3 = 0")
            lines.append(f"  Cov2 and Cov3 are zero between groups (independent cases); {within}")
        lines.append("")
        rows = [[r, *(f"{self.reader_fom[i, j]:.4f}" for i in range(len(self.modalities)))] for j, r in enumerate(self.readers)]
        rows.append(["mean", *(f"{v:.4f}" for v in self.modality_fom.values())])
        lines += format_table(["reader", *self.modalities], rows)
        level = f"{100 * (1 - self.alpha):g}%"
        for analysis in (self.rrrc, self.frrc, self.rrfc):
            lines += ["", f"{analysis.name}: {analysis.description}"]
            if analysis.test is not None:
                t = analysis.test
                if t.df_denominator is None:
                    lines.append(f"  chi2({t.df_numerator:g}) = {t.statistic:.4f}, p = {format_p(t.p_value)}")
                else:
                    lines.append(f"  F({t.df_numerator:g}, {t.df_denominator:.2f}) = {t.statistic:.4f}, p = {format_p(t.p_value)}")
            if analysis.differences:
                rows = [
                    [f"{d.modality_a} - {d.modality_b}", f"{d.estimate:.4f}", f"{d.std_error:.4f}", format_df(d.df), f"{d.statistic:.3f}",
                     format_p(d.p_value), f"[{d.ci_lower:.4f}, {d.ci_upper:.4f}]"]
                    for d in analysis.differences
                ]
                lines += ["  " + x for x in format_table(["difference", "estimate", "std.err", "df", "t/z", "p", f"{level} CI"], rows)]
            rows = [
                [m.modality, f"{m.estimate:.4f}", f"{m.std_error:.4f}", format_df(m.df), f"[{m.ci_lower:.4f}, {m.ci_upper:.4f}]"]
                for m in analysis.modalities
            ]
            lines += ["  " + x for x in format_table(["modality", "estimate", "std.err", "df", f"{level} CI"], rows)]
        if self.non_inferiority is not None:
            n = self.non_inferiority
            lines += [
                "",
                f"Non-inferiority (RRRC): {n.hypothesis}",
                f"  difference {n.test_modality} - {n.reference_modality} = {n.difference:.4f}, "
                f"lower {level} limit {n.ci_lower:.4f} vs -margin {-n.margin:.4f}; "
                f"{n.sidedness} p = {format_p(n.p_value)} (level {n.alpha_one_sided:g})",
                f"  conclusion: {'non-inferior' if n.non_inferior else 'non-inferiority not shown'}",
            ]
        for note in self.notes:
            lines.append(f"Note: {note}")
        return "\n".join(lines)


def _flip(d: Difference) -> Difference:
    return Difference(d.modality_b, d.modality_a, -d.estimate, d.std_error, d.df, -d.statistic, d.p_value, -d.ci_upper, -d.ci_lower)


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else (None if math.isnan(value) else value)


def find_difference(analysis: Analysis, modality_a: str, modality_b: str) -> Difference:
    """The ``modality_a − modality_b`` row of ``analysis`` (sign flipped if stored the other way)."""
    for d in analysis.differences:
        if (d.modality_a, d.modality_b) == (modality_a, modality_b):
            return d
        if (d.modality_a, d.modality_b) == (modality_b, modality_a):
            return _flip(d)
    raise KeyError(f"no difference {modality_a} - {modality_b}")
