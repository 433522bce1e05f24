"""The synthesis engine: a residual network turns a non-contrast CT into a synthetic CTA.

:func:`synthesize_volume` runs one volume through four steps (arrays ``[z, y, x]``, HU float32
while processing):

1. **preprocess** (:mod:`.grid`): the array is seen in canonical orientation (its index axes along
   +x, +y, +z of LPS, as the training phantoms; views, no copy), resampled to the card's target
   spacing on the same physical extent (area averaging where the grid gets coarser, linear
   interpolation where it gets finer), clipped to the card's HU range, ``(hu - offset_hu) / scale_hu``;
2. **windows** (:mod:`.windows`, :mod:`.sliding_window`): with a card budget ``max_window_voxels``
   the whole model grid is ONE window when it fits (else the fewest overlapping tiles that do),
   otherwise the card's ``roi_size_zyx`` windows on MONAI's grid; Gaussian blending where windows
   overlap; every window that holds no body voxel (HU above the card's ``body_threshold_hu`` on
   the model grid, or within two voxels of one) is skipped: the residual there is 0. With large
   windows the image is first cropped to the body's bounding box (aligned to the network's stride):
   the air around a patient is often a third of the field of view, and the network never runs on it.
   Out-of-memory errors walk down the fallback chain (:func:`.sliding_window.plan_attempts`) and
   every step taken is reported in the notes;
3. **passes** (:mod:`.flip_passes`): the test-time flip passes (z, y, z+y) when the card's
   prediction is their mean or an uncertainty map is asked;
4. **postprocess** (:mod:`.grid`): ``residual_hu = output * output_scale_hu``, resampled back onto
   the EXACT input grid and added to the ORIGINAL input HU (so the input's texture and noise are
   kept); voxels at or below ``body_threshold_hu`` (air, lung) keep their input value; rounded to int16.

Where and in which precision the network runs: :mod:`.device` (torch eager) or
:mod:`.openvino_runner` (OpenVINO, CPUs); what the card sets: :mod:`.settings`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.synthesis.device import WindowRunner, use_all_cpu_cores
from DigitalContrastLib.synthesis.flip_passes import FLIP_MEAN_NOTE, FlipPasses
from DigitalContrastLib.synthesis.grid import (
    Orientation,
    canonical_orientation,
    empty_int16_volume,
    hu_to_model_grid,
    model_grid_shape,
    model_grid_to_input,
)
from DigitalContrastLib.synthesis.settings import EngineSettings
from DigitalContrastLib.synthesis.sliding_window import (
    Attempt,
    WindowRun,
    plan_attempts,
    remaining_attempts,
    sliding_window_with_fallback,
)


class _MonotonicProgress:
    """Forward ``(stage, done, total)`` but never let ``done`` go backwards within a stage."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback or no_progress
        self.best: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        done = max(int(done), self.best.get(stage, 0))
        done = min(done, total)
        self.best[stage] = done
        self.callback(stage, done, max(int(total), 1))


@dataclass
class EngineOutput:
    """What :func:`synthesize_volume` returns (wrapped by ``synthesis.SynthesisResult``)."""

    synthetic: CTVolume
    uncertainty: CTVolume | None
    device: str
    timings_s: dict[str, float]
    notes: list[str]
    windows_total: int
    windows_run: int
    precision: str
    window_zyx: tuple[int, int, int] = (0, 0, 0)


def body_mask_hu(hu: np.ndarray | torch.Tensor, threshold_hu: float) -> np.ndarray | torch.Tensor:
    """Voxels the engine may change: HU strictly above ``threshold_hu`` (same type and shape as ``hu``)."""
    return hu > threshold_hu


def synthesize_volume(
    volume: CTVolume,
    runner: WindowRunner,
    settings: EngineSettings,
    device: torch.device,
    progress: ProgressCallback | None = None,
    uncertainty: bool = False,
    overlap: float | None = None,
    attempt_hook: Callable[[Attempt], None] | None = None,
    skip_empty_windows: bool | None = None,
) -> EngineOutput:
    """Synthesize a CTA from ``volume`` (any HU dtype, any LPS direction).

    Returns:
        :class:`EngineOutput`: ``synthetic`` is int16 HU on exactly the input grid (same shape,
        spacing, origin, direction), unchanged wherever the input is at or below the card's body
        threshold; ``uncertainty`` (when asked) is the voxel-wise SD in HU across flip test-time
        augmentation (identity, z, y and z+y flips), int16 on the same grid.
    """
    report = _MonotonicProgress(progress)
    overlap = settings.overlap if overlap is None else float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise JobError(f"Overlap {overlap} is outside [0, 1); pick e.g. 0.25.", code="bad_overlap")
    skip = settings.skip_empty_windows if skip_empty_windows is None else skip_empty_windows
    timings: dict[str, float] = {}
    if device.type == "cpu":
        use_all_cpu_cores()

    t0 = time.perf_counter()
    model = _preprocess(volume, settings, skip, report)
    timings["preprocess"] = time.perf_counter() - t0

    # ---- windows: the first pass (the whole prediction unless the card asks for the flip mean)
    t0 = time.perf_counter()
    passes = FlipPasses(report, flip_mean=settings.prediction == "flip-tta-mean", uncertainty=uncertainty)
    attempts = plan_attempts(device, settings.sw_batch_size, settings.max_window_voxels)
    run = sliding_window_with_fallback(runner, model.image, model.body, settings, attempts, overlap,
                                       progress=passes.progress(0), attempt_hook=attempt_hook)
    notes = [*run.notes, *_window_notes(run, tuple(model.image.shape))]
    used = torch.device(run.attempt.compute_device)
    precision = runner.precision(used)
    passes.add(run.output)

    # ---- the other flip passes: the prediction's mean and/or the uncertainty's SD
    if uncertainty:  # they are timed (and reported) as the "uncertainty" stage
        timings["inference"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    chain = remaining_attempts(attempts, run.attempt)
    for index, axes in enumerate(passes.extra_axes, start=1):
        extra = sliding_window_with_fallback(runner, model.image, model.body, settings, chain, overlap,
                                             progress=passes.progress(index), flip_axes=axes)
        notes.extend(extra.notes)
        passes.add(extra.output)
    mean, spread_hu = passes.combine(settings.output_scale_hu)
    if mean is not None:
        run.output = mean
        notes.append(FLIP_MEAN_NOTE)
    timings["uncertainty" if uncertainty else "inference"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    synthetic, sd_volume = _postprocess(volume, model, run.output, spread_hu, settings, report)
    timings["postprocess"] = time.perf_counter() - t0
    return EngineOutput(
        synthetic=synthetic,
        uncertainty=sd_volume,
        device=str(used),
        timings_s=timings,
        notes=notes,
        windows_total=run.windows_total,
        windows_run=run.windows_run,
        precision=precision,
        window_zyx=run.roi_zyx,
    )


@dataclass
class _ModelInput:
    """The input volume as the windows see it."""

    orientation: Orientation
    canonical_hu: np.ndarray  # the input array in canonical order [z, y, x] (a view, no copy)
    image: torch.Tensor  # the model grid [z, y, x] float32, network input units
    body: torch.Tensor | None  # bool [z, y, x] body mask on the model grid; None runs every window


def _preprocess(volume: CTVolume, settings: EngineSettings, skip_empty_windows: bool,
                report: _MonotonicProgress) -> _ModelInput:
    """Canonical orientation, model grid, HU clip and normalisation (the ``preprocess`` stage)."""
    report("preprocess", 0, 2)
    orientation = canonical_orientation(volume.direction)
    canonical = orientation.to_canonical(np.asarray(volume.array))  # a view, no copy
    spacing_zyx = orientation.spacing_zyx(volume.spacing_mm)
    target = settings.target_spacing_xyz_mm
    target_zyx = None if target is None else (target[2], target[1], target[0])
    grid_shape = model_grid_shape(canonical.shape, spacing_zyx, target_zyx)
    model_hu = hu_to_model_grid(canonical, grid_shape)
    report("preprocess", 1, 2)
    body_model = body_mask_hu(model_hu, settings.body_threshold_hu) if skip_empty_windows else None
    image = model_hu.clamp_(*settings.clip_hu).sub_(settings.offset_hu).div_(settings.scale_hu)
    report("preprocess", 2, 2)
    return _ModelInput(orientation, canonical, image, body_model)


def _window_notes(run: WindowRun, grid_zyx: tuple[int, ...]) -> list[str]:
    """What the first pass's windows did: the body crop, the windows' size and count, those skipped."""
    notes = []
    if run.cropped_zyx is not None:
        notes.append(f"cropped to the body's bounding box: {'x'.join(map(str, run.cropped_zyx))} "
                     f"of {'x'.join(map(str, grid_zyx))} model-grid voxels")
    notes.append(f"{run.windows_run} window{'s' if run.windows_run != 1 else ''} of {'x'.join(map(str, run.roi_zyx))} "
                 f"model-grid voxels over {'x'.join(map(str, run.cropped_zyx or grid_zyx))}")
    if run.windows_run < run.windows_total:
        notes.append(f"skipped {run.windows_total - run.windows_run} of {run.windows_total} windows that hold no body")
    return notes


def _postprocess(volume: CTVolume, model: _ModelInput, output: torch.Tensor, spread_hu: torch.Tensor | None,
                 settings: EngineSettings, report: _MonotonicProgress) -> tuple[CTVolume, CTVolume | None]:
    """The residual (``output`` in network units, scaled in place to HU) back onto the exact input grid,
    added to the original HU; the SD map (HU) onto the same grid, 0 outside the body (the ``postprocess`` stage)."""
    report("postprocess", 0, 2)
    out_array = empty_int16_volume(volume.array.shape)
    model_grid_to_input(
        output.mul_(settings.output_scale_hu), model.orientation.to_canonical(out_array),
        base_hu=model.canonical_hu, threshold_hu=settings.body_threshold_hu,
    )
    report("postprocess", 1, 2)
    sd_volume = None
    if spread_hu is not None:
        sd_array = np.zeros(volume.array.shape, dtype=np.int16)
        sd_view = model.orientation.to_canonical(sd_array)
        model_grid_to_input(spread_hu, sd_view)
        sd_view[~body_mask_hu(model.canonical_hu, settings.body_threshold_hu)] = 0
        sd_volume = volume.with_array(sd_array, synthetic=True, kind="uncertainty_sd_hu")
    report("postprocess", 2, 2)
    return volume.with_array(out_array, synthetic=True), sd_volume
