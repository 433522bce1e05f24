"""The README's picture of the ``prepare`` QC report: ``make prepare-screenshot`` (about 4 min on 2 cores).

Generates a site-like cohort at the site protocol (3 patients, seeds 32001-32003, the third with a
second visit, and two bad pairs: another patient's contrast scan and an unenhanced one; DICOM series
of separate acquisitions, phantoms.site_pairs), runs ``digital-contrast prepare`` on it in a real
subprocess, and renders ``CASES/report.html`` in headless Chromium into a 900-pixel-wide PNG
(html_screenshot.readme_picture).

    python Testing/prepare_screenshot.py Resources/Screenshots/prepare_report.png [--work DIR]

``--work DIR`` keeps the cohort and the cases; a rerun with the same DIR keeps what is there
(``prepare`` is resumable) and only renders the report again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PATIENTS, SEED_START, SECOND_VISIT_EVERY = 3, 32001, 3
BAD = ("other_patient", "unenhanced_contrast")


def make_prepare_screenshot(png: Path, work: Path) -> Path:
    """Cohort -> ``prepare`` -> report.html -> ``png``; returns ``png``."""
    from html_screenshot import readme_picture

    from DigitalContrastLib.phantoms.site_pairs import COHORT_CSV, SITE_PROTOCOL, write_site_cohort

    cohort = work / "pacs" / COHORT_CSV
    if not cohort.is_file():
        write_site_cohort(work / "pacs", PATIENTS, seed_start=SEED_START, protocol=SITE_PROTOCOL,
                          second_visit_every=SECOND_VISIT_EVERY, bad=BAD,
                          on_case=lambda case_id, line: print(f"  {case_id}: {line}", flush=True))
    cases = work / "cases"
    subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", "prepare", str(cohort), "--out", str(cases)],
                   check=True)
    with tempfile.TemporaryDirectory() as profile:
        return readme_picture(cases / "report.html", png, Path(profile))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("png", type=Path, help="the PNG to write (Resources/Screenshots/prepare_report.png)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the cohort and the cases (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        print(make_prepare_screenshot(args.png, args.work))
    else:
        with tempfile.TemporaryDirectory() as work:
            print(make_prepare_screenshot(args.png, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
