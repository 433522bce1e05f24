"""Running the network over the windows of a plan: the loop, the blending and the out-of-memory fallback.

:func:`sliding_window` runs one pass over the model grid (optionally mirrored, for a flip pass):
it plans the windows (:mod:`.windows`), runs them in batches through a runner (:class:`.device.NetworkRunner`)
and averages the overlapping outputs with Gaussian weights (:class:`WindowBlender`).
:func:`sliding_window_with_fallback` walks down :func:`plan_attempts` when memory runs out: the
card's windows instead of large ones, a smaller window batch, then stitching on the CPU, then the
CPU alone; every step taken is reported in the notes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from DigitalContrastLib.common.errors import OutOfMemoryError
from DigitalContrastLib.synthesis.device import is_out_of_memory, release_cached_memory
from DigitalContrastLib.synthesis.settings import EngineSettings
from DigitalContrastLib.synthesis.windows import (
    BODY_CROP_MARGIN_VOXELS,
    body_bounding_box,
    importance_map,
    pad_high_end,
    plan_windows,
    uncrop,
    window_region,
    windows_near_body,
)


@dataclass(frozen=True)
class Attempt:
    """One way to run the sliding window: where the network runs, where windows are stitched."""

    compute_device: str
    stitch_device: str
    sw_batch_size: int
    label: str
    window_voxels: int = 0  # 0: the card's windows; above 0: see :func:`.windows.plan_windows`


def plan_attempts(device: torch.device, sw_batch_size: int, max_window_voxels: int = 0) -> list[Attempt]:
    """The out-of-memory fallback chain for ``device``, first choice first.

    With ``max_window_voxels`` > 0 the chain starts with large windows (one at a time, see
    :func:`.windows.plan_windows`), then goes on with the card's windows:
    CUDA: full batch -> batch of one -> network on the GPU but stitching on the CPU -> CPU alone.
    CPU: full batch -> batch of one. MPS: as CPU, then the CPU.
    """
    dev = str(device)
    chain = []
    if max_window_voxels > 0:
        chain.append(Attempt(dev, dev, 1, f"{dev}, windows of up to {max_window_voxels} voxels", max_window_voxels))
    chain.append(Attempt(dev, dev, sw_batch_size, f"{dev}, window batch {sw_batch_size}"))
    if sw_batch_size > 1:
        chain.append(Attempt(dev, dev, 1, f"{dev}, window batch 1"))
    if device.type == "cuda":
        chain.append(Attempt(dev, "cpu", 1, f"network on {dev}, stitching on the CPU"))
    if device.type != "cpu":
        chain.append(Attempt("cpu", "cpu", sw_batch_size, "CPU only"))
    return chain


def remaining_attempts(attempts: Sequence[Attempt], succeeded: Attempt) -> list[Attempt]:
    """The chain from ``succeeded`` on, on its compute device: where the next pass of the same volume
    starts (no retry of what already ran out of memory)."""
    return [a for a in attempts[attempts.index(succeeded):] if a.compute_device == succeeded.compute_device]


@dataclass
class WindowRun:
    """Result of one sliding-window pass over the model grid."""

    output: torch.Tensor  # [z, y, x] float32 on the CPU, network output units
    windows_total: int
    windows_run: int
    attempt: Attempt
    roi_zyx: tuple[int, int, int] = (0, 0, 0)
    notes: list[str] = field(default_factory=list)
    cropped_zyx: tuple[int, int, int] | None = None  # the body box the windows ran on (large windows)


class WindowBlender:
    """Weighted average of overlapping window outputs on one padded grid (the merger).

    Each window's output ``[*roi_zyx]`` is added in with the importance map's weights
    (:func:`.windows.importance_map`) and the weights are summed alongside; :meth:`result` divides
    the two wherever a window reached and gives 0 elsewhere (a skipped window's residual).
    Float32, on ``device`` (where the windows are stitched).
    """

    def __init__(self, padded_zyx: Sequence[int], roi_zyx: Sequence[int], weights: torch.Tensor,
                 device: torch.device) -> None:
        self.roi_zyx = tuple(roi_zyx)
        self.weights = weights
        self.device = device
        self.weighted_sum = torch.zeros(tuple(padded_zyx), dtype=torch.float32, device=device)
        self.weight_sum = torch.zeros(tuple(padded_zyx), dtype=torch.float32, device=device)

    def add(self, window: torch.Tensor, start_zyx: Sequence[int]) -> None:
        """Blend in one window's output, whose window starts at ``start_zyx``."""
        region = window_region(start_zyx, self.roi_zyx)
        self.weighted_sum[region] += window * self.weights
        self.weight_sum[region] += self.weights

    def result(self, shape_zyx: Sequence[int]) -> torch.Tensor:
        """The blended output ``[z, y, x]`` cut to ``shape_zyx`` (the grid before padding), float32 on the CPU."""
        out = torch.where(self.weight_sum > 0, self.weighted_sum / self.weight_sum.clamp_min(1e-12),
                          torch.zeros((), device=self.device))
        return out[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]].float().cpu()


def sliding_window(
    runner: Callable[[torch.Tensor, torch.device], torch.Tensor],
    image: torch.Tensor,
    body: torch.Tensor | None,
    settings: EngineSettings,
    attempt: Attempt,
    overlap: float,
    progress: Callable[[int, int], None] | None = None,
    crop_to_body: bool = True,
    flip_axes: tuple[int, ...] = (),
) -> WindowRun:
    """Gaussian-blended sliding-window prediction over ``image`` ``[z, y, x]`` (network input units).

    Args:
        runner: maps a ``[B, 1, *roi]`` batch to the network output on a device.
        image: the normalised model-grid image, float32 on the CPU.
        body: bool ``[z, y, x]`` body mask on the model grid; windows with no True voxel within
            :data:`.windows.BODY_MARGIN_VOXELS` of them are skipped (output 0 there). None runs every window.
        attempt: devices and window batch size.
        overlap: window overlap fraction.
        progress: ``progress(done, total)`` in windows.
        crop_to_body: with large windows (``attempt.window_voxels`` > 0) and a body mask, run on the
            body's bounding box (:func:`.windows.body_bounding_box`) and return 0 outside it.
        flip_axes: a flip test-time pass: the network runs on the image (the crop, when cropping)
            mirrored along these ``[z, y, x]`` axes, and the output is mirrored back.
    Returns:
        :class:`WindowRun` with the stitched output ``[z, y, x]`` float32 on the CPU.
    """
    shape = tuple(image.shape)
    if crop_to_body and body is not None and attempt.window_voxels > 0:
        # large windows: run on the body's bounding box only; the output outside it is 0, as in a
        # skipped window (the card's windows, also when they take over after an out-of-memory
        # error, skip whole windows instead)
        box = body_bounding_box(body, BODY_CROP_MARGIN_VOXELS, settings.window_multiple_zyx, flip_axes)
        if box is not None and any(b.stop - b.start != n for b, n in zip(box, shape)):
            crop, crop_body = image[box], body[box]
            if not flip_axes:  # (a flip makes its own contiguous copy)
                crop, crop_body = crop.contiguous(), crop_body.contiguous()
            inner = sliding_window(runner, crop, crop_body, settings, attempt, overlap, progress,
                                   crop_to_body=False, flip_axes=flip_axes)
            inner.output = uncrop(inner.output, box, shape)
            inner.cropped_zyx = tuple(b.stop - b.start for b in box)  # type: ignore[assignment]
            return inner
    if flip_axes:
        run = sliding_window(runner, torch.flip(image, flip_axes), None if body is None else torch.flip(body, flip_axes),
                             settings, attempt, overlap, progress, crop_to_body=False)
        run.output = torch.flip(run.output, flip_axes)
        return run
    compute = torch.device(attempt.compute_device)
    stitch = torch.device(attempt.stitch_device)
    plan = plan_windows(shape, settings, overlap, attempt.window_voxels)
    roi, padded_shape = plan.roi_zyx, plan.padded_zyx
    if padded_shape != shape:
        # the card's windows pad an axis shorter than the window with air (network units), as
        # training pads a patch; large windows pad only up to the network's stride (fewer voxels
        # than one stride) and continue the image there: air would draw a body edge the scan does
        # not have (see :func:`pad_high_end`)
        air = (settings.clip_hu[0] - settings.offset_hu) / settings.scale_hu
        image = pad_high_end(image, padded_shape, None if attempt.window_voxels > 0 else air)
        if body is not None:
            body = pad_high_end(body, padded_shape, False)  # no body in the padding
    windows = plan.windows
    total = len(windows)
    if body is not None:
        windows = windows_near_body(windows, body, roi)
    if total == 1 and windows:  # one window covers the grid: its output is the result, nothing to blend
        if progress:
            progress(0, 1)
        out = runner(image[None, None], compute)[0, 0].float().cpu()
        if progress:
            progress(1, 1)
        # clone: a normal tensor (the runner's is an inference tensor, which callers may not edit in place)
        return WindowRun(output=out[: shape[0], : shape[1], : shape[2]].clone(), windows_total=1, windows_run=1,
                         attempt=attempt, roi_zyx=roi)
    weights = importance_map(roi, settings.blend_mode, settings.sigma_scale).to(stitch)
    blender = WindowBlender(padded_shape, roi, weights, stitch)
    done = 0
    if progress:
        progress(0, max(len(windows), 1))
    for first in range(0, len(windows), attempt.sw_batch_size):
        group = windows[first: first + attempt.sw_batch_size]
        batch = torch.stack([image[window_region(start, roi)] for start in group])[:, None]
        pred = runner(batch, compute)[:, 0].to(stitch)
        for start, window in zip(group, pred):
            blender.add(window, start)
        done += len(group)
        if progress:
            progress(done, max(len(windows), 1))
    return WindowRun(output=blender.result(shape), windows_total=total, windows_run=len(windows), attempt=attempt,
                     roi_zyx=roi)


def sliding_window_with_fallback(
    runner: Callable[[torch.Tensor, torch.device], torch.Tensor],
    image: torch.Tensor,
    body: torch.Tensor | None,
    settings: EngineSettings,
    attempts: Sequence[Attempt],
    overlap: float,
    progress: Callable[[int, int], None] | None = None,
    attempt_hook: Callable[[Attempt], None] | None = None,
    flip_axes: tuple[int, ...] = (),
) -> WindowRun:
    """:func:`sliding_window`, walking down ``attempts`` on out-of-memory errors.

    ``attempt_hook(attempt)`` runs first in every attempt (tests inject an out-of-memory error
    through it). The notes say which attempts failed and which one produced the result.

    Raises:
        OutOfMemoryError: every attempt ran out of memory.
    """
    notes: list[str] = []
    for index, attempt in enumerate(attempts):
        try:
            if attempt_hook is not None:
                attempt_hook(attempt)
            run = sliding_window(runner, image, body, settings, attempt, overlap, progress, flip_axes=flip_axes)
        except Exception as error:  # noqa: BLE001 - only memory errors are retried
            if not is_out_of_memory(error):
                raise
            release_cached_memory(attempt.compute_device)
            following = attempts[index + 1].label if index + 1 < len(attempts) else None
            notes.append(
                f"out of memory with {attempt.label}" + (f"; retried with {following}" if following else "; no fallback left")
            )
            continue
        run.notes = notes
        return run
    raise OutOfMemoryError(
        "Synthesis ran out of memory on every device and window batch size tried ("
        + "; ".join(a.label for a in attempts)
        + "); close other programs, use a machine with more memory, or crop the volume.",
        code="out_of_memory",
    )
