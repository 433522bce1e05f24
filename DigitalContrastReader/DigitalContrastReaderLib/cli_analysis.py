"""Analysis sub-commands of ``digital-contrast-reader``: ``mrmc`` and ``report``.

``cli.py`` registers them (``mrmc_arguments``/``run_mrmc``, ``report_arguments``/``run_report``)::

    digital-contrast-reader mrmc readings.csv --fom auc --json
    digital-contrast-reader report study.sqlite --out report/
    digital-contrast-reader report grades.csv --turing turing.csv --out report/

Input CSVs are long reading tables (``reader_id, case_id, modality, truth, score``); ``report``
also takes a study's answer store and builds those tables from it. Errors a user can cause print
one sentence naming the file and the fix, and exit with their code (2 bad input, 4 bad option
value, 7 output not writable); no traceback.
"""

from __future__ import annotations

import argparse
import json

from DigitalContrastLib.common.errors import JobError
from DigitalContrastReaderLib.analysis.long_table import read_long_csv
from DigitalContrastReaderLib.analysis.mrmc import FOM_NAMES, mrmc_analysis

MRMC_DESCRIPTION = """\
Multi-reader multi-case analysis of a long reading table (CSV with columns reader_id, case_id,
modality, truth, score; every reader reads every case in every modality): Obuchowski-Rockette
with Hillis degrees of freedom and jackknife covariances. Prints the per-modality estimates and
the random-reader/random-case (RRRC), fixed-reader (FRRC) and fixed-case (RRFC) analyses:
F or chi-square, df, p, pairwise differences with confidence intervals.

Figures of merit: auc (trapezoidal/Wilcoxon ROC AUC; truth 0/1 needed), mean (mean score),
proportion (share of scores >= --threshold), proportion_correct (call score >= --threshold
equals truth). --margin D adds a one-sided non-inferiority test of H0: test - reference <= -D.
"""


MRMC_HELP = "MRMC (Obuchowski-Rockette-Hillis) analysis of a reading-table CSV"


def mrmc_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``mrmc`` sub-command."""
    p.add_argument("csv", metavar="CSV", help="long reading table (reader_id, case_id, modality, truth, score)")
    p.add_argument("--fom", choices=FOM_NAMES, default="auc", help="figure of merit (default auc)")
    p.add_argument("--threshold", type=float, default=None, metavar="T", help="score threshold for proportion / proportion_correct")
    p.add_argument("--margin", type=float, default=None, metavar="D", help="non-inferiority margin in figure-of-merit units (> 0)")
    p.add_argument("--reference", default=None, metavar="MODALITY", help="reference modality for --margin (e.g. real)")
    p.add_argument("--test", default=None, metavar="MODALITY", help="tested modality for --margin (default: the other one)")
    p.add_argument("--modalities", nargs="+", default=None, metavar="MODALITY", help="analyse these modalities only, in this order")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of the intervals (default 0.05)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")


def run_mrmc(args: argparse.Namespace) -> int:
    """Run ``mrmc``; raises ``UserError`` for input or option problems (the caller prints it)."""
    if not 0 < args.alpha < 1:
        raise JobError(f"--alpha must be between 0 and 1, not {args.alpha}; 0.05 gives 95% intervals.")
    frame = read_long_csv(args.csv)
    result = mrmc_analysis(
        frame,
        fom=args.fom,
        threshold=args.threshold,
        alpha=args.alpha,
        margin=args.margin,
        reference=args.reference,
        test=args.test,
        modalities=args.modalities,
        source=args.csv,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


REPORT_DEFAULT_TITLE = "Reader study report"
REPORT_HELP = "HTML report (tables and figures) of a study's answer store or of reading-table CSVs"
REPORT_DESCRIPTION = """\
Write an HTML report with figures: score distributions, mean difference with per-reader forest
plot, VGC, paired grade tests, agreement, and the visual Turing test.

SOURCE is either a study's answer store (.sqlite: the grading table is built from --question of
the grading task, the Turing table from the Turing task's decision and confidence; training
items excluded) or a long CSV of grades (a 'clinical_use' column gives one section per use).
"""


def report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``report`` sub-command."""
    p.description = REPORT_DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", metavar="SOURCE", nargs="?",
                   help="study answer store (.sqlite), or a long CSV of image-quality grades")
    p.add_argument("--question", default=None,
                   help="grading question analysed when SOURCE is a store (default overall_confidence)")
    p.add_argument("--turing", metavar="CSV", default=None, help="long table of a visual Turing test")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.html and figures/")
    p.add_argument("--title", default=REPORT_DEFAULT_TITLE)
    p.add_argument("--test", default="synthetic", metavar="MODALITY", help="tested modality (default synthetic)")
    p.add_argument("--reference", default="real", metavar="MODALITY", help="reference modality (default real)")
    p.add_argument("--margin", type=float, default=None, help="non-inferiority margin of the mean grade difference")
    p.add_argument("--turing-margin", type=float, default=0.10, help="equivalence margin around 0.5 (default 0.10)")
    p.add_argument("--turing-threshold", type=float, default=0.5,
                   help="a Turing score >= this is the call 'synthetic' (CSV input; a store sets it itself)")


def run_report(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.exports.report import write_report

    if args.source is None and args.turing is None:
        raise JobError("give a study store, a grading CSV, --turing CSV, or both CSVs.")
    if args.source and str(args.source).endswith((".sqlite", ".db", ".sqlite3")):
        from DigitalContrastReaderLib.store.sqlite import open_store

        from .admin import write_study_report

        with open_store(args.source) as store:
            title = None if args.title == REPORT_DEFAULT_TITLE else args.title
            print(write_study_report(store, args.out, question=args.question, title=title))
        return 0
    grading = read_long_csv(args.source) if args.source else None
    turing = read_long_csv(args.turing) if args.turing else None
    path = write_report(
        grading,
        args.out,
        title=args.title,
        test=args.test,
        reference=args.reference,
        turing=turing,
        margin=args.margin,
        turing_threshold=args.turing_threshold,
        turing_margin=args.turing_margin,
    )
    print(path)
    return 0
