"""The README's review screenshot, made by the project itself: phantom -> worker synthesis -> review.

:func:`make_review_screenshot` runs the module's real path headless: a paired phantom's
non-contrast scan becomes a volume node, the background worker synthesizes it
(:class:`~DigitalContrastLib.mrml.synthesis_logic.SynthesisLogic`), and the review layout
(``mrml.review_layout.show_review``) shows non-contrast | synthetic | real contrast, centred on the
aorta, rendered without OpenGL into one PNG. It also measures what the picture shows: the mean
grey level of the aortic lumen (from the phantom's label map, on the centre slice) in each axial
panel, so a test can check that the lumen is brighter in the synthetic view than in the
non-contrast one.

``digital-contrast screenshots`` calls it for ``Resources/Screenshots/review.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.phantoms.generator import make_phantom

from .headless import make_headless_scene
from .synthesis_logic import ClientFactory, SynthesisLogic
from .view_png import panel_offset_px, ras_to_view_pixel, render_views_png
from .volume_nodes import volume_to_node

#: The phantom of the README screenshot (an aneurysm with thrombus at this seed).
REVIEW_SEED = 2
REVIEW_SIZE_XYZ = (192, 192, 96)
REVIEW_SPACING_MM = (1.8, 1.8, 3.0)


@dataclass
class ReviewScreenshot:
    """What :func:`make_review_screenshot` made.

    Attributes:
        path: the PNG.
        scene, app_logic: the headless scene holding the nodes and views (kept for inspection;
            no slice logic is held here, they live in ``app_logic``).
        nodes: ``{"nc", "synthetic", "real"}`` -> volume node.
        view_names: the rendered views in panel order (axial row first).
        lumen_grey: mean grey (0-255) of the aortic lumen's centre-slice voxels per axial view.
        lumen_voxels: how many lumen voxels were sampled.
        model: ``"<model id> <version>"`` of the synthesis.
    """

    path: Path
    scene: Any = field(repr=False)
    app_logic: Any = field(repr=False)
    nodes: dict[str, Any] = field(repr=False)
    view_names: list[str]
    lumen_grey: dict[str, float]
    lumen_voxels: int
    model: str


def _lps_to_ras(point: np.ndarray) -> tuple[float, float, float]:
    return (-float(point[0]), -float(point[1]), float(point[2]))


def make_review_screenshot(
    out_png: str | os.PathLike,
    *,
    client_factory: ClientFactory | None = None,
    seed: int = REVIEW_SEED,
    size_xyz: tuple[int, int, int] = REVIEW_SIZE_XYZ,
    spacing_xyz_mm: tuple[float, float, float] = REVIEW_SPACING_MM,
    coronal_row: bool = True,
    panel_size: tuple[int, int] = (300, 300),
    model_id: str | None = None,
    device: str = "auto",
    timeout_s: float | None = 1800.0,
) -> ReviewScreenshot:
    """Synthesize a phantom in the background worker and render the review layout into ``out_png``.

    Args:
        out_png: the PNG to write (atomically).
        client_factory: the worker client (default: the real engine, ``WorkerClient()``; tests may
            pass ``lambda: WorkerClient(dummy=True)``).
        seed, size_xyz, spacing_xyz_mm: the phantom (``phantom.make_phantom``).
        coronal_row: add the coronal row under the axial one.
        panel_size: ``(width, height)`` of each view in pixels.
        model_id, device: passed to the job.

    Returns:
        A :class:`ReviewScreenshot` with the nodes and the measured lumen grey levels.
    """

    case = make_phantom(seed, size_xyz=size_xyz, spacing_xyz_mm=spacing_xyz_mm)
    scene, app_logic = make_headless_scene()
    nc_node = volume_to_node(scene, case.noncontrast, f"Phantom {seed} non-contrast")
    real_node = volume_to_node(scene, case.contrast, f"Phantom {seed} arterial phase")
    logic = SynthesisLogic(scene, app_logic, client_factory)
    try:
        synthetic_node = logic.process(nc_node, model_id=model_id, device=device, allow_warnings=True,
                                       timeout=timeout_s)
    finally:
        logic.close()
    model = f"{synthetic_node.GetAttribute('DigitalContrast.ModelId')} {synthetic_node.GetAttribute('DigitalContrast.ModelVersion')}"

    focus_zyx = np.asarray(case.params["focus_index_zyx"], dtype=float)
    focus_ras = _lps_to_ras(case.noncontrast.index_to_lps(focus_zyx[::-1]))
    views = logic.show_review(nc_node, synthetic_node, real_node, coronal_row=coronal_row, center_ras_mm=focus_ras)
    view_names = list(views.view_names)
    del views  # hold no slice logic: they live (and die) with the application logic
    path = render_views_png(scene, app_logic, view_names, out_png, panel_size, columns=3)

    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(float).mean(axis=2)
    k = int(round(focus_zyx[0]))
    ys, xs = np.nonzero(case.labels.array[k] == LABELS["aortic_lumen"])
    points = [_lps_to_ras(p) for p in case.noncontrast.index_to_lps(np.column_stack([xs, ys, np.full(len(xs), k)]))]
    lumen_grey = {}
    for index, name in enumerate(view_names[:3]):
        logic_of_view = app_logic.GetSliceLogicByLayoutName(name)
        x0, y0 = panel_offset_px(index, panel_size, 3)
        pixels = np.array([ras_to_view_pixel(logic_of_view, p, panel_size) for p in points]).round().astype(int)
        cols = np.clip(pixels[:, 0], 0, panel_size[0] - 1) + x0
        rows = np.clip(pixels[:, 1], 0, panel_size[1] - 1) + y0
        lumen_grey[name] = float(image[rows, cols].mean()) if len(points) else float("nan")
        del logic_of_view
    return ReviewScreenshot(path, scene, app_logic, {"nc": nc_node, "synthetic": synthetic_node, "real": real_node},
                            view_names, lumen_grey, len(points), model)
