"""The synthesis engine on small volumes with a tiny random network (no trained model needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_fixtures import TINY_CARD, body_volume, write_tiny_model

from DigitalContrastLib.common.errors import JobError, NoGPUError, OutOfMemoryError
from DigitalContrastLib.synthesis.api import SynthesisEngine
from DigitalContrastLib.synthesis.device import NetworkRunner, select_device
from DigitalContrastLib.synthesis.engine import synthesize_volume
from DigitalContrastLib.synthesis.flip_passes import FLIP_TTA_AXES
from DigitalContrastLib.synthesis.grid import (
    canonical_orientation,
    hu_to_model_grid,
    model_grid_shape,
    model_grid_to_input,
)
from DigitalContrastLib.synthesis.settings import EngineSettings, total_stride_zyx
from DigitalContrastLib.synthesis.sliding_window import (
    Attempt,
    plan_attempts,
    sliding_window,
    sliding_window_with_fallback,
)
from DigitalContrastLib.synthesis.windows import WindowPlan, body_bounding_box, plan_windows, window_starts


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    card = write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-test")
    return SynthesisEngine(card, device="cpu")


def _fp32_engine(engine: SynthesisEngine) -> SynthesisEngine:
    twin = SynthesisEngine(engine.card, device="cpu")
    twin.settings = dataclasses.replace(twin.settings, cpu_precision="fp32")
    twin._runner = NetworkRunner(twin._runner.base, lambda d: "fp32")
    return twin


def test_output_keeps_geometry_dtype_and_outside_body(tiny_engine):
    volume = body_volume()
    result = tiny_engine.synthesize(volume)
    out = result.synthetic
    assert out.array.dtype == np.int16
    assert out.same_geometry(volume) and out.array.shape == volume.array.shape
    outside = volume.array <= -500
    np.testing.assert_array_equal(out.array[outside], volume.array[outside])
    inside = ~outside
    changed = np.abs(out.array[inside].astype(int) - volume.array[inside]).mean()
    assert changed > 0.5, "the network's residual never reached the body"
    assert result.device == "cpu" and set(result.timings_s) >= {"preprocess", "inference", "postprocess"}
    assert out.metadata.get("synthetic") is True
    assert any("skipped" in note for note in result.notes), result.notes


def test_input_noise_is_kept_where_the_residual_is_smooth(tiny_engine):
    """The residual is added to the ORIGINAL input: voxel-to-voxel noise of the input survives."""
    volume = body_volume(seed=3)
    out = tiny_engine.synthesize(volume).synthetic.array.astype(np.float32)
    inp = volume.array.astype(np.float32)
    body = volume.array > -500
    # high-pass (difference of x-neighbours) of output and input agree closely inside the body
    d_out, d_in = np.diff(out, axis=2)[body[:, :, 1:] & body[:, :, :-1]], np.diff(inp, axis=2)[body[:, :, 1:] & body[:, :, :-1]]
    assert np.corrcoef(d_out, d_in)[0, 1] > 0.9


def test_window_skipping_gives_the_same_output_inside_the_body(tiny_engine):
    volume = body_volume(seed=1)
    settings = tiny_engine.settings
    skipped = synthesize_volume(volume, tiny_engine._runner, settings, torch.device("cpu"), skip_empty_windows=True)
    full = synthesize_volume(volume, tiny_engine._runner, settings, torch.device("cpu"), skip_empty_windows=False)
    assert skipped.windows_run < full.windows_run == full.windows_total
    body = volume.array > -500
    diff = np.abs(skipped.synthetic.array.astype(int) - full.synthetic.array.astype(int))[body]
    assert diff.max() <= 1  # identical up to rounding of float sums


def test_bf16_stays_within_the_accuracy_guard_of_fp32(tiny_engine):
    if tiny_engine.precision != "bf16":
        pytest.skip(f"this CPU runs {tiny_engine.precision}: no native bf16 (AVX-512 BF16/AMX)")
    volume = body_volume(seed=2)
    fast = tiny_engine.synthesize(volume).synthetic.array.astype(np.float32)
    exact = _fp32_engine(tiny_engine).synthesize(volume).synthetic.array.astype(np.float32)
    body = volume.array > -500
    assert np.abs(fast - exact)[body].mean() <= 2.0


def _synthesize_with_hook(engine: SynthesisEngine, volume, hook):
    """``engine.synthesize(volume)`` on torch (the runner the references use) with ``hook`` called
    before each sliding-window attempt."""
    engine.attempt_hook = hook
    try:
        return engine.synthesize(volume, backend="torch")
    finally:
        engine.attempt_hook = None


def test_out_of_memory_walks_down_the_fallback_chain(tiny_engine):
    volume = body_volume(seed=4)
    reference = tiny_engine.synthesize(volume, backend="torch").synthetic.array
    # the CUDA chain, re-targeted at the CPU (no GPU here): same steps, same bookkeeping
    chain = plan_attempts(torch.device("cuda", 0), sw_batch_size=3)
    assert [(a.compute_device, a.stitch_device, a.sw_batch_size) for a in chain] == [
        ("cuda:0", "cuda:0", 3), ("cuda:0", "cuda:0", 1), ("cuda:0", "cpu", 1), ("cpu", "cpu", 3)]
    cpu_chain = [dataclasses.replace(a, compute_device="cpu", stitch_device="cpu") for a in chain]
    failures = []

    def hook(attempt):
        if len(failures) < 3:
            failures.append(attempt.label)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    image = torch.randn(17, 36, 72) * 0.1
    run = sliding_window_with_fallback(tiny_engine._runner, image, None, tiny_engine.settings, cpu_chain, 0.25,
                                       attempt_hook=hook)
    assert run.attempt == cpu_chain[3]
    assert len(run.notes) == 3 and "window batch 1" in run.notes[0] and "stitching on the CPU" in run.notes[1]
    assert "CPU only" in run.notes[2]
    direct = sliding_window(tiny_engine._runner, image, None, tiny_engine.settings, cpu_chain[0], 0.25)
    torch.testing.assert_close(run.output, direct.output, atol=1e-5, rtol=0)

    # through the engine: one injected failure, the result is the same and says what happened
    calls = []

    def once(attempt):
        calls.append(attempt)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("out of memory (injected)")

    result = _synthesize_with_hook(tiny_engine, volume, once)
    assert any("out of memory" in n and "retried with" in n for n in result.notes)
    np.testing.assert_array_equal(result.synthetic.array, reference)

    def always(attempt):
        raise torch.OutOfMemoryError("out of memory (injected)")

    with pytest.raises(OutOfMemoryError, match="every device"):
        sliding_window_with_fallback(tiny_engine._runner, image, None, tiny_engine.settings, cpu_chain, 0.25,
                                     attempt_hook=always)


def test_progress_is_monotonic_per_stage_and_uncertainty_is_an_sd_map(tiny_engine):
    volume = body_volume(seed=5)
    events = []
    result = tiny_engine.synthesize(volume, progress=lambda s, d, t: events.append((s, d, t)), uncertainty=True)
    stages = [s for s, _, _ in events]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "preprocess", "inference", "uncertainty", "postprocess"]
    for stage in set(stages):
        done = [d for s, d, t in events if s == stage]
        assert done == sorted(done) and all(0 <= d <= t for s, d, t in events if s == stage)
        assert events[max(i for i, e in enumerate(events) if e[0] == stage)][1] == \
            events[max(i for i, e in enumerate(events) if e[0] == stage)][2]
    sd = result.uncertainty
    assert sd is not None and sd.same_geometry(volume) and sd.array.dtype == np.int16
    assert sd.array.min() >= 0 and sd.array[volume.array <= -500].max() == 0
    assert sd.array[volume.array > -500].mean() > 0


@pytest.mark.parametrize("direction", [(-1, 0, 0, 0, -1, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0, 0, 0, -1)])
def test_any_direction_gives_the_same_anatomy_result(tiny_engine, direction):
    """A flipped/transposed storage of the same anatomy gives the same synthetic voxels at the same LPS points."""
    base = body_volume(seed=6)
    orientation = canonical_orientation(direction)
    stored = dataclasses.replace(base, array=np.ascontiguousarray(orientation.from_canonical(base.array)),
                                 direction=tuple(float(v) for v in direction),
                                 spacing_mm=_permuted_spacing(base.spacing_mm, orientation))
    a = tiny_engine.synthesize(base).synthetic.array
    b = tiny_engine.synthesize(stored).synthetic.array
    assert b.shape == stored.array.shape
    np.testing.assert_array_equal(orientation.to_canonical(b), a)


def _permuted_spacing(spacing_xyz, orientation):
    zyx = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
    stored_zyx = [0.0, 0.0, 0.0]
    for canonical_axis, stored_axis in enumerate(orientation.permutation):
        stored_zyx[stored_axis] = zyx[canonical_axis]
    return (stored_zyx[2], stored_zyx[1], stored_zyx[0])


def test_resampling_round_trip_and_grid():
    assert model_grid_shape((300, 512, 512), (1.0, 0.7, 0.7), (2.5, 1.4, 1.4)) == (120, 256, 256)
    smooth = torch.linspace(-1, 1, 40)[:, None, None] + torch.linspace(0, 1, 30)[None, :, None] + torch.zeros(1, 1, 20)
    down = hu_to_model_grid(smooth.numpy(), (16, 15, 10))
    assert down.shape == (16, 15, 10)
    assert abs(float(down.mean()) - float(smooth.mean())) < 1e-4  # area averaging keeps the mean
    out = np.zeros((40, 30, 20), np.float32)
    model_grid_to_input(down, out)
    assert np.abs(out - smooth.numpy())[2:-2, 2:-2].max() < 0.05


def test_window_grid_matches_monai():
    from monai.data.utils import dense_patch_slices

    for size, roi, overlap in [(256, 96, 0.25), (120, 64, 0.25), (70, 32, 0.5), (32, 32, 0.25)]:
        scan = max(1, int(roi * (1 - overlap)))
        monai_starts = sorted({s[0].start for s in dense_patch_slices((size,), (roi,), (scan,))})
        assert window_starts(size, roi, overlap) == monai_starts


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(NoGPUError, match="CUDA"):
            select_device("cuda")
    with pytest.raises(JobError):
        select_device("tpu")


def test_bad_overlap_is_a_job_error(tiny_engine):
    with pytest.raises(JobError, match="Overlap"):
        tiny_engine.synthesize(body_volume(), overlap=1.5)


def test_batch_norm_folding_keeps_the_function():
    from DigitalContrastLib.models.network import build_network, fold_batch_norm

    torch.manual_seed(0)
    net = build_network("UNet", {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8, 16],
                                 "strides": [2, 2], "num_res_units": 0, "norm": "BATCH"})
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(2, 1, 16, 24, 24)
    with torch.no_grad():
        expected = net(x)
        assert fold_batch_norm(net) == 4  # 2 down, 1 bottom, 1 up (the top layer has no norm)
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


def test_benchmark_measures_both_paths_on_the_same_model(tmp_path):
    """`make bench`'s measurement on a small file: both outputs agree and every reported figure is real."""
    from DigitalContrastLib.benchmarks.synthesis import measure
    from DigitalContrastLib.ct.io import write_volume

    card = write_tiny_model(tmp_path / "models" / "tiny-bench")
    path = write_volume(body_volume(shape_zyx=(40, 64, 128)), tmp_path / "ct.nrrd")
    figures = measure(str(path), str(card.folder), repeats=1)
    assert figures["shape_zyx"] == [40, 64, 128] and figures["model"]["id"] == card.id
    assert 0 < figures["windows_run"] <= figures["windows_total"]
    assert figures["synthesize_s"] > 0 and figures["naive_s"] > 0 and figures["peak_rss_mb"] > 0
    # the timed call is the steady state; the process's first call (the warm-up) is reported beside it
    assert figures["first_synthesize_s"] > 0 and set(figures["first_synthesize_timings_s"]) >= {"inference"}
    # both times are printed rounded to 1 ms: on a file this small that moves their ratio by a few per cent
    assert figures["speedup"] == pytest.approx(figures["naive_s"] / figures["synthesize_s"], rel=0.05)
    assert figures["mean_abs_diff_hu_in_body"] <= 2.0, figures
    # every path: its backend, its own peak RSS, and each run with the CPU others used meanwhile
    paths = figures["paths"]
    assert paths["engine"]["backend"] == figures["backend"] and paths["naive"]["precision"] == "fp32"
    assert set(figures["peak_rss_per_path_mb"]) == set(paths) and all(v > 0 for v in figures["peak_rss_per_path_mb"].values())
    for path in paths.values():
        assert path["runs"] and all(run["others_cpu_s"] >= 0 for run in path["runs"])
        assert path["contended"] == all(run["contended"] for run in path["runs"])
        assert {"preprocess", "inference", "postprocess"} <= set(path["runs"][0]["stage_others_cpu_s"])
    assert figures["cpu"]["physical_cores"] >= 1 and isinstance(figures["cpu"]["native_bf16"], bool)


def _coverage(plan: WindowPlan, shape) -> np.ndarray:
    count = np.zeros(plan.padded_zyx, dtype=np.int32)
    rz, ry, rx = plan.roi_zyx
    for z, y, x in plan.windows:
        count[z: z + rz, y: y + ry, x: x + rx] += 1
    return count[: shape[0], : shape[1], : shape[2]]


@pytest.mark.parametrize("shape", [(120, 256, 256), (160, 256, 256), (400, 256, 256), (600, 512, 512), (17, 36, 72),
                                   (300, 100, 700)])
def test_large_window_plan_tiles_the_grid_within_the_budget(shape):
    settings = EngineSettings(roi_size_zyx=(64, 128, 128), overlap=0.25, max_window_voxels=256**3,
                              window_multiple_zyx=(16, 16, 16))
    plan = plan_windows(shape, settings, 0.25, settings.max_window_voxels)
    assert all(r % 16 == 0 for r in plan.roi_zyx)
    assert np.prod(plan.roi_zyx) <= settings.max_window_voxels
    assert _coverage(plan, shape).min() >= 1  # every voxel is in a window
    fits = np.prod([-(-n // 16) * 16 for n in shape]) <= settings.max_window_voxels
    assert (len(plan.windows) == 1) == bool(fits)
    for axis, starts in enumerate(plan.starts_zyx):
        gaps = np.diff(starts)
        # neighbouring tiles share at least the card's overlap (16 of 64 along z, 32 of 128 in-plane)
        assert all(plan.roi_zyx[axis] - g >= 0.25 * settings.roi_size_zyx[axis] for g in gaps)
    # without a budget: the card's windows on MONAI's grid
    card = plan_windows(shape, settings, 0.25, 0)
    assert card.roi_zyx == (64, 128, 128)
    assert card.starts_zyx[0] == window_starts(max(shape[0], 64), 64, 0.25)


def test_total_stride_of_a_unet():
    assert total_stride_zyx({"strides": [2, 2, 2, 2]}) == (16, 16, 16)
    assert total_stride_zyx({"strides": [[1, 2, 2], 2]}) == (2, 4, 4)
    assert total_stride_zyx({}) == (1, 1, 1)


LARGE_WINDOW_VOXELS = 128**3


@pytest.fixture(scope="module")
def large_window_engine(tmp_path_factory):
    data_changes = {"inference": {**TINY_CARD["inference"], "max_window_voxels": LARGE_WINDOW_VOXELS}}
    card = write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-large", **data_changes)
    return SynthesisEngine(card, device="cpu")


def test_large_windows_agree_with_the_cards_windows_inside_the_body(large_window_engine):
    engine = large_window_engine
    volume = body_volume(shape_zyx=(40, 96, 160), seed=6)
    large = engine.synthesize(volume)
    # 40x96x160 voxels at 1.5x1.5x2.5 mm -> a 33x72x120 model grid (2x2x3 mm); the body spans about
    # 50 of its 120 columns, so the engine crops x to 64 (body, 8 voxels of air each side, a multiple
    # of 4) and pads z to a multiple of 4: one window
    assert (large.windows_run, large.window_zyx) == (1, (36, 72, 64))
    assert "cropped to the body's bounding box: 33x72x64 of 33x72x120 model-grid voxels" in large.notes
    assert any(note.startswith("1 window of 36x72x64") for note in large.notes)
    card_windows = dataclasses.replace(engine.settings, max_window_voxels=0)
    small = synthesize_volume(volume, engine._runner, card_windows, torch.device("cpu"))
    assert small.windows_run > 1 and small.window_zyx == (16, 32, 32)
    body = volume.array > -500
    changed = np.abs(large.synthetic.array.astype(np.float32) - volume.array)[body].mean()
    diff = np.abs(large.synthetic.array.astype(np.float32) - small.synthetic.array)[body]
    assert changed > 5 * diff.mean()  # the network does change the body, and both plans agree on how
    assert diff.mean() <= 2.0


def test_out_of_memory_with_large_windows_falls_back_to_the_cards_windows(large_window_engine):
    engine = large_window_engine
    chain = plan_attempts(torch.device("cpu"), sw_batch_size=3, max_window_voxels=LARGE_WINDOW_VOXELS)
    assert [(a.sw_batch_size, a.window_voxels) for a in chain] == [(1, LARGE_WINDOW_VOXELS), (3, 0), (1, 0)]
    volume = body_volume(shape_zyx=(40, 96, 160), seed=6)
    card_windows = dataclasses.replace(engine.settings, max_window_voxels=0)
    expected = synthesize_volume(volume, engine._runner, card_windows, torch.device("cpu")).synthetic.array

    def fail_large(attempt):
        if attempt.window_voxels:
            raise torch.OutOfMemoryError("out of memory (injected)")

    result = _synthesize_with_hook(engine, volume, fail_large)
    assert result.window_zyx == (16, 32, 32)
    assert any("out of memory with cpu, windows of up to" in note for note in result.notes)
    np.testing.assert_array_equal(result.synthetic.array, expected)


def test_flip_mean_prediction_is_the_mean_of_the_flipped_single_passes(tmp_path):
    single_card = write_tiny_model(tmp_path / "single", seed=3,
                                   inference={**TINY_CARD["inference"], "max_window_voxels": LARGE_WINDOW_VOXELS})
    mean_card = write_tiny_model(tmp_path / "mean", seed=3,
                                 inference={**TINY_CARD["inference"], "max_window_voxels": LARGE_WINDOW_VOXELS,
                                            "prediction": "flip-tta-mean"})
    single, mean = SynthesisEngine(single_card, device="cpu"), SynthesisEngine(mean_card, device="cpu")
    # 24x96x160 voxels at 1.5x1.5x2.5 mm -> a 20x72x120 model grid: one window, no padding, so a
    # flipped pass sees exactly the mirrored input
    volume = body_volume(shape_zyx=(24, 96, 160), seed=7)
    residuals = []
    for axes in FLIP_TTA_AXES:
        flipped = volume.with_array(np.ascontiguousarray(np.flip(volume.array, axes)) if axes else volume.array)
        out = single.synthesize(flipped).synthetic.array.astype(np.float32)
        residuals.append((np.flip(out, axes) if axes else out) - volume.array)
    events = []
    result = mean.synthesize(volume, progress=lambda *e: events.append(e))
    body = volume.array > -500
    expected = np.mean(residuals, axis=0)
    got = result.synthetic.array.astype(np.float32) - volume.array
    assert np.abs(got - expected)[body].max() <= 1.0  # each single pass was rounded to whole HU
    assert np.abs(residuals[0] - residuals[1])[body].mean() > 1.0  # the passes differ: the mean is not one of them
    assert any(note.startswith("prediction: mean of 4") for note in result.notes)
    # progress: the four passes share the inference stage
    inference = [(d, t) for stage, d, t in events if stage == "inference"]
    assert inference[-1][0] == inference[-1][1] and len(inference) >= 5
    assert "uncertainty" not in result.timings_s and result.uncertainty is None
    # with the SD map: the same prediction from the same four passes, the last three reported as the
    # "uncertainty" stage (as the client weighs it)
    events.clear()
    with_sd = mean.synthesize(volume, progress=lambda *e: events.append(e), uncertainty=True)
    np.testing.assert_array_equal(with_sd.synthetic.array, result.synthetic.array)
    stages = [stage for stage, _, _ in events]
    assert stages.index("uncertainty") > max(i for i, s in enumerate(stages) if s == "inference")
    assert set(with_sd.timings_s) >= {"inference", "uncertainty"}
    assert float(np.asarray(with_sd.uncertainty.array)[body].mean()) > 0


def test_benchmark_of_a_flip_mean_card_compares_the_same_function(tmp_path):
    """A card whose prediction is the flip mean: the naive path averages the same flips (small
    difference), one pass of each path is reported too, and the fast path's windows are large."""
    from DigitalContrastLib.benchmarks.synthesis import measure
    from DigitalContrastLib.ct.io import write_volume

    card = write_tiny_model(tmp_path / "models" / "tiny-flip", seed=5,
                            inference={**TINY_CARD["inference"], "max_window_voxels": LARGE_WINDOW_VOXELS,
                                       "prediction": "flip-tta-mean"})
    path = write_volume(body_volume(shape_zyx=(40, 64, 128), seed=8), tmp_path / "ct.nrrd")
    figures = measure(str(path), str(card.folder), repeats=1)
    assert figures["prediction"] == "flip-tta-mean" and figures["passes"] == 4
    assert figures["windows_run"] == 1 and figures["naive_windows"] > 1
    assert figures["gflop_naive"] > figures["gflop_synthesize"] > 0
    one = figures["single_pass"]
    assert one["synthesize_s"] > 0 and one["naive_s"] > 0
    assert figures["mean_abs_diff_hu_in_body"] <= 2.0 and one["mean_abs_diff_hu_in_body"] <= 2.0, figures


def test_body_bounding_box_holds_the_body_with_margin_on_the_stride_lattice():
    body = torch.zeros(40, 100, 120, dtype=torch.bool)
    body[5:30, 20:61, 3:90] = True
    box = body_bounding_box(body, margin=8, multiple_zyx=(4, 16, 16))
    # grown by 8, then out to multiples of (4, 16, 16) from the grid's origin, the end clamped to the grid
    assert box == (slice(0, 40), slice(0, 80), slice(0, 112))
    assert int(body[box].sum()) == int(body.sum())
    body[:, :, :] = False
    body[10:12, 50:52, 60:62] = True
    assert body_bounding_box(body, margin=8, multiple_zyx=(4, 16, 16)) == (slice(0, 20), slice(32, 64), slice(48, 80))
    assert body_bounding_box(torch.zeros(8, 8, 8, dtype=torch.bool)) is None
    # a flip pass: the box is aligned on the mirrored image's lattice, given in unmirrored coordinates
    for axes in FLIP_TTA_AXES:
        mirrored = body_bounding_box(torch.flip(body, axes), margin=8, multiple_zyx=(4, 16, 16))
        expected = tuple(slice(n - b.stop, n - b.start) if a in axes else b
                         for a, (b, n) in enumerate(zip(mirrored, body.shape)))
        assert body_bounding_box(body, margin=8, multiple_zyx=(4, 16, 16), mirrored_axes=axes) == expected
    assert body_bounding_box(body, 8, (4, 16, 16), mirrored_axes=(1,))[1] == slice(36, 68)  # 100 - 64, 100 - 32


def test_cropping_to_the_body_keeps_the_whole_grids_output(large_window_engine, monkeypatch):
    """The crop is on the network's stride lattice: inside the body the network computes what it
    computes on the whole grid (up to where the zero padding at the box's edge reaches)."""
    engine = large_window_engine
    volume = body_volume(shape_zyx=(40, 96, 160), seed=6)
    cropped = engine.synthesize(volume)
    # the box is the whole grid: no crop (the name the sliding window reads)
    monkeypatch.setattr("DigitalContrastLib.synthesis.sliding_window.BODY_CROP_MARGIN_VOXELS", 10**6)
    whole = engine.synthesize(volume)
    assert not any("cropped" in note for note in whole.notes) and any("cropped" in note for note in cropped.notes)
    body = volume.array > -500
    changed = np.abs(whole.synthetic.array.astype(np.float32) - volume.array)[body].mean()
    diff = np.abs(cropped.synthetic.array.astype(np.float32) - whole.synthetic.array)[body]
    assert changed > 5.0  # the network does change the body ...
    assert diff.max() <= 1  # ... and the crop computes the same, up to rounding to whole HU:
    # about 1 body voxel in 150,000 rounds the other way (an unaligned crop: 1 in 2,500)
    assert (diff > 0).mean() < 1e-4


def test_subpixel_form_of_a_transposed_convolution_is_the_same_function():
    from DigitalContrastLib.models.network import (
        SubpixelConvTranspose3d,
        build_network,
        fold_batch_norm,
        use_subpixel_for_narrow_transposed_convs,
    )

    torch.manual_seed(1)
    for bias in (True, False):
        transpose = torch.nn.ConvTranspose3d(6, 2, 3, stride=2, padding=1, output_padding=1, bias=bias).double()
        x = torch.randn(2, 6, 5, 7, 4, dtype=torch.float64)  # odd and even sides
        with torch.no_grad():
            torch.testing.assert_close(SubpixelConvTranspose3d(transpose)(x), transpose(x), atol=1e-12, rtol=0)
    assert not SubpixelConvTranspose3d.supports(torch.nn.ConvTranspose3d(6, 2, 3, stride=2, padding=1))
    net = build_network("UNet", {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [8, 16, 32],
                                 "strides": [2, 2], "num_res_units": 0, "norm": "BATCH"}).eval()
    x = torch.randn(1, 1, 16, 24, 40)
    with torch.no_grad():
        expected = net(x)
        fold_batch_norm(net)
        assert use_subpixel_for_narrow_transposed_convs(net) == 1  # the last layer (16 -> 1); 48 -> 8 stays
        assert sum(isinstance(m, torch.nn.ConvTranspose3d) for m in net.modules()) == 1
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("window_voxels", [0, 32**3])
def test_padding_is_air_for_the_cards_windows_and_continues_the_image_for_large_windows(window_voxels):
    """The card's windows pad a short axis with air, as training pads a patch; large windows pad
    only up to the network's stride and repeat the last slice there: an air cap would be a body
    edge the scan does not have, and the network would draw the aorta's end at it."""
    settings = EngineSettings(roi_size_zyx=(16, 16, 16), overlap=0.25, window_multiple_zyx=(16, 16, 16),
                              clip_hu=(-300.0, 1200.0), offset_hu=40.0, scale_hu=250.0)
    image = torch.linspace(-0.5, 2.0, 10 * 12 * 14).reshape(10, 12, 14)  # shorter than 16 on every axis
    seen = []

    def runner(batch, device):
        seen.append(batch.clone())
        return torch.zeros_like(batch)

    attempt = Attempt("cpu", "cpu", 1, "cpu", window_voxels)
    run = sliding_window(runner, image, None, settings, attempt, 0.25)
    assert run.output.shape == image.shape and len(seen) == 1
    window = seen[0][0, 0]
    assert window.shape == (16, 16, 16)
    torch.testing.assert_close(window[:10, :12, :14], image)
    pad = torch.ones(16, 16, 16, dtype=torch.bool)
    pad[:10, :12, :14] = False
    if window_voxels:  # every padded voxel holds the value of the nearest image voxel
        nearest = image[torch.arange(16).clamp(max=9)][:, torch.arange(16).clamp(max=11)][:, :, torch.arange(16).clamp(max=13)]
        torch.testing.assert_close(window, nearest)
        assert window[pad].min() > -0.6  # no air (-1.36 in network units) anywhere
    else:
        assert torch.all(window[pad] == (-300.0 - 40.0) / 250.0)
