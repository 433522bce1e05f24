"""Inter-reader agreement: Cohen's kappa (unweighted, linear, quadratic), Fleiss' kappa,
Krippendorff's alpha (nominal, ordinal, interval) and the six Shrout–Fleiss ICCs.

Thin, checked wrappers around the reference implementations — statsmodels (Cohen with its
asymptotic standard error, Fleiss), ``krippendorff`` and pingouin (ICC) — plus one function that
computes them all from the long reading table for one modality (readers as raters, cases as
subjects). Conventions:

- Weighted Cohen's kappa scores categories by their values: linear weights |i − j|, quadratic
  (i − j)² (Cicchetti–Allison and Fleiss–Cohen), so pass ``categories`` = the whole scale when a
  grade was never used (otherwise it has no row in the table, which changes nothing for the
  value-based weights but is shown in the table).
- Fleiss' kappa needs the same number of ratings per case; Krippendorff's alpha allows missing
  ratings (NaN); the ICCs use cases read by every reader only.
- ICC names follow Shrout & Fleiss (1979): ICC(1,1) one-way random, ICC(2,1) two-way random
  (absolute agreement), ICC(3,1) two-way mixed (consistency); (·,k) are the means of k readers.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from DigitalContrastLib.common.errors import InputError

from .formatting import JsonResult, format_table
from .long_table import validate_long_table

WEIGHTS = (None, "linear", "quadratic")


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa for two raters; ``std_error`` is the asymptotic SE (NaN where statsmodels has none)."""

    weights: str
    kappa: float
    std_error: float
    ci_lower: float
    ci_upper: float
    p_value: float  # H0: kappa = 0, two-sided
    n: int


def contingency_table(ratings_a: Sequence[float], ratings_b: Sequence[float], categories: Sequence[float] | None = None):
    """Square table (rows: rater a, columns: rater b) over ``categories`` (default: the values seen)."""
    a = np.asarray(ratings_a, dtype=float)
    b = np.asarray(ratings_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("the two raters must rate the same subjects")
    cats = np.unique(np.concatenate([a, b])) if categories is None else np.asarray(categories, dtype=float)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)), dtype=float)
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    return table, cats


def cohen_kappa(
    ratings_a: Sequence[float],
    ratings_b: Sequence[float],
    weights: str | None = None,
    categories: Sequence[float] | None = None,
    alpha: float = 0.05,
) -> Kappa:
    """Cohen's kappa (``weights`` None, ``linear`` or ``quadratic``) with SE and CI from statsmodels."""
    from statsmodels.stats.inter_rater import cohens_kappa

    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    table, cats = contingency_table(ratings_a, ratings_b, categories)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate tables give NaN standard errors
        res = cohens_kappa(table) if weights is None else cohens_kappa(table, weights=cats, wt=weights)
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2)
    se = float(res.std_kappa)
    se0 = float(res.std_kappa0)
    kappa = float(res.kappa)
    p_value = float(2 * stats.norm.sf(abs(kappa / se0))) if se0 > 0 else math.nan
    return Kappa(weights or "none", kappa, se, kappa - z * se, kappa + z * se, p_value, int(table.sum()))


def fleiss_kappa_from_ratings(ratings: np.ndarray, categories: Sequence[float] | None = None) -> float:
    """Fleiss' kappa from ``ratings[subject, rater]`` (same number of raters per subject, no NaN)."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    ratings = np.asarray(ratings, dtype=float)
    cats = np.unique(ratings) if categories is None else np.asarray(categories, dtype=float)
    counts = np.stack([(ratings == c).sum(axis=1) for c in cats], axis=1)
    return float(fleiss_kappa(counts, method="fleiss"))


def krippendorff_alpha(
    reliability_data: np.ndarray, level: str = "ordinal", categories: Sequence[float] | None = None
) -> float:
    """Krippendorff's alpha of ``reliability_data[rater, unit]`` (NaN = missing) at ``level``
    (``nominal``, ``ordinal``, ``interval`` or ``ratio``); ``categories`` = the whole scale
    (matters for ``ordinal``, whose distances count the grades in between)."""
    import krippendorff

    return float(
        krippendorff.alpha(
            reliability_data=np.asarray(reliability_data, dtype=float),
            level_of_measurement=level,
            value_domain=None if categories is None else np.asarray(categories, dtype=float),
        )
    )


_ICC_NAMES = {
    "ICC1": "ICC(1,1)", "ICC(1,1)": "ICC(1,1)",
    "ICC2": "ICC(2,1)", "ICC(A,1)": "ICC(2,1)",
    "ICC3": "ICC(3,1)", "ICC(C,1)": "ICC(3,1)",
    "ICC1k": "ICC(1,k)", "ICC(1,k)": "ICC(1,k)",
    "ICC2k": "ICC(2,k)", "ICC(A,k)": "ICC(2,k)",
    "ICC3k": "ICC(3,k)", "ICC(C,k)": "ICC(3,k)",
}


@dataclass(frozen=True)
class ICC:
    form: str  # Shrout–Fleiss name, e.g. ICC(2,1)
    value: float
    f_statistic: float
    df1: float
    df2: float
    p_value: float
    ci_lower: float  # 95%, as pingouin computes it
    ci_upper: float


def intraclass_correlations(ratings: np.ndarray) -> tuple[ICC, ...]:
    """The six Shrout–Fleiss ICCs of ``ratings[subject, rater]`` (complete), via ``pingouin.intraclass_corr``."""
    import pingouin

    ratings = np.asarray(ratings, dtype=float)
    n_subjects, n_raters = ratings.shape
    long = pd.DataFrame(
        {
            "subject": np.repeat(np.arange(n_subjects), n_raters),
            "rater": np.tile(np.arange(n_raters), n_subjects),
            "rating": ratings.ravel(),
        }
    )
    with warnings.catch_warnings():  # pingouin 0.5-0.7 call a pandas API that pandas 3 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        table = pingouin.intraclass_corr(data=long, targets="subject", raters="rater", ratings="rating")
    out = []
    for _, row in table.iterrows():
        lower, upper = row["CI95"] if "CI95" in row else row["CI95%"]
        out.append(
            ICC(_ICC_NAMES[str(row["Type"])], float(row["ICC"]), float(row["F"]), float(row["df1"]), float(row["df2"]),
                float(row["pval"]), float(lower), float(upper))
        )
    order = ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)"]
    return tuple(sorted(out, key=lambda i: order.index(i.form)))


@dataclass(frozen=True)
class PairKappa:
    reader_a: str
    reader_b: str
    kappas: tuple[Kappa, ...]  # unweighted, linear, quadratic


@dataclass(frozen=True)
class AgreementResult(JsonResult):
    """Agreement between readers in one modality."""

    modality: str
    readers: tuple[str, ...]
    n_cases: int
    n_complete_cases: int
    pairwise: tuple[PairKappa, ...]
    mean_kappa: dict[str, float]  # by weights, averaged over reader pairs
    fleiss_kappa: float
    krippendorff: dict[str, float]  # by level
    icc: tuple[ICC, ...]

    def summary(self) -> str:
        lines = [
            f"Agreement in modality '{self.modality}': {len(self.readers)} readers, {self.n_cases} cases "
            f"({self.n_complete_cases} read by all)",
            "Cohen's kappa, mean over reader pairs: "
            + ", ".join(f"{k} {v:.4f}" for k, v in self.mean_kappa.items()),
            f"Fleiss' kappa: {self.fleiss_kappa:.4f}",
            "Krippendorff's alpha: " + ", ".join(f"{k} {v:.4f}" for k, v in self.krippendorff.items()),
        ]
        rows = [[i.form, f"{i.value:.4f}", f"[{i.ci_lower:.2f}, {i.ci_upper:.2f}]", f"{i.f_statistic:.3f}", f"{i.p_value:.4g}"] for i in self.icc]
        lines += format_table(["ICC", "value", "95% CI", "F", "p"], rows)
        return "\n".join(lines)


def agreement_analysis(
    frame: pd.DataFrame,
    modality: str,
    categories: Sequence[float] | None = None,
    source: str = "the reading table",
) -> AgreementResult:
    """All agreement statistics among readers for one ``modality`` of a long reading table."""
    frame = validate_long_table(frame, source)
    subset = frame[frame["modality"] == str(modality)]
    if subset.empty:
        raise InputError(f"{source}: no reads in modality {modality!r}; pick one of {', '.join(sorted(frame['modality'].unique()))}.")
    wide = subset.pivot(index="case_id", columns="reader_id", values="score")
    readers = tuple(sorted(wide.columns, key=str))
    if len(readers) < 2:
        raise InputError(f"{source}: agreement needs at least two readers in modality {modality!r}.", code="one_reader")
    wide = wide[list(readers)]
    complete = wide.dropna()
    pairwise = []
    for a, b in itertools.combinations(readers, 2):
        both = wide[[a, b]].dropna()
        pairwise.append(PairKappa(str(a), str(b), tuple(cohen_kappa(both[a], both[b], w, categories) for w in WEIGHTS)))
    mean_kappa = {
        (w or "none"): float(np.mean([p.kappas[i].kappa for p in pairwise])) for i, w in enumerate(WEIGHTS)
    }
    ratings = complete.to_numpy(dtype=float)
    return AgreementResult(
        modality=str(modality),
        readers=tuple(str(r) for r in readers),
        n_cases=len(wide),
        n_complete_cases=len(complete),
        pairwise=tuple(pairwise),
        mean_kappa=mean_kappa,
        fleiss_kappa=fleiss_kappa_from_ratings(ratings, categories) if len(complete) else math.nan,
        krippendorff={
            level: krippendorff_alpha(wide.to_numpy(dtype=float).T, level, categories) for level in ("nominal", "ordinal", "interval")
        },
        icc=intraclass_correlations(ratings) if len(complete) >= 2 else (),
    )
