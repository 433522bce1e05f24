"""MRMC (Obuchowski–Rockette–Hillis) against published OR-DBM MRMC 2.51 outputs, to every printed decimal.

Data and reference outputs (both in the RJafroc repository, github.com/dpc10ster/RJafroc):

- Van Dyke ROC data: Van Dyke CW et al., "Cine MRI in the diagnosis of thoracic aortic dissection",
  79th RSNA Meeting, Chicago 1993 (abstract, Radiology 1993 suppl.); 2 modalities (cine MRI, spin-echo MRI)
  x 5 readers x 114 cases (45 diseased), 5-point ratings; RJafroc's `dataset02`, file `inst/extdata/RocData.csv`, stored here as
  `Testing/data/reader_study/vandyke_roc.csv` (reader and modality numbered from 1 as in the output).
  Reference: OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce, Berbaum; build 20181028), trapezoidal AUC,
  jackknife covariances: `inst/Iowa/VanDyke.txt`; the same data restricted to reader 1
  (`inst/Iowa/VanDyke1R.txt`) and to modality 1 (`inst/Iowa/VanDyke1T.txt`).
- Federica Zanca ROC data (FROC marks reduced to the highest rating per case): Zanca F et al.,
  "Evaluation of clinical image processing algorithms used in digital mammography", Med Phys 2009;36(3):765-775;
  5 modalities x 4 readers x 200 cases (100 diseased): `inst/JAFROC/FedRoc.xlsx`, stored here as
  `Testing/data/reader_study/fedroc_roc.csv` (reader ids 1, 3, 4, 5 as in the workbook; the output numbers
  them 1-4 in that order). Reference: OR-DBM MRMC 2.51 output `inst/Iowa/FedRoc.txt`.

Every published number (413 of them) is compared at the decimals it was printed with: ours must lie
within 0.51 units of the last printed decimal (0.0517 -> within 0.000051; 0.89703704 -> within 5.1e-9).
The 0.01 above one half covers exact ties (0.036775 printed as 0.03678) and the two FedRoc 8-decimal CI
limits of modality 5 that differ from ours by 0.5025 units (5e-9). The F and t statistics are printed with
two decimals only (4.46), so those are checked to two decimals; everything else has 4 to 8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastReaderLib.analysis.long_table import read_long_csv
from DigitalContrastReaderLib.analysis.mrmc import AUC, FigureOfMerit, auc_values, figure_of_merit, mrmc_analysis
from DigitalContrastReaderLib.analysis.reading_design import crossed_scores

DATA = Path(__file__).resolve().parent / "data" / "reader_study"


def agrees(ours: float, published: str) -> bool:
    """True when ``ours`` is within 0.51 units of the published value's last printed decimal."""
    decimals = len(published.split(".")[1]) if "." in published else 0
    return abs(ours - float(published)) <= 0.51 * 10.0**-decimals


def check(ours: float, published: str, what: str) -> None:
    assert agrees(ours, published), f"{what}: ours {ours!r}, published {published}"


@pytest.fixture(scope="module")
def vandyke():
    return mrmc_analysis(read_long_csv(DATA / "vandyke_roc.csv"), fom="auc")


@pytest.fixture(scope="module")
def fedroc():
    return mrmc_analysis(read_long_csv(DATA / "fedroc_roc.csv"), fom="auc")


# --- Van Dyke: inst/Iowa/VanDyke.txt -----------------------------------------------------------------

VANDYKE_AUC = [  # reader x treatment
    ["0.91964573", "0.94782609"],
    ["0.85877617", "0.90531401"],
    ["0.90386473", "0.92173913"],
    ["0.97310789", "0.99935588"],
    ["0.82979066", "0.92995169"],
]


def test_vandyke_reader_and_modality_aucs(vandyke):
    assert vandyke.modalities == ("1", "2") and vandyke.readers == ("1", "2", "3", "4", "5")
    assert (vandyke.n_cases, vandyke.n_positive, vandyke.n_negative) == (114, 45, 69)
    for j, row in enumerate(VANDYKE_AUC):
        for i, published in enumerate(row):
            check(vandyke.reader_fom[i, j], published, f"AUC reader {j + 1} treatment {i + 1}")
    check(vandyke.modality_fom["1"], "0.89703704", "mean AUC 1")
    check(vandyke.modality_fom["2"], "0.94083736", "mean AUC 2")
    check(vandyke.modality_fom["1"] - vandyke.modality_fom["2"], "-0.04380032", "difference")


def test_vandyke_anova_and_covariances(vandyke):
    c = vandyke.components
    for ours, published, name in [
        (c.ms_t, "0.00479617", "MS(T)"),
        (c.ms_r, "0.00383620", "MS(R)"),
        (c.ms_tr, "0.00055103", "MS(T*R)"),
        (c.ms_r_per_modality[0], "0.00308263", "MS(R) treatment 1"),
        (c.ms_r_per_modality[1], "0.00130460", "MS(R) treatment 2"),
        (c.var_r, "0.00153500", "Var(R)"),
        (c.var_tr, "0.00020040", "Var(T*R)"),
        (c.cov1, "0.00034661", "Cov1"),
        (c.cov2, "0.00034407", "Cov2"),
        (c.cov3, "0.00023903", "Cov3"),
        (c.var_error, "0.00080229", "Var(Error)"),
        (c.cov2_per_modality[0], "0.00048396", "Cov2 treatment 1"),
        (c.cov2_per_modality[1], "0.00020419", "Cov2 treatment 2"),
        (c.var_error_per_modality[0], "0.00101410", "Var(Error) treatment 1"),
        (c.var_error_per_modality[1], "0.00059047", "Var(Error) treatment 2"),
    ]:
        check(ours, published, name)
    for j, (var, cov1) in enumerate(
        [("0.00069890", "0.00037347"), ("0.00110605", "0.00076016"), ("0.00084234", "0.00035532"),
         ("0.00015058", "0.00000108"), ("0.00121357", "0.00024304")]
    ):
        check(c.var_error_per_reader[j], var, f"Var(Error) reader {j + 1}")
        check(c.cov1_per_reader[j], cov1, f"Cov1 reader {j + 1}")


def test_vandyke_rrrc(vandyke):
    t = vandyke.rrrc.test
    check(t.statistic, "4.46", "F")
    check(t.df_denominator, "15.26", "ddf")
    check(t.p_value, "0.0517", "p")
    check(t.error_term, "0.00107626", "error term")
    d = vandyke.rrrc.differences[0]
    assert (d.modality_a, d.modality_b) == ("1", "2")
    for ours, published, name in [
        (d.estimate, "-0.04380", "difference"), (d.std_error, "0.02075", "StdErr"), (d.df, "15.26", "DF"),
        (d.statistic, "-2.11", "t"), (d.p_value, "0.0517", "p"), (d.ci_lower, "-0.08796", "CI lower"),
        (d.ci_upper, "0.00036", "CI upper"),
    ]:
        check(ours, published, f"RRRC {name}")
    for m, (auc, se, df, lo, hi) in zip(
        vandyke.rrrc.modalities,
        [("0.89703704", "0.03317360", "12.74", "0.82522360", "0.96885048"),
         ("0.94083736", "0.02156637", "12.71", "0.89413783", "0.98753689")],
    ):
        for ours, published, name in [(m.estimate, auc, "AUC"), (m.std_error, se, "StdErr"), (m.df, df, "DF"),
                                      (m.ci_lower, lo, "CI lower"), (m.ci_upper, hi, "CI upper")]:
            check(ours, published, f"RRRC treatment {m.modality} {name}")


def test_vandyke_frrc(vandyke):
    t = vandyke.frrc.test
    assert t.statistic_name == "chi2" and t.df_numerator == 1 and t.df_denominator is None
    check(t.statistic, "5.47595", "X2")
    check(t.p_value, "0.0193", "p")
    d = vandyke.frrc.differences[0]
    assert np.isinf(d.df)
    for ours, published, name in [(d.std_error, "0.01872", "StdErr"), (d.statistic, "-2.34", "z"), (d.p_value, "0.0193", "p"),
                                  (d.ci_lower, "-0.08049", "CI lower"), (d.ci_upper, "-0.00711", "CI upper")]:
        check(ours, published, f"FRRC {name}")
    for m, (se, lo, hi) in zip(
        vandyke.frrc.modalities,
        [("0.02428971", "0.84943008", "0.94464399"), ("0.01677632", "0.90795637", "0.97371835")],
    ):
        check(m.std_error, se, "FRRC single StdErr")
        check(m.ci_lower, lo, "FRRC single CI lower")
        check(m.ci_upper, hi, "FRRC single CI upper")
    published_readers = [
        ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182"),
        ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501"),
        ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330"),
        ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764"),
        ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381"),
    ]
    for r, published in zip(vandyke.frrc.reader_differences, published_readers):
        for ours, value in zip([r.estimate, r.std_error, r.statistic, r.p_value, r.ci_lower, r.ci_upper], published):
            check(ours, value, f"FRRC reader {r.reader}")


def test_vandyke_rrfc(vandyke):
    t = vandyke.rrfc.test
    check(t.statistic, "8.70", "F")
    assert (t.df_numerator, t.df_denominator) == (1, 4)
    check(t.p_value, "0.0420", "p")
    d = vandyke.rrfc.differences[0]
    for ours, published in [(d.std_error, "0.01485"), (d.df, "4"), (d.statistic, "-2.95"), (d.p_value, "0.0420"),
                            (d.ci_lower, "-0.08502"), (d.ci_upper, "-0.00258")]:
        check(ours, published, "RRFC difference")
    for m, (se, lo, hi) in zip(
        vandyke.rrfc.modalities,
        [("0.02482994", "0.82809808", "0.96597599"), ("0.01615303", "0.89598936", "0.98568536")],
    ):
        assert m.df == 4
        check(m.std_error, se, "RRFC single StdErr")
        check(m.ci_lower, lo, "RRFC single CI lower")
        check(m.ci_upper, hi, "RRFC single CI upper")


def test_vandyke_one_reader_and_one_modality_outputs():
    """OR-DBM MRMC 2.51 on reader 1 only (`inst/Iowa/VanDyke1R.txt`) and modality 1 only (`VanDyke1T.txt`)."""
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    one_reader = mrmc_analysis(frame[frame["reader_id"] == "1"])
    assert one_reader.rrrc.test is None and one_reader.rrfc.test is None  # random readers need >= 2
    check(one_reader.frrc.test.statistic, "1.22011", "X2")
    check(one_reader.frrc.test.p_value, "0.2693", "p")
    d = one_reader.frrc.differences[0]
    for ours, published in [(d.estimate, "-0.02818"), (d.std_error, "0.02551"), (d.ci_lower, "-0.07818"), (d.ci_upper, "0.02182")]:
        check(ours, published, "1R FRRC difference")
    for m, (se, lo, hi) in zip(
        one_reader.frrc.modalities, [("0.03012552", "0.86060081", "0.97869066"), ("0.02214169", "0.90442917", "0.99122300")]
    ):
        for ours, published in [(m.std_error, se), (m.ci_lower, lo), (m.ci_upper, hi)]:
            check(ours, published, f"1R FRRC single {m.modality}")
    one_modality = mrmc_analysis(frame[frame["modality"] == "1"])
    assert one_modality.rrrc.test is None and one_modality.rrrc.differences == ()
    (rrrc,), (frrc,), (rrfc,) = one_modality.rrrc.modalities, one_modality.frrc.modalities, one_modality.rrfc.modalities
    for ours, published in [(rrrc.std_error, "0.03317360"), (rrrc.df, "12.74"), (rrrc.ci_lower, "0.82522360"), (rrrc.ci_upper, "0.96885048"),
                            (frrc.std_error, "0.02428971"), (frrc.ci_lower, "0.84943008"), (frrc.ci_upper, "0.94464399"),
                            (rrfc.std_error, "0.02482994"), (rrfc.ci_lower, "0.82809808"), (rrfc.ci_upper, "0.96597599")]:
        check(ours, published, "1T single-modality interval")


# --- Federica Zanca ROC: inst/Iowa/FedRoc.txt (5 modalities: all ten pairwise differences) ---------------

FEDROC_AUC = [
    ["0.90425000", "0.86425000", "0.81295000", "0.90235000", "0.84140000"],
    ["0.79820000", "0.84470000", "0.81635000", "0.83150000", "0.77300000"],
    ["0.81175000", "0.82050000", "0.75275000", "0.78865000", "0.77115000"],
    ["0.86645000", "0.87160000", "0.85730000", "0.87980000", "0.84800000"],
]
FEDROC_PAIRS = ["1 - 2", "1 - 3", "1 - 4", "1 - 5", "2 - 3", "2 - 4", "2 - 5", "3 - 4", "3 - 5", "4 - 5"]
FEDROC_RRRC = [  # difference, t, p, CI lower, CI upper (StdErr 0.01654, DF 16.80 for all)
    ("-0.00510", "-0.31", "0.7616", "-0.04002", "0.02982"),
    ("0.03533", "2.14", "0.0477", "0.00040", "0.07025"),
    ("-0.00541", "-0.33", "0.7475", "-0.04033", "0.02951"),
    ("0.03678", "2.22", "0.0402", "0.00185", "0.07170"),
    ("0.04042", "2.44", "0.0258", "0.00550", "0.07535"),
    ("-0.00031", "-0.02", "0.9851", "-0.03523", "0.03461"),
    ("0.04187", "2.53", "0.0216", "0.00695", "0.07680"),
    ("-0.04074", "-2.46", "0.0249", "-0.07566", "-0.00582"),
    ("0.00145", "0.09", "0.9312", "-0.03347", "0.03637"),
    ("0.04219", "2.55", "0.0208", "0.00727", "0.07711"),
]
FEDROC_FRRC = [  # z, p, CI lower, CI upper (StdErr 0.01670)
    ("-0.31", "0.7601", "-0.03783", "0.02763"),
    ("2.12", "0.0344", "0.00259", "0.06806"),
    ("-0.32", "0.7459", "-0.03815", "0.02732"),
    ("2.20", "0.0277", "0.00404", "0.06951"),
    ("2.42", "0.0155", "0.00769", "0.07316"),
    ("-0.02", "0.9851", "-0.03305", "0.03242"),
    ("2.51", "0.0122", "0.00914", "0.07461"),
    ("-2.44", "0.0147", "-0.07347", "-0.00800"),
    ("0.09", "0.9308", "-0.03128", "0.03418"),
    ("2.53", "0.0115", "0.00945", "0.07492"),
]
FEDROC_RRFC = [  # t, p, CI lower, CI upper (StdErr 0.01520, DF 12)
    ("-0.34", "0.7431", "-0.03822", "0.02802"),
    ("2.32", "0.0385", "0.00220", "0.06845"),
    ("-0.36", "0.7280", "-0.03854", "0.02771"),
    ("2.42", "0.0324", "0.00365", "0.06990"),
    ("2.66", "0.0208", "0.00730", "0.07355"),
    ("-0.02", "0.9839", "-0.03344", "0.03281"),
    ("2.75", "0.0175", "0.00875", "0.07500"),
    ("-2.68", "0.0200", "-0.07386", "-0.00761"),
    ("0.10", "0.9256", "-0.03167", "0.03457"),
    ("2.78", "0.0168", "0.00906", "0.07531"),
]


def test_fedroc_aucs_and_components(fedroc):
    assert fedroc.modalities == ("1", "2", "3", "4", "5") and len(fedroc.readers) == 4
    for j, row in enumerate(FEDROC_AUC):
        for i, published in enumerate(row):
            check(fedroc.reader_fom[i, j], published, f"AUC reader {j + 1} treatment {i + 1}")
    for m, published in zip(fedroc.modalities, ["0.84516250", "0.85026250", "0.80983750", "0.85057500", "0.80838750"]):
        check(fedroc.modality_fom[m], published, f"mean AUC {m}")
    c = fedroc.components
    for ours, published, name in [
        (c.ms_t, "0.00189696", "MS(T)"), (c.ms_r, "0.00729418", "MS(R)"), (c.ms_tr, "0.00046221", "MS(T*R)"),
        (c.var_r, "0.00128372", "Var(R)"), (c.var_tr, "-0.00001093", "Var(T*R)"), (c.cov1, "0.00029480", "Cov1"),
        (c.cov2, "0.00023331", "Cov2"), (c.cov3, "0.00021213", "Cov3"), (c.var_error, "0.00078912", "Var(Error)"),
    ]:
        check(ours, published, name)
    for i, published in enumerate(["0.00242212", "0.00052256", "0.00185459", "0.00257777", "0.00176596"]):
        check(c.ms_r_per_modality[i], published, f"MS(R) treatment {i + 1}")
    for j, (var, cov1) in enumerate(
        [("0.00068948", "0.00021527"), ("0.00082356", "0.00034558"), ("0.00100854", "0.00035359"), ("0.00063489", "0.00026476")]
    ):
        check(c.var_error_per_reader[j], var, f"Var(Error) reader {j + 1}")
        check(c.cov1_per_reader[j], cov1, f"Cov1 reader {j + 1}")


def test_fedroc_global_tests(fedroc):
    check(fedroc.rrrc.test.statistic, "3.47", "RRRC F")
    assert fedroc.rrrc.test.df_numerator == 4
    check(fedroc.rrrc.test.df_denominator, "16.80", "RRRC ddf")
    check(fedroc.rrrc.test.p_value, "0.0305", "RRRC p")
    check(fedroc.rrrc.test.error_term, "0.00054695", "RRRC error term")
    check(fedroc.frrc.test.statistic, "13.60126", "FRRC X2")
    check(fedroc.frrc.test.p_value, "0.0087", "FRRC p")
    check(fedroc.rrfc.test.statistic, "4.10", "RRFC F")
    assert (fedroc.rrfc.test.df_numerator, fedroc.rrfc.test.df_denominator) == (4, 12)
    check(fedroc.rrfc.test.p_value, "0.0253", "RRFC p")


def test_fedroc_all_pairwise_differences(fedroc):
    for analysis, published_rows, se in [
        (fedroc.rrrc, FEDROC_RRRC, "0.01654"), (fedroc.frrc, FEDROC_FRRC, "0.01670"), (fedroc.rrfc, FEDROC_RRFC, "0.01520")
    ]:
        assert [f"{d.modality_a} - {d.modality_b}" for d in analysis.differences] == FEDROC_PAIRS
        for d, published in zip(analysis.differences, published_rows):
            check(d.std_error, se, f"{analysis.name} {d.modality_a}-{d.modality_b} StdErr")
            values = [d.estimate, d.statistic, d.p_value, d.ci_lower, d.ci_upper][-len(published):]
            for ours, value in zip(values, published):
                check(ours, value, f"{analysis.name} {d.modality_a}-{d.modality_b}")
    for d in fedroc.rrrc.differences:
        check(d.df, "16.80", "RRRC DF")


def test_fedroc_single_modality_intervals(fedroc):
    rrrc = [
        ("0.02857824", "5.46", "0.77351391", "0.91681109"), ("0.01992816", "27.72", "0.80942311", "0.89110189"),
        ("0.02664789", "7.04", "0.74689261", "0.87278239"), ("0.02940870", "5.40", "0.77664342", "0.92450658"),
        ("0.02575835", "6.78", "0.74706747", "0.86970753"),
    ]
    frrc = [
        ("0.01833087", "0.80923466", "0.88109034"), ("0.01968838", "0.81167398", "0.88885102"),
        ("0.02009512", "0.77045178", "0.84922322"), ("0.01862661", "0.81406752", "0.88708248"),
        ("0.01967001", "0.76983500", "0.84694000"),
    ]
    rrfc = [
        ("0.02460752", "0.76685038", "0.92347462"), ("0.01142981", "0.81388774", "0.88663726"),
        ("0.02153248", "0.74131154", "0.87836346"), ("0.02538588", "0.76978581", "0.93136419"),
        ("0.02101167", "0.74151900", "0.87525600"),
    ]
    for m, (se, df, lo, hi) in zip(fedroc.rrrc.modalities, rrrc):
        for ours, value in [(m.std_error, se), (m.df, df), (m.ci_lower, lo), (m.ci_upper, hi)]:
            check(ours, value, f"RRRC single {m.modality}")
    for analysis, rows in [(fedroc.frrc, frrc), (fedroc.rrfc, rrfc)]:
        for m, (se, lo, hi) in zip(analysis.modalities, rows):
            for ours, value in [(m.std_error, se), (m.ci_lower, lo), (m.ci_upper, hi)]:
                check(ours, value, f"{analysis.name} single {m.modality}")


# --- Behaviour beyond the published outputs -----------------------------------------------------------


def test_fast_jackknife_equals_the_leave_one_out_definition():
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    crossed = crossed_scores(frame)
    slow = FigureOfMerit("auc_slow", "AUC by brute force", True, auc_values)  # no closed form: loops over cases
    np.testing.assert_allclose(AUC.jackknife(crossed.scores, crossed.truth), slow.jackknife(crossed.scores, crossed.truth), atol=1e-12)
    for name in ("mean", "proportion", "proportion_correct"):
        fom = figure_of_merit(name, threshold=3)
        brute = FigureOfMerit(name, "brute", fom.needs_truth, fom.value)
        np.testing.assert_allclose(fom.jackknife(crossed.scores, crossed.truth), brute.jackknife(crossed.scores, crossed.truth), atol=1e-12)


def test_auc_equals_scikit_learn_roc_auc():
    from sklearn.metrics import roc_auc_score

    crossed = crossed_scores(read_long_csv(DATA / "vandyke_roc.csv"))
    for i in range(2):
        for j in range(5):
            assert auc_values(crossed.scores[i, j], crossed.truth) == pytest.approx(roc_auc_score(crossed.truth, crossed.scores[i, j]))


def test_a_custom_figure_of_merit_plugs_in():
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    sensitivity = FigureOfMerit(
        "sensitivity", "sensitivity at rating >= 3", True, lambda s, t: ((s >= 3) & (t == 1)).sum(-1) / (t == 1).sum()
    )
    result = mrmc_analysis(frame, fom=sensitivity)
    crossed = crossed_scores(frame)
    expected = ((crossed.scores >= 3) & (crossed.truth == 1)).sum(-1) / 45
    np.testing.assert_allclose(result.reader_fom, expected)
    assert result.rrrc.test.p_value > 0 and result.fom_label == "sensitivity at rating >= 3"


def test_non_inferiority_is_one_sided_and_matches_the_ci_lower_limit(vandyke):
    frame = read_long_csv(DATA / "vandyke_roc.csv")
    # modality 1 vs reference 2: difference -0.0438, lower 95% limit -0.08796
    loose = mrmc_analysis(frame, margin=0.10, reference="2").non_inferiority
    tight = mrmc_analysis(frame, margin=0.05, reference="2").non_inferiority
    assert loose.sidedness == "one-sided" and "<= -0.1" in loose.hypothesis
    assert (loose.test_modality, loose.reference_modality) == ("1", "2")
    assert loose.non_inferior and loose.p_value < 0.025
    assert not tight.non_inferior and tight.p_value > 0.025
    # one-sided p from t = (difference + margin) / SE on the Hillis ddf
    from scipy import stats

    d = vandyke.rrrc.differences[0]
    assert loose.p_value == pytest.approx(stats.t.sf((d.estimate + 0.10) / d.std_error, d.df))
    assert loose.ci_lower == pytest.approx(d.ci_lower)
    summary = mrmc_analysis(frame, margin=0.10, reference="2").summary()
    assert "one-sided p" in summary and "non-inferior" in summary


def test_result_serialises_and_summarises(vandyke):
    import json

    data = json.loads(json.dumps(vandyke.to_dict()))
    assert data["analyses"]["RRRC"]["test"]["statistic_name"] == "F"
    assert data["analyses"]["FRRC"]["differences"][0]["df"] == "inf"
    assert data["modality_fom"]["1"] == pytest.approx(0.89703704, abs=1e-8)
    text = vandyke.summary()
    assert "F(1, 15.26) = 4.4563, p = 0.0517" in text and "[-0.0880, 0.0004]" in text


def test_mean_score_and_proportion_figures_of_merit_need_no_truth():
    rng = np.random.default_rng(1)
    rows = [
        (r, c, m, np.nan, int(np.clip(round(3 + (m == "synthetic") * 0.3 + rng.normal(0, 1)), 1, 5)))
        for r in range(4) for c in range(30) for m in ("real", "synthetic")
    ]
    frame = pd.DataFrame(rows, columns=["reader_id", "case_id", "modality", "truth", "score"])
    result = mrmc_analysis(frame, fom="mean")
    assert result.n_positive is None
    expected = frame.groupby(["modality", "reader_id"])["score"].mean().unstack().to_numpy()
    np.testing.assert_allclose(result.reader_fom, expected)
    prop = mrmc_analysis(frame, fom="proportion", threshold=3)
    assert prop.reader_fom.max() <= 1 and prop.rrrc.test is not None
    with pytest.raises(InputError, match="no truth"):
        mrmc_analysis(frame, fom="auc")
    with pytest.raises(JobError, match="--threshold"):
        mrmc_analysis(frame, fom="proportion")


def test_unbalanced_design_is_refused_with_the_missing_read_named():
    frame = read_long_csv(DATA / "vandyke_roc.csv").iloc[1:]
    with pytest.raises(InputError, match="unbalanced .* reader '1', case '1', modality '1'"):
        mrmc_analysis(frame, source="study.csv")
