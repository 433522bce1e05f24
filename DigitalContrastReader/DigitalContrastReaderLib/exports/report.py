"""HTML report of a reader study: tables and figures for each clinical use.

``write_report(grading, out_dir, ...)`` writes ``out_dir/report.html`` and its PNG figures in
``out_dir/figures/`` (each file written atomically) and returns the HTML path. Inputs are long
reading tables (``long_table.py``):

- ``grading``: image-quality grades, test (e.g. ``synthetic``) and reference (``real``) modality,
  fully crossed. If it has a ``clinical_use`` column, the report has one section per use.
  If every case has a 0/1 truth, an MRMC ROC analysis (AUC) is added.
- ``turing`` (optional): a visual Turing test table (``turing.py``); same ``clinical_use`` rule.
- ``detection``, ``preference``, ``other_grades`` (optional, by task or question name): detection
  ratings with truth (MRMC ROC AUC), preference scores (1 test preferred, 0 the other, 0.5 none),
  and more graded questions (one table row each); see ``report_sections.py``.

Every table may be fully crossed or split-plot (reader groups reading their own cases).

Figures: grade distributions per modality, VGC curves (per reader and pooled), a per-reader
forest plot of the mean grade difference with the reader-and-case-aware pooled estimate, and
Turing accuracy per reader with exact CIs and the equivalence band. Plots use matplotlib's
object API with the Agg canvas (no pyplot, no global backend change: safe inside Slicer).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import InputError, OutputError
from DigitalContrastLib.common.report_html import BASE_CSS as CSS
from DigitalContrastLib.common.report_html import FigureWriter as _Figures
from DigitalContrastLib.common.report_html import format_ci as _ci
from DigitalContrastLib.common.report_html import format_number as _f
from DigitalContrastLib.common.report_html import html_img as _img
from DigitalContrastLib.common.report_html import html_table as _table
from DigitalContrastReaderLib import __version__
from DigitalContrastReaderLib.analysis.formatting import format_p
from DigitalContrastReaderLib.analysis.long_table import validate_long_table
from DigitalContrastReaderLib.analysis.mrmc import mrmc_analysis
from DigitalContrastReaderLib.analysis.turing import TuringResult, turing_test
from DigitalContrastReaderLib.analysis.visual_grading import (
    MeanDifferenceResult,
    VGCResult,
    mean_paired_difference,
    paired_ordinal_tests,
    vgc_analysis,
)

from .report_sections import agreement_rows, detection_section, graded_questions_section, preference_section


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "study"


# ---------------------------------------------------------------------------------------------
# Plots


def _plot_distributions(frame: pd.DataFrame, modalities: list[str]):
    def draw(fig):
        ax = fig.add_subplot()
        grades = np.sort(frame["score"].unique())
        width = 0.8 / len(modalities)
        for i, m in enumerate(modalities):
            scores = frame.loc[frame["modality"] == m, "score"]
            share = [(scores == g).mean() for g in grades]
            ax.bar(np.arange(len(grades)) + (i - (len(modalities) - 1) / 2) * width, share, width, label=f"{m} (mean {scores.mean():.2f})")
        ax.set_xticks(np.arange(len(grades)), [f"{g:g}" for g in grades])
        ax.set_xlabel("score")
        ax.set_ylabel("share of reads")
        ax.set_title("Score distribution per modality (all readers)")
        ax.legend()

    return draw


def _plot_vgc(vgc: VGCResult):
    def draw(fig):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="equal quality (AUC 0.5)")
        for reader, (x, y) in vgc.reader_curves.items():
            ax.plot(x, y, lw=1, alpha=0.6, marker=".", label=f"{reader} ({vgc.reader_auc[reader]:.3f})")
        x, y = vgc.curve
        ax.plot(x, y, color="black", lw=2.5, marker="o", label=f"pooled ({vgc.pooled_auc:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"P(score >= c | {vgc.reference_modality})")
        ax.set_ylabel(f"P(score >= c | {vgc.test_modality})")
        ax.set_title(f"VGC: AUC {vgc.auc:.3f}, 95% CI {_ci(vgc.ci_lower, vgc.ci_upper)}")
        ax.legend(fontsize=7, loc="lower right")

    return draw


def _plot_forest(diff: MeanDifferenceResult, margin: float | None):
    def draw(fig):
        ax = fig.add_subplot()
        rows = list(diff.per_reader)
        ys = np.arange(len(rows))[::-1]
        for y, r in zip(ys, rows):
            ax.errorbar(r.difference, y, xerr=[[r.difference - r.ci_lower], [r.ci_upper - r.difference]], fmt="s", color="tab:blue", capsize=3)
        y_pooled = -1
        if np.isfinite(diff.ci_lower):
            ax.errorbar(diff.difference, y_pooled, xerr=[[diff.difference - diff.ci_lower], [diff.ci_upper - diff.difference]],
                        fmt="D", color="black", capsize=4, ms=8)
        ax.axvline(0, color="grey", lw=1)
        if margin is not None:
            ax.axvline(-margin, color="tab:red", lw=1, ls="--", label=f"non-inferiority margin -{margin:g}")
            fig.legend(fontsize=8, loc="outside lower center")
        ax.set_yticks([*ys, y_pooled], [r.reader for r in rows] + ["all readers (RRRC)"])
        ax.set_xlabel(f"mean score difference {diff.test_modality} - {diff.reference_modality}")
        ax.set_title("Per-reader difference with 95% CI")

    return draw


def _plot_turing(turing: TuringResult):
    def draw(fig):
        ax = fig.add_subplot()
        readers = list(turing.readers)
        ys = np.arange(len(readers))[::-1]
        low, high = 0.5 - turing.margin, 0.5 + turing.margin
        ax.axvspan(low, high, color="tab:green", alpha=0.12, label=f"equivalence band {low:.2f}-{high:.2f}")
        ax.axvline(0.5, color="grey", lw=1)
        for y, r in zip(ys, readers):
            ax.errorbar(r.accuracy, y, xerr=[[r.accuracy - r.ci_lower], [r.ci_upper - r.accuracy]], fmt="o", color="tab:blue", capsize=3)
        labels = [r.reader for r in readers]
        ticks = list(ys)
        if turing.accuracy is not None:
            a = turing.accuracy
            ax.errorbar(a.estimate, -1, xerr=[[a.estimate - a.ci_lower], [a.ci_upper - a.estimate]], fmt="D", color="black", capsize=4, ms=8)
            labels.append("mean (RRRC)")
            ticks.append(-1)
        ax.set_yticks(ticks, labels)
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy identifying synthetic vs real (95% CI)")
        ax.set_title("Visual Turing test: accuracy per reader")
        fig.legend(fontsize=8, loc="outside lower center")

    return draw


# ---------------------------------------------------------------------------------------------
# Sections


def _grading_section(frame, use: str, figures: _Figures, test: str, reference: str, margin, alpha) -> str:
    slug = _slug(use)
    parts = []
    modalities = sorted(frame["modality"].unique())
    n_readers, n_cases = frame["reader_id"].nunique(), frame["case_id"].nunique()
    parts.append(
        f"<p>{n_readers} readers, {n_cases} cases, modalities {', '.join(html.escape(m) for m in modalities)}; "
        f"{len(frame)} reads.</p>"
    )
    parts.append("<h3>Score distributions</h3>")
    parts.append(_img(figures.save(f"{slug}-distribution", _plot_distributions(frame, modalities)), "score distributions"))
    summary_rows = [
        [m, f"{g['score'].mean():.3f}", f"{g['score'].median():g}", f"{g['score'].std():.3f}", len(g)]
        for m, g in frame.groupby("modality")
    ]
    parts.append(_table(["modality", "mean", "median", "sd", "reads"], summary_rows))

    if test not in modalities or reference not in modalities:
        parts.append(f'<p class="note">Paired analyses skipped: the table needs modalities {test!r} and {reference!r}.</p>')
        return "\n".join(parts)

    diff = mean_paired_difference(frame, test, reference, alpha=alpha, margin=margin)
    parts.append(f"<h3>Mean paired difference {html.escape(test)} &minus; {html.escape(reference)}</h3>")
    rows = [["all readers (RRRC)", _f(diff.difference), _f(diff.std_error), _f(diff.df, 2), _ci(diff.ci_lower, diff.ci_upper), format_p(diff.p_value)]]
    rows += [[r.reader, _f(r.difference), _f(r.std_error), "z", _ci(r.ci_lower, r.ci_upper), ""] for r in diff.per_reader]
    parts.append(_table(["", "difference", "std. error", "df", f"{100 * (1 - alpha):g}% CI", "p (two-sided)"], rows))
    parts.append(f'<p class="note">Method: {html.escape(diff.method)}. Per-reader rows: that reader only, fixed-reader (z) interval.</p>')
    if diff.non_inferiority is not None:
        n = diff.non_inferiority
        verdict = "non-inferior" if n.non_inferior else "non-inferiority not shown"
        parts.append(
            f'<p class="verdict">Non-inferiority with margin {n.margin:g}: {html.escape(n.hypothesis)}; one-sided p = '
            f"{format_p(n.p_value)}; lower 95% limit {_f(n.ci_lower)} &rarr; {verdict}.</p>"
        )
    parts.append(_img(figures.save(f"{slug}-forest", _plot_forest(diff, margin), size=(6.4, 0.5 * len(diff.per_reader) + 2.2)), "forest plot"))

    vgc = vgc_analysis(frame, test, reference, alpha=alpha)
    parts.append("<h3>Visual grading characteristics (VGC)</h3>")
    parts.append(
        f"<p>AUC<sub>VGC</sub> = {_f(vgc.auc)} ({100 * (1 - alpha):g}% CI {_ci(vgc.ci_lower, vgc.ci_upper)}, random readers and cases; "
        f"p = {format_p(vgc.p_value)} for AUC<sub>VGC</sub> = 0.5). Above 0.5: {html.escape(test)} graded higher.</p>"
    )
    parts.append(_img(figures.save(f"{slug}-vgc", _plot_vgc(vgc), size=(5.6, 5.2)), "VGC curves"))
    parts.append(_table(["reader", "AUC_VGC"], [[r, _f(a)] for r, a in vgc.reader_auc.items()]))

    ordinal = paired_ordinal_tests(frame, test, reference)
    parts.append("<h3>Paired grade table</h3>")
    parts.append(
        _table([f"{reference} \\ {test}", *(f"{g:g}" for g in ordinal.grades)], [[f"{g:g}", *row] for g, row in zip(ordinal.grades, ordinal.table)])
    )
    parts.append(
        f"<p>Stuart&ndash;Maxwell marginal homogeneity &chi;&sup2;({_f(ordinal.stuart_maxwell_df, 0)}) = {_f(ordinal.stuart_maxwell_statistic, 3)}, "
        f"p = {format_p(ordinal.stuart_maxwell_p)}; Bowker symmetry &chi;&sup2;({_f(ordinal.bowker_df, 0)}) = {_f(ordinal.bowker_statistic, 3)}, "
        f"p = {format_p(ordinal.bowker_p)}.</p><p class=\"note\">{html.escape(ordinal.note)}</p>"
    )

    rows = agreement_rows(frame, modalities) if n_readers >= 2 else []
    if rows:
        parts.append("<h3>Inter-reader agreement</h3>")
        parts.append(_table(["modality", "Cohen κ", "linear κ", "quadratic κ", "Fleiss κ", "Krippendorff α (ordinal)", "ICC(2,1)", "ICC(2,k)"], rows))
        parts.append('<p class="note">Cohen&apos;s kappas are means over reader pairs (in a split-plot study: pairs of one reader group).</p>')

    if frame["truth"].notna().all() and frame["truth"].nunique() == 2:
        result = mrmc_analysis(frame, fom="auc", alpha=alpha, modalities=[test, reference])
        parts.append("<h3>ROC analysis (MRMC, AUC)</h3>")
        parts.append(f"<pre>{html.escape(result.summary())}</pre>")
    return "\n".join(parts)


def _turing_section(frame, use: str, figures: _Figures, synthetic_label: str, threshold: float, margin: float, alpha: float) -> str:
    result = turing_test(frame, synthetic_label=synthetic_label, threshold=threshold, margin=margin, alpha=alpha)
    slug = _slug(use)
    parts = ["<h3>Visual Turing test</h3>"]
    parts.append(f'<p class="verdict">{html.escape(result.conclusion)}</p>')
    parts.append(_img(figures.save(f"{slug}-turing", _plot_turing(result), size=(6.4, 0.45 * len(result.readers) + 2.2)), "Turing accuracy"))
    rows = [
        [r.reader, r.n_reads, _f(r.accuracy), _ci(r.ci_lower, r.ci_upper), format_p(r.p_value_vs_chance), format_p(r.equivalence_p),
         "yes" if r.equivalent_to_chance else "no"]
        for r in result.readers
    ]
    parts.append(_table(["reader", "reads", "accuracy", "95% CI (Clopper-Pearson)", "p vs 0.5", "TOST p", "within band"], rows))
    for pooled in (result.accuracy, result.auc):
        if pooled is not None:
            parts.append(
                f"<p>{html.escape(pooled.name)}: {_f(pooled.estimate)}, 95% CI {_ci(pooled.ci_lower, pooled.ci_upper)}; "
                f"{100 * (1 - 2 * alpha):g}% CI {_ci(pooled.equivalence_ci_lower, pooled.equivalence_ci_upper)}, TOST p = {format_p(pooled.equivalence_p)}.</p>"
            )
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in result.notes]
    return "\n".join(parts)


def _by_use(frame: pd.DataFrame | None, default: str, what: str) -> dict[str, pd.DataFrame]:
    """Checked tables per clinical use (one use, ``default``, without a ``clinical_use`` column)."""
    if frame is None or len(frame) == 0:
        return {}
    if "clinical_use" not in frame.columns:
        return {default: validate_long_table(frame, what)}
    return {
        str(u): validate_long_table(g.drop(columns="clinical_use"), f"{what} ({u})")
        for u, g in frame.groupby("clinical_use", sort=True)
    }


def write_report(
    grading: pd.DataFrame,
    out_dir: str | Path,
    title: str = "Reader study report",
    test: str = "synthetic",
    reference: str = "real",
    turing: pd.DataFrame | None = None,
    margin: float | None = None,
    synthetic_label: str = "synthetic",
    turing_threshold: float = 0.5,
    turing_margin: float = 0.10,
    alpha: float = 0.05,
    detection: Mapping[str, pd.DataFrame] | None = None,
    preference: Mapping[str, pd.DataFrame] | None = None,
    other_grades: Mapping[str, pd.DataFrame] | None = None,
    grading_question: str | None = None,
    notes: Sequence[str] = (),
    design: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (+ ``figures/*.png``) and return the HTML path.

    Args:
        grading: long table of quality grades (see the module docstring); may be empty only if
            ``turing`` is given.
        out_dir: folder to write (created if needed).
        title: report heading; also the section name when there is no ``clinical_use`` column.
        test, reference: modalities compared (difference = test − reference).
        turing: optional long table of a visual Turing test.
        detection, preference, other_grades: optional tables by task (question) name (module docstring).
        grading_question: the question ``grading`` holds (named in its heading).
        notes: what an interim analysis left out (shown under the title, which then says "interim").
        design: one line on the study design, shown under the title.
        margin: optional non-inferiority margin for the mean grade difference (grade units).
        synthetic_label, turing_threshold, turing_margin: Turing-test settings (``turing.py``).
        alpha: CIs are (1 − alpha).
    """
    grading_name = f"{title}: {grading_question}" if grading_question else title
    grading_uses = _by_use(grading, grading_name, "the grading table")
    turing_uses = _by_use(turing, grading_name if grading_question is None else f"{title}: Turing test", "the Turing-test table")
    detection, preference, other_grades = dict(detection or {}), dict(preference or {}), dict(other_grades or {})
    if not (grading_uses or turing_uses or detection or preference or other_grades):
        raise InputError("the report has no data: give a grading table, a Turing-test table or both.", code="empty")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot create the report folder ({error.strerror}); choose a writable --out folder.") from None
    figures = _Figures(out_dir)
    sections = []
    for use in sorted(set(grading_uses) | set(turing_uses)):
        body = [f'<h2 id="{_slug(use)}">{html.escape(use)}</h2>']
        if use in grading_uses:
            body.append(_grading_section(grading_uses[use], use, figures, str(test), str(reference), margin, alpha))
        if use in turing_uses:
            body.append(_turing_section(turing_uses[use], use, figures, str(synthetic_label), turing_threshold, turing_margin, alpha))
        sections.append("\n".join(body))
    if other_grades:
        sections.append(f'<h2 id="graded-questions">Graded questions</h2>\n{graded_questions_section(other_grades, str(test), str(reference), alpha)}')
    for name, frame in detection.items():
        sections.append(f'<h2 id="{_slug(name)}-detection">Detection: {html.escape(name)}</h2>\n'
                        + detection_section(name, validate_long_table(frame, f"detection task {name}"), str(reference), alpha))
    for name, frame in preference.items():
        sections.append(f'<h2 id="{_slug(name)}-preference">Preference: {html.escape(name)}</h2>\n'
                        + preference_section(name, validate_long_table(frame, f"preference task {name}"), alpha))
    heading = f"{title} (interim)" if notes else title
    preamble = "".join(f'<p class="note">{html.escape(text)}</p>' for text in ([design] if design else []) + list(notes))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>\n<h1>{html.escape(heading)}</h1>\n{preamble}"
        f'<p class="note">DigitalContrast reader-study statistics {__version__}, {stamp}. Confidence intervals are '
        f"{100 * (1 - alpha):g}% two-sided unless stated; MRMC inference by Obuchowski&ndash;Rockette with Hillis df.</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    return atomic_write_text(out_dir / "report.html", document)
