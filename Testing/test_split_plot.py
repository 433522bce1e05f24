"""Split-plot MRMC (reader groups reading their own cases): the published MRMCaov output for the
Van Dyke data with cases nested within readers, reproduced to every printed digit, and the
properties that tie the split-plot analysis to the crossed one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.long_table import read_long_csv
from DigitalContrastReaderLib.analysis.mrmc import AUC, mrmc_analysis
from DigitalContrastReaderLib.analysis.reading_design import reading_design

DATA = Path(__file__).resolve().parent / "data" / "reader_study"
NESTED = DATA / "vandyke_roc_cases_nested_in_readers.csv"


def printed(value: float, text: str) -> str:
    """``value`` formatted the way ``text`` was printed (same decimals, or same significant digits in e-notation)."""
    if "e" in text:
        mantissa = text.split("e")[0].lstrip("-")
        return f"{value:.{len(mantissa) - 2}e}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{value:.{decimals}f}"


def test_one_reader_per_group_reproduces_mrmcaov_to_every_printed_digit():
    """MRMCaov prints 33 numbers for this design; the 28 of its test, CIs, mean squares, Cov2 and Cov3 are ours
    to every digit. Its Error, Cov1, their correlation and the two variance components built on them come from
    a jackknife over all 570 case labels with each reader's unread cases held at the full-data value, i.e.
    scaled by (570 - 1)/570 instead of each reader's own (114 - 1)/114; recomputed that way from our
    leave-one-out values they match every printed digit too (none of them enters the test when Cov2 = Cov3 = 0)."""
    ref = json.loads((DATA / "mrmcaov_vandyke_cases_nested_in_readers.json").read_text())
    frame = read_long_csv(NESTED)
    result = mrmc_analysis(frame)
    c = result.components
    assert result.reader_groups == (("1",), ("2",), ("3",), ("4",), ("5",)) and result.n_cases == 570
    assert c.cov2 == c.cov3 == 0 and c.same_group_pair_fraction == 0
    for name, value in (("Cov2", c.cov2), ("Cov3", c.cov3)):
        assert printed(value, ref["variance_components"][name]) == ref["variance_components"][name]
    test = result.rrrc.test
    ours = {"MS(T)": c.ms_t, "MS(T:R)": c.ms_tr, "Denominator": test.error_term, "F": test.statistic,
            "df1": test.df_numerator, "df2": test.df_denominator, "p-value": test.p_value}
    for name, text in ref["global_test"].items():
        assert printed(ours[name], text) == text, name
    d = result.difference("1", "2")
    ours = {"Estimate": d.estimate, "StdErr": d.std_error, "df": d.df, "CI.Lower": d.ci_lower, "CI.Upper": d.ci_upper,
            "t": d.statistic, "p-value": d.p_value}
    for name, text in ref["difference_1_minus_2"].items():
        assert printed(ours[name], text) == text, name
    for i, m in enumerate(result.rrrc.modalities):
        ours = {"Estimate": m.estimate, "MS(R)": c.ms_r_per_modality[i], "StdErr": m.std_error, "df": m.df,
                "CI.Lower": m.ci_lower, "CI.Upper": m.ci_upper}
        for name, text in ref["treatment_means"][m.modality].items():
            assert printed(ours[name], text) == text, (m.modality, name)

    # MRMCaov's jackknife convention, from our per-reader leave-one-out AUCs
    design = reading_design(frame)
    k_all = design.n_cases
    padded = np.empty((2, 5, k_all))
    for j, group in enumerate(design.groups):
        theta, jack = AUC.values(group.scores, group.truth)[:, 0], AUC.jackknife(group.scores, group.truth)[:, 0]
        padded[:, j, :] = theta[:, None]
        padded[:, j, j * 114:(j + 1) * 114] = jack
    dev = padded - padded.mean(axis=-1, keepdims=True)
    cov = np.einsum("ijk,lmk->ijlm", dev, dev) * (k_all - 1) / k_all
    error = np.mean([cov[i, j, i, j] for i in range(2) for j in range(5)])
    cov1 = np.mean([cov[0, j, 1, j] for j in range(5)])
    theirs = {"Error": error, "Cov1": cov1, "Cov1 correlation": cov1 / error,
              "treatment:reader": c.ms_tr - error + cov1, "reader": (c.ms_r - c.ms_tr) / 2 - cov1}
    for name, text in ref["variance_components"].items():
        if name not in ("Cov2", "Cov3"):
            assert printed(theirs[name], text) == text, name
    # ours: each reader's own jackknife, (114 - 1)/114 -- the crossed study's Var and Cov1 exactly
    crossed = mrmc_analysis(read_long_csv(DATA / "vandyke_roc.csv")).components
    assert c.var_error == pytest.approx(crossed.var_error, rel=1e-12) and c.cov1 == pytest.approx(crossed.cov1, rel=1e-12)


def test_one_group_is_the_crossed_analysis_and_duplicated_groups_keep_the_within_group_covariances():
    crossed = read_long_csv(DATA / "vandyke_roc.csv")
    one = mrmc_analysis(crossed)
    assert one.reader_groups == (("1", "2", "3", "4", "5"),) and one.components.same_group_pair_fraction == 1
    # two groups: the same ratings read again by five more readers on their own copy of the cases
    copy = crossed.assign(reader_id=(crossed["reader_id"].astype(int) + 5).astype(str), case_id="B" + crossed["case_id"])
    two = mrmc_analysis(pd.concat([crossed, copy], ignore_index=True))
    a, b = one.components, two.components
    assert len(two.reader_groups) == 2 and two.n_cases == 228
    assert b.same_group_pair_fraction == pytest.approx(2 * 5 * 4 / (10 * 9))
    for name in ("var_error", "cov1"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-12)
    assert b.cov2_within_group == pytest.approx(a.cov2, rel=1e-12) and b.cov3_within_group == pytest.approx(a.cov3, rel=1e-12)
    assert b.cov2 == pytest.approx(a.cov2 * 40 / 90, rel=1e-12)
    # the error term of the F test: MS(TR) + J (Cov2 - Cov3) over all pairs = MS(TR) + J p (Cov2 - Cov3) within groups
    assert two.rrrc.test.error_term == pytest.approx(b.ms_tr + 10 * (40 / 90) * (a.cov2 - a.cov3), rel=1e-12)
    # twice the readers, same reader means: the same difference, a smaller standard error
    assert two.difference("1", "2").estimate == pytest.approx(one.difference("1", "2").estimate)
    assert two.difference("1", "2").std_error < one.difference("1", "2").std_error


def test_groups_must_read_disjoint_cases_and_every_case_of_their_group():
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    number = frame["case_id"].astype(int)
    first = frame["reader_id"].isin(["1", "2"])
    # readers 1-2 read cases 1-60, readers 3-5 cases 50-114: overlapping groups
    overlapping = frame[(first & (number <= 60)) | (~first & (number >= 50))]
    with pytest.raises(InputError, match="unbalanced .*reader group"):
        reading_design(overlapping, source="odd.csv")
    split = frame[(first & (number <= 57)) | (~first & (number > 57))]
    design = reading_design(split)
    assert [g.readers for g in design.groups] == [("1", "2"), ("3", "4", "5")] and design.n_cases == 114
    incomplete = split.drop(index=split.index[(split["reader_id"] == "4") & (split["modality"] == "2")][:1])
    with pytest.raises(InputError, match=r"unbalanced \(1 read\(s\) missing, e.g. reader '4', case '58', modality '2'\)"):
        reading_design(incomplete)


def test_the_auc_needs_both_truths_in_every_reader_group():
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    first = frame["reader_id"].isin(["1", "2"])
    positives = frame.groupby("case_id")["truth"].first()
    negative_cases = set(positives.index[positives == 0])
    split = frame[(first & frame["case_id"].isin(negative_cases)) | (~first & ~frame["case_id"].isin(negative_cases))]
    with pytest.raises(InputError, match="the cases of readers 1, 2 have 0 and 69"):
        mrmc_analysis(split, source="split.csv")


def test_mrmc_command_analyses_a_split_plot_table(tmp_path):
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    number = frame["case_id"].astype(int)
    first = frame["reader_id"].isin(["1", "2"])
    csv = tmp_path / "split.csv"
    frame[(first & (number % 2 == 0)) | (~first & (number % 2 == 1))].to_csv(csv, index=False)
    done = subprocess.run([sys.executable, "-m", "DigitalContrastReaderLib.cli", "mrmc", str(csv), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["design"]["reader_groups"] == [["1", "2"], ["3", "4", "5"]]
    assert out["design"]["description"].startswith("split-plot: 2 reader groups")
    assert np.isfinite(out["analyses"]["RRRC"]["test"]["p_value"])
