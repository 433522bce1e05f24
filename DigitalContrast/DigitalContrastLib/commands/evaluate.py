"""``digital-contrast evaluate COHORT.csv --out DIR``: synthesis, registration and metrics over a cohort."""

from __future__ import annotations

import argparse
import sys

NAME = "evaluate"
HELP = "evaluate a cohort: synthesis, registration, metrics, report (resumable; local or Dask)"
ORDER = 40
DESCRIPTION = """\
Evaluate every case of a cohort CSV (columns case_id, noncontrast, and optionally contrast,
labels and any others, which are carried through; paths relative to the CSV): the input gate,
synthesis in the background worker, registration of the real contrast scan onto the non-contrast
grid, and the metrics. Writes DIR/cases/<case_id>/ (synthetic.nrrd, real_registered.nrrd,
side_by_side.png, result.json), DIR/metrics.csv, DIR/summary.json and DIR/report.html.

A case that fails (gate error, unreadable file, ...) is reported with its reason; the run goes on.
Rerunning skips the finished cases (outputs checked by SHA-256) and redoes the others.
By default the cases run on this machine: one process per GPU, or one process using every core
without a GPU (--workers overrides). --scheduler runs them on an existing Dask cluster. --server
URL sends each synthesis to a synthesis service ('digital-contrast serve'; the token from
DIGITAL_CONTRAST_TOKEN), where the model stays loaded; registration and metrics run here.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from DigitalContrastLib.cohort.carbon import DEFAULT_CPU_WATTS_PER_CORE, DEFAULT_GPU_WATTS, DEFAULT_GRID_COUNTRY

    parser.add_argument("cohort", metavar="COHORT.csv", help="the cohort CSV")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (a previous run there is resumed)")
    parser.add_argument("--model", default=None, metavar="ID", help="model id (default: the default model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local worker processes (default: one per GPU, or one on the CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads per worker (default: the physical cores divided among the workers)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:8786): run the cases on that cluster")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="run the syntheses on a synthesis service (token from DIGITAL_CONTRAST_TOKEN)")
    parser.add_argument("--register", default="rigid", choices=("rigid", "bspline", "none"),
                        help="registration of the real contrast scan onto the non-contrast grid (default: rigid)")
    parser.add_argument("--uncertainty", action="store_true", help="also write each case's uncertainty map")
    parser.add_argument("--dummy", action="store_true",
                        help="run the worker's numpy-only fake synthesis (tests and demos without a model)")
    parser.add_argument("--dummy-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--grid-country", default=None, metavar="CC",
                        help=f"country of the grid's carbon intensity (ISO code; default {DEFAULT_GRID_COUNTRY})")
    parser.add_argument("--grid-g-per-kwh", type=float, default=None, metavar="G",
                        help="grid carbon intensity in g CO2e/kWh (overrides --grid-country)")
    parser.add_argument("--cpu-watts-per-core", type=float, default=DEFAULT_CPU_WATTS_PER_CORE, metavar="W",
                        help=f"estimate's CPU power per core when no counter is readable (default {DEFAULT_CPU_WATTS_PER_CORE:g})")
    parser.add_argument("--gpu-watts", type=float, default=DEFAULT_GPU_WATTS, metavar="W",
                        help=f"estimate's GPU board power when NVML is not readable (default {DEFAULT_GPU_WATTS:g})")
    parser.add_argument("--case-timeout", type=float, default=None, metavar="S",
                        help="fail a case whose synthesis runs longer than S seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def settings_from_args(args: argparse.Namespace):
    """The :class:`EvaluationSettings` and the grid intensity the options ask for."""
    from DigitalContrastLib.cohort.carbon import EnergyAssumptions, grid_intensity
    from DigitalContrastLib.cohort.case import EvaluationSettings

    settings = EvaluationSettings(
        model_id=args.model, device=args.device, register=args.register, uncertainty=args.uncertainty,
        dummy=args.dummy, dummy_seconds=args.dummy_seconds, threads=args.threads,
        energy=EnergyAssumptions(cpu_watts_per_core=args.cpu_watts_per_core, gpu_watts=args.gpu_watts),
        case_timeout_s=args.case_timeout, server=args.server)
    return settings, grid_intensity(args.grid_country, args.grid_g_per_kwh)


def print_case(result: dict, skipped: bool) -> None:
    """One line per case: what happened to it."""
    row = result.get("row") or {}
    if skipped:
        line = f"  {result['case_id']}: finished earlier, kept (outputs match their SHA-256)"
    elif result["status"] == "ok":
        line = (f"  {result['case_id']}: ok in {row.get('seconds_on_case', 0):.1f} s "
                f"(synthesis {row.get('seconds_synthesis') or 0:.1f} s on {row.get('device')})")
    else:
        line = f"  {result['case_id']}: FAILED, {result.get('reason')}"
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
    except ImportError:
        print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.cohort.run import evaluate_cohort

    settings, grid = settings_from_args(args)
    try:
        result = evaluate_cohort(args.cohort, args.out, settings, workers=args.workers, scheduler=args.scheduler,
                                 grid=grid, progress_bar=False if args.no_progress else None, on_case=print_case,
                                 on_plan=lambda where: print(f"Evaluating {args.cohort}: {where}", flush=True))
    except KeyboardInterrupt:
        print(f"digital-contrast evaluate: interrupted; finished cases are kept in {args.out}, "
              "run the same command again to continue.", file=sys.stderr)
        return 130
    print_summary(result)
    return 0


def print_summary(result) -> None:
    """The counts, the headline metrics, the ledger and where the outputs are."""
    s = result.summary
    counts = s["counts"]
    print(f"\n{counts['ok']} of {counts['cases']} cases evaluated, {counts['failed']} failed; "
          f"{len(result.skipped)} kept from an earlier run, {result.synthesis_calls} synthesized now "
          f"({result.seconds:.1f} s).")
    for case in s.get("failed_cases", []):
        print(f"  failed: {case['case_id']}: {case['reason']}")
    for name in ("body_mae_hu", "lumen_mae_hu", "lumen_bias_hu", "thrombus_bias_hu", "lumen_dice", "max_diameter_error_mm"):
        m = s["metrics"][name]
        if m["n"]:
            ci = m["ci95_mean"]
            ci_text = f", 95% CI {ci[0]:.3g} to {ci[1]:.3g}" if ci else ""
            print(f"  {m['label']}: mean {m['mean']:.3g}{(' ' + m['unit']) if m['unit'] else ''} (n={m['n']}{ci_text})")
    energy = s["energy"]
    if energy["jobs"]:
        print(f"  Energy: {energy['energy_j']:.1f} J for {energy['jobs']} syntheses, {energy['co2e_g']:.3g} g CO2e at "
              f"{energy['grid']['g_per_kwh']:g} g/kWh (methods: {', '.join(f'{k} {v}' for k, v in energy['methods'].items())})")
    print(f"\nmetrics:  {result.metrics_csv}\nsummary:  {result.summary_json}\nreport:   {result.report_html}")
