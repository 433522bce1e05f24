"""Synthesis benchmark: the engine's full path against a naive MONAI baseline, in one run.

``run_bench`` generates (and caches) a phantom at the requested size, then, in a fresh child
process (so its peak RSS is the synthesis's, not the phantom generator's):

* reads the volume and times ``SynthesisEngine.synthesize`` in the steady state of a worker (after
  one untimed call on the same volume, whose time is reported as ``first_synthesize_s``; the
  baseline gets one untimed pass too; each path then runs :data:`TIMED_RUNS` times and the median
  is its figure, every run's seconds listed beside it), as the card sets it up (large windows; for a card whose ``prediction`` is ``flip-tta-mean``, four
  network passes), and, for such a card, one pass of each path alone (``single_pass``);
* times the naive baseline on the same model and the same preprocessing/postprocessing: MONAI
  ``sliding_window_inference`` with its default settings (overlap 0.25, constant blending),
  ``sw_batch_size=1``, fp32, every window (no skipping), the card's ``roi_size_zyx`` windows; for a
  card whose prediction is the flip mean, the naive path averages the same four flips, so both
  paths compute the same function;
* compares the two outputs inside the body (``metrics.body_mask_from_ct``): largest and mean
  absolute difference in HU;
* counts the FLOPs of one window of each path (``torch.utils.flop_counter``) to report the GFLOP
  each path computes and the achieved GFLOP/s.

Figures are printed as JSON and written to ``bench/results.json``. These machines are shared and
noisy: the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from DigitalContrastLib.benchmarks.timed_runs import path_figures, time_path
from DigitalContrastLib.common.errors import OutOfMemoryError
from DigitalContrastLib.common.hardware import available_cpu_cores
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.models.cards import resolve_model
from DigitalContrastLib.models.network import load_network
from DigitalContrastLib.models.weights import verify_weights_file
from DigitalContrastLib.phantoms.generator import make_phantom
from DigitalContrastLib.synthesis.api import load_engine
from DigitalContrastLib.synthesis.engine import synthesize_volume
from DigitalContrastLib.synthesis.flip_passes import FLIP_TTA_AXES
from DigitalContrastLib.synthesis.grid import (
    canonical_orientation,
    empty_int16_volume,
    hu_to_model_grid,
    model_grid_shape,
    model_grid_to_input,
)
from DigitalContrastLib.synthesis.settings import EngineSettings, replace_settings
from DigitalContrastLib.synthesis.windows import plan_windows
from DigitalContrastLib.worker.process import SAFE_PATH_FLAGS

DEFAULT_SIZE_XYZ = (512, 512, 300)
FOV_MM = 358.4


def default_spacing(size_xyz: tuple[int, int, int]) -> tuple[float, float, float]:
    """About a 358 mm in-plane field of view and 1 mm slices (0.7 x 0.7 x 1.0 mm at 512 x 512 x 300)."""
    return (round(FOV_MM / size_xyz[0], 4), round(FOV_MM / size_xyz[1], 4), 1.0)


def phantom_file(folder: Path, size_xyz: tuple[int, int, int], spacing: tuple[float, float, float], seed: int) -> Path:
    """Generate (once) and cache the benchmark phantom's non-contrast scan as raw NRRD."""

    name = f"phantom-{seed}-{'x'.join(map(str, size_xyz))}-{'x'.join(f'{s:g}' for s in spacing)}.nrrd"
    path = folder / name
    if not path.is_file():
        case = make_phantom(seed, size_xyz=size_xyz, spacing_xyz_mm=spacing)
        write_volume(case.noncontrast, path)
    return path


def flops_per_window(network: torch.nn.Module, roi_zyx: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass on one window (fp32, counted by ``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros((1, 1, *roi_zyx)))
    return int(counter.get_total_flops())


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def naive_synthesis(volume, network: torch.nn.Module, settings: EngineSettings,
                    flips: Sequence[tuple[int, ...]] = ((),),
                    progress: Callable[[str, int, int], None] = lambda *_: None) -> tuple[np.ndarray, dict[str, float], int]:
    """The baseline: same preprocessing and postprocessing, MONAI's default sliding window, fp32, batch 1.

    ``flips`` (``[z, y, x]`` axes per pass): the residual is the mean over these flipped passes, so a
    card whose prediction is the flip mean is compared with the same function computed naively.
    The network runs where its weights are (the CPU for ``make bench``; a GPU in ``Testing/gpu_check.py``).
    ``progress(stage, done, total)`` marks each stage's start and end, as the engine's does.
    Returns ``(int16 synthetic [z, y, x], timings_s, windows per pass)``.
    """
    from monai.inferers import sliding_window_inference

    timings = {}
    progress("preprocess", 0, 1)
    t0 = time.perf_counter()
    orientation = canonical_orientation(volume.direction)
    canonical = orientation.to_canonical(np.asarray(volume.array))
    spacing_zyx = orientation.spacing_zyx(volume.spacing_mm)
    target = settings.target_spacing_xyz_mm
    grid = model_grid_shape(canonical.shape, spacing_zyx, None if target is None else (target[2], target[1], target[0]))
    device = next(network.parameters()).device
    image = hu_to_model_grid(canonical, grid).clamp_(*settings.clip_hu).sub_(settings.offset_hu).div_(settings.scale_hu)
    image = image.to(device)
    timings["preprocess"] = time.perf_counter() - t0
    progress("preprocess", 1, 1)
    progress("inference", 0, 1)
    t0 = time.perf_counter()
    outputs = []
    with torch.inference_mode():
        for axes in flips:
            source = torch.flip(image, axes) if axes else image
            output = sliding_window_inference(source[None, None], list(settings.roi_size_zyx), 1, network)[0, 0]
            outputs.append(torch.flip(output, axes) if axes else output)
    output = torch.stack(outputs).mean(dim=0) if len(outputs) > 1 else outputs[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the inference, not the copy back, is what is timed here
    timings["inference"] = time.perf_counter() - t0
    progress("inference", 1, 1)
    windows = len(plan_windows(grid, settings, 0.25).windows)  # MONAI's grid of the card's windows
    progress("postprocess", 0, 1)
    t0 = time.perf_counter()
    out = empty_int16_volume(volume.array.shape)
    model_grid_to_input(output.float().cpu() * settings.output_scale_hu, orientation.to_canonical(out),
                        base_hu=canonical, threshold_hu=settings.body_threshold_hu)
    timings["postprocess"] = time.perf_counter() - t0
    progress("postprocess", 1, 1)
    return out, timings, windows


def _diff_in_body(a: np.ndarray, b: np.ndarray, body: np.ndarray) -> tuple[int, float]:
    """Largest and mean absolute difference (HU) of two int16 volumes inside ``body``."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))[body]
    return (int(diff.max()), round(float(diff.mean()), 4)) if diff.size else (0, 0.0)


#: Uncontended timed runs of each path (after its untimed warm-up); their median is the figure.
TIMED_RUNS = 3


def measure(input_path: str, model_id: str | None, device: str = "cpu", repeats: int = TIMED_RUNS) -> dict[str, Any]:
    """Run in the child process: time the engine (``--backend auto``; torch too when auto picked
    another) and the naive baseline on one file.

    Each path runs once untimed, then until ``repeats`` runs were uncontended (:func:`.timed_runs.time_path`);
    its figure is their median. ``paths`` holds every path's runs, the CPU other processes used
    during each run and stage, and its peak RSS.
    """
    from DigitalContrastLib.ct.masks import body_mask_from_ct

    result: dict[str, Any] = {"load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    t0 = time.perf_counter()
    engine = load_engine(model_id, device)
    result["model_load_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    volume = read_volume(input_path)
    result["read_s"] = round(time.perf_counter() - t0, 3)
    # Steady state, as in a worker that synthesizes a cohort: each path first runs once untimed, so
    # one-time costs (network copies, OpenVINO's conversion and compilation for the shape, the first
    # touch of the memory a volume of this size needs) are not counted. The first call is reported.
    t0 = time.perf_counter()
    first = engine.synthesize(volume)
    first_s = time.perf_counter() - t0
    first_timings = {k: round(v, 3) for k, v in first.timings_s.items()}
    backend, first_notes = first.backend, first.notes
    del first
    paths: dict[str, dict[str, Any]] = {}
    fast, runs, rss = time_path(lambda ledger: engine.synthesize(volume, progress=ledger, backend=backend),
                                lambda r: r.timings_s, repeats)
    paths["engine"] = path_figures(runs, rss, backend=backend, precision=fast.precision)
    if backend != "torch":  # the same engine on torch eager, for comparison
        engine.synthesize(volume, backend="torch")
        _, runs, rss = time_path(lambda ledger: engine.synthesize(volume, progress=ledger, backend="torch"),
                                 lambda r: r.timings_s, repeats)
        paths["engine_torch"] = path_figures(runs, rss, backend="torch", precision=engine.precision)

    network = load_network(engine.card, "cpu")  # the same weights, fp32, plain memory layout
    settings = engine.settings
    naive_synthesis(volume, network, settings)  # untimed warm-up of the baseline (one pass)
    flip_mean = settings.prediction == "flip-tta-mean"
    passes = len(FLIP_TTA_AXES) if flip_mean else 1
    flips = FLIP_TTA_AXES if flip_mean else ((),)
    (naive, _, naive_windows), runs, rss = time_path(
        lambda ledger: naive_synthesis(volume, network, settings, flips, progress=ledger), lambda r: r[1], repeats)
    paths["naive"] = path_figures(runs, rss, backend="torch (MONAI sliding_window_inference)", precision="fp32")
    body = body_mask_from_ct(volume.array)
    max_diff, mean_diff = _diff_in_body(fast.synthetic.array, naive, body)
    fast_s, naive_s = paths["engine"]["s"], paths["naive"]["s"]
    fast_timings, naive_timings = paths["engine"]["timings_s"], paths["naive"]["timings_s"]

    # a card that averages the flips: one pass of each path too (engine with prediction single-pass)
    single_figures = None
    if flip_mean:
        runner = engine.runner_for(backend)[0]
        t0 = time.perf_counter()
        one = synthesize_volume(volume, runner, replace_settings(settings, prediction="single-pass"),
                                engine._torch_device)
        one_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_one, naive_one_timings, _ = naive_synthesis(volume, network, settings)
        naive_one_s = time.perf_counter() - t0
        one_max, one_mean = _diff_in_body(one.synthetic.array, naive_one, body)
        single_figures = {
            "synthesize_s": round(one_s, 3),
            "timings_s": {k: round(v, 3) for k, v in one.timings_s.items()},
            "naive_s": round(naive_one_s, 3),
            "naive_timings_s": {k: round(v, 3) for k, v in naive_one_timings.items()},
            "speedup": round(naive_one_s / one_s, 2),
            "inference_speedup": round(naive_one_timings["inference"] / one.timings_s["inference"], 2),
            "max_abs_diff_hu_in_body": one_max,
            "mean_abs_diff_hu_in_body": one_mean,
        }

    flops = flops_per_window(network, tuple(settings.roi_size_zyx))
    fast_flops = flops_per_window(network, tuple(fast.window_zyx)) * fast.windows_run * passes
    result.update({
        "input": input_path,
        "shape_zyx": list(volume.shape_zyx),
        "spacing_xyz_mm": list(volume.spacing_mm),
        "model": {"id": engine.card.id, "version": engine.card.version, "roi_size_zyx": list(settings.roi_size_zyx),
                  "target_spacing_xyz_mm": list(settings.target_spacing_xyz_mm or [])},
        "device": fast.device,
        "backend": backend,
        "precision": fast.precision,
        "threads": torch.get_num_threads(),
        "cpu": cpu_description(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "synthesize_s": fast_s,
        "synthesize_runs_s": [run["s"] for run in paths["engine"]["runs"]],
        "contended": any(path["contended"] for path in paths.values()),
        "first_synthesize_s": round(first_s, 3),
        "first_synthesize_timings_s": first_timings,
        "first_synthesize_notes": first_notes,
        "synthesize_timings_s": fast_timings,
        "synthesize_notes": fast.notes,
        "prediction": engine.settings.prediction,
        "single_pass": single_figures,
        "naive_s": naive_s,
        "naive_timings_s": naive_timings,
        "naive_runs_s": [run["s"] for run in paths["naive"]["runs"]],
        "speedup": round(naive_s / fast_s, 2),
        "inference_speedup": round(naive_timings["inference"] / fast_timings["inference"], 2),
        "speedup_torch_backend": (round(naive_s / paths["engine_torch"]["s"], 2) if "engine_torch" in paths else None),
        "naive_windows": naive_windows,
        "naive_window_zyx": list(settings.roi_size_zyx),
        "windows_run": fast.windows_run,
        "windows_total": fast.windows_total,
        "window_zyx": list(fast.window_zyx),
        "body_voxels": int(body.sum()),
        "max_abs_diff_hu_in_body": max_diff,
        "mean_abs_diff_hu_in_body": mean_diff,
        "peak_rss_mb": paths["engine"]["peak_rss_mb"],
        "peak_rss_per_path_mb": {name: path["peak_rss_mb"] for name, path in paths.items()},
        "paths": paths,
        "passes": passes,
        "gflop_naive": round(flops * naive_windows * passes / 1e9, 1),
        "gflop_synthesize": round(fast_flops / 1e9, 1),
        "achieved_gflops": round(fast_flops / fast_timings["inference"] / 1e9, 1),
        "naive_achieved_gflops": round(flops * naive_windows * passes / naive_timings["inference"] / 1e9, 1),
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_cores": available_cpu_cores(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    })
    return result


def cpu_description() -> dict[str, Any]:
    """The CPU the figures came from: model name, cores, and the flags that decide the precision."""
    from DigitalContrastLib.common.hardware import physical_cores
    from DigitalContrastLib.synthesis.device import cpu_has_fast_bf16

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == (platform.processor() or platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "physical_cores": physical_cores(), "native_bf16": cpu_has_fast_bf16(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"})}


def bench_phantom(size_xyz: tuple[int, int, int] = DEFAULT_SIZE_XYZ,
                  spacing_xyz_mm: tuple[float, float, float] | None = None, model_id: str | None = None,
                  seed: int = 20240, cache_dir: str | Path = "bench") -> tuple[Path, float]:
    """Check the model, then generate (once) the benchmark phantom: ``(its path, seconds taken)``."""

    # a missing model or bad weights is the user's error (exit 3, one sentence), found before the
    # phantom is generated, not a failed child process
    verify_weights_file(resolve_model(model_id).weights)
    size_xyz = tuple(int(v) for v in size_xyz)  # type: ignore[assignment]
    spacing = tuple(spacing_xyz_mm) if spacing_xyz_mm else default_spacing(size_xyz)  # type: ignore[arg-type]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = phantom_file(cache_dir, size_xyz, spacing, seed)
    return path, time.perf_counter() - t0


def measure_in_child(function: str, path: Path, model_id: str | None) -> dict[str, Any]:
    """``function(path, model_id)`` of this package run in a fresh Python process (so its peak RSS is
    the synthesis's, not the phantom generator's); returns its JSON result."""

    module, _, name = function.rpartition(".")
    code = (f"import json, sys; from {module} import {name}; "
            f"print('BENCH-RESULT ' + json.dumps({name}(sys.argv[1], sys.argv[2] or None)))")
    child = subprocess.run([sys.executable, *SAFE_PATH_FLAGS, "-c", code, str(path), model_id or ""],
                           capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if child.returncode != 0 or not lines:
        tail = "\n".join((child.stderr or child.stdout).strip().splitlines()[-5:])
        if child.returncode in (-9, 137):
            raise OutOfMemoryError(f"The benchmark child was killed (out of memory?) on {path}; try a smaller --size.")
        raise RuntimeError(f"benchmark child failed (exit {child.returncode}):\n{tail}")
    return json.loads(lines[-1][len("BENCH-RESULT "):])


def run_bench(size_xyz: tuple[int, int, int] = DEFAULT_SIZE_XYZ, spacing_xyz_mm: tuple[float, float, float] | None = None,
              model_id: str | None = None, seed: int = 20240, cache_dir: str | Path = "bench") -> dict[str, Any]:
    """Generate/cache the phantom, measure in a child process and return the figures."""
    path, phantom_s = bench_phantom(size_xyz, spacing_xyz_mm, model_id, seed, cache_dir)
    result = measure_in_child("DigitalContrastLib.benchmarks.synthesis.measure", path, model_id)
    result["phantom_generation_s"] = round(phantom_s, 1)
    result["targets"] = {
        "speedup_min": 5.0, "mean_abs_diff_hu_max": 2.0, "synthesize_s_max": 20.0, "peak_rss_mb_max": 4096.0,
    }
    result["meets_targets"] = {
        "speedup": result["speedup"] >= 5.0,
        "mean_abs_diff": result["mean_abs_diff_hu_in_body"] <= 2.0,
        "synthesize_time": result["synthesize_s"] <= 20.0,
        "peak_rss": max(result["peak_rss_per_path_mb"][name] for name in ("engine", "engine_torch")
                        if name in result["peak_rss_per_path_mb"]) <= 4096.0,
    }
    if result["contended"]:
        result["contended_note"] = ("every timed run of at least one path was contended (other processes used more "
                                    "than 10% of the CPU): these figures are not the code's; rerun on a quiet machine")
    return result
