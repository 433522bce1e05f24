"""Visual grading: VGC analysis, paired ordinal tests, and the mean paired score difference.

Inputs are the long reading table (``reader_id, case_id, modality, truth, score``) with image-quality
grades as scores (truth may be empty): every reader grades every case of their reader group in the
test modality (e.g. ``synthetic``) and in the reference modality (e.g. ``real``) -- fully crossed (one
group) or split-plot (``reading_design.py``).

- **VGC** (Båth & Månsson, Br J Radiol 2007;80:169-176): per reader,
  AUC_VGC = P(X_test > X_ref) + ½·P(X_test = X_ref), the Mann–Whitney statistic with the modality as
  the class; the VGC curve plots, for each grade threshold c, P(X_test ≥ c) against P(X_ref ≥ c).
  0.5 = equal quality, > 0.5 = test graded higher. The reader-averaged AUC_VGC gets its CI from the
  Obuchowski–Rockette engine (``mrmc.py``) with AUC_VGC as the figure of merit, one "modality", and
  the case jackknife removing a case's test and reference images together (paired design):
  SE² = [MS(R) + J·max(Cov2, 0)] / J on Hillis df (random readers and cases).
- **Paired ordinal tables**: the (reference grade, test grade) table of all reader × case pairs,
  Stuart–Maxwell marginal homogeneity and Bowker symmetry tests (statsmodels ``SquareTable``). The
  pooled table treats reader × case pairs as independent; use the VGC or mean-difference CIs for
  reader- and case-aware inference.
- **Mean paired difference** test − reference: the OR engine with FOM = mean score (RRRC,
  Hillis df), which accounts for reader and case variability; per-reader differences use that
  reader's jackknife variance (fixed-reader, z intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import SquareTable

from DigitalContrastLib.common.errors import InputError

from .formatting import JsonResult, format_p, format_table, interval
from .mrmc import MEAN_SCORE, analyse_design, mrmc_from_design
from .mrmc_result import NonInferiority
from .reading_design import ReaderGroup, ReadingDesign, reading_design

# ---------------------------------------------------------------------------------------------
# VGC


def _vgc_kernel(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """ψ[..., a, b] = 1 if test image a is graded above reference image b, ½ if equal."""
    t = test[..., :, None]
    r = reference[..., None, :]
    return (t > r).astype(float) + 0.5 * (t == r)


def vgc_auc(test_scores: np.ndarray, reference_scores: np.ndarray) -> float:
    """AUC_VGC = P(test > reference) + ½ P(equal) over all pairs of images (1-D arrays, any lengths)."""
    return float(_vgc_kernel(np.asarray(test_scores, float), np.asarray(reference_scores, float)).mean())


def vgc_curve(test_scores: np.ndarray, reference_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VGC curve points ``(x, y)``: x = P(reference ≥ c), y = P(test ≥ c) for grades c from high to low.

    Starts at (0, 0) and ends at (1, 1); its trapezoidal area equals ``vgc_auc``.
    """
    test = np.asarray(test_scores, float)
    ref = np.asarray(reference_scores, float)
    grades = np.unique(np.concatenate([test, ref]))[::-1]
    x = np.concatenate([[0.0], [(ref >= c).mean() for c in grades]])
    y = np.concatenate([[0.0], [(test >= c).mean() for c in grades]])
    return x, y


def vgc_leave_one_out(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-reader AUC_VGC without case k (its test and reference image) ``[..., case]``; inputs ``[..., case]``."""
    psi = _vgc_kernel(test, reference)
    k = test.shape[-1]
    total = psi.sum(axis=(-2, -1))[..., None]
    diagonal = np.diagonal(psi, axis1=-2, axis2=-1)
    return (total - psi.sum(axis=-1) - psi.sum(axis=-2) + diagonal) / (k - 1) ** 2


@dataclass(frozen=True)
class VGCResult(JsonResult):
    """VGC analysis of ``test_modality`` against ``reference_modality``.

    ``auc`` is the reader-averaged AUC_VGC; ``std_error``/``df``/``ci_*``/``p_value`` are RRRC
    (random readers and cases, Hillis df; p two-sided for H0: AUC_VGC = 0.5); ``*_fixed_readers``
    the FRRC (z) version. ``curve`` holds the pooled VGC curve points (x = reference, y = test).
    """

    test_modality: str
    reference_modality: str
    readers: tuple[str, ...]
    n_cases: int
    reader_auc: dict[str, float]
    auc: float
    std_error: float
    df: float
    ci_lower: float
    ci_upper: float
    p_value: float
    std_error_fixed_readers: float
    ci_lower_fixed_readers: float
    ci_upper_fixed_readers: float
    pooled_auc: float
    curve: tuple[tuple[float, ...], tuple[float, ...]]
    reader_curves: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]
    alpha: float
    method: str

    def summary(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"VGC analysis: {self.test_modality} (test) vs {self.reference_modality} (reference), "
            f"{len(self.readers)} readers x {self.n_cases} cases",
            f"AUC_VGC = {self.auc:.4f}, {level} CI [{self.ci_lower:.4f}, {self.ci_upper:.4f}] "
            f"(random readers and cases, df {self.df:.2f}); p = {format_p(self.p_value)} for H0: AUC_VGC = 0.5 (two-sided)",
            f"fixed readers: {level} CI [{self.ci_lower_fixed_readers:.4f}, {self.ci_upper_fixed_readers:.4f}]",
        ]
        rows = [[r, f"{a:.4f}"] for r, a in self.reader_auc.items()]
        lines += format_table(["reader", "AUC_VGC"], rows)
        return "\n".join(lines)


def _two_modalities(frame: pd.DataFrame, test: str, reference: str, source: str) -> ReadingDesign:
    design = reading_design(frame, [str(test), str(reference)], source)
    if min(len(g.cases) for g in design.groups) < 3:
        where = "by each reader group" if design.is_split_plot else ""
        raise InputError(f"{source}: the jackknife needs at least three cases graded in both modalities{' ' + where if where else ''}.",
                         code="too_few_cases")
    return design


def _vgc_per_group(group: ReaderGroup) -> tuple[np.ndarray, np.ndarray]:
    t_scores, r_scores = group.scores[0], group.scores[1]  # [reader, case]
    return _vgc_kernel(t_scores, r_scores).mean(axis=(-2, -1))[None], vgc_leave_one_out(t_scores, r_scores)[None]


def _pooled_pairs(design: ReadingDesign) -> tuple[np.ndarray, np.ndarray]:
    """All (test, reference) grades of the design, flattened reader by reader ``[read]``."""
    return (np.concatenate([g.scores[0].ravel() for g in design.groups]),
            np.concatenate([g.scores[1].ravel() for g in design.groups]))


def vgc_analysis(
    frame: pd.DataFrame,
    test: str = "synthetic",
    reference: str = "real",
    alpha: float = 0.05,
    source: str = "the reading table",
) -> VGCResult:
    """VGC AUC per reader and reader-averaged with OR (RRRC and FRRC) confidence intervals."""
    design = _two_modalities(frame, test, reference, source)
    theta, _, rrrc, frrc, _, _ = analyse_design(design, _vgc_per_group, ["vgc"], alpha)
    theta = theta[0]
    estimate = float(theta.mean())
    if rrrc.modalities:
        random = rrrc.modalities[0]
        _, p_value, _, _ = interval(estimate - 0.5, random.std_error, random.df, alpha)
        se, df, lower, upper = random.std_error, random.df, random.ci_lower, random.ci_upper
    else:  # one reader: only the fixed-reader interval exists
        se = df = lower = upper = p_value = math.nan
    fixed = frrc.modalities[0]
    t_all, r_all = _pooled_pairs(design)
    x, y = vgc_curve(t_all, r_all)
    reader_curves = {}
    for group in design.groups:
        for j, r in enumerate(group.readers):
            rx, ry = vgc_curve(group.scores[0, j], group.scores[1, j])
            reader_curves[r] = (tuple(rx), tuple(ry))
    reader_curves = {r: reader_curves[r] for r in design.readers}
    return VGCResult(
        test_modality=design.modalities[0],
        reference_modality=design.modalities[1],
        readers=design.readers,
        n_cases=design.n_cases,
        reader_auc={r: float(a) for r, a in zip(design.readers, theta)},
        auc=estimate,
        std_error=float(se),
        df=float(df),
        ci_lower=float(lower),
        ci_upper=float(upper),
        p_value=float(p_value),
        std_error_fixed_readers=fixed.std_error,
        ci_lower_fixed_readers=fixed.ci_lower,
        ci_upper_fixed_readers=fixed.ci_upper,
        pooled_auc=vgc_auc(t_all, r_all),
        curve=(tuple(x), tuple(y)),
        reader_curves=reader_curves,
        alpha=alpha,
        method="AUC_VGC per reader (Bath & Mansson 2007); CI by Obuchowski-Rockette with the paired case jackknife, "
        "Hillis df (random readers and cases)",
    )


# ---------------------------------------------------------------------------------------------
# Paired ordinal tables


@dataclass(frozen=True)
class PairedOrdinalResult(JsonResult):
    """Reference × test grade table of all reader × case pairs, with Stuart–Maxwell and Bowker tests."""

    test_modality: str
    reference_modality: str
    grades: tuple[float, ...]
    table: tuple[tuple[int, ...], ...]  # rows: reference grade, columns: test grade
    n_pairs: int
    stuart_maxwell_statistic: float
    stuart_maxwell_df: float
    stuart_maxwell_p: float
    bowker_statistic: float
    bowker_df: float
    bowker_p: float
    note: str

    def summary(self) -> str:
        head = ["ref \\ test", *(f"{g:g}" for g in self.grades)]
        rows = [[f"{g:g}", *map(str, row)] for g, row in zip(self.grades, self.table)]
        return "\n".join(
            [f"Paired grades: {self.reference_modality} (rows) vs {self.test_modality} (columns), {self.n_pairs} pairs"]
            + format_table(head, rows)
            + [
                f"Stuart-Maxwell marginal homogeneity: chi2({self.stuart_maxwell_df:g}) = {self.stuart_maxwell_statistic:.4f}, "
                f"p = {format_p(self.stuart_maxwell_p)}",
                f"Bowker symmetry: chi2({self.bowker_df:g}) = {self.bowker_statistic:.4f}, p = {format_p(self.bowker_p)}",
                f"Note: {self.note}",
            ]
        )


def paired_ordinal_tests(
    frame: pd.DataFrame, test: str = "synthetic", reference: str = "real", source: str = "the reading table"
) -> PairedOrdinalResult:
    """Stuart–Maxwell and Bowker tests on the paired grade table (grades not used by either modality are dropped)."""
    design = reading_design(frame, [str(test), str(reference)], source)
    t_scores, r_scores = _pooled_pairs(design)
    grades = np.unique(np.concatenate([t_scores, r_scores]))
    index = {g: i for i, g in enumerate(grades)}
    table = np.zeros((len(grades), len(grades)), dtype=int)
    for r, t in zip(r_scores, t_scores):
        table[index[r], index[t]] += 1
    note = "pairs pooled over readers and treated as independent; for reader- and case-aware inference use VGC or the mean difference"
    if len(grades) < 2:
        sm = bw = None
        note = "every grade is the same: the tests are undefined. " + note
    else:
        square = SquareTable(table, shift_zeros=False)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm = square.homogeneity(method="stuart_maxwell")
            bw = square.symmetry(method="bowker")
        if not np.isfinite(sm.statistic):
            note = "the marginal covariance is singular (e.g. no discordant pairs): Stuart-Maxwell is undefined. " + note
    return PairedOrdinalResult(
        test_modality=design.modalities[0],
        reference_modality=design.modalities[1],
        grades=tuple(float(g) for g in grades),
        table=tuple(tuple(int(v) for v in row) for row in table),
        n_pairs=int(table.sum()),
        stuart_maxwell_statistic=float(sm.statistic) if sm else math.nan,
        stuart_maxwell_df=float(sm.df) if sm else math.nan,
        stuart_maxwell_p=float(sm.pvalue) if sm else math.nan,
        bowker_statistic=float(bw.statistic) if bw else math.nan,
        bowker_df=float(bw.df) if bw else math.nan,
        bowker_p=float(bw.pvalue) if bw else math.nan,
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# Mean paired difference


@dataclass(frozen=True)
class ReaderMeanDifference:
    reader: str
    difference: float
    std_error: float
    ci_lower: float
    ci_upper: float


@dataclass(frozen=True)
class MeanDifferenceResult(JsonResult):
    """Mean score test − reference, reader- and case-aware (RRRC), with per-reader differences (fixed reader, z)."""

    test_modality: str
    reference_modality: str
    n_readers: int
    n_cases: int
    mean_test: float
    mean_reference: float
    difference: float
    std_error: float
    df: float
    ci_lower: float
    ci_upper: float
    p_value: float
    per_reader: tuple[ReaderMeanDifference, ...]
    non_inferiority: NonInferiority | None
    alpha: float
    method: str

    def summary(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"Mean paired difference {self.test_modality} - {self.reference_modality}: {self.difference:.4f} "
            f"({self.mean_test:.4f} vs {self.mean_reference:.4f}), {level} CI [{self.ci_lower:.4f}, {self.ci_upper:.4f}], "
            f"df {self.df:.2f}, p = {format_p(self.p_value)} (two-sided)",
            f"Method: {self.method}",
        ]
        rows = [[r.reader, f"{r.difference:.4f}", f"{r.std_error:.4f}", f"[{r.ci_lower:.4f}, {r.ci_upper:.4f}]"] for r in self.per_reader]
        lines += format_table(["reader", "difference", "std.err", f"{level} CI"], rows)
        if self.non_inferiority is not None:
            n = self.non_inferiority
            lines.append(
                f"Non-inferiority (margin {n.margin:g}): one-sided p = {format_p(n.p_value)}; "
                f"{'non-inferior' if n.non_inferior else 'non-inferiority not shown'}"
            )
        return "\n".join(lines)


def mean_paired_difference(
    frame: pd.DataFrame,
    test: str = "synthetic",
    reference: str = "real",
    alpha: float = 0.05,
    margin: float | None = None,
    source: str = "the reading table",
) -> MeanDifferenceResult:
    """Mean grade difference test − reference with an Obuchowski–Rockette (RRRC, Hillis df) CI.

    ``margin`` (grade units, > 0) adds a one-sided non-inferiority test of H0: difference ≤ −margin.
    """
    design = _two_modalities(frame, test, reference, source)
    test, reference = design.modalities
    result = mrmc_from_design(design, MEAN_SCORE, alpha=alpha, margin=margin,
                              reference=reference if margin is not None else None)
    d = result.difference(test, reference, "rrrc") if result.rrrc.differences else None
    per_reader = tuple(
        ReaderMeanDifference(r.reader, r.estimate, r.std_error, r.ci_lower, r.ci_upper) for r in result.frrc.reader_differences
    )
    means = result.modality_fom
    return MeanDifferenceResult(
        test_modality=test,
        reference_modality=reference,
        n_readers=len(design.readers),
        n_cases=design.n_cases,
        mean_test=means[test],
        mean_reference=means[reference],
        difference=means[test] - means[reference],
        std_error=d.std_error if d else math.nan,
        df=d.df if d else math.nan,
        ci_lower=d.ci_lower if d else math.nan,
        ci_upper=d.ci_upper if d else math.nan,
        p_value=d.p_value if d else math.nan,
        per_reader=per_reader,
        non_inferiority=result.non_inferiority,
        alpha=alpha,
        method="Obuchowski-Rockette with FOM = mean score per reader and modality, case-jackknife covariances, "
        "Hillis df (random readers and random cases)",
    )
