"""Slice views rendered to PNG without OpenGL, through each slice logic's ``GetImageDataConnection()``.

Views come out in Slicer's radiological convention: axial views show the patient's left on the image
right and anterior up; coronal views show superior up. Each panel has a title and orientation letters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_path

from .overlays import OVERLAY_KIND_ATTRIBUTE
from .views import slice_logic_for_view

TITLE_HEIGHT_PX = 42


GAP_PX = 4


BACKGROUND_RGB = (24, 24, 24)


def panel_offset_px(index: int, size: tuple[int, int], columns: int) -> tuple[int, int]:
    """Top-left pixel ``(x, y)`` of panel ``index``'s image in :func:`render_views_png` output."""
    width, height = size
    row, col = divmod(index, columns)
    return (GAP_PX + col * (width + GAP_PX), row * (height + TITLE_HEIGHT_PX + GAP_PX) + TITLE_HEIGHT_PX)


def ras_to_view_pixel(slice_logic: Any, ras_mm: tuple[float, float, float], size: tuple[int, int]) -> tuple[float, float]:
    """Where RAS point ``ras_mm`` lands in the view rendered at ``size`` by :func:`render_view_rgb`.

    Returns ``(column, row)`` in pixels, row 0 at the top (as in the PNG).
    """
    import vtk

    width, height = size
    slice_node = slice_logic.GetSliceNode()
    shown_width, shown_height, _ = slice_node.GetDimensions()
    slice_logic.ResizeSliceNode(width, height)
    try:
        ras_to_xy = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(slice_node.GetXYToRAS(), ras_to_xy)
        x, y, _, _ = ras_to_xy.MultiplyPoint((*ras_mm, 1.0))
    finally:
        if (shown_width, shown_height) != (width, height):
            slice_logic.ResizeSliceNode(shown_width, shown_height)
    return (x, height - 1 - y)


def _edge_letter(vector: np.ndarray) -> str:
    """Anatomical letter of the direction ``vector`` (RAS) points to, e.g. (-1, 0, 0) -> "L"."""
    axis = int(np.argmax(np.abs(vector)))
    return ("RL", "AP", "SI")[axis][0 if vector[axis] > 0 else 1]


def render_view_rgb(scene: Any, app_logic: Any, name: str, size: tuple[int, int]) -> np.ndarray:
    """The blended slice view ``name`` as an ``(height, width, 3)`` uint8 array, row 0 at the top.

    Rendered through the slice logic's ``GetImageDataConnection()`` (window/level, colour tables,
    foreground opacity and slab applied; no OpenGL). The view is resized to ``size`` for the render
    (keeping its field of view's scale, as a resized Slicer window does) and given its own size
    back afterwards.
    """
    from vtk.util import numpy_support

    logic = slice_logic_for_view(scene, app_logic, name)
    width, height = size
    shown_width, shown_height, _ = logic.GetSliceNode().GetDimensions()
    logic.ResizeSliceNode(width, height)
    try:
        connection = logic.GetImageDataConnection()
        producer = connection.GetProducer()
        producer.Update()
        image = producer.GetOutputDataObject(connection.GetIndex())
        nx, ny, _ = image.GetDimensions()
        scalars = image.GetPointData().GetScalars()
        if scalars is None:
            return np.zeros((height, width, 3), np.uint8)
        # VTK rows run bottom-up; copy before the view is given its own size back
        rgba = numpy_support.vtk_to_numpy(scalars).reshape(ny, nx, -1)[::-1].copy()
    finally:
        if (shown_width, shown_height) != (width, height):
            logic.ResizeSliceNode(shown_width, shown_height)  # a visible Slicer view keeps its size
    if rgba.shape[2] < 4:
        return np.ascontiguousarray(rgba[:, :, :3])
    # Outside every volume alpha is 0: composite on black, as Slicer's slice views show it.
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    return ((rgba[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def render_views_png(
    scene: Any,
    app_logic: Any,
    view_names: list[str],
    path: str | os.PathLike,
    size: tuple[int, int] = (320, 320),
    columns: int | None = None,
) -> Path:
    """Render slice views side by side, each under its title, into one PNG (written atomically).

    Args:
        view_names: slice views in reading order (e.g. ``ReviewViews.view_names``).
        path: the PNG to write.
        size: ``(width, height)`` of each view in pixels.
        columns: panels per row (default: all in one row).

    Each title is the view's label plus its window/level (and the slab thickness when a MIP is
    on); orientation letters mark the image edges (axial: R on the left, L on the right).
    """
    from PIL import Image, ImageDraw

    columns = columns or len(view_names)
    rows = -(-len(view_names) // columns)
    width, height = size
    canvas = Image.new(
        "RGB",
        (GAP_PX + columns * (width + GAP_PX), rows * (height + TITLE_HEIGHT_PX + GAP_PX)),
        BACKGROUND_RGB,
    )
    draw = ImageDraw.Draw(canvas)
    title_font = _font(15)
    detail_font = _font(12)
    letter_font = _font(13)
    for index, name in enumerate(view_names):
        pixels = render_view_rgb(scene, app_logic, name, size)
        x0, y0 = panel_offset_px(index, size, columns)
        canvas.paste(Image.fromarray(pixels, "RGB"), (x0, y0))
        logic = slice_logic_for_view(scene, app_logic, name)
        slice_node = logic.GetSliceNode()
        color = _hex_rgb(slice_node.GetLayoutColor()) if hasattr(slice_node, "GetLayoutColor") else (200, 200, 200)
        draw.rectangle([x0, y0 - TITLE_HEIGHT_PX, x0 + width - 1, y0 - TITLE_HEIGHT_PX + 3], fill=color)
        label, details = _title_lines(scene, logic)
        top = y0 - TITLE_HEIGHT_PX
        draw.text((x0 + 4, top + 6), _fit_text(draw, label, title_font, width - 8), fill=(240, 240, 240), font=title_font)
        draw.text((x0 + 4, top + 24), _fit_text(draw, details, detail_font, width - 8), fill=(170, 170, 170), font=detail_font)
        slice_to_ras = slice_node.GetSliceToRAS()
        right = np.array([slice_to_ras.GetElement(r, 0) for r in range(3)])
        up = np.array([slice_to_ras.GetElement(r, 1) for r in range(3)])
        marks = {
            (x0 + 4, y0 + height // 2 - 7): _edge_letter(-right),
            (x0 + width - 13, y0 + height // 2 - 7): _edge_letter(right),
            (x0 + width // 2 - 4, y0 + 3): _edge_letter(up),
            (x0 + width // 2 - 4, y0 + height - 17): _edge_letter(-up),
        }
        for xy, letter in marks.items():
            draw.text(xy, letter, fill=(255, 220, 60), font=letter_font, stroke_width=1, stroke_fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _title_lines(scene: Any, logic: Any) -> tuple[str, str]:
    """``(view label, "W 700 / L 200 · MIP 10 mm · overlay ...")`` for a panel's title."""
    slice_node = logic.GetSliceNode()
    composite = logic.GetSliceCompositeNode()
    details = []
    volume = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
    display = volume.GetDisplayNode() if volume is not None else None
    if display is not None:
        details.append(f"W {display.GetWindow():.0f} / L {display.GetLevel():.0f}")
    if slice_node.GetSlabReconstructionEnabled():
        details.append(f"MIP {slice_node.GetSlabReconstructionThickness():g} mm")
    overlay = scene.GetNodeByID(composite.GetForegroundVolumeID() or "")
    if overlay is not None and composite.GetForegroundOpacity() > 0:
        kind = overlay.GetAttribute(OVERLAY_KIND_ATTRIBUTE) or overlay.GetName()
        details.append(f"overlay: {kind}")
    return slice_node.GetLayoutLabel() or slice_node.GetName(), " \u00b7 ".join(details)


def _fit_text(draw: Any, text: str, font: Any, max_width_px: int) -> str:
    """``text`` cut with an ellipsis so that it fits ``max_width_px``."""
    if draw.textlength(text, font=font) <= max_width_px:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > max_width_px:
        text = text[:-1]
    return text + "\u2026"


def _hex_rgb(color: Any) -> tuple[int, int, int]:
    """A view colour (``(r, g, b)`` floats 0..1) as 8-bit RGB."""
    return tuple(int(round(255 * float(c))) for c in color[:3])  # type: ignore[return-value]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()
