"""``digital-contrast demo``: the main job on the embedded default, end to end.

Today: a phantom case is generated and checked by the input gate, and a preview PNG is written.
Later steps of the pipeline (synthesis, metrics, cohort report) extend this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "run the main job on the embedded default (a phantom case) and say where the results are"
ORDER = 1
DESCRIPTION = """\
Run DigitalContrast end to end on the embedded default: a procedural phantom case (never patient
data) is generated into OUT, the input gate checks its non-contrast member, and a preview PNG of
both members is written. `make demo` runs this command.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-output", metavar="DIR", help="folder for the results (default: demo-output)")
    parser.add_argument("--seed", type=int, default=10001, help="phantom seed (default 10001, never used in training)")


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_BAD_INPUT
    from ..gate import check_path
    from ..phantom import make_phantom, summary_line, write_phantom
    from ..render import phantom_preview, save_png
    from .check import format_report

    out = Path(args.out)
    case_dir = out / "phantom"
    print(f"1/2  Generating phantom case (seed {args.seed}) into {case_dir} ...")
    case = make_phantom(args.seed)
    paths = write_phantom(case, case_dir)
    preview = save_png(phantom_preview(case), out / "phantom_preview.png")
    print(f"     {summary_line(case)}")
    print(f"2/2  Input gate on {paths['noncontrast']}:")
    report, _ = check_path(paths["noncontrast"])
    print("     " + format_report(report).replace("\n", "\n     "))
    contrast_report, _ = check_path(paths["contrast"])
    print(f"     (the gate on the contrast member says contrast-enhanced: {contrast_report.contrast_enhanced})")
    print(f"\nResults in {out}/:\n  {paths['noncontrast']}\n  {paths['contrast']}\n  {paths['labels']}\n  {preview}")
    return 0 if report.ok else EXIT_BAD_INPUT
