"""Analysis sub-commands of ``digital-contrast-reader``: ``mrmc`` and ``report``.

``cli.py`` registers them with ``add_mrmc_parser(subparsers)`` / ``add_report_parser(subparsers)``;
each sets ``func`` on its parser to ``run_mrmc`` / ``run_report`` (``args -> exit code``). Until then
(and for scripts) this module runs standalone::

    python -m DigitalContrastReaderLib.cli_analysis mrmc readings.csv --fom auc --json
    python -m DigitalContrastReaderLib.cli_analysis report grades.csv --turing turing.csv --out report/

Input CSVs are long reading tables (``reader_id, case_id, modality, truth, score``). Errors a user
can cause print one sentence naming the file and the fix, and exit with their code (2 bad input,
4 bad option value, 7 output not writable); no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from DigitalContrastLib.errors import EXIT_USAGE, JobError, UserError

from .long_table import read_long_csv
from .mrmc import FOM_NAMES, mrmc_analysis

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


def add_mrmc_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``mrmc`` sub-command to an argparse sub-parsers object and return its parser."""
    p = subparsers.add_parser(
        "mrmc",
        help="MRMC (Obuchowski-Rockette-Hillis) analysis of a reading-table CSV",
        description=MRMC_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("csv", metavar="CSV", help="long reading table (reader_id, case_id, modality, truth, score)")
    p.add_argument("--fom", choices=FOM_NAMES, default="auc", help="figure of merit (default auc)")
    p.add_argument("--threshold", type=float, default=None, metavar="T", help="score threshold for proportion / proportion_correct")
    p.add_argument("--margin", type=float, default=None, metavar="D", help="non-inferiority margin in figure-of-merit units (> 0)")
    p.add_argument("--reference", default=None, metavar="MODALITY", help="reference modality for --margin (e.g. real)")
    p.add_argument("--test", default=None, metavar="MODALITY", help="tested modality for --margin (default: the other one)")
    p.add_argument("--modalities", nargs="+", default=None, metavar="MODALITY", help="analyse these modalities only, in this order")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of the intervals (default 0.05)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.set_defaults(func=run_mrmc)
    return p


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


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command (reading-table CSVs → HTML report) and return its parser."""
    p = subparsers.add_parser(
        "report",
        help="HTML report (tables and figures) from reading-table CSVs",
        description="Write an HTML report with figures: score distributions, mean difference with per-reader forest plot, "
        "VGC, paired grade tests, agreement, and the visual Turing test. A 'clinical_use' column gives one section per use.",
    )
    p.add_argument("csv", metavar="CSV", nargs="?", help="long table of image-quality grades (test and reference modality)")
    p.add_argument("--turing", metavar="CSV", default=None, help="long table of a visual Turing test")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.html and figures/")
    p.add_argument("--title", default="Reader study report")
    p.add_argument("--test", default="synthetic", metavar="MODALITY", help="tested modality (default synthetic)")
    p.add_argument("--reference", default="real", metavar="MODALITY", help="reference modality (default real)")
    p.add_argument("--margin", type=float, default=None, help="non-inferiority margin of the mean grade difference")
    p.add_argument("--turing-margin", type=float, default=0.10, help="equivalence margin around 0.5 (default 0.10)")
    p.add_argument("--turing-threshold", type=float, default=0.5, help="a Turing score >= this is the call 'synthetic'")
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    from .report import write_report

    if args.csv is None and args.turing is None:
        raise JobError("give a grading CSV, --turing CSV, or both.")
    grading = read_long_csv(args.csv) if args.csv else None
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


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (2 means bad input in this project)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m DigitalContrastReaderLib.cli_analysis``)."""
    parser = _Parser(prog="digital-contrast-reader", description="Reader-study statistics.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_mrmc_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"digital-contrast-reader {args.command}: {error.message}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
