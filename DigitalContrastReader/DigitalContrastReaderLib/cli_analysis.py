"""Analysis sub-commands of ``digital-contrast-reader``: ``mrmc``, ``report`` and ``plan``.

``cli.py`` registers them (``mrmc_arguments``/``run_mrmc``, ``report_arguments``/``run_report``,
``plan_arguments``/``run_plan``)::

    digital-contrast-reader mrmc readings.csv --fom auc --json
    digital-contrast-reader report study.sqlite --out report/
    digital-contrast-reader report grades.csv --turing turing.csv --out report/
    digital-contrast-reader plan --pilot pilot.csv --effect 0.05 --readers 4-12

Input CSVs are long reading tables (``reader_id, case_id, modality, truth, score``); ``report``
also takes a study's answer store and builds those tables from it. Errors a user can cause print
one sentence naming the file and the fix, and exit with their code (2 bad input, 4 bad option
value, 7 output not writable); no traceback.
"""

from __future__ import annotations

import argparse
import json

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastReaderLib.analysis.long_table import read_long_csv
from DigitalContrastReaderLib.analysis.mrmc import FOM_NAMES, mrmc_analysis
from DigitalContrastReaderLib.study.errors import UsageError

MRMC_DESCRIPTION = """\
Multi-reader multi-case analysis of a long reading table (CSV with columns reader_id, case_id,
modality, truth, score): Obuchowski-Rockette with Hillis degrees of freedom and jackknife
covariances. Fully crossed (every reader reads every case in every modality) and split-plot
designs (reader groups, each reading its own cases in every modality; the groups are found from
the reads) are both analysed; the output names the design. Prints the per-modality estimates and
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
plot, VGC, paired grade tests, agreement, the visual Turing test, and from a store also the
detection AUC (MRMC), the preference share and every graded question.

SOURCE is either a study's answer store (.sqlite or postgresql:// URL: the whole study, fully crossed or split-plot,
every task; --question is the grade given the full section, default overall_confidence; training
items excluded; "interim" only while readers are still reading) or a long CSV of grades (a
'clinical_use' column gives one section per use).
"""


def report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``report`` sub-command."""
    p.description = REPORT_DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", metavar="SOURCE", nargs="?",
                   help="study answer store (.sqlite or postgresql:// URL), or a long CSV of image-quality grades")
    p.add_argument("--question", default=None,
                   help="grade given the full section when SOURCE is a store (default overall_confidence)")
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
    if args.source and _is_store(args.source):
        from .admin import write_study_report

        with _open_any_store(args.source) as store:
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


# ---------------------------------------------------------------------------------------------
# plan: readers x cases for a target power

PLAN_HELP = "sample size: readers x cases for a target power, and how long each reader's part takes"
PLAN_DESCRIPTION = """\
Readers x cases needed to detect a difference between two modalities with a target power
(Hillis, Obuchowski & Berbaum 2011, the OR method), from the variance components of a pilot
study or from published ones, for a fully crossed or a split-plot design, and how long each
reader's part of the study takes (waves x washout).

Variance components, one of:
  --pilot readings.csv            a long reading table (reader_id, case_id, modality, truth, score)
  --pilot study.sqlite            a study's answers (--question, --task as for 'export')
  --components VAR_TR VAR COV1 COV2 COV3 --pilot-cases K
                                  published OR components (e.g. Hillis et al. 2011), K* cases per reader

Reading time: --study study.yaml (or a store) gives the waves, washout and reader groups of its
design; or give --waves and --washout-days. Add --reads-per-day for the reading itself.

Examples:
  digital-contrast-reader plan --pilot pilot.csv --effect 0.05 --readers 4-12
  digital-contrast-reader plan --components 0.0002 0.0008 0.00035 0.00034 0.00024 --pilot-cases 114 \\
      --effect 0.05 --study study.yaml --reads-per-day 40
"""


def _reader_range(text: str) -> list[int]:
    """``"4-12"`` or ``"4,6,8"`` as a list of reader numbers."""
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-", 1))
            values = list(range(low, high + 1))
        else:
            values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 2 or max(values) > 500:
        raise argparse.ArgumentTypeError(f"readers {text!r} is not a range like 4-12 or a list like 4,6,8 of 2..500 readers")
    return values


def plan_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``plan`` sub-command."""
    p.description = PLAN_DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    source = p.add_argument_group("variance components (one of)")
    source.add_argument("--pilot", metavar="FILE", help="pilot reading table (.csv) or study store (.sqlite)")
    source.add_argument("--components", nargs=5, type=float, metavar=("VAR_TR", "VAR", "COV1", "COV2", "COV3"),
                        help="published OR variance components (figure-of-merit units squared)")
    source.add_argument("--pilot-cases", type=float, metavar="K", help="cases per reader of the study the --components come from")
    p.add_argument("--question", default=None, help="with a store pilot: the question (default: the detection rating)")
    p.add_argument("--task", default=None, help="with a store pilot: the task, when several have the question")
    p.add_argument("--fom", choices=FOM_NAMES, default="auc", help="figure of merit of the pilot (default auc)")
    p.add_argument("--threshold", type=float, default=None, metavar="T", help="threshold for --fom proportion")
    p.add_argument("--modalities", nargs=2, default=None, metavar=("TEST", "REFERENCE"), help="the two pilot modalities compared")
    p.add_argument("--effect", type=float, default=None, metavar="D",
                   help="difference to detect, in figure-of-merit units (default: the pilot's observed difference)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    p.add_argument("--analysis", choices=("RRRC", "FRRC", "RRFC"), default="RRRC",
                   help="random readers and cases (default), fixed readers, or fixed cases")
    p.add_argument("--readers", type=_reader_range, default=None, metavar="RANGE",
                   help="numbers of readers: 4-12 or 4,6,8 (default 3-20, multiples of --groups)")
    p.add_argument("--groups", type=int, default=None, metavar="G",
                   help="split-plot reader groups, each reading its own cases (default: the --study design, else 1)")
    p.add_argument("--max-cases", type=int, default=2000, help="largest number of cases searched (default 2000)")
    p.add_argument("--study", metavar="FILE", default=None, help="study file or store whose design gives waves, washout, groups")
    p.add_argument("--waves", type=int, default=None, help="waves per reader (default: from --study)")
    p.add_argument("--washout-days", type=float, default=None, help="days between waves (default: from --study, else 28)")
    p.add_argument("--reads-per-day", type=float, default=None, help="reads a reader does in a day (adds the reading time)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")


def _open_any_store(path: str):
    """The admin store at ``path``: a SQLite file or a ``postgresql://`` URL (imported when used: --help stays light)."""
    from DigitalContrastReaderLib.store.location import open_store

    return open_store(path)


def _is_store(path: str) -> bool:
    from DigitalContrastReaderLib.store.location import is_url

    return str(path).endswith((".sqlite", ".db", ".sqlite3")) or is_url(path)


def _pilot_table(args: argparse.Namespace):
    """The pilot's long table, from a CSV or a store."""
    if not _is_store(args.pilot):
        return read_long_csv(args.pilot)
    from DigitalContrastReaderLib.exports.tidy import analysis_table

    with _open_any_store(args.pilot) as store:
        question = args.question
        if question is None:
            detection = [t.task_id for t in store.study.tasks if t.type == "detection"]
            if not detection:
                raise UsageError(f"{args.pilot}: the study has no detection task; name the pilot question with --question.")
            question, args.task = "rating", args.task or detection[0]
        return analysis_table(store, question, args.task)


def _pilot_components(args: argparse.Namespace):
    from DigitalContrastReaderLib.analysis.sample_size import PilotComponents

    if (args.pilot is None) == (args.components is None):
        raise UsageError("give either --pilot FILE or --components VAR_TR VAR COV1 COV2 COV3 (with --pilot-cases K).")
    if args.components is not None:
        if args.pilot_cases is None or args.pilot_cases < 2:
            raise JobError("--components need --pilot-cases K, the number of cases each reader of that study read (2 or more).")
        if args.effect is None:
            raise JobError("with --components give the difference to detect, e.g. --effect 0.05 (in figure-of-merit units).")
        return PilotComponents(*args.components, cases_per_reader=args.pilot_cases, source="given components")
    frame = _pilot_table(args)
    result = mrmc_analysis(frame, fom=args.fom, threshold=args.threshold, modalities=args.modalities, source=args.pilot)
    if len(result.modalities) != 2:
        raise InputError(f"{args.pilot}: the pilot has {len(result.modalities)} modalities ({', '.join(result.modalities)}); "
                         "name the two to compare with --modalities TEST REFERENCE.", code="modalities")
    if len(result.readers) < 2:
        raise InputError(f"{args.pilot}: the pilot has {len(result.readers)} reader; reader variance needs at least two "
                         "readers, so wait for more readers or give --components.", code="too_few_readers")
    effect = result.modality_fom[result.modalities[0]] - result.modality_fom[result.modalities[1]]
    reads = frame[frame["modality"].astype(str).isin(result.modalities)]
    cases_per_reader = float(reads.groupby("reader_id")["case_id"].nunique().mean())
    return PilotComponents.from_components(result.components, cases_per_reader, effect, f"pilot {args.pilot}: {result.design}")


def _calendar(args: argparse.Namespace):
    """Waves, washout and groups of the planned design: from --study, overridden by the options."""
    from DigitalContrastReaderLib.analysis.sample_size import ReadingCalendar

    waves, washout, groups = args.waves, args.washout_days, args.groups
    if args.study is not None:
        from DigitalContrastReaderLib.study.config import load_study
        from DigitalContrastReaderLib.study.schedule import waves_per_reader

        if _is_store(args.study):
            with _open_any_store(args.study) as store:
                study = store.study
        else:
            study = load_study(args.study, check_files=False)
        waves = waves if waves is not None else waves_per_reader(study)
        washout = washout if washout is not None else study.design.washout_days
        if groups is None and study.design.type == "split-plot":
            groups = len(study.design.group_blocks)
    if args.reads_per_day is not None and not args.reads_per_day > 0:
        raise JobError(f"--reads-per-day must be a positive number, not {args.reads_per_day}.")
    calendar = None
    if waves is not None:
        if waves < 1:
            raise JobError(f"--waves must be 1 or more, not {waves}.")
        calendar = ReadingCalendar(waves, 28.0 if washout is None else washout, args.reads_per_day)
    return calendar, groups or 1


def run_plan(args: argparse.Namespace) -> int:
    """Run ``plan``: the sample-size table (and reading time) for the design asked for."""
    from DigitalContrastReaderLib.analysis.sample_size import sample_size_table

    if args.washout_days is not None and args.washout_days < 0:
        raise JobError(f"--washout-days must be 0 or more, not {args.washout_days}.")
    if args.max_cases < 4:
        raise JobError(f"--max-cases must be at least 4, not {args.max_cases}.")
    pilot = _pilot_components(args)
    calendar, groups = _calendar(args)
    if groups < 1:
        raise JobError(f"--groups must be 1 or more, not {groups}.")
    readers = args.readers or [j for j in range(max(3, groups), 21) if j % groups == 0]
    wrong = [j for j in readers if j % groups or j < 2]
    if wrong:
        raise JobError(f"{wrong[0]} readers cannot form {groups} equal reader groups; give --readers as multiples of {groups}.")
    effect = args.effect if args.effect is not None else pilot.effect
    table = sample_size_table(pilot, readers, effect, args.power, args.alpha, args.analysis, groups, args.max_cases, calendar)
    print(json.dumps(table.to_dict(), indent=2) if args.json else table.summary())
    return 0
