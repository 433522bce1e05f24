"""Multi-reader multi-case (MRMC) analysis: Obuchowski–Rockette with Hillis degrees of freedom.

A figure of merit θ_ij (modality i, reader j) is computed over the K cases; its error covariances
come from the case jackknife, Cov = (K−1)/K · Σ_k (θ(−k) − mean)(θ'(−k) − mean), averaged by type:
Var (same modality, same reader), Cov1 (other modality, same reader), Cov2 (same modality, other
reader), Cov3 (both different). Three analyses follow (Obuchowski & Rockette 1995; Hillis et al.
2005; Hillis 2007; Hillis, Berbaum & Metz 2008), with the conventions of OR-DBM MRMC 2.5 and
RJafroc, whose published Van Dyke and Federica-Zanca outputs the tests reproduce:

- RRRC (random readers, random cases): F = MS(T) / [MS(TR) + J·max(Cov2 − Cov3, 0)] on
  (I − 1, ddf_H) with Hillis ddf_H = [MS(TR) + J·max(Cov2 − Cov3, 0)]² / [MS(TR)² / ((I−1)(J−1))].
  Single-modality CIs use that modality's MS(R) and Cov2: SE² = [MS(R_i) + J·max(Cov2_i, 0)] / J.
- FRRC (fixed readers, random cases): χ² = (I−1)·MS(T) / [Var − Cov1 + (J−1)·max(Cov2 − Cov3, 0)],
  normal-theory CIs; single-reader differences use that reader's Var and Cov1.
- RRFC (random readers, fixed cases): F = MS(T) / MS(TR) on (I − 1, (I−1)(J−1)): a
  repeated-measures ANOVA of the reader figures of merit.

The figure of merit is pluggable (``FigureOfMerit``): ROC AUC (trapezoidal = Wilcoxon), mean score,
proportion acceptable (score ≥ threshold), proportion correct, or any function of the scores.

Designs: fully crossed (every reader reads every case in every modality) and split-plot (reader
groups, each reading its own cases in every modality; Obuchowski, Gallas & Hillis 2012; Hillis
2014). The design is found from the reads (:mod:`~DigitalContrastReaderLib.analysis.reading_design`);
in a split-plot the jackknife runs within each group and readers of different groups have zero
error covariance, after which the formulas above hold unchanged (see ``or_variance.py``).

The variance components are :mod:`~DigitalContrastReaderLib.analysis.or_variance`, the result
objects :mod:`~DigitalContrastReaderLib.analysis.mrmc_result`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from DigitalContrastLib.common.errors import InputError, JobError

from .formatting import interval
from .mrmc_result import (
    Analysis,
    Difference,
    GlobalTest,
    ModalityEstimate,
    MRMCResult,
    NonInferiority,
    ReaderDifference,
    find_difference,
)
from .or_variance import ORComponents, or_components_from_covariance, rrrc_f_test
from .reading_design import ReaderGroup, ReadingDesign, crossed_design, reading_design

# ---------------------------------------------------------------------------------------------
# Figures of merit. Each maps scores [..., case] (+ truth [case]) to a value [...] and, for the
# jackknife, to the leave-one-case-out values [..., case]. Closed forms make the jackknife O(K).


def _auc_kernel(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilcoxon kernel ψ [..., positive, negative]: 1 if the positive case scores higher, ½ if tied."""
    positive = np.flatnonzero(truth == 1)
    negative = np.flatnonzero(truth == 0)
    pos = scores[..., positive][..., :, None]
    neg = scores[..., negative][..., None, :]
    psi = (pos > neg).astype(float) + 0.5 * (pos == neg)
    return psi, positive, negative


def auc_values(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Empirical (trapezoidal) ROC AUC = Wilcoxon–Mann–Whitney statistic, over the last axis."""
    psi, _, _ = _auc_kernel(scores, truth)
    return psi.mean(axis=(-2, -1))


def auc_leave_one_out(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AUC with each case left out in turn [..., case], from the kernel's row and column sums."""
    psi, positive, negative = _auc_kernel(scores, truth)
    n1, n0 = len(positive), len(negative)
    total = psi.sum(axis=(-2, -1))[..., None]
    out = np.empty(scores.shape, dtype=float)
    out[..., positive] = (total - psi.sum(axis=-1)) / ((n1 - 1) * n0)
    out[..., negative] = (total - psi.sum(axis=-2)) / (n1 * (n0 - 1))
    return out


def _mean_values(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


def _mean_leave_one_out(values: np.ndarray) -> np.ndarray:
    k = values.shape[-1]
    return (values.sum(axis=-1, keepdims=True) - values) / (k - 1)


@dataclass(frozen=True)
class FigureOfMerit:
    """A reader performance measure over cases.

    Attributes:
        name: short identifier (``auc``, ``mean``, ``proportion``, ``proportion_correct`` or yours).
        label: what it is, for tables.
        needs_truth: whether every case needs a 0/1 truth.
        value: ``f(scores[..., case], truth[case]) -> [...]``.
        leave_one_out: optional fast ``f(scores, truth) -> [..., case]`` (value without each case);
            without it the jackknife calls ``value`` once per case.
    """

    name: str
    label: str
    needs_truth: bool
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    leave_one_out: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def values(self, scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
        return np.asarray(self.value(scores, truth), dtype=float)

    def jackknife(self, scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Leave-one-case-out values ``[..., case]``."""
        if self.leave_one_out is not None:
            return np.asarray(self.leave_one_out(scores, truth), dtype=float)
        k = scores.shape[-1]
        keep = ~np.eye(k, dtype=bool)
        return np.stack([self.values(scores[..., keep[c]], truth[keep[c]]) for c in range(k)], axis=-1)


AUC = FigureOfMerit("auc", "ROC AUC (trapezoidal / Wilcoxon)", True, auc_values, auc_leave_one_out)
MEAN_SCORE = FigureOfMerit("mean", "mean score", False, lambda s, t: _mean_values(s), lambda s, t: _mean_leave_one_out(s))


def proportion_acceptable(threshold: float) -> FigureOfMerit:
    """Proportion of cases scored ≥ ``threshold`` (e.g. 'diagnostic quality' on a 1–5 scale: threshold 3)."""
    return FigureOfMerit(
        "proportion",
        f"proportion of scores >= {threshold:g}",
        False,
        lambda s, t: _mean_values((s >= threshold).astype(float)),
        lambda s, t: _mean_leave_one_out((s >= threshold).astype(float)),
    )


def proportion_correct(threshold: float = 0.5) -> FigureOfMerit:
    """Proportion of cases where the call (score ≥ ``threshold``) equals the truth (0/1)."""

    def correct(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return ((s >= threshold) == (t == 1)).astype(float)

    return FigureOfMerit(
        "proportion_correct",
        f"proportion correct (call = score >= {threshold:g})",
        True,
        lambda s, t: _mean_values(correct(s, t)),
        lambda s, t: _mean_leave_one_out(correct(s, t)),
    )


FOM_NAMES = ("auc", "mean", "proportion", "proportion_correct")


def figure_of_merit(name: str, threshold: float | None = None) -> FigureOfMerit:
    """The named figure of merit; ``proportion`` needs ``threshold``, ``proportion_correct`` defaults to 0.5."""
    if name == "auc":
        return AUC
    if name == "mean":
        return MEAN_SCORE
    if name == "proportion":
        if threshold is None:
            raise JobError("the 'proportion' figure of merit needs a threshold; give --threshold T (scores >= T count as acceptable).")
        return proportion_acceptable(threshold)
    if name == "proportion_correct":
        return proportion_correct(0.5 if threshold is None else threshold)
    raise JobError(f"unknown figure of merit {name!r}; choose one of {', '.join(FOM_NAMES)}.")


# ---------------------------------------------------------------------------------------------
# The three analyses (variance components: or_variance.py; result objects: mrmc_result.py)


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


def _differences(theta, labels, se: float, df: float, alpha: float) -> tuple[Difference, ...]:
    mod_mean = theta.mean(axis=1)
    out = []
    for a, b in _pairs(len(labels)):
        estimate = float(mod_mean[a] - mod_mean[b])
        statistic, p_value, lower, upper = interval(estimate, se, df, alpha)
        out.append(Difference(labels[a], labels[b], estimate, float(se), float(df), statistic, p_value, lower, upper))
    return tuple(out)


def _estimate(modality: str, estimate: float, se: float, df: float, alpha: float) -> ModalityEstimate:
    _, _, lower, upper = interval(estimate, se, df, alpha)
    return ModalityEstimate(modality, float(estimate), float(se), float(df), lower, upper)


def fom_per_group(fom: FigureOfMerit) -> Callable[[ReaderGroup], tuple[np.ndarray, np.ndarray]]:
    """``group -> (θ [modality, reader], jackknife [modality, reader, case])`` of ``fom`` for :meth:`ReadingDesign.covariance`."""
    return lambda group: (fom.values(group.scores, group.truth), fom.jackknife(group.scores, group.truth))


def analyse_design(
    design: ReadingDesign,
    per_group: Callable[[ReaderGroup], tuple[np.ndarray, np.ndarray]],
    modalities: Sequence[str],
    alpha: float = 0.05,
) -> tuple[np.ndarray, ORComponents, Analysis, Analysis, Analysis, tuple[str, ...]]:
    """θ ``[modality, reader]`` and RRRC, FRRC, RRFC of a figure of merit computed group by group (``per_group``)."""
    theta, cov = design.covariance(per_group)
    return (theta, *analyse_fom(theta, cov, modalities, design.readers, alpha, n_cases=design.n_cases,
                                same_group=design.same_group()))


def analyse_fom(
    theta: np.ndarray,
    covariance: np.ndarray,
    modalities: Sequence[str],
    readers: Sequence[str],
    alpha: float = 0.05,
    n_cases: int = 0,
    same_group: np.ndarray | None = None,
) -> tuple[ORComponents, Analysis, Analysis, Analysis, tuple[str, ...]]:
    """RRRC, FRRC and RRFC from θ ``[modality, reader]`` and its error covariance ``[modality, reader, modality, reader]``
    (``same_group[reader, reader]``: reader pairs of one split-plot group; default all)."""
    c = or_components_from_covariance(theta, covariance, n_cases, same_group)
    n_mod, n_rdr = c.n_modalities, c.n_readers
    mod_mean = theta.mean(axis=1)
    notes: list[str] = []
    if n_rdr < 2:
        notes.append("one reader: the random-reader analyses (RRRC, RRFC) need at least two readers.")
    if n_mod < 2:
        notes.append("one modality: only single-modality confidence intervals are reported.")

    # RRRC
    rrrc_test, rrrc_diffs = None, ()
    if n_mod > 1 and n_rdr > 1:
        f_value, ndf, ddf, p_value = rrrc_f_test(c)
        error_term = c.ms_tr + n_rdr * max(c.cov2 - c.cov3, 0.0)
        rrrc_test = GlobalTest("F", f_value, ndf, ddf, p_value, error_term)
        rrrc_diffs = _differences(theta, modalities, math.sqrt(2 / n_rdr * error_term), ddf, alpha)
    rrrc_mods = []
    for i, m in enumerate(modalities):
        term = c.ms_r_per_modality[i] + n_rdr * max(c.cov2_per_modality[i], 0.0)
        if n_rdr > 1:
            df = term**2 / (c.ms_r_per_modality[i] ** 2 / (n_rdr - 1)) if c.ms_r_per_modality[i] > 0 else math.inf
            rrrc_mods.append(_estimate(m, mod_mean[i], math.sqrt(term / n_rdr), df, alpha))
    rrrc = Analysis("RRRC", "random readers, random cases (results generalise to both populations)", rrrc_test, rrrc_diffs, tuple(rrrc_mods))

    # FRRC
    frrc_test, frrc_diffs, reader_diffs = None, (), []
    cov23 = max(c.cov2 - c.cov3, 0.0) if n_rdr > 1 else 0.0
    if n_mod > 1:
        error_term = c.var_error - c.cov1 + (n_rdr - 1) * cov23
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = (n_mod - 1) * c.ms_t / error_term if error_term > 0 else math.nan
        p_value = float(stats.chi2.sf(chi2, n_mod - 1)) if np.isfinite(chi2) else math.nan
        frrc_test = GlobalTest("chi2", float(chi2), float(n_mod - 1), None, p_value, float(error_term))
        frrc_diffs = _differences(theta, modalities, math.sqrt(max(2 / n_rdr * error_term, 0.0)), math.inf, alpha)
        for j, r in enumerate(readers):
            se = math.sqrt(max(2 * (c.var_error_per_reader[j] - c.cov1_per_reader[j]), 0.0))
            for a, b in _pairs(n_mod):
                estimate = float(theta[a, j] - theta[b, j])
                statistic, p, lower, upper = interval(estimate, se, math.inf, alpha)
                reader_diffs.append(ReaderDifference(r, modalities[a], modalities[b], estimate, se, statistic, p, lower, upper))
    frrc_mods = []
    for i, m in enumerate(modalities):
        cov2_i = max(c.cov2_per_modality[i], 0.0) if n_rdr > 1 else 0.0
        se = math.sqrt((c.var_error_per_modality[i] + (n_rdr - 1) * cov2_i) / n_rdr)
        frrc_mods.append(_estimate(m, mod_mean[i], se, math.inf, alpha))
    frrc = Analysis(
        "FRRC",
        "fixed readers, random cases (results apply to these readers only)",
        frrc_test,
        frrc_diffs,
        tuple(frrc_mods),
        tuple(reader_diffs),
    )

    # RRFC
    rrfc_test, rrfc_diffs = None, ()
    if n_mod > 1 and n_rdr > 1:
        ddf = float((n_mod - 1) * (n_rdr - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            f_value = c.ms_t / c.ms_tr if c.ms_tr > 0 else math.nan
        p_value = float(stats.f.sf(f_value, n_mod - 1, ddf)) if np.isfinite(f_value) else math.nan
        rrfc_test = GlobalTest("F", float(f_value), float(n_mod - 1), ddf, p_value, c.ms_tr)
        rrfc_diffs = _differences(theta, modalities, math.sqrt(2 / n_rdr * c.ms_tr), ddf, alpha)
    rrfc_mods = [
        _estimate(m, mod_mean[i], math.sqrt(c.ms_r_per_modality[i] / n_rdr), float(n_rdr - 1), alpha)
        for i, m in enumerate(modalities)
        if n_rdr > 1
    ]
    rrfc = Analysis("RRFC", "random readers, fixed cases (results apply to these cases only)", rrfc_test, rrfc_diffs, tuple(rrfc_mods))
    return c, rrrc, frrc, rrfc, tuple(notes)


def non_inferiority_test(difference: Difference, margin: float, alpha: float = 0.05) -> NonInferiority:
    """One-sided non-inferiority test of Δ = ``difference.modality_a − difference.modality_b`` (test − reference)."""
    if not margin > 0:
        raise JobError(f"the non-inferiority margin must be a positive number, not {margin!r}; give e.g. --margin 0.05.")
    dist = stats.norm if np.isinf(difference.df) else stats.t(difference.df)
    statistic = (difference.estimate + margin) / difference.std_error if difference.std_error > 0 else math.nan
    p_value = float(dist.sf(statistic)) if np.isfinite(statistic) else math.nan
    return NonInferiority(
        test_modality=difference.modality_a,
        reference_modality=difference.modality_b,
        margin=float(margin),
        difference=difference.estimate,
        std_error=difference.std_error,
        df=difference.df,
        statistic=float(statistic),
        p_value=p_value,
        sidedness="one-sided",
        alpha_one_sided=alpha / 2,
        ci_lower=difference.ci_lower,
        non_inferior=bool(difference.ci_lower > -margin),
        hypothesis=f"H0: {difference.modality_a} - {difference.modality_b} <= -{margin:g} vs H1: > -{margin:g}",
    )


def mrmc_from_arrays(
    scores: np.ndarray,
    truth: np.ndarray,
    fom: FigureOfMerit,
    modalities: Sequence[str],
    readers: Sequence[str],
    alpha: float = 0.05,
    margin: float | None = None,
    reference: str | None = None,
    test: str | None = None,
) -> MRMCResult:
    """The analysis on a crossed array ``scores[modality, reader, case]`` with ``truth[case]`` (0/1/NaN)."""
    return mrmc_from_design(crossed_design(scores, truth, modalities, readers), fom, alpha, margin, reference, test)


def mrmc_from_design(
    design: ReadingDesign,
    fom: FigureOfMerit,
    alpha: float = 0.05,
    margin: float | None = None,
    reference: str | None = None,
    test: str | None = None,
) -> MRMCResult:
    """The analysis of a fully crossed or split-plot design (:func:`~.reading_design.reading_design`)."""
    modalities, readers = design.modalities, design.readers
    theta, components, rrrc, frrc, rrfc, notes = analyse_design(design, fom_per_group(fom), modalities, alpha)
    truth = design.truth
    has_truth = not np.isnan(truth).any()
    ni = None
    if margin is not None:
        if reference is None:
            raise JobError("a non-inferiority margin needs the reference modality; give --reference MODALITY (e.g. real).")
        if reference not in modalities:
            raise JobError(f"reference modality {reference!r} is not in the data ({', '.join(modalities)}); pick one of those.")
        others = [m for m in modalities if m != reference]
        if test is None:
            if len(others) != 1:
                raise JobError("with more than two modalities, name the modality tested for non-inferiority (--test MODALITY).")
            test = others[0]
        if rrrc.test is None:
            raise JobError("the non-inferiority test needs at least two readers and two modalities.")
        ni = non_inferiority_test(find_difference(rrrc, test, reference), margin, alpha)
    return MRMCResult(
        fom_name=fom.name,
        fom_label=fom.label,
        alpha=alpha,
        modalities=modalities,
        readers=readers,
        n_cases=design.n_cases,
        n_positive=int(np.sum(truth == 1)) if has_truth else None,
        n_negative=int(np.sum(truth == 0)) if has_truth else None,
        reader_fom=theta,
        components=components,
        rrrc=rrrc,
        frrc=frrc,
        rrfc=rrfc,
        non_inferiority=ni,
        notes=notes,
        design=design.describe(),
        reader_groups=tuple(g.readers for g in design.groups),
    )


def check_truth_for(fom: FigureOfMerit, truth: np.ndarray, source: str, where: str = "the table has") -> None:
    """``InputError`` unless every case has a 0/1 truth (and, for AUC, at least two of each in ``where``)."""
    if not fom.needs_truth:
        return
    if np.isnan(truth).any():
        raise InputError(
            f"{source}: {int(np.isnan(truth).sum())} case(s) have no truth but the figure of merit '{fom.name}' needs it; "
            "fill in truth 0/1 for every case or choose --fom mean / proportion.",
            code="missing_truth",
        )
    if fom.name == "auc" and (np.sum(truth == 1) < 2 or np.sum(truth == 0) < 2):
        raise InputError(
            f"{source}: the AUC needs at least two positive (truth 1) and two negative (truth 0) cases; "
            f"{where} {int(np.sum(truth == 1))} and {int(np.sum(truth == 0))}.",
            code="one_class",
        )


def mrmc_analysis(
    frame: pd.DataFrame,
    fom: str | FigureOfMerit = "auc",
    threshold: float | None = None,
    alpha: float = 0.05,
    margin: float | None = None,
    reference: str | None = None,
    test: str | None = None,
    modalities: Sequence[str] | None = None,
    source: str = "the reading table",
) -> MRMCResult:
    """Obuchowski–Rockette–Hillis MRMC analysis of a long reading table.

    Args:
        frame: long table ``reader_id, case_id, modality, truth, score`` (fully crossed or split-plot).
        fom: ``auc`` | ``mean`` | ``proportion`` | ``proportion_correct`` or a ``FigureOfMerit``.
        threshold: for ``proportion`` (score ≥ threshold is acceptable) and ``proportion_correct``.
        alpha: two-sided level of the confidence intervals (0.05 → 95% CIs).
        margin: non-inferiority margin δ > 0 in figure-of-merit units; needs ``reference``.
        reference, test: modality labels for the non-inferiority test Δ = test − reference.
        modalities: subset and order of modalities (default all, natural order).
        source: how errors name the table (a file name).
    """
    design = reading_design(frame, modalities, source)
    figure = figure_of_merit(fom, threshold) if isinstance(fom, str) else fom
    for group in design.groups:
        where = f"the cases of readers {', '.join(group.readers)}" if design.is_split_plot else "the table"
        check_truth_for(figure, group.truth, source, where + (" have" if design.is_split_plot else " has"))
        if len(group.cases) < 2:
            raise InputError(f"{source}: the jackknife needs at least two cases in {where}; read more cases.", code="too_few_cases")
    return mrmc_from_design(
        design,
        figure,
        alpha=alpha,
        margin=margin,
        reference=None if reference is None else str(reference),
        test=None if test is None else str(test),
    )
