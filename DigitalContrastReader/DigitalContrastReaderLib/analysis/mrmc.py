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
The design must be fully crossed (every reader reads every case in every modality); split-plot
and other unpaired designs are not handled here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.common.json_values import jsonable

from .long_table import crossed_scores

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
# Obuchowski–Rockette variance components


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


@dataclass(frozen=True)
class ORComponents:
    """Mean squares of the reader figures of merit and jackknife error covariances.

    ``var_r`` and ``var_tr`` are the OR variance components (ANOVA estimates; can be negative).
    Per-modality and per-reader tuples follow the modality and reader order of the analysis.
    """

    n_modalities: int
    n_readers: int
    n_cases: int
    ms_t: float
    ms_r: float
    ms_tr: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_r: float
    var_tr: float
    ms_r_per_modality: tuple[float, ...]
    var_error_per_modality: tuple[float, ...]
    cov2_per_modality: tuple[float, ...]
    var_error_per_reader: tuple[float, ...]
    cov1_per_reader: tuple[float, ...]


def or_components(theta: np.ndarray, theta_jack: np.ndarray) -> ORComponents:
    """OR mean squares and covariances from θ ``[modality, reader]`` and its jackknife ``[modality, reader, case]``."""
    n_mod, n_rdr, n_cases = theta_jack.shape
    dev = theta_jack - theta_jack.mean(axis=-1, keepdims=True)
    # cov[i, j, i', j'] over the case jackknife
    cov = np.einsum("ijk,lmk->ijlm", dev, dev) * ((n_cases - 1) / n_cases)
    same_mod = np.eye(n_mod, dtype=bool)[:, None, :, None]
    same_rdr = np.eye(n_rdr, dtype=bool)[None, :, None, :]
    var_error = _mean_or_nan(cov[same_mod & same_rdr])
    cov1 = _mean_or_nan(cov[~same_mod & same_rdr])
    cov2 = _mean_or_nan(cov[same_mod & ~same_rdr])
    cov3 = _mean_or_nan(cov[~same_mod & ~same_rdr])
    per_mod = [cov[i, :, i, :] for i in range(n_mod)]
    off_r = ~np.eye(n_rdr, dtype=bool)
    per_rdr = [cov[:, j, :, j] for j in range(n_rdr)]
    off_m = ~np.eye(n_mod, dtype=bool)

    mod_mean = theta.mean(axis=1)
    rdr_mean = theta.mean(axis=0)
    grand = theta.mean()
    ms_t = n_rdr * np.sum((mod_mean - grand) ** 2) / (n_mod - 1) if n_mod > 1 else math.nan
    ms_r = n_mod * np.sum((rdr_mean - grand) ** 2) / (n_rdr - 1) if n_rdr > 1 else math.nan
    if n_mod > 1 and n_rdr > 1:
        resid = theta - mod_mean[:, None] - rdr_mean[None, :] + grand
        ms_tr = float(np.sum(resid**2) / ((n_mod - 1) * (n_rdr - 1)))
        var_tr = ms_tr - var_error + cov1 + cov2 - cov3
        var_r = (ms_r - var_error - (n_mod - 1) * cov1 + cov2 + (n_mod - 1) * cov3 - var_tr) / n_mod
    else:
        ms_tr = var_tr = var_r = math.nan
    ms_r_i = tuple(
        float(np.sum((theta[i] - mod_mean[i]) ** 2) / (n_rdr - 1)) if n_rdr > 1 else math.nan for i in range(n_mod)
    )
    return ORComponents(
        n_modalities=n_mod,
        n_readers=n_rdr,
        n_cases=n_cases,
        ms_t=float(ms_t),
        ms_r=float(ms_r),
        ms_tr=float(ms_tr),
        var_error=var_error,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        var_r=float(var_r),
        var_tr=float(var_tr),
        ms_r_per_modality=ms_r_i,
        var_error_per_modality=tuple(float(np.diag(m).mean()) for m in per_mod),
        cov2_per_modality=tuple(_mean_or_nan(m[off_r]) for m in per_mod),
        var_error_per_reader=tuple(float(np.diag(m).mean()) for m in per_rdr),
        cov1_per_reader=tuple(_mean_or_nan(m[off_m]) for m in per_rdr),
    )


def rrrc_f_test(c: ORComponents) -> tuple[float, float, float, float]:
    """RRRC global test: ``(F, ndf, ddf_H, p)``; the error term is MS(TR) + J·max(Cov2 − Cov3, 0)."""
    n_mod, n_rdr = c.n_modalities, c.n_readers
    error_term = c.ms_tr + n_rdr * max(c.cov2 - c.cov3, 0.0)
    ndf = n_mod - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        f_value = c.ms_t / error_term if error_term > 0 else math.nan
        ddf = error_term**2 / (c.ms_tr**2 / ((n_mod - 1) * (n_rdr - 1))) if c.ms_tr > 0 else math.inf
    p_value = float(stats.f.sf(f_value, ndf, ddf)) if np.isfinite(f_value) else math.nan
    return float(f_value), float(ndf), float(ddf), p_value


# ---------------------------------------------------------------------------------------------
# Results


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

    @property
    def modality_fom(self) -> dict[str, float]:
        return {m: float(v) for m, v in zip(self.modalities, self.reader_fom.mean(axis=1))}

    def difference(self, modality_a: str, modality_b: str, analysis: str = "rrrc") -> Difference:
        """The ``modality_a − modality_b`` row of an analysis (sign flipped if stored the other way)."""
        return _find_difference(getattr(self, analysis.lower()), str(modality_a), str(modality_b))

    def to_dict(self) -> dict:
        out = {
            "method": "Obuchowski-Rockette with Hillis denominator degrees of freedom, jackknife covariances",
            "figure_of_merit": {"name": self.fom_name, "label": self.fom_label},
            "alpha": self.alpha,
            "design": {
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
                    [f"{d.modality_a} - {d.modality_b}", f"{d.estimate:.4f}", f"{d.std_error:.4f}", _df(d.df), f"{d.statistic:.3f}",
                     format_p(d.p_value), f"[{d.ci_lower:.4f}, {d.ci_upper:.4f}]"]
                    for d in analysis.differences
                ]
                lines += ["  " + x for x in format_table(["difference", "estimate", "std.err", "df", "t/z", "p", f"{level} CI"], rows)]
            rows = [
                [m.modality, f"{m.estimate:.4f}", f"{m.std_error:.4f}", _df(m.df), f"[{m.ci_lower:.4f}, {m.ci_upper:.4f}]"]
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


class JsonResult:
    """Mixin for result dataclasses: ``to_dict()`` is ``asdict`` made JSON-ready (NaN → None, inf → "inf")."""

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


def format_p(p: float) -> str:
    return "nan" if not np.isfinite(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _df(df: float) -> str:
    return "z" if np.isinf(df) else f"{df:.2f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned plain-text table lines (header, rule, rows)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*map(str, r)).rstrip() for r in rows
    ]


# ---------------------------------------------------------------------------------------------
# The three analyses


def interval(estimate: float, std_error: float, df: float, alpha: float) -> tuple[float, float, float, float]:
    """(statistic, two-sided p, lower, upper) for a t (finite df) or z (df = inf) interval."""
    dist = stats.norm if np.isinf(df) else stats.t(df)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = estimate / std_error if std_error > 0 else math.nan
    p_value = float(2 * dist.sf(abs(statistic))) if np.isfinite(statistic) else math.nan
    half = float(dist.ppf(1 - alpha / 2)) * std_error
    return float(statistic), p_value, estimate - half, estimate + half


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


def analyse_fom(
    theta: np.ndarray,
    theta_jack: np.ndarray,
    modalities: Sequence[str],
    readers: Sequence[str],
    alpha: float = 0.05,
) -> tuple[ORComponents, Analysis, Analysis, Analysis, tuple[str, ...]]:
    """RRRC, FRRC and RRFC from θ ``[modality, reader]`` and its case jackknife ``[modality, reader, case]``."""
    c = or_components(theta, theta_jack)
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
    modalities = tuple(str(m) for m in modalities)
    readers = tuple(str(r) for r in readers)
    n_cases = scores.shape[-1]
    theta = fom.values(scores, truth)
    theta_jack = fom.jackknife(scores, truth)
    components, rrrc, frrc, rrfc, notes = analyse_fom(theta, theta_jack, modalities, readers, alpha)
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
        ni = non_inferiority_test(_find_difference(rrrc, test, reference), margin, alpha)
    return MRMCResult(
        fom_name=fom.name,
        fom_label=fom.label,
        alpha=alpha,
        modalities=modalities,
        readers=readers,
        n_cases=n_cases,
        n_positive=int(np.sum(truth == 1)) if has_truth else None,
        n_negative=int(np.sum(truth == 0)) if has_truth else None,
        reader_fom=theta,
        components=components,
        rrrc=rrrc,
        frrc=frrc,
        rrfc=rrfc,
        non_inferiority=ni,
        notes=notes,
    )


def _find_difference(analysis: Analysis, modality_a: str, modality_b: str) -> Difference:
    for d in analysis.differences:
        if (d.modality_a, d.modality_b) == (modality_a, modality_b):
            return d
        if (d.modality_a, d.modality_b) == (modality_b, modality_a):
            return _flip(d)
    raise KeyError(f"no difference {modality_a} - {modality_b}")


def check_truth_for(fom: FigureOfMerit, truth: np.ndarray, source: str) -> None:
    """``InputError`` unless every case has a 0/1 truth (and, for AUC, at least two of each)."""
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
            f"the table has {int(np.sum(truth == 1))} and {int(np.sum(truth == 0))}.",
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
        frame: long table ``reader_id, case_id, modality, truth, score`` (fully crossed).
        fom: ``auc`` | ``mean`` | ``proportion`` | ``proportion_correct`` or a ``FigureOfMerit``.
        threshold: for ``proportion`` (score ≥ threshold is acceptable) and ``proportion_correct``.
        alpha: two-sided level of the confidence intervals (0.05 → 95% CIs).
        margin: non-inferiority margin δ > 0 in figure-of-merit units; needs ``reference``.
        reference, test: modality labels for the non-inferiority test Δ = test − reference.
        modalities: subset and order of modalities (default all, natural order).
        source: how errors name the table (a file name).
    """
    crossed = crossed_scores(frame, modalities, source)
    figure = figure_of_merit(fom, threshold) if isinstance(fom, str) else fom
    check_truth_for(figure, crossed.truth, source)
    if crossed.scores.shape[-1] < 2:
        raise InputError(f"{source}: the jackknife needs at least two cases; read more cases.", code="too_few_cases")
    return mrmc_from_arrays(
        crossed.scores,
        crossed.truth,
        figure,
        crossed.modalities,
        crossed.readers,
        alpha=alpha,
        margin=margin,
        reference=None if reference is None else str(reference),
        test=None if test is None else str(test),
    )
