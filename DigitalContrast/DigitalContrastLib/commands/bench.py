"""``digital-contrast bench``: synthesis speed against a naive MONAI baseline, as JSON."""

from __future__ import annotations

import argparse
import json

NAME = "bench"
HELP = "benchmark synthesis on a large phantom against a naive MONAI sliding-window baseline"
ORDER = 90
DESCRIPTION = """\
Generate (once, cached in bench/) a phantom of --size voxels (about a 358 mm field of view,
1 mm slices), then in a fresh process time the full synthesis path and a naive baseline on the
same model and preprocessing (MONAI sliding_window_inference, default settings, window batch 1,
fp32, no window skipping). Reports seconds, the speed-up, the HU difference between the two
outputs inside the body, peak RSS, achieved GFLOP/s and the load average. Then the background
worker: a cold job (new process, imports, model load) against a second job in a warm worker (the
model stays loaded). Then the synthesis service: a warm job through 'digital-contrast serve' on
loopback (upload, queue, download) against the same warm job in a local worker, as a ratio.
Writes them to bench/results.json ({"synthesis": ..., "worker": ..., "service": ...}); --only runs
some of them.
Run it on a quiet machine: the figures depend on what else is running.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(512, 512, 300))
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="voxel size in mm (default: 358.4 mm / size in-plane, 1 mm slices)")
    parser.add_argument("--model", default=None, help="model id (default: aorta-phantom-v1)")
    parser.add_argument("--out", default="bench/results.json", help="where to write the JSON")
    parser.add_argument("--only", action="append", choices=("synthesis", "worker", "service"), default=None,
                        help="run only this part (repeatable; default: all three)")
    parser.add_argument("--json", action="store_true", help="print only the JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from DigitalContrastLib.benchmarks.synthesis import default_spacing, phantom_file, run_bench
    from DigitalContrastLib.benchmarks.worker import run_worker_bench
    from DigitalContrastLib.common.atomic import atomic_write_text

    parts = args.only or ["synthesis", "worker", "service"]
    figures = {}
    if "synthesis" in parts:
        figures["synthesis"] = run_bench(tuple(args.size), tuple(args.spacing) if args.spacing else None,
                                         model_id=args.model)
    if "worker" in parts:
        figures["worker"] = run_worker_bench(dummy=False, model_id=args.model, device="cpu")
    if "service" in parts:
        from DigitalContrastLib.benchmarks.service import run_service_bench

        size = tuple(args.size)
        volume = phantom_file(Path("bench"), size, tuple(args.spacing) if args.spacing else default_spacing(size),
                              20240)
        figures["service"] = run_service_bench(volume, model_id=args.model, device="cpu")
    atomic_write_text(args.out, json.dumps(figures, indent=2) + "\n")
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    _print_summary(figures)
    print(f"wrote {args.out}")
    return 0


def _print_summary(figures: dict) -> None:
    result = figures.get("synthesis")
    if result:
        print(f"synthesis {result['synthesize_s']:.2f} s vs naive {result['naive_s']:.2f} s: {result['speedup']:.1f}x "
              f"(inference alone {result['inference_speedup']:.1f}x); |diff| in body mean "
              f"{result['mean_abs_diff_hu_in_body']:.2f} max {result['max_abs_diff_hu_in_body']} HU; peak RSS "
              f"{result['peak_rss_mb']:.0f} MB; {result['achieved_gflops']:.0f} GFLOP/s; load {result['load_average_before']}")
        single = result.get("single_pass")
        if single:
            print(f"  ({result['prediction']}; one pass of each: {single['synthesize_s']:.2f} s vs naive "
                  f"{single['naive_s']:.2f} s: {single['speedup']:.1f}x, "
                  f"|diff| in body mean {single['mean_abs_diff_hu_in_body']:.2f} max {single['max_abs_diff_hu_in_body']} HU)")
    worker = figures.get("worker")
    if worker:
        warm = worker["warm"]
        print(f"worker: cold job {worker['cold']['job_wall_s']:.2f} s (start-up {worker['cold']['startup_s']:.2f} s); "
              f"second job in a warm worker {warm['second_job_wall_s']:.2f} s, {warm['second_job_extra_s']:.3f} s beyond "
              f"the synthesis (target {warm['target_extra_s']} s, met: {warm['meets_target']})")
    service = figures.get("service")
    if service:
        print(f"service: a warm job through the service {service['service_median_s']:.2f} s vs a warm local worker "
              f"{service['local_median_s']:.2f} s: +{service['overhead_ratio']:.1%} (target "
              f"{service['target_overhead_ratio']:.0%}, met: {service['meets_target']})")
