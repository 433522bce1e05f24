"""``report.html`` of a cohort evaluation: for a scientist who wants to look, not only read.

Sections: the counts and what ran; a summary table (n, mean, median, bootstrap CI, SD per metric);
the metric distributions (one panel per metric, every case a dot); Bland–Altman plots of the
median lumen HU and the maximum enhanced-lumen diameter (synthetic vs real); the per-case table
(failed cases with their reason) linking each case's picture; the pictures themselves
(non-contrast | synthetic | real | difference, rendered by ``render.side_by_side``); timings; the
energy and carbon ledger with its method; how the figures were computed.

Figures are PNG files under ``DIR/figures/`` drawn with matplotlib's object API on the Agg
canvas (``report_html.FigureWriter``); every image is referenced by a path relative to the
report, so the folder can be moved or zipped whole.
"""

from __future__ import annotations

import html
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.report_html import (
    BASE_CSS,
    FigureWriter,
    RawHTML,
    format_ci,
    format_number,
    html_img,
    html_table,
)

from .carbon import CONTRAST_CT_KG_CO2E, CONTRAST_CT_SOURCE
from .case import PICTURE_FILE
from .table import STATUS_OK, as_float

CSS = BASE_CSS + """
.failed td { background: #fdecea; } .pictures figure { margin: 1.2em 0; }
figcaption { font-size: 0.9em; color: #444; } .synthetic { color: #a00; font-weight: 600; }
table.cases { font-size: 0.82em; }
table.cases td:nth-child(3), table.cases th:nth-child(3) { text-align: left; max-width: 14em; }
table.cases img { width: 120px; max-width: none; margin: 0; } .pair img { width: 49%; }
"""

#: Columns of the per-case table: (metrics.csv column, header, format).
CASE_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("body_mae_hu", "body MAE HU", ".1f"),
    ("body_psnr_db", "PSNR dB", ".2f"),
    ("body_ssim", "SSIM", ".3f"),
    ("lumen_bias_hu", "lumen bias HU", ".1f"),
    ("lumen_dice", "lumen Dice", ".3f"),
    ("max_diameter_error_mm", "max diam. error mm", ".1f"),
    ("seconds_on_case", "s on case", ".1f"),
    ("energy_j", "energy J", ".3g"),
    ("co2e_g", "CO2e g", ".3g"),
)


def _dash(value: Any, spec: str) -> str:
    v = as_float(value)
    return "–" if not np.isfinite(v) else format(v, spec)


def _plot_distributions(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]]):
    names = [n for n, m in metrics.items() if m.get("n")]

    def draw(fig):
        if not names:
            ax = fig.add_subplot()
            ax.text(0.5, 0.5, "no case with metrics", ha="center", va="center")
            ax.set_axis_off()
            return
        cols = 5
        nrows = int(np.ceil(len(names) / cols))
        rng = np.random.default_rng(0)  # fixed horizontal jitter: the same picture every time
        for k, name in enumerate(names):
            ax = fig.add_subplot(nrows, cols, k + 1)
            values = np.array([as_float(r.get(name)) for r in rows if r.get("status") == STATUS_OK])
            values = values[np.isfinite(values)]
            ax.boxplot(values, widths=0.5, showfliers=False)
            ax.scatter(1 + rng.uniform(-0.12, 0.12, values.size), values, s=14, color="tab:blue", zorder=3)
            m = metrics[name]
            ax.set_title(textwrap.fill(m["label"], 22) + f" (n={m['n']})", fontsize=7)
            ax.set_ylabel(m.get("unit") or "", fontsize=8)
            ax.set_xticks([])
            ax.tick_params(labelsize=7)

    return draw


def _plot_bland_altman(analysis: Mapping[str, Any]):
    def draw(fig):
        ax = fig.add_subplot()
        unit = analysis.get("unit", "")
        means, diffs = np.asarray(analysis["means"]), np.asarray(analysis["differences"])
        title = f"{analysis['label']}: synthetic vs real (n={analysis['n']})"
        if analysis["n"] == 0:
            ax.text(0.5, 0.5, "no case with both measurements\n(labels and a real scan are needed)", ha="center", va="center")
            ax.set_axis_off()
            ax.set_title(title, fontsize=10)
            return
        ax.scatter(means, diffs, color="tab:blue", zorder=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axhline(analysis["bias"], color="tab:red", lw=1.2, label=f"bias {analysis['bias']:.1f} {unit}")
        if analysis.get("sd") is not None:
            for key, text in (("loa_high", "+1.96 SD"), ("loa_low", "-1.96 SD")):
                ax.axhline(analysis[key], color="tab:red", lw=1, ls="--", label=f"{text} {analysis[key]:.1f} {unit}")
        ax.set_xlabel(f"mean of synthetic and real ({unit})")
        ax.set_ylabel(f"synthetic - real ({unit})")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="best")

    return draw


def _summary_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for m in metrics.values():
        ci = m.get("ci95_mean") or [None, None]
        rows.append([f"{m['label']}" + (f" ({m['unit']})" if m.get("unit") else ""), m["n"], format_number(m["mean"], 3),
                     format_number(m["median"], 3), format_ci(ci[0], ci[1], 3), format_number(m["sd"], 3)])
    return html_table(["metric", "n", "mean", "median", "95% CI of the mean", "SD"], rows)


def _case_table(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> str:
    headers = ["case", "status", "reason"] + [h for _, h, _ in CASE_TABLE_COLUMNS] + ["energy method", "picture"]
    body = []
    for r in rows:
        picture = Path("cases") / str(r["case_id"]) / PICTURE_FILE
        if (out_dir / picture).is_file():
            link = RawHTML(f'<a href="#case-{html.escape(str(r["case_id"]))}">'
                           f'{html_img(picture.as_posix(), "case " + str(r["case_id"]))}</a>')
        else:
            link = "–"
        body.append([r["case_id"], r.get("status", ""), r.get("reason", "") or ""]
                    + [_dash(r.get(c), d) for c, _, d in CASE_TABLE_COLUMNS] + [r.get("energy_method") or "–", link])
    return html_table(headers, body, css_class="cases",
                      row_classes=["failed" if r.get("status") != STATUS_OK else None for r in rows])


def _pictures(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> str:
    parts = []
    for r in rows:
        picture = Path("cases") / str(r["case_id"]) / PICTURE_FILE
        if not (out_dir / picture).is_file():
            continue
        caption = (f"Case {html.escape(str(r['case_id']))}: body MAE {_dash(r.get('body_mae_hu'), '.1f')} HU, "
                   f"lumen bias {_dash(r.get('lumen_bias_hu'), '.1f')} HU, lumen Dice {_dash(r.get('lumen_dice'), '.3f')}, "
                   f"max diameter {_dash(r.get('max_diameter_mm_pred'), '.1f')} mm synthetic vs "
                   f"{_dash(r.get('max_diameter_mm_ref'), '.1f')} mm real.")
        parts.append(f'<figure id="case-{html.escape(str(r["case_id"]))}">'
                     f'<a href="{html.escape(picture.as_posix())}">{html_img(picture.as_posix(), "case " + str(r["case_id"]))}</a>'
                     f"<figcaption>{caption}</figcaption></figure>")
    if not parts:
        return "<p>No case finished: there is nothing to show.</p>"
    return '<div class="pictures">' + "\n".join(parts) + "</div>"


def _energy_section(energy: Mapping[str, Any]) -> str:
    grid = energy.get("grid") or {}
    methods = ", ".join(f"{k}: {v} job(s)" for k, v in sorted((energy.get("methods") or {}).items())) or "none"
    per_job = energy.get("co2e_g_per_job")
    ratio = energy.get("ratio_ct_to_synthesis")
    rows = [
        ["syntheses with an energy figure", energy.get("jobs", 0)],
        ["energy, all syntheses", f"{format_number(energy.get('energy_j'), 1)} J ({format_number(energy.get('energy_kwh'), 6)} kWh)"],
        ["CO2e, all syntheses", f"{format_number(energy.get('co2e_g'), 3)} g"],
        ["CO2e per synthesis (mean)", f"{format_number(per_job, 3)} g"],
        ["method of each figure", methods],
        ["grid intensity", f"{format_number(grid.get('g_per_kwh'), 0)} g CO2e/kWh ({html.escape(str(grid.get('source', '')))})"],
    ]
    comparison = (
        f"<p>A contrast-enhanced CT has a life-cycle footprint of about {CONTRAST_CT_KG_CO2E:g} kg CO2e "
        f"({html.escape(CONTRAST_CT_SOURCE)}). A successful synthesis <em>could avoid</em> that acquisition "
        f"(not the non-contrast scan it starts from); one synthesis here cost {format_number(per_job, 3)} g CO2e"
        + (f", about 1/{ratio:,.0f} of it" if ratio is not None and np.isfinite(ratio) else "")
        + ". Whether a synthetic image can replace the contrast scan is what this evaluation is for; the "
          "comparison is context, not a measured saving.</p>"
    )
    method_note = (
        '<p class="note">Each figure\'s method is in the <code>energy_method</code> column of metrics.csv: '
        "<code>nvml</code> (GPU energy counter), <code>rapl</code> (CPU package counters), "
        "<code>estimate_cpu_tdp</code> (assumed watts per core &times; cores &times; seconds) or "
        "<code>estimate_gpu_board</code> (assumed board power &times; seconds). The window is the worker's own "
        "time for the job (<code>energy_window_s</code>); counters cover whole devices, every process on them.</p>"
    )
    return html_table(["quantity", "value"], rows) + comparison + method_note


def write_cohort_report(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> Path:
    """Write ``out_dir/report.html`` (+ ``figures/*.png``) and return its path.

    Args:
        out_dir: the evaluation's output folder (case pictures under ``cases/<id>/``).
        rows: the ``metrics.csv`` rows (dicts; numbers or text).
        summary: the ``summary.json`` content (``cohort.summarize``).
    """
    out = Path(out_dir)
    figures = FigureWriter(out)
    counts = summary["counts"]
    metrics = summary["metrics"]
    stats = summary["statistics"]
    models = ", ".join(f"{m['id']} {m['version'] or ''}".strip() + (f" (weights sha256 {str(m['weights_sha256'])[:12]}…)"
                                                                      if m.get("weights_sha256") else "")
                       for m in summary.get("models", [])) or "none"
    distributions = figures.save("metric_distributions", _plot_distributions(rows, metrics),
                                 size=(10.0, 2.6 * max(1, int(np.ceil(sum(1 for m in metrics.values() if m.get("n")) / 5)))))
    ba = {name: figures.save(f"bland_altman_{name}", _plot_bland_altman(a), size=(5.2, 3.8))
          for name, a in summary["bland_altman"].items()}
    ba_rows = [[a["label"] + f" ({a['unit']})", a["n"], format_number(a["bias"], 2), format_number(a["sd"], 2),
                format_ci(a["loa_low"], a["loa_high"], 2)] for a in summary["bland_altman"].values()]
    timing_rows = [[name, t["n"], format_number(t["mean"], 2), format_number(t["median"], 2), format_number(t["max"], 2)]
                   for name, t in summary["timings"].items()]
    failed = summary.get("failed_cases") or []
    failed_text = ("<p>Failed cases (skipped, with their reason): "
                   + "; ".join(f"<b>{html.escape(f['case_id'])}</b>: {html.escape(f['reason'].rstrip('.'))}" for f in failed) + ".</p>") if failed else ""
    title = f"Cohort evaluation: {Path(summary.get('cohort_csv', 'cohort')).name}"
    body = f"""
<h1>{html.escape(title)}</h1>
<p><span class="synthetic">SYNTHETIC images</span> are compared with the real contrast scans here; none of them is
for clinical use. {counts['cases']} cases: <b>{counts['ok']} evaluated</b>, <b>{counts['failed']} failed</b>.
Model: {html.escape(models)}. Device(s): {html.escape(', '.join(summary.get('devices') or []) or 'none')}.
Ran on: {html.escape(str(summary.get('where', '')))}.</p>
{failed_text}
<h2 id="summary">Summary</h2>
<p class="note">Statistics over {html.escape(stats['over'])}; CI: {html.escape(stats['ci'])}
({stats['bootstrap_resamples']} resamples, seed {stats['bootstrap_seed']}).</p>
{_summary_table(metrics)}
<h2 id="distributions">Metric distributions</h2>
{html_img(distributions, "metric distributions")}
<h2 id="bland-altman">Agreement with the real contrast scan (Bland&ndash;Altman)</h2>
{html_table(["measurement", "n", "bias (synthetic - real)", "SD of differences", "95% limits of agreement"], ba_rows)}
<div class="pair">{''.join(html_img(src, 'Bland-Altman ' + name) for name, src in ba.items())}</div>
<h2 id="cases">Cases</h2>
{_case_table(rows, out)}
<h2 id="pictures">Pictures: non-contrast | synthetic | real | difference</h2>
<p class="note">Axial slice with the largest aortic sac (lumen and thrombus labels; else the most enhanced slice), coronal plane through it.
Windows W400/L40 (non-contrast) and W700/L200 (contrast); difference synthetic &minus; registered real over the scored body voxels: black where they agree or outside, blue where the
synthetic image is darker, red where brighter, saturated at &plusmn;300 HU.</p>
{_pictures(rows, out)}
<h2 id="timings">Timings (seconds, evaluated cases)</h2>
{html_table(["step", "n", "mean", "median", "max"], timing_rows)}
<h2 id="carbon">Energy and carbon ledger</h2>
{_energy_section(summary.get('energy') or {})}
<h2 id="methods">How the figures were computed</h2>
<ul class="note">
<li>The real contrast scan is registered onto the non-contrast grid ({html.escape(str(summary['settings'].get('register')))}:
Mattes mutual information, fixed seed) and every metric is computed on that grid.</li>
<li>Body MAE, PSNR (data range 4024 HU) and SSIM follow the SynthRAD definitions (HU clipped to &minus;1024&hellip;3000) over the
voxels where both the non-contrast and the registered real scan show the body (above &minus;500 HU, largest component, holes filled).</li>
<li>Lumen and thrombus errors use the label map; lumen Dice and diameters use the enhanced lumen (&ge;
{format_number(summary['settings'].get('lumen_threshold_hu'), 0)} HU inside lumen &cup; thrombus); diameters are the maximum
axial caliper (Feret) diameter.</li>
<li>Every number is in <code>metrics.csv</code> (one row per case) and <code>summary.json</code>.</li>
</ul>
<p class="note">DigitalContrast {html.escape(str(summary.get('digital_contrast_version')))}, {html.escape(str(summary.get('created')))}.</p>
"""
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    return atomic_write_text(out / "report.html", document)
