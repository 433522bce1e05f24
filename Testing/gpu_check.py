"""A device check of the synthesis engine on a CUDA GPU: run it by hand where a GPU is; not part of `make test`.

    python Testing/gpu_check.py                   # writes $OUT/gpu_check.json (default /tmp)
    DEV=cpu SIZE=128 python Testing/gpu_check.py  # a quick dry run of this script without a GPU

It needs the engine's packages (torch with CUDA, MONAI, safetensors, jsonschema, scipy), not SimpleITK.

1. The bench volume (phantom seed 20240, 512 x 512 x 300, 0.7 x 0.7 x 1.0 mm) through the engine on
   the GPU: precision, seconds (one warm-up, then three timed), peak GPU memory, the engine's notes.
   The naive baseline of ``make bench`` (``bench.naive_synthesis``: MONAI's
   ``sliding_window_inference``, fp32, window batch 1, the same four flip passes) with its network
   on the same GPU, and on the CPU for the accuracy guard: mean and largest |difference| in HU
   inside the body.
2. The out-of-memory fallback on a real GPU: this process's GPU memory capped (1500, 300 and 40 MiB)
   so that the first attempts run out of memory; the device that ran, the notes, the difference.
3. ``validate`` on the card's held-out seeds 10000-10007 on the GPU, beside the card's CPU figures.
"""
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DigitalContrast"))
OUT = os.environ.get("OUT", "/tmp")
DEV = os.environ.get("DEV", "cuda")  # DEV=cpu SIZE=128: a local dry run of this script
CUDA = DEV == "cuda"
report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if CUDA else None,
                "bf16": torch.cuda.is_bf16_supported() if CUDA else None, "cpu_count": os.cpu_count()}


def save():
    with open(os.path.join(OUT, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)


def section(name):
    def wrap(fn):
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception:  # noqa: BLE001 - record and go on
            report[name] = {"error": traceback.format_exc()[-2000:]}
        report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        save()
        print("section", name, report["section_seconds"][name], "s", flush=True)
        return fn
    return wrap


from DigitalContrastLib.benchmarks.synthesis import FOV_MM, _diff_in_body, naive_synthesis  # noqa: E402
from DigitalContrastLib.ct.masks import body_mask_from_ct  # noqa: E402
from DigitalContrastLib.models.network import load_network  # noqa: E402
from DigitalContrastLib.phantoms.generator import make_phantom  # noqa: E402
from DigitalContrastLib.synthesis.api import SynthesisEngine, load_engine  # noqa: E402
from DigitalContrastLib.synthesis.flip_passes import FLIP_TTA_AXES  # noqa: E402

t0 = time.perf_counter()
n = int(os.environ.get("SIZE", "512"))
size = (n, n, 300 * n // 512)
volume = make_phantom(20240, size_xyz=size, spacing_xyz_mm=(round(FOV_MM / n, 4), round(FOV_MM / n, 4), 1.0 * 512 / n)).noncontrast
report["phantom_s"] = round(time.perf_counter() - t0, 1)
body = body_mask_from_ct(volume.array)
shared = {}


def sync():
    if CUDA:
        torch.cuda.synchronize()


def timed(fn, repeats=3):
    fn()
    sync()
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync()
        times.append(round(time.perf_counter() - t, 3))
    return out, times


@section("engine")
def _():
    engine = load_engine(None, DEV)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    result, times = timed(lambda: engine.synthesize(volume))
    shared["engine_out"] = result.synthetic.array
    shared["engine"] = engine
    return {"device": result.device, "precision": engine.precision, "times_s": times, "median_s": sorted(times)[1],
            "timings_s": result.timings_s, "notes": result.notes, "peak_memory_mb": result.peak_memory_mb,
            "windows_run": result.windows_run, "windows_total": result.windows_total, "window_zyx": result.window_zyx}


@section("naive_gpu_fp32")
def _():
    engine = shared["engine"]
    network = load_network(engine.card, "cpu").to(DEV)  # make bench's baseline, run on this device
    naive_synthesis(volume, network, engine.settings, FLIP_TTA_AXES)  # warm-up
    totals, inference = [], []
    for _ in range(3):
        t = time.perf_counter()
        _, timings, _ = naive_synthesis(volume, network, engine.settings, FLIP_TTA_AXES)
        totals.append(round(time.perf_counter() - t, 3))
        inference.append(round(timings["inference"], 3))
    return {"times_s": totals, "median_s": sorted(totals)[1], "inference_s": inference,
            "median_inference_s": sorted(inference)[1],
            "speedup_engine_over_naive": round(sorted(totals)[1] / report["engine"]["median_s"], 2)}


@section("accuracy_vs_cpu_naive_fp32")
def _():
    engine = shared["engine"]
    network = load_network(engine.card, "cpu")
    t = time.perf_counter()
    naive, _, _ = naive_synthesis(volume, network, engine.settings, FLIP_TTA_AXES)
    seconds = time.perf_counter() - t
    shared["naive_cpu"] = naive
    max_d, mean_d = _diff_in_body(shared["engine_out"], naive, body)
    return {"cpu_naive_fp32_s": round(seconds, 2), "max_abs_diff_hu": max_d, "mean_abs_diff_hu": mean_d,
            "guard_mean_le_2_hu": mean_d <= 2.0}


@section("oom_fallback")
def _():
    out = {}
    engine = shared["engine"]
    if not CUDA:
        return out
    total = torch.cuda.get_device_properties(0).total_memory
    for cap_mb in (1500, 300, 40):
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap_mb * 2**20 / total)
        fresh = None
        try:
            fresh = SynthesisEngine(engine.card, device="cuda")
            t = time.perf_counter()
            r = fresh.synthesize(volume)
            max_d, mean_d = _diff_in_body(r.synthetic.array, shared["engine_out"], body)
            out[f"cap_{cap_mb}_mb"] = {"seconds": round(time.perf_counter() - t, 2), "device": r.device, "notes": r.notes,
                                       "max_abs_diff_vs_uncapped_hu": max_d, "mean_abs_diff_vs_uncapped_hu": mean_d}
        except Exception as error:  # noqa: BLE001
            out[f"cap_{cap_mb}_mb"] = {"error": f"{type(error).__name__}: {error}"[:600]}
        finally:
            del fresh
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()
    return out


@section("validate")
def _():
    from DigitalContrastLib.training.validation import validate_model

    card = shared["engine"].card.data["validation"]
    r = validate_model(seeds=range(10000, 10008), engine=shared["engine"])
    keys = ["lumen_dice", "thrombus_bias_hu", "lumen_mae_hu", "body_mae_hu", "median_abs_max_diameter_error_mm",
            "min_lumen_median_hu", "max_lumen_median_hu"]
    return {"this_device": {k: r["summary"]["model"][k] for k in keys}, "card_cpu": {k: card["summary"]["model"][k] for k in keys},
            "passed_this_device": {k: v["passed"] for k, v in r["acceptance"].items()},
            "passed_card": {k: v["passed"] for k, v in card["acceptance"].items()}}


print(json.dumps(report, default=str), flush=True)
