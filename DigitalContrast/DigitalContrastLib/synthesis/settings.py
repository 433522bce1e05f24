"""What the engine reads from a model card: :class:`EngineSettings` (torch-free).

The card's ``input``, ``output`` and ``inference`` sections (see ``model_card.schema.json``) become
one frozen dataclass; the network's total stride per axis (:func:`total_stride_zyx`) comes with it,
so large windows and body crops stay on the network's downsampling lattice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

#: Large-window budget written into new model cards: 256^3 voxels. The UNet's first layer has
#: stride 2, so such a window costs about 350 MB of activations in bf16 on a CPU (measured).
DEFAULT_MAX_WINDOW_VOXELS = 256**3


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs from a model card (see ``model_card.schema.json``).

    Attributes:
        clip_hu: input HU clip range ``(low, high)``.
        offset_hu, scale_hu: network input = ``(clip(hu) - offset_hu) / scale_hu``.
        target_spacing_xyz_mm: model grid spacing ``(x, y, z)`` mm, or None to run on the input grid.
        body_threshold_hu: voxels at or below stay unchanged; windows without a voxel above are skipped.
        output_scale_hu: residual HU = network output * output_scale_hu.
        roi_size_zyx: sliding-window size in model-grid voxels ``(z, y, x)``.
        overlap: fraction of a window shared with its neighbour along each axis, in ``[0, 1)``.
        blend_mode: ``"gaussian"`` (default) or ``"constant"``.
        sigma_scale: Gaussian sigma as a fraction of the window size.
        sw_batch_size: windows per network call.
        cpu_precision: ``"bf16-if-supported"`` or ``"fp32"``.
        cuda_precision: ``"autocast"`` or ``"fp32"``.
        skip_empty_windows: skip windows holding no body voxel.
        max_window_voxels: 0 runs the card's ``roi_size_zyx`` windows; above 0 the engine first tries
            windows as large as the whole model grid, split into as few overlapping tiles as keep
            each window at or below this many voxels (a fully convolutional network gives the same
            function on any size; fewer, larger windows repeat far less work at the overlaps).
        prediction: ``"single-pass"``, or ``"flip-tta-mean"``: the residual is the mean of the network
            over the test-time flips :data:`.flip_passes.FLIP_TTA_AXES` (4 passes; the uncertainty map then costs
            nothing more).
        window_multiple_zyx: window sides must be multiples of these (the network's total stride
            per axis) when windows are sized by ``max_window_voxels``.
    """

    clip_hu: tuple[float, float] = (-1024.0, 3071.0)
    offset_hu: float = 0.0
    scale_hu: float = 1000.0
    target_spacing_xyz_mm: tuple[float, float, float] | None = None
    body_threshold_hu: float = -500.0
    output_scale_hu: float = 500.0
    roi_size_zyx: tuple[int, int, int] = (64, 96, 96)
    overlap: float = 0.25
    blend_mode: str = "gaussian"
    sigma_scale: float = 0.125
    sw_batch_size: int = 4
    cpu_precision: str = "bf16-if-supported"
    cuda_precision: str = "autocast"
    skip_empty_windows: bool = True
    max_window_voxels: int = 0
    prediction: str = "single-pass"
    window_multiple_zyx: tuple[int, int, int] = (1, 1, 1)

    @classmethod
    def from_card(cls, data: dict[str, Any]) -> "EngineSettings":
        """Settings from a (validated) card dict."""
        inp, out, inf = data["input"], data["output"], data["inference"]
        spacing = inp.get("target_spacing_xyz_mm")
        return cls(
            clip_hu=tuple(float(v) for v in inp["clip_hu"]),
            offset_hu=float(inp["offset_hu"]),
            scale_hu=float(inp["scale_hu"]),
            target_spacing_xyz_mm=tuple(float(v) for v in spacing) if spacing else None,
            body_threshold_hu=float(inp["body_threshold_hu"]),
            output_scale_hu=float(out["scale_hu"]),
            roi_size_zyx=tuple(int(v) for v in inf["roi_size_zyx"]),
            overlap=float(inf["overlap"]),
            blend_mode=str(inf["blend_mode"]),
            sigma_scale=float(inf.get("sigma_scale", 0.125)),
            sw_batch_size=int(inf["sw_batch_size"]),
            cpu_precision=str(inf["precision"]["cpu"]),
            cuda_precision=str(inf["precision"]["cuda"]),
            skip_empty_windows=bool(inf.get("skip_empty_windows", True)),
            max_window_voxels=int(inf.get("max_window_voxels", 0)),
            prediction=str(inf.get("prediction", "single-pass")),
            window_multiple_zyx=total_stride_zyx(data.get("network", {}).get("kwargs", {})),
        )


def total_stride_zyx(network_kwargs: dict[str, Any]) -> tuple[int, int, int]:
    """Product of a MONAI UNet's ``strides`` per axis ``(z, y, x)`` (1s when it has none).

    A stride may be one int (all axes) or one per spatial axis in the network's ``(z, y, x)`` order.
    """
    total = [1, 1, 1]
    for stride in network_kwargs.get("strides", ()) or ():
        per_axis = [int(stride)] * 3 if isinstance(stride, (int, float)) else [int(v) for v in stride]
        total = [t * v for t, v in zip(total, per_axis)]
    return tuple(total)  # type: ignore[return-value]


def replace_settings(settings: EngineSettings, **changes: Any) -> EngineSettings:
    """A copy of ``settings`` with ``changes`` (used by the bench and tests)."""
    return replace(settings, **changes)
