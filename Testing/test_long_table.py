"""The long reading table: checks with one-sentence errors, and its fully crossed array form (reading_design.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.long_table import read_long_csv, validate_long_table
from DigitalContrastReaderLib.analysis.reading_design import crossed_scores


def _frame(rows):
    return pd.DataFrame(rows, columns=["reader_id", "case_id", "modality", "truth", "score"])


def test_crossed_arrays_follow_natural_label_order_and_keep_truth(tmp_path):
    rows = [(r, c, m, float(c % 2), r * 100 + c * 10 + (m == "b")) for r in (2, 10, 1) for c in (3, 1, 2) for m in ("b", "a")]
    csv = tmp_path / "t.csv"
    _frame(rows).to_csv(csv, index=False)
    crossed = crossed_scores(read_long_csv(csv))
    assert crossed.readers == ("1", "2", "10") and crossed.cases == ("1", "2", "3") and crossed.modalities == ("a", "b")
    assert crossed.scores.shape == (2, 3, 3)
    assert crossed.scores[1, 2, 0] == 10 * 100 + 1 * 10 + 1  # modality b, reader 10, case 1
    np.testing.assert_array_equal(crossed.truth, [1, 0, 1])
    assert crossed_scores(read_long_csv(csv), modalities=["b"]).scores.shape == (1, 3, 3)


def test_empty_truth_is_allowed_and_extra_columns_are_kept():
    frame = _frame([("r", "c", "m", None, 3)]).assign(question="quality")
    checked = validate_long_table(frame)
    assert np.isnan(checked["truth"].iloc[0]) and "question" in checked.columns


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "no rows"),
        ([("r", "c", "m", 0, np.inf)], "is not a number"),
        ([("r", None, "m", 0, 1)], "empty case_id in data row 1"),
        ([("r", "c", "m", 0, 1), ("r", "c", "m", 0, 2)], "more than one score for case 'c'"),
        ([("r1", "c", "m", 0, 1), ("r2", "c", "m", 1, 2)], "different truth values"),
        ([("r1", "c", "m", 0, 1), ("r1", "c", "n", 1, 2)], "different truth in different modalities"),
    ],
)
def test_broken_tables_are_refused_with_one_sentence(rows, message):
    with pytest.raises(InputError, match=message) as error:
        crossed_scores(_frame(rows), source="study.csv")
    assert str(error.value).startswith("study.csv: ") and "\n" not in str(error.value)


def test_complete_crossed_subset_keeps_only_fully_read_readers_and_cases():
    from DigitalContrastReaderLib.analysis.long_table import complete_crossed_subset

    rows = []
    for reader, cases in {"r1": ["c1", "c2", "c3"], "r2": ["c1", "c2"], "r3": ["c1"]}.items():
        for case in cases:
            for modality in ("real", "synthetic"):
                rows.append({"reader_id": reader, "case_id": case, "modality": modality, "truth": 1, "score": 3.0})
    rows.append({"reader_id": "r3", "case_id": "c2", "modality": "real", "truth": 1, "score": 3.0})  # half read
    subset, note = complete_crossed_subset(pd.DataFrame(rows))
    # r3 has one complete case only: dropping it leaves r1, r2 with the two cases both read completely
    assert sorted(subset["reader_id"].unique()) == ["r1", "r2"]
    assert sorted(subset["case_id"].unique()) == ["c1", "c2"]
    assert len(subset) == 2 * 2 * 2
    assert note == "interim: 2 of 3 readers x 2 of 3 cases are complete in every modality and analysed"
    full, none = complete_crossed_subset(subset)
    assert len(full) == len(subset) and none == ""
