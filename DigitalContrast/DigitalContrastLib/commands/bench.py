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

The backend is the one --backend auto picks (OpenVINO on an x86-64 CPU where it is installed),
with torch eager timed beside it. Each timed run records the CPU time other processes used
during it and during each stage; a run where they took more than 10% of the machine is flagged
"contended" and never the figure (the bench runs more, up to 4 extra, to get 3 calm ones).

--busy-core: the contention mode. Start a one-core busy loop and time the synthesis beside it
(each backend, 5 runs): the postprocess should stay within 0.5 s. Writes bench/busy_core.json.

examples:
  digital-contrast bench                          # make bench
  digital-contrast bench --only synthesis         # the synthesis figures alone
  digital-contrast bench --busy-core              # make bench-busy
  digital-contrast bench --size 256 256 150       # a smaller phantom, quicker
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(512, 512, 300))
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="voxel size in mm (default: 358.4 mm / size in-plane, 1 mm slices)")
    parser.add_argument("--model", default=None, help="model id (default: aorta-phantom-v1)")
    parser.add_argument("--out", default=None,
                        help="where to write the JSON (default: bench/results.json, with --busy-core bench/busy_core.json)")
    parser.add_argument("--only", action="append", choices=("synthesis", "worker", "service"), default=None,
                        help="run only this part (repeatable; default: all three)")
    parser.add_argument("--busy-core", action="store_true",
                        help="the contention mode: time the synthesis while a busy loop takes one core")
    parser.add_argument("--json", action="store_true", help="print only the JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from DigitalContrastLib.benchmarks.synthesis import default_spacing, phantom_file, run_bench
    from DigitalContrastLib.benchmarks.worker import run_worker_bench
    from DigitalContrastLib.common.atomic import atomic_write_text

    if args.busy_core:
        return _run_busy_core(args)
    args.out = args.out or "bench/results.json"
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


def _run_busy_core(args: argparse.Namespace) -> int:
    from DigitalContrastLib.benchmarks.busy_core import run_busy_core_bench
    from DigitalContrastLib.common.atomic import atomic_write_text

    out = args.out or "bench/busy_core.json"
    result = run_busy_core_bench(tuple(args.size), tuple(args.spacing) if args.spacing else None, model_id=args.model)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"one core busy (the loop took {result['busy_loop_cpu_share']:.2f} of a core), CPU {result['cpu']['model']}:")
    for name, path in result["paths"].items():
        post = path["postprocess"]
        print(f"  {name} ({path['precision']}): synthesis {path['s']:.2f} s; postprocess median {post['median_s']:.2f} s, "
              f"max {post['max_s']:.2f} s (runs {post['runs_s']}; target <= {result['target_postprocess_s_max']} s)")
    if result["contended"]:
        print(f"CONTENDED: {result['contended_note']}")
    print(f"meets target: {result['meets_target']}; wrote {out}")
    return 0


def _print_summary(figures: dict) -> None:
    result = figures.get("synthesis")
    if result:
        print(f"CPU: {result['cpu']['model']}, {result['cpu']['physical_cores']} cores, native bf16: "
              f"{result['cpu']['native_bf16']}; backend {result['backend']} ({result['precision']})")
        if result["contended"]:
            print(f"CONTENDED: {result['contended_note']}")
        print(f"synthesis {result['synthesize_s']:.2f} s vs naive {result['naive_s']:.2f} s: {result['speedup']:.1f}x "
              f"(inference alone {result['inference_speedup']:.1f}x); |diff| in body mean "
              f"{result['mean_abs_diff_hu_in_body']:.2f} max {result['max_abs_diff_hu_in_body']} HU; peak RSS "
              f"{result['peak_rss_mb']:.0f} MB; {result['achieved_gflops']:.0f} GFLOP/s; load {result['load_average_before']}")
        if result.get("speedup_torch_backend"):
            torch_path = result["paths"]["engine_torch"]
            print(f"  torch eager: {torch_path['s']:.2f} s, {result['speedup_torch_backend']:.1f}x; peak RSS per path "
                  f"{result['peak_rss_per_path_mb']} MB")
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
