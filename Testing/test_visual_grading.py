"""Visual grading: VGC (Båth & Månsson 2007), paired ordinal tests, mean paired difference.

No published VGC data set with a reference output was reachable offline; the checks are
definitions and independent implementations: AUC_VGC is the Mann–Whitney statistic (scikit-learn's
ROC AUC with the modality as the class) and the trapezoidal area under the VGC curve; the closed-form
paired jackknife equals leave-one-case-out by brute force; Stuart–Maxwell and Bowker reduce to
McNemar's (b − c)² / (b + c) on a 2 × 2 table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.mrmc import mrmc_analysis
from DigitalContrastReaderLib.analysis.simulated_study import grading_study
from DigitalContrastReaderLib.analysis.visual_grading import (
    mean_paired_difference,
    paired_ordinal_tests,
    vgc_analysis,
    vgc_auc,
    vgc_curve,
    vgc_leave_one_out,
)


def test_vgc_auc_is_the_mann_whitney_statistic_and_the_area_under_the_vgc_curve():
    rng = np.random.default_rng(3)
    test = rng.integers(1, 6, 70).astype(float)
    ref = rng.integers(1, 6, 55).astype(float)
    auc = vgc_auc(test, ref)
    labels = np.r_[np.ones(70), np.zeros(55)]
    assert auc == pytest.approx(roc_auc_score(labels, np.r_[test, ref]))
    u = stats.mannwhitneyu(test, ref).statistic
    assert auc == pytest.approx(u / (70 * 55))
    x, y = vgc_curve(test, ref)
    assert (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1) and np.all(np.diff(x) >= 0)
    assert np.trapezoid(y, x) == pytest.approx(auc)
    assert vgc_auc(ref, test) == pytest.approx(1 - auc)
    assert vgc_auc(test, test) == 0.5


def test_paired_jackknife_removes_both_images_of_a_case():
    rng = np.random.default_rng(4)
    test = rng.integers(1, 6, (3, 12)).astype(float)
    ref = rng.integers(1, 6, (3, 12)).astype(float)
    fast = vgc_leave_one_out(test, ref)
    for j in range(3):
        for k in range(12):
            keep = np.arange(12) != k
            assert fast[j, k] == pytest.approx(vgc_auc(test[j, keep], ref[j, keep]))


def test_vgc_analysis_detects_a_quality_loss_and_not_an_absent_one():
    worse = vgc_analysis(grading_study(n_readers=5, n_cases=80, modality_shift=(0.0, -0.6), seed=1), "synthetic", "real")
    assert worse.auc < 0.5 and worse.ci_upper < 0.5 and worse.p_value < 0.05
    assert worse.ci_lower < worse.auc < worse.ci_upper and np.isfinite(worse.df)
    assert worse.auc == pytest.approx(np.mean(list(worse.reader_auc.values())))
    same = grading_study(n_readers=4, n_cases=40, seed=2)
    copy = same[same["modality"] == "real"].assign(modality="synthetic")
    equal = vgc_analysis(pd.concat([same[same["modality"] == "real"], copy]), "synthetic", "real")
    assert equal.auc == 0.5 and equal.std_error == 0  # every reader and every jackknife sample gives exactly 0.5
    assert "AUC_VGC = 0.5000" in equal.summary()


def test_vgc_reader_auc_matches_per_reader_mann_whitney():
    frame = grading_study(n_readers=3, n_cases=30, seed=6)
    result = vgc_analysis(frame)
    for reader, auc in result.reader_auc.items():
        rows = frame[frame["reader_id"] == reader]
        t = rows.loc[rows["modality"] == "synthetic", "score"]
        r = rows.loc[rows["modality"] == "real", "score"]
        assert auc == pytest.approx(roc_auc_score(np.r_[np.ones(len(t)), np.zeros(len(r))], np.r_[t, r]))


def _pairs(table: list[list[int]]) -> pd.DataFrame:
    rows = []
    case = 0
    for r_grade, row in enumerate(table, start=1):
        for t_grade, count in enumerate(row, start=1):
            for _ in range(count):
                rows += [("R1", f"c{case}", "real", np.nan, r_grade), ("R1", f"c{case}", "synthetic", np.nan, t_grade)]
                case += 1
    return pd.DataFrame(rows, columns=["reader_id", "case_id", "modality", "truth", "score"])


def test_stuart_maxwell_and_bowker_reduce_to_mcnemar_on_a_two_by_two_table():
    result = paired_ordinal_tests(_pairs([[30, 12], [4, 20]]))
    assert result.table == ((30, 12), (4, 20)) and result.n_pairs == 66
    mcnemar = (12 - 4) ** 2 / (12 + 4)
    assert result.stuart_maxwell_statistic == pytest.approx(mcnemar)
    assert result.bowker_statistic == pytest.approx(mcnemar)
    assert result.stuart_maxwell_p == pytest.approx(stats.chi2.sf(mcnemar, 1))
    assert "independent" in result.note


def test_paired_ordinal_tests_on_a_graded_table_and_degenerate_input():
    result = paired_ordinal_tests(grading_study(n_readers=4, n_cases=50, modality_shift=(0.0, -0.8), seed=8))
    assert result.stuart_maxwell_df == len(result.grades) - 1 and result.stuart_maxwell_p < 0.05
    same = paired_ordinal_tests(_pairs([[5, 0], [0, 7]]))
    assert np.isnan(same.stuart_maxwell_statistic) and "undefined" in same.note


def test_mean_paired_difference_is_reader_and_case_aware():
    frame = grading_study(n_readers=5, n_cases=60, modality_shift=(0.0, -0.3), seed=9)
    result = mean_paired_difference(frame, "synthetic", "real", margin=0.5)
    means = frame.groupby("modality")["score"].mean()
    assert result.difference == pytest.approx(means["synthetic"] - means["real"])
    mrmc = mrmc_analysis(frame, fom="mean", modalities=["synthetic", "real"]).rrrc.differences[0]
    assert (result.std_error, result.ci_lower, result.ci_upper) == pytest.approx((mrmc.std_error, mrmc.ci_lower, mrmc.ci_upper))
    per_reader = frame.groupby(["reader_id", "modality"])["score"].mean().unstack()
    for r in result.per_reader:
        assert r.difference == pytest.approx(per_reader.loc[r.reader, "synthetic"] - per_reader.loc[r.reader, "real"])
    assert result.non_inferiority.sidedness == "one-sided"
    assert result.non_inferiority.non_inferior == (result.ci_lower > -0.5)


def test_readers_who_disagree_about_the_synthetic_images_widen_the_interval():
    """With a reader x modality interaction, a paired t-test over all reads (readers ignored) is too narrow."""
    frame = grading_study(n_readers=6, n_cases=60, modality_shift=(0.0, 0.0), seed=10)
    offset = dict(zip([f"R{j}" for j in range(1, 7)], [-0.8, 0.6, -0.4, 0.9, -0.7, 0.3]))
    synthetic = frame["modality"] == "synthetic"
    frame.loc[synthetic, "score"] += frame.loc[synthetic, "reader_id"].map(offset)
    result = mean_paired_difference(frame, "synthetic", "real")
    diffs = frame[synthetic]["score"].to_numpy() - frame[~synthetic]["score"].to_numpy()
    naive = diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert result.std_error > 2 * naive
    assert result.ci_lower < 0 < result.ci_upper


def test_missing_modality_is_named():
    with pytest.raises(InputError, match="modality 'fake' does not occur"):
        vgc_analysis(grading_study(n_readers=2, n_cases=5), "fake", "real")
