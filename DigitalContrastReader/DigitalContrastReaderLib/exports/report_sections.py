"""HTML sections of the reader-study report beyond the grading and Turing sections of ``report.py``:
detection (MRMC ROC AUC), preference (share preferring the test image), the table of every graded
question, and inter-reader agreement by reader group.

Each function takes checked long tables (``long_table.py``), fully crossed or split-plot
(``reading_design.py``), and returns an HTML fragment.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd

from DigitalContrastLib.common.report_html import format_ci as _ci
from DigitalContrastLib.common.report_html import format_number as _f
from DigitalContrastLib.common.report_html import html_table as _table
from DigitalContrastReaderLib.analysis.agreement import agreement_analysis
from DigitalContrastReaderLib.analysis.formatting import format_p, interval
from DigitalContrastReaderLib.analysis.mrmc import mrmc_analysis
from DigitalContrastReaderLib.analysis.reading_design import reading_design
from DigitalContrastReaderLib.analysis.visual_grading import mean_paired_difference, vgc_analysis


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


def detection_section(name: str, frame: pd.DataFrame, reference: str, alpha: float) -> str:
    """MRMC ROC analysis of a detection task: AUC per source and each source's difference to ``reference``."""
    result = mrmc_analysis(frame, fom="auc", alpha=alpha, source=f"detection task {name}")
    parts = ["<h3>ROC AUC of the decision and confidence rating (MRMC)</h3>",
             f"<p>{html.escape(result.design)}; {result.n_positive} cases with the finding, {result.n_negative} without.</p>"]
    rows = [[m.modality, _f(m.estimate), _f(m.std_error), _f(m.df, 2), _ci(m.ci_lower, m.ci_upper)] for m in result.rrrc.modalities]
    parts.append(_table(["source", "AUC (mean over readers)", "std. error", "df", f"{_level(alpha)} CI (RRRC)"], rows))
    if result.rrrc.test is not None:
        t = result.rrrc.test
        parts.append(f"<p>Equal AUC in every source: F({_f(t.df_numerator, 0)}, {_f(t.df_denominator, 2)}) = "
                     f"{_f(t.statistic, 3)}, p = {format_p(t.p_value)} (random readers and cases).</p>")
        others = [m for m in result.modalities if m != reference] if reference in result.modalities else []
        diffs = [result.difference(m, reference) for m in others]
        rows = [[f"{d.modality_a} - {d.modality_b}", _f(d.estimate), _f(d.std_error), _ci(d.ci_lower, d.ci_upper),
                 format_p(d.p_value)] for d in diffs]
        if rows:
            parts.append(_table(["difference", "estimate", "std. error", f"{_level(alpha)} CI (RRRC)", "p"], rows))
    parts.append(f'<details><summary>Full MRMC output</summary><pre>{html.escape(result.summary())}</pre></details>')
    return "\n".join(parts)


def preference_section(name: str, frame: pd.DataFrame, alpha: float) -> str:
    """Share of reads preferring the test source (ties count half), with its RRRC CI and the test against ½."""
    parts = ["<h3>Which image the readers would rather report from</h3>"]
    for test, reads in frame.groupby("modality", sort=True):
        counts = reads["score"].value_counts()
        n = len(reads)
        prefer, equal, other = (int(counts.get(v, 0)) for v in (1.0, 0.5, 0.0))
        result = mrmc_analysis(reads, fom="mean", alpha=alpha, source=f"preference task {name}")
        parts.append(f"<p>{n} reads ({html.escape(result.design)}): the {html.escape(str(test))} image was preferred in {prefer}, "
                     f"the other in {other}, no preference in {equal}.</p>")
        if result.rrrc.modalities:
            m = result.rrrc.modalities[0]
            _, p_value, _, _ = interval(m.estimate - 0.5, m.std_error, m.df, alpha)
            parts.append(
                f"<p>Share preferring {html.escape(str(test))} (ties count half): {_f(m.estimate, 3)}, {_level(alpha)} CI "
                f"{_ci(m.ci_lower, m.ci_upper)} (random readers and cases, df {_f(m.df, 2)}); p = {format_p(p_value)} "
                "against no preference (0.5).</p>")
        else:
            parts.append('<p class="note">One reader: no reader- and case-aware interval.</p>')
        per_reader = reads.groupby("reader_id")["score"].mean()
        parts.append(_table(["reader", f"share preferring {test}"], [[r, _f(v, 3)] for r, v in per_reader.items()]))
    return "\n".join(parts)


def graded_questions_section(grades: Mapping[str, pd.DataFrame], test: str, reference: str, alpha: float) -> str:
    """One row per graded question: mean difference test − reference and AUC_VGC, each with its RRRC CI."""
    rows = []
    for key, frame in grades.items():
        diff = mean_paired_difference(frame, test, reference, alpha=alpha, source=f"question {key}")
        vgc = vgc_analysis(frame, test, reference, alpha=alpha, source=f"question {key}")
        rows.append([key, _f(diff.mean_test, 3), _f(diff.mean_reference, 3), _f(diff.difference, 3),
                     _ci(diff.ci_lower, diff.ci_upper), format_p(diff.p_value), _f(vgc.auc, 3), _ci(vgc.ci_lower, vgc.ci_upper)])
    return "\n".join([
        _table(["question", f"mean {test}", f"mean {reference}", "difference", f"{_level(alpha)} CI", "p",
                "AUC_VGC", f"{_level(alpha)} CI"], rows),
        '<p class="note">Difference and AUC<sub>VGC</sub> with Obuchowski&ndash;Rockette intervals (random readers and '
        "cases); AUC<sub>VGC</sub> above 0.5: the test source graded higher.</p>",
    ])


def agreement_rows(frame: pd.DataFrame, modalities: list[str]) -> list[list[str]]:
    """Agreement per modality and, in a split-plot study, per reader group (readers sharing cases)."""
    rows = []
    for m in modalities:
        design = reading_design(frame, [m])
        for group in design.groups:
            if len(group.readers) < 2:
                continue
            reads = frame[frame["reader_id"].isin(group.readers)]
            a = agreement_analysis(reads, m)
            icc = {i.form: i for i in a.icc}
            label = m if not design.is_split_plot else f"{m} (readers {', '.join(group.readers)})"
            rows.append(
                [label, _f(a.mean_kappa["none"], 3), _f(a.mean_kappa["linear"], 3), _f(a.mean_kappa["quadratic"], 3),
                 _f(a.fleiss_kappa, 3), _f(a.krippendorff["ordinal"], 3),
                 _f(icc["ICC(2,1)"].value, 3) if "ICC(2,1)" in icc else "n/a",
                 _f(icc["ICC(2,k)"].value, 3) if "ICC(2,k)" in icc else "n/a"]
            )
    return rows
