"""``digital-contrast demo``: the main job on the embedded default, end to end.

A small phantom cohort (one case broken on purpose) is generated, the input gate's report of the
first case is printed and kept, and the cohort is evaluated: synthesis with the shipped model
(the worker's numpy-only dummy synthesis when no model is installed, or with ``--dummy``),
registration, metrics, the carbon ledger and the HTML report. ``make demo`` runs this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "run the main job on the embedded default (a phantom cohort) and say where the results are"
ORDER = 1
DESCRIPTION = """\
Run DigitalContrast end to end on the embedded default: a small cohort of procedural phantom
cases (never patient data; one of them damaged on purpose) is generated into OUT/cohort, the input
gate checks the first case (its report is kept in OUT/gate_report.txt), and the cohort is evaluated
into OUT/evaluation: synthesis with the shipped model, registration of the real contrast scan,
metrics, the energy and carbon ledger, and report.html with a side-by-side picture per case.
`make demo` runs this command.
"""

DEMO_CASES = 5
DEMO_SEED_START = 10001  # held out from training, like the validation seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-output", metavar="DIR", help="folder for the results (default: demo-output)")
    parser.add_argument("--cases", type=int, default=DEMO_CASES, help=f"phantom cases (default {DEMO_CASES}, one of them broken)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED_START,
                        help=f"seed of the first phantom (default {DEMO_SEED_START}, never used in training)")
    parser.add_argument("--dummy", action="store_true",
                        help="use the worker's numpy-only fake synthesis instead of the shipped model (seconds, no torch)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


def shipped_model_id() -> str | None:
    """The default model's id when one is installed (the engine and its weights), else None."""
    try:
        from DigitalContrastLib.models.cards import resolve_model
    except ImportError:  # a build without the synthesis engine
        return None
    from DigitalContrastLib.common.errors import UserError

    try:
        return resolve_model(None).id
    except UserError:
        return None


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.cohort.case import EvaluationSettings
    from DigitalContrastLib.cohort.phantom_cohort import make_phantom_cohort
    from DigitalContrastLib.cohort.run import evaluate_cohort
    from DigitalContrastLib.cohort.table import read_cohort_csv
    from DigitalContrastLib.common.atomic import atomic_write_text
    from DigitalContrastLib.common.errors import EXIT_BAD_INPUT
    from DigitalContrastLib.ct.render import save_png
    from DigitalContrastLib.phantoms.generator import read_phantom
    from DigitalContrastLib.phantoms.preview import phantom_preview
    from DigitalContrastLib.synthesis.gate import check_path

    from .check import format_report
    from .evaluate import print_case, print_summary

    out = Path(args.out)
    model_id = None if args.dummy else shipped_model_id()
    print(f"1/3  Generating {args.cases} phantom cases (seeds {args.seed}..{args.seed + args.cases - 1}, "
          f"one damaged on purpose) into {out / 'cohort'} ...", flush=True)
    csv_path = make_phantom_cohort(out / "cohort", cases=args.cases, seed_start=args.seed, broken=1 if args.cases > 1 else 0,
                                   on_case=lambda case_id, line: print(f"     {case_id}: {line}", flush=True))
    first = read_cohort_csv(csv_path)[0]
    preview = save_png(phantom_preview(read_phantom(first.noncontrast.parent)), out / "phantom_preview.png")

    print(f"2/3  Input gate on {first.noncontrast}:")
    report, _ = check_path(first.noncontrast)
    text = format_report(report)
    contrast_report, _ = check_path(first.contrast)
    text += f"\n(the gate on the contrast member says contrast-enhanced: {contrast_report.contrast_enhanced})"
    print("     " + text.replace("\n", "\n     "))
    gate_path = atomic_write_text(out / "gate_report.txt", text + "\n")

    what = f"model {model_id}" if model_id else "the dummy synthesis (no model installed)" if not args.dummy else "the dummy synthesis"
    print(f"3/3  Evaluating the cohort with {what} into {out / 'evaluation'} ...", flush=True)
    settings = EvaluationSettings(model_id=model_id, device=args.device, dummy=model_id is None)
    result = evaluate_cohort(csv_path, out / "evaluation", settings, on_case=print_case,
                             on_plan=lambda where: print(f"     {where}", flush=True))
    print_summary(result)
    pictures = [result.picture(row["case_id"]) for row in result.rows if row["status"] == "ok"]
    print(f"\nResults in {out}/:\n  gate report:  {gate_path}\n  preview:      {preview}")
    if pictures:
        print(f"  side by side: {pictures[0]}")
    print(f"  report:       {result.report_html}")
    return 0 if report.ok else EXIT_BAD_INPUT
