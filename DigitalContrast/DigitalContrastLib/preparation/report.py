"""``CASES/report.html``: what ``prepare`` made of a cohort, case by case, with the QC pictures."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.report_html import BASE_CSS, format_number, html_table

CSS = BASE_CSS + """
.excluded td { background: #fdecea; } .failed td { background: #fff4d6; }
figure { margin: 1.2em 0; } figcaption { font-size: 0.9em; color: #444; }
table.cases td:last-child, table.cases th:last-child { text-align: left; max-width: 30em; }
"""


def _case_rows(cases: list[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for c in cases:
        rows.append([c["case_id"], c["status"], format_number(c.get("bone_dice_before"), 2),
                     format_number(c.get("bone_dice_after"), 2), format_number(c.get("ncc_before"), 3),
                     format_number(c.get("ncc_after"), 3), format_number(c.get("mattes_mi_before"), 3),
                     format_number(c.get("mattes_mi_after"), 3), c.get("registration_final_stage") or "",
                     format_number(c.get("vessel_ml"), 1), format_number(c.get("enhancing_tissue_ml"), 1),
                     c.get("reason") or ""])
    return rows


def _figures(out: Path, cases: list[Mapping[str, Any]]) -> str:
    parts = []
    for c in cases:
        picture = c.get("qc_picture")
        if not picture or not (out / picture).is_file():
            continue
        caption = (f"{c['case_id']} ({c['status']}): bone Dice {format_number(c.get('bone_dice_before'), 2)} &rarr; "
                   f"{format_number(c.get('bone_dice_after'), 2)}, NCC {format_number(c.get('ncc_before'), 3)} &rarr; "
                   f"{format_number(c.get('ncc_after'), 3)}")
        parts.append(f'<figure id="{html.escape(c["case_id"])}"><img src="{html.escape(picture)}" '
                     f'alt="QC picture of {html.escape(c["case_id"])}"><figcaption>{caption}</figcaption></figure>')
    return "\n".join(parts) or "<p>No picture (no case got as far as the registration).</p>"


def write_prepare_report(out_dir: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    """Write ``report.html`` beside the prepared cases from the ``prepare.json`` content."""
    from .quality import BONE_HU, MIN_BONE_DICE, MIN_NCC

    out = Path(out_dir)
    counts = summary["counts"]
    cases = list(summary["cases"])
    headers = ["case", "status", "bone Dice before", "bone Dice after", "NCC before", "NCC after", "MI before",
               "MI after", "final stage", "vessel mL", "enh. tissue mL", "reason"]
    table = html_table(headers, _case_rows(cases), css_class="cases",
                       row_classes=[c["status"] if c["status"] != "prepared" else None for c in cases])
    settings = summary.get("settings") or {}
    body = f"""
<h1>Prepared cases: {html.escape(Path(str(summary.get('cohort_csv', 'cohort'))).name)}</h1>
<p>{counts['cases']} cases: <b>{counts['prepared']} prepared</b> ({counts['patients']} patients),
<b>{counts['excluded']} excluded</b>, <b>{counts['failed']} failed</b> (failed cases are tried again by the next run).
Registration: {html.escape(str(settings.get('register')))} (SimpleITK, Mattes mutual information, seed
{html.escape(str(settings.get('registration_seed')))}). Ran on: {html.escape(str(summary.get('where', '')))}.</p>
<p class="note">A case passes the registration check when, after registration, the bone masks (&ge; {BONE_HU:g} HU)
overlap with a Dice of at least {MIN_BONE_DICE:g} and the normalised cross-correlation of the two scans reaches
{MIN_NCC:g}. Patients are pseudonymised keys; no name, ID, date of birth or exact date is kept.</p>
<h2 id="cases">Cases</h2>
{table}
<h2 id="pictures">QC pictures</h2>
<p class="note">Before and after registration: the contrast scan in red over the non-contrast scan in green and blue
(W700/L200), grey where they line up, red and cyan fringes where they do not; enhanced blood is red in both.
Right: the enhancement mask (red vessel, yellow enhancing tissue) over the non-contrast scan.</p>
{_figures(out, cases)}
<p class="note">DigitalContrast {html.escape(str(summary.get('digital_contrast_version')))}, {html.escape(str(summary.get('created')))}.</p>
"""
    title = "DigitalContrast: prepared cases"
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    return atomic_write_text(out / "report.html", document)
