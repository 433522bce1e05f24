"""Agreement statistics against published worked examples.

Published values are compared at the decimals they were printed with (see ``agrees``):
- Fleiss' kappa: Fleiss JL. "Measuring nominal scale agreement among many raters." Psychol Bull
  1971;76(5):378-382, Table 1: 30 patients, 6 psychiatrists, 5 diagnoses (1 depression,
  2 personality disorder, 3 schizophrenia, 4 neurosis, 5 other); published overall kappa .430.
  The per-patient diagnoses below are the raw form of Fleiss' count table as distributed with the
  R package irr (``diagnoses``).
- Krippendorff's alpha: Krippendorff K. "Computing Krippendorff's alpha-reliability" (2011),
  Departmental Papers (ASC) 43, University of Pennsylvania, example with 4 observers, 12 units
  and missing values; published alpha nominal .743, ordinal .815, interval .849, ratio .797.
- ICC: Shrout PE, Fleiss JL. "Intraclass correlations: uses in assessing rater reliability."
  Psychol Bull 1979;86(2):420-428. Table 2 data (6 targets x 4 judges); Table 3 mean squares
  (BMS 11.24, WMS 6.26, JMS 32.49, EMS 1.02) and Table 4 ICCs: ICC(1,1) .17, ICC(2,1) .29,
  ICC(3,1) .71, ICC(1,4) .44, ICC(2,4) .62, ICC(3,4) .91. The paper prints two decimals only,
  so that is all that can be checked against it.
- Cohen's kappa (unweighted): the textbook worked example of 50 applications judged by two
  readers (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no): p_o = 0.70, p_e = 0.50, kappa = 0.40
  (Wikipedia "Cohen's kappa", worked example). No published weighted-kappa table was reachable
  offline, so the weighted kappas are checked against scikit-learn (an independent implementation)
  and against the exact identity of quadratic-weighted kappa with the concordance correlation
  2·s_xy / (s_x² + s_y² + (x̄ − ȳ)²), moments with divisor n (Fleiss & Cohen 1973).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.agreement import (
    agreement_analysis,
    cohen_kappa,
    fleiss_kappa_from_ratings,
    intraclass_correlations,
    krippendorff_alpha,
)


def agrees(ours: float, published: str) -> bool:
    decimals = len(published.split(".")[1])
    return abs(ours - float(published)) <= 0.5 * 10.0**-decimals + 1e-12


FLEISS_1971_DIAGNOSES = np.array(
    [
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
        [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
        [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
        [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
        [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
    ]
)

KRIPPENDORFF_2011 = np.array(  # observers A-D (rows) x units 1-12; NaN = no value
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)

SHROUT_FLEISS_1979 = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_fleiss_kappa_reproduces_fleiss_1971():
    kappa = fleiss_kappa_from_ratings(FLEISS_1971_DIAGNOSES, categories=[1, 2, 3, 4, 5])
    assert agrees(kappa, "0.430"), kappa


@pytest.mark.parametrize("level, published", [("nominal", "0.743"), ("ordinal", "0.815"), ("interval", "0.849"), ("ratio", "0.797")])
def test_krippendorff_alpha_reproduces_krippendorff_2011(level, published):
    assert agrees(krippendorff_alpha(KRIPPENDORFF_2011, level), published)


def test_shrout_fleiss_table_2_gives_the_published_mean_squares_and_icc():
    x = SHROUT_FLEISS_1979.astype(float)
    n, k = x.shape
    grand = x.mean()
    bms = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    jms = n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)
    wms = ((x - x.mean(1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    ems = ((x - x.mean(1, keepdims=True) - x.mean(0) + grand) ** 2).sum() / ((n - 1) * (k - 1))
    for ours, published in [(bms, "11.24"), (wms, "6.26"), (jms, "32.49"), (ems, "1.02")]:
        assert agrees(ours, published), (ours, published)
    icc = {i.form: i.value for i in intraclass_correlations(SHROUT_FLEISS_1979)}
    published = {"ICC(1,1)": "0.17", "ICC(2,1)": "0.29", "ICC(3,1)": "0.71", "ICC(1,k)": "0.44", "ICC(2,k)": "0.62", "ICC(3,k)": "0.91"}
    for form, value in published.items():
        assert agrees(icc[form], value), (form, icc[form], value)
    # and the closed forms of Shrout & Fleiss (exact), so the names are mapped to the right rows
    assert icc["ICC(1,1)"] == pytest.approx((bms - wms) / (bms + (k - 1) * wms))
    assert icc["ICC(2,1)"] == pytest.approx((bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n))
    assert icc["ICC(3,1)"] == pytest.approx((bms - ems) / (bms + (k - 1) * ems))
    assert icc["ICC(2,k)"] == pytest.approx((bms - ems) / (bms + (jms - ems) / n))


def test_unweighted_cohen_kappa_worked_example():
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    result = cohen_kappa(a, b)
    assert result.kappa == pytest.approx(0.40, abs=1e-12)
    assert result.n == 50 and result.ci_lower < 0.40 < result.ci_upper and result.p_value < 0.05


def test_weighted_cohen_kappa_matches_scikit_learn_and_the_concordance_identity():
    rng = np.random.default_rng(5)
    x = rng.integers(1, 6, 80)
    y = np.clip(x + rng.integers(-2, 3, 80), 1, 5)
    for weights in (None, "linear", "quadratic"):
        assert cohen_kappa(x, y, weights).kappa == pytest.approx(cohen_kappa_score(x, y, weights=weights), abs=1e-12)
    mx, my = x.mean(), y.mean()
    ccc = 2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2)
    assert cohen_kappa(x, y, "quadratic").kappa == pytest.approx(ccc, abs=1e-12)
    # a grade nobody used does not change value-scored weights but appears in the table
    assert cohen_kappa(x, y, "linear", categories=[0, 1, 2, 3, 4, 5]).kappa == pytest.approx(cohen_kappa(x, y, "linear").kappa)


def _long(ratings: np.ndarray, modality: str = "real") -> pd.DataFrame:
    n_cases, n_readers = ratings.shape
    return pd.DataFrame(
        [(f"J{j + 1}", f"T{i + 1}", modality, np.nan, float(ratings[i, j])) for i in range(n_cases) for j in range(n_readers)],
        columns=["reader_id", "case_id", "modality", "truth", "score"],
    )


def test_agreement_from_the_long_table_reproduces_the_published_examples():
    shrout = agreement_analysis(_long(SHROUT_FLEISS_1979), "real")
    icc = {i.form: i.value for i in shrout.icc}
    assert agrees(icc["ICC(2,1)"], "0.29") and agrees(icc["ICC(3,k)"], "0.91")
    fleiss = agreement_analysis(_long(FLEISS_1971_DIAGNOSES), "real", categories=[1, 2, 3, 4, 5])
    assert agrees(fleiss.fleiss_kappa, "0.430")
    assert len(fleiss.pairwise) == 15  # 6 readers
    pair = fleiss.pairwise[0]
    direct = cohen_kappa(FLEISS_1971_DIAGNOSES[:, 0], FLEISS_1971_DIAGNOSES[:, 1], categories=[1, 2, 3, 4, 5])
    assert (pair.reader_a, pair.reader_b) == ("J1", "J2") and pair.kappas[0].kappa == pytest.approx(direct.kappa)
    assert "Fleiss' kappa: 0.4302" in fleiss.summary()


def test_krippendorff_from_the_long_table_keeps_missing_reads():
    rows = [
        (f"obs{r}", f"u{u:02d}", "real", np.nan, KRIPPENDORFF_2011[r, u])
        for r in range(4) for u in range(12) if not np.isnan(KRIPPENDORFF_2011[r, u])
    ]
    result = agreement_analysis(pd.DataFrame(rows, columns=["reader_id", "case_id", "modality", "truth", "score"]), "real")
    assert agrees(result.krippendorff["nominal"], "0.743") and agrees(result.krippendorff["interval"], "0.849")
    assert result.n_cases == 12 and result.n_complete_cases == 8


def test_agreement_needs_two_readers_in_the_modality():
    with pytest.raises(InputError, match="at least two readers"):
        agreement_analysis(_long(SHROUT_FLEISS_1979[:, :1]), "real")
    with pytest.raises(InputError, match="no reads in modality 'synthetic'"):
        agreement_analysis(_long(SHROUT_FLEISS_1979), "synthetic")
