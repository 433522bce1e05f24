"""Sample size of an MRMC study: readers × cases for a target power, from OR variance components.

The method is Hillis, Obuchowski & Berbaum, "Power estimation for multireader ROC methods: an
updated and unified approach", Acad Radiol 2011;18:129-142 (also Hillis & Schartz, J Med
Imaging 2018;5:045503), for the comparison of two modalities with effect size d (difference of the
reader-averaged figures of merit). From a pilot study with K* cases per reader and OR components
σ²_TR, Var, Cov1, Cov2, Cov3 (``or_variance.py``), a pivotal study of J readers and K cases has

- RRRC: den = σ²_TR⁺ + (K*/K)·[Var − Cov1 + (J − 1)·max(Cov2 − Cov3, 0)],
  ddf = den² / ([σ²_TR⁺ + (K*/K)·(Var − Cov1 − max(Cov2 − Cov3, 0))]² / (J − 1)),
  non-centrality λ = J·d² / (2·den); power = P(F(1, ddf; λ) > F_{1−α}(1, ddf));
- FRRC (readers fixed): den without σ²_TR; power = P(χ²(1; λ) > χ²_{1−α}(1));
- RRFC (cases fixed): den = σ²_TR⁺ + (K*/K)·(Var − Cov1 − max(Cov2 − Cov3, 0)), ddf = J − 1;

with σ²_TR⁺ = max(σ²_TR, 0). The variance terms scale with the number of cases each reader reads.

**Split-plot** (the scheduler's other design; ``reading_design.py``): G equal reader groups, each
reading its own K/G cases. Each reader's error terms then scale with K*/(K/G), only the J/G − 1
other readers of a reader's group share its cases, and E[MS(TR)] loses p·(Cov2 − Cov3) with
p = (J/G − 1)/(J − 1), the share of reader pairs in one group:
den = σ²_TR⁺ + (G·K*/K)·[Var − Cov1 + (J/G − 1)·max(Cov2 − Cov3, 0)] and
ddf = den² / ([σ²_TR⁺ + (G·K*/K)·(Var − Cov1 − p·max(Cov2 − Cov3, 0))]² / (J − 1)). G = 1 is the
formula above. Cov2 and Cov3 here are the within-group covariances of the pilot.

The number of cases for a target power is the smallest K (a multiple of G) reaching it, found by
stepping K up from 2 per group as RJafroc's ``SsSampleSizeKGivenJ`` and ``SsPowerTable`` do; the
tests reproduce RJafroc's published power table for the Van Dyke pilot to its printed digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from DigitalContrastLib.common.errors import JobError

from .formatting import JsonResult, format_table
from .or_variance import ORComponents

ANALYSES = ("RRRC", "FRRC", "RRFC")


@dataclass(frozen=True)
class PilotComponents(JsonResult):
    """OR variance components of a pilot study (figure-of-merit units, e.g. AUC²).

    Attributes:
        var_tr: modality × reader variance σ²_TR.
        var_error, cov1, cov2, cov3: error variance and covariances of a reader's figure of merit;
            cov2/cov3 between two readers reading the same cases.
        cases_per_reader: K*, the number of cases each pilot reader read.
        effect: the observed difference of the two modalities (None for published components).
        source: where the numbers come from (a file, a study, a paper).
    """

    var_tr: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    cases_per_reader: float
    effect: float | None = None
    source: str = ""

    @classmethod
    def from_components(cls, c: ORComponents, cases_per_reader: float, effect: float | None, source: str) -> PilotComponents:
        """From an analysis's components; a split-plot pilot gives its within-group Cov2/Cov3."""
        if c.n_modalities != 2:
            raise JobError(f"{source}: a sample size is planned for two modalities, the pilot has {c.n_modalities}; "
                           "choose two with --modalities.")
        if not c.n_readers >= 2:
            raise JobError(f"{source}: the pilot has {c.n_readers} reader; variance components need at least two readers.")
        crossed = c.same_group_pair_fraction >= 1
        cov2 = c.cov2 if crossed else c.cov2_within_group
        cov3 = c.cov3 if crossed else c.cov3_within_group
        if not (np.isfinite(cov2) and np.isfinite(cov3)):  # one reader per group: no reader pair shares cases
            cov2 = cov3 = 0.0
        var_tr = c.ms_tr - c.var_error + c.cov1 + c.same_group_pair_fraction * (cov2 - cov3)
        return cls(float(var_tr), c.var_error, c.cov1, float(cov2), float(cov3), float(cases_per_reader), effect, source)


@dataclass(frozen=True)
class PowerResult(JsonResult):
    """Power of one design. ``ddf`` is None for FRRC (a χ² test)."""

    analysis: str
    readers: int
    cases: int
    groups: int
    effect: float
    alpha: float
    power: float
    noncentrality: float
    ddf: float | None
    critical_value: float


def _check(readers: int, groups: int, analysis: str, alpha: float) -> None:
    if analysis not in ANALYSES:
        raise JobError(f"unknown analysis {analysis!r}; choose one of {', '.join(ANALYSES)}.")
    if not 0 < alpha < 1:
        raise JobError(f"alpha must be between 0 and 1, not {alpha}; 0.05 is usual.")
    if groups < 1 or readers < 2 or readers % groups:
        raise JobError(f"{readers} readers cannot form {groups} equal reader groups of one or more readers; "
                       "give a number of readers that is a multiple of --groups (and at least 2).")


def power_for(
    pilot: PilotComponents,
    readers: int,
    cases: int | np.ndarray,
    effect: float,
    alpha: float = 0.05,
    analysis: str = "RRRC",
    groups: int = 1,
) -> PowerResult | list[PowerResult]:
    """Power to detect ``effect`` with ``readers`` and ``cases`` (a number, or an array of numbers).

    Args:
        pilot: the variance components.
        readers: J, a multiple of ``groups``.
        cases: K, the total number of cases (each group reads K/G of them).
        effect: the difference of the two modalities' reader-averaged figures of merit.
        alpha: two-sided level of the test.
        analysis: ``RRRC`` (random readers and cases), ``FRRC`` (fixed readers) or ``RRFC`` (fixed cases).
        groups: G, equal split-plot reader groups (1 = fully crossed).
    """
    _check(readers, groups, analysis, alpha)
    k = np.atleast_1d(np.asarray(cases, dtype=float))
    j, g = float(readers), float(groups)
    scale = g * pilot.cases_per_reader / k
    cov23 = max(pilot.cov2 - pilot.cov3, 0.0)
    var_tr = max(pilot.var_tr, 0.0)
    share = (j / g - 1) / (j - 1)
    error = pilot.var_error - pilot.cov1
    if analysis == "RRRC":
        den = var_tr + scale * (error + (j / g - 1) * cov23)
        ddf = den**2 / ((var_tr + scale * (error - share * cov23)) ** 2 / (j - 1))
    elif analysis == "FRRC":
        den = scale * (error + (j / g - 1) * cov23)
        ddf = None
    else:
        den = var_tr + scale * (error - share * cov23)
        ddf = np.full_like(k, j - 1)
    ncp = j * effect**2 / (2 * den)
    if ddf is None:
        critical = np.full_like(k, stats.chi2.ppf(1 - alpha, 1))
        power = stats.ncx2.sf(critical, 1, ncp)
    else:
        critical = stats.f.ppf(1 - alpha, 1, ddf)
        power = stats.ncf.sf(critical, 1, ddf, ncp)
    results = [
        PowerResult(analysis, readers, int(kk), groups, float(effect), float(alpha), float(p), float(n),
                    None if ddf is None else float(d), float(c))
        for kk, p, n, d, c in zip(k, power, ncp, ddf if ddf is not None else k, critical)
    ]
    return results if np.ndim(cases) else results[0]


def cases_for_power(
    pilot: PilotComponents,
    readers: int,
    effect: float,
    target: float = 0.8,
    alpha: float = 0.05,
    analysis: str = "RRRC",
    groups: int = 1,
    max_cases: int = 2000,
) -> PowerResult | None:
    """The smallest number of cases (a multiple of ``groups``, from 2 per group up) whose power is above
    ``target``; None when even ``max_cases`` does not reach it."""
    if not 0 < target < 1:
        raise JobError(f"the target power must be between 0 and 1, not {target}; 0.8 is usual.")
    if not effect or not np.isfinite(effect):
        raise JobError(f"the effect size must be a non-zero number, not {effect!r}; give --effect D (e.g. 0.05 in AUC units).")
    _check(readers, groups, analysis, alpha)
    candidates = np.arange(2 * groups, max_cases + 1, groups)
    results = power_for(pilot, readers, candidates, effect, alpha, analysis, groups)
    above = [r for r in results if r.power > target]
    return above[0] if above else None


@dataclass(frozen=True)
class ReadingCalendar(JsonResult):
    """How long each reader's part takes: ``waves`` passes over the reader's cases (one per source of
    a single-image task, one per preference task), ``washout_days`` between consecutive waves
    (``study/schedule.py``), and optionally ``reads_per_day`` for the reading itself."""

    waves: int
    washout_days: float
    reads_per_day: float | None = None

    def reads(self, cases_per_reader: int) -> int:
        return self.waves * int(cases_per_reader)

    def days(self, cases_per_reader: int) -> float:
        """Calendar days from the first to the last read: the washouts, plus the reading days if known."""
        washouts = (self.waves - 1) * self.washout_days
        if not self.reads_per_day:
            return washouts
        return washouts + self.waves * math.ceil(cases_per_reader / self.reads_per_day)

    def describe(self) -> str:
        pace = f", {self.reads_per_day:g} reads a day" if self.reads_per_day else " (washouts only: give reads per day to add the reading)"
        return f"{self.waves} waves per reader, {self.washout_days:g}-day washout between waves{pace}"


@dataclass(frozen=True)
class SampleSizeTable(JsonResult):
    """Cases needed per number of readers (``cases`` None where ``max_cases`` is not enough)."""

    analysis: str
    effect: float
    target_power: float
    alpha: float
    groups: int
    max_cases: int
    rows: tuple[PowerResult | None, ...]
    readers: tuple[int, ...]
    pilot: PilotComponents
    calendar: ReadingCalendar | None = None

    def summary(self) -> str:
        design = "fully crossed" if self.groups == 1 else f"split-plot, {self.groups} reader groups each reading K/{self.groups} cases"
        lines = [
            f"Sample size ({self.analysis}, Hillis-Obuchowski-Berbaum 2011): effect {self.effect:+.4g}, "
            f"power > {self.target_power:g} at alpha {self.alpha:g}; {design}",
            f"Variance components ({self.pilot.source}): var_TR {self.pilot.var_tr:.6g}, Var {self.pilot.var_error:.6g}, "
            f"Cov1 {self.pilot.cov1:.6g}, Cov2 {self.pilot.cov2:.6g}, Cov3 {self.pilot.cov3:.6g}; "
            f"{self.pilot.cases_per_reader:g} cases per pilot reader",
        ]
        if self.calendar is not None:
            lines.append(f"Reading time: {self.calendar.describe()}")
        rows = []
        for j, r in zip(self.readers, self.rows):
            if r is None:
                rows.append([str(j), f">{self.max_cases}", "", "", ""] + (["", ""] if self.calendar else []))
                continue
            per_reader = r.cases // self.groups
            row = [str(j), str(r.cases), str(per_reader), f"{r.power:.3f}", "chi2" if r.ddf is None else f"{r.ddf:.1f}"]
            if self.calendar is not None:
                days = self.calendar.days(per_reader)
                row += [str(self.calendar.reads(per_reader)), f"{days:.0f} (~{days / 30.44:.1f} months)"]
            rows.append(row)
        headers = ["readers", "cases", "cases/reader", "power", "ddf"]
        headers += ["reads/reader", "days per reader"] if self.calendar else []
        lines += format_table(headers, rows)
        return "\n".join(lines)


def sample_size_table(
    pilot: PilotComponents,
    readers: Sequence[int],
    effect: float,
    target: float = 0.8,
    alpha: float = 0.05,
    analysis: str = "RRRC",
    groups: int = 1,
    max_cases: int = 2000,
    calendar: ReadingCalendar | None = None,
) -> SampleSizeTable:
    """:func:`cases_for_power` for each number of readers (and, with ``calendar``, each reader's reading time)."""
    rows = tuple(cases_for_power(pilot, j, effect, target, alpha, analysis, groups, max_cases) for j in readers)
    return SampleSizeTable(analysis, float(effect), float(target), float(alpha), groups, max_cases, rows,
                           tuple(int(j) for j in readers), pilot, calendar)


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros dropped (as R's ``signif`` prints)."""
    return f"{value:.{digits}g}"
