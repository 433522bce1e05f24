"""The type-I-error benchmark runs and reports what it claims (the full 2,000-study run is `make bench`)."""

from __future__ import annotations

import json

import numpy as np

from DigitalContrastReaderLib.analysis.null_simulation import RoeMetzModel, main, simulate_study


def test_simulated_null_study_has_the_roe_metz_shape_and_equal_modalities():
    model = RoeMetzModel(n_readers=4, n_negative=30, n_positive=20)
    scores, truth = simulate_study(model, np.random.default_rng(0))
    assert scores.shape == (2, 4, 50) and truth.sum() == 20
    # over many studies the two modalities have the same mean decision variable in each class
    rng = np.random.default_rng(1)
    diffs = [np.subtract(*simulate_study(model, rng)[0].mean(axis=(1, 2))) for _ in range(300)]
    assert abs(np.mean(diffs)) < 4 * np.std(diffs) / np.sqrt(300)


def test_benchmark_prints_its_figures_as_json(capsys):
    assert main(["--studies", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_studies"] == 40 and 0 <= result["rejection_rate"] <= 1
    low, high = result["rejection_rate_ci95"]
    assert low <= result["rejection_rate"] <= high
    assert result["model"]["name"] == "Roe-Metz" and result["seconds"] > 0
