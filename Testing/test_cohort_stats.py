"""Cohort statistics: seeded bootstrap intervals that reproduce, Bland–Altman as published."""

from __future__ import annotations

import numpy as np
import pytest

from DigitalContrastLib.evaluation.stats import bland_altman, bootstrap_mean_ci, describe


def test_the_bootstrap_interval_is_reproducible_and_covers_the_mean():
    values = [12.0, 15.5, 9.0, 11.2, 14.1, float("nan")]
    first, again = bootstrap_mean_ci(values, seed=7), bootstrap_mean_ci(values, seed=7)
    assert first == again
    mean = np.mean(values[:-1])
    assert first[0] < mean < first[1]
    assert first[0] >= min(values[:-1]) and first[1] <= max(values[:-1])
    assert bootstrap_mean_ci(values, seed=8) != first


def test_the_bootstrap_matches_the_normal_approximation_on_a_large_sample():
    rng = np.random.default_rng(1)
    x = rng.normal(50.0, 10.0, 400)
    low, high = bootstrap_mean_ci(x, resamples=4000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.25)
    assert high == pytest.approx(x.mean() + half, abs=0.25)


def test_describe_counts_finite_values_only_and_has_no_interval_for_one_value():
    stats = describe([3.0, float("nan"), float("inf")])
    assert stats["n"] == 1 and stats["mean"] == 3.0 and stats["ci95_mean"] is None and stats["sd"] is None
    assert describe([])["mean"] is None


def test_bland_altman_bias_and_limits_by_hand():
    synthetic = [310.0, 280.0, 355.0, 330.0]
    real = [300.0, 290.0, 340.0, 345.0]
    ba = bland_altman(synthetic, real)
    d = np.array(synthetic) - np.array(real)  # 10, -10, 15, -15
    assert ba["n"] == 4 and ba["bias"] == pytest.approx(0.0)
    assert ba["sd"] == pytest.approx(d.std(ddof=1))
    assert ba["loa_high"] == pytest.approx(1.96 * d.std(ddof=1))
    assert ba["means"] == [305.0, 285.0, 347.5, 337.5]
    partial = bland_altman([1.0, float("nan")], [2.0, 3.0])
    assert partial["n"] == 1 and partial["bias"] == -1.0 and partial["loa_low"] is None
