"""Visual Turing test: exact per-reader inference, pooled RRRC estimates, and honest conclusions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.simulated_study import turing_study
from DigitalContrastReaderLib.analysis.turing import reader_accuracy, turing_test


def test_per_reader_accuracy_uses_exact_clopper_pearson_intervals():
    r = reader_accuracy("R1", 60, 100, margin=0.10, alpha=0.05)
    assert r.accuracy == 0.6
    # Clopper-Pearson 95% interval of 60/100 from the beta quantiles (the textbook definition)
    assert r.ci_lower == pytest.approx(stats.beta.ppf(0.025, 60, 41), abs=1e-9)
    assert r.ci_upper == pytest.approx(stats.beta.ppf(0.975, 61, 40), abs=1e-9)
    assert (round(r.ci_lower, 4), round(r.ci_upper, 4)) == (0.4972, 0.6967)
    assert r.p_value_vs_chance == pytest.approx(stats.binomtest(60, 100).pvalue)


@pytest.mark.parametrize("n", [40, 100])
def test_exact_tost_agrees_with_the_90_percent_exact_interval(n):
    """Equivalence at alpha 0.05 <=> the 90% Clopper-Pearson interval lies inside [0.4, 0.6], for every count."""
    for k in range(n + 1):
        r = reader_accuracy("R", k, n, margin=0.10, alpha=0.05)
        ci = stats.binomtest(k, n).proportion_ci(0.90, method="exact")
        assert r.equivalent_to_chance == (ci.low > 0.4 and ci.high < 0.6), k


def test_guessing_readers_are_shown_equivalent_to_chance_with_enough_reads():
    result = turing_test(turing_study(n_readers=8, n_cases=150, detectability=0.0, seed=1), margin=0.10)
    assert result.accuracy.equivalent_to_chance and result.auc.equivalent_to_chance
    assert 0.4 < result.accuracy.equivalence_ci_lower and result.accuracy.equivalence_ci_upper < 0.6
    assert "could not tell" in result.conclusion and "equivalence shown" in result.conclusion
    assert result.n_images == 300 and len(result.readers) == 8


def test_a_small_study_at_chance_is_not_called_indistinguishable():
    result = turing_test(turing_study(n_readers=3, n_cases=10, detectability=0.0, seed=2), margin=0.10)
    assert result.accuracy.p_value_vs_chance > 0.05  # no evidence of a difference ...
    assert not result.accuracy.equivalent_to_chance  # ... and no evidence of equivalence either
    assert "NOT shown" in result.conclusion and "does not mean the images are indistinguishable" in result.conclusion
    assert "could not tell" not in result.conclusion


def test_detectable_synthetic_images_are_reported_as_distinguishable():
    result = turing_test(turing_study(n_readers=5, n_cases=60, detectability=1.5, seed=3))
    assert result.accuracy.ci_lower > 0.5 and result.auc.estimate > 0.7
    assert "better than chance" in result.conclusion


def test_pooled_accuracy_is_the_mean_of_reader_accuracies():
    frame = turing_study(n_readers=4, n_cases=30, detectability=0.5, seed=4)
    result = turing_test(frame)
    assert result.accuracy.estimate == pytest.approx(np.mean([r.accuracy for r in result.readers]))
    truth = frame["modality"] == "synthetic"
    correct = ((frame["score"] >= 0.5) == truth).groupby(frame["reader_id"]).mean()
    assert [r.accuracy for r in result.readers] == pytest.approx(correct.sort_index().tolist())
    from sklearn.metrics import roc_auc_score

    assert result.pooled_auc_all_reads == pytest.approx(roc_auc_score(truth, frame["score"]))


def test_a_split_plot_turing_test_gets_its_pooled_reader_and_image_aware_interval():
    frame = turing_study(n_readers=4, n_cases=40, seed=5)
    # split-plot: readers R1/R2 see the first half of the cases, R3/R4 the second half
    first = frame["case_id"].str[-3:].astype(int) <= 20
    split = frame[(first & frame["reader_id"].isin(["R1", "R2"])) | (~first & frame["reader_id"].isin(["R3", "R4"]))]
    result = turing_test(split)
    assert len(result.readers) == 4 and result.notes == ()
    assert result.accuracy.estimate == pytest.approx(np.mean([r.accuracy for r in result.readers]))
    assert result.n_images == 80 and 0 < result.accuracy.std_error < 0.2


def test_readers_who_saw_overlapping_images_get_per_reader_results_and_a_note():
    frame = turing_study(n_readers=4, n_cases=40, seed=5)
    # not a design the scheduler makes: R1/R2 read cases 1-25, R3/R4 cases 16-40 (overlap 16-25)
    number = frame["case_id"].str[-3:].astype(int)
    odd = frame[((number <= 25) & frame["reader_id"].isin(["R1", "R2"])) | ((number > 15) & frame["reader_id"].isin(["R3", "R4"]))]
    result = turing_test(odd)
    assert result.accuracy is None and len(result.readers) == 4
    assert any("did not read the images in reader groups" in n for n in result.notes)
    assert "readers were shown to be at chance" in result.conclusion


def test_binary_calls_and_a_custom_synthetic_label():
    frame = turing_study(n_readers=3, n_cases=20, synthetic_label="model", seed=6)
    frame["score"] = (frame["score"] >= 0.5).astype(float)
    result = turing_test(frame, synthetic_label="model")
    assert result.other_label == "real" and result.threshold == 0.5
    with pytest.raises(InputError, match="exactly two modalities, 'synthetic'"):
        turing_test(frame)
    three = pd.concat([frame, frame[frame["modality"] == "real"].assign(modality="other")])
    with pytest.raises(InputError, match="exactly two modalities"):
        turing_test(three, synthetic_label="model")
