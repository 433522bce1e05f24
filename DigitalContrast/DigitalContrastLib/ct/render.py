"""Pictures of CT volumes with numpy and Pillow only: windowing, slices, titled panel grids.

Used by the phantom preview, cohort reports and README pictures. No matplotlib, no Qt.

Orientation (radiological convention, whatever the volume's axis-aligned direction):
  * axial: anterior at the top, the patient's right on the image's left;
  * coronal: superior at the top, the patient's right on the image's left.
Slices are resampled to square pixels using the spacing, so anatomy keeps its aspect.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from DigitalContrastLib.common.atomic import atomic_path

from .volume import CTVolume

#: Windows (width, level) in HU used in titles and previews.
WINDOW_SOFT_TISSUE = (400.0, 40.0)
WINDOW_CTA = (700.0, 200.0)


def window_to_uint8(array_hu: np.ndarray, window: float, level: float) -> np.ndarray:
    """Map HU to grey levels 0..255 through a window: ``level - window/2`` -> 0, ``level + window/2`` -> 255."""
    if window <= 0:
        raise ValueError("window width must be positive")
    lo = level - window / 2.0
    scaled = (np.asarray(array_hu, dtype=np.float32) - lo) * (255.0 / window)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _lps_oriented(volume: CTVolume) -> tuple[np.ndarray, tuple[float, float, float], tuple[int, int, int], tuple[bool, bool, bool]]:
    """The array re-indexed ``[z, y, x]`` with +x = patient left, +y = posterior, +z = superior.

    Returns the view, its spacing ``(x, y, z)`` mm, and for each LPS axis (x, y, z) the volume's
    index axis along it (0 = i, 1 = j, 2 = k) and whether that axis was reversed.
    Only axis-aligned (signed permutation) directions are supported.
    """
    d = volume.direction_matrix
    lps_of_index = np.argmax(np.abs(d), axis=0)  # index axis c runs along LPS axis lps_of_index[c]
    if sorted(lps_of_index.tolist()) != [0, 1, 2]:
        raise ValueError("render needs an axis-aligned volume direction")
    index_of_lps = [int(np.nonzero(lps_of_index == a)[0][0]) for a in range(3)]
    # numpy axis of index axis c is 2 - c; order the numpy axes as LPS z, y, x
    array = np.transpose(volume.array, [2 - index_of_lps[2], 2 - index_of_lps[1], 2 - index_of_lps[0]])
    reversed_ = tuple(bool(d[a, index_of_lps[a]] < 0) for a in range(3))
    for a in range(3):
        if reversed_[a]:
            array = np.flip(array, axis=2 - a)
    spacing = tuple(float(volume.spacing_mm[index_of_lps[a]]) for a in range(3))
    return array, spacing, tuple(index_of_lps), reversed_  # type: ignore[return-value]


def _oriented_index(index: int, n: int, reversed_axis: bool) -> int:
    if not -n <= index < n:
        raise IndexError(f"slice index {index} outside 0..{n - 1}")
    index %= n
    return n - 1 - index if reversed_axis else index


def _resample_2d(image: np.ndarray, row_mm: float, col_mm: float, nearest: bool) -> np.ndarray:
    """Resample a 2D array to square pixels of the finer of the two spacings."""
    pixel = min(row_mm, col_mm)
    out_rows = max(1, int(round(image.shape[0] * row_mm / pixel)))
    out_cols = max(1, int(round(image.shape[1] * col_mm / pixel)))
    result = image
    for axis, n_out in ((0, out_rows), (1, out_cols)):
        n_in = result.shape[axis]
        if n_out == n_in:
            continue
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        if nearest:
            result = np.take(result, np.rint(pos).astype(np.intp), axis=axis)
            continue
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (pos - i0).astype(np.float32)
        shape = [1, 1]
        shape[axis] = n_out
        w = w.reshape(shape)
        result = np.take(result, i0, axis=axis) * (1 - w) + np.take(result, i1, axis=axis) * w
    return result


def axial(volume: CTVolume, z_index: int, nearest: bool = False) -> np.ndarray:
    """Axial slice ``z_index`` (the volume's own index along its superior-inferior axis),
    anterior up, the patient's right on the left, resampled to square pixels (float32;
    ``nearest=True`` for label maps keeps the codes)."""
    array, (sx, sy, _), _, reversed_ = _lps_oriented(volume)
    image = array[_oriented_index(int(z_index), array.shape[0], reversed_[2])]
    return _resample_2d(image if nearest else image.astype(np.float32), sy, sx, nearest)


def coronal(volume: CTVolume, y_index: int, nearest: bool = False) -> np.ndarray:
    """Coronal slice ``y_index`` (the volume's own index along its anterior-posterior axis),
    superior up, the patient's right on the left, resampled to square pixels."""
    array, (sx, _, sz), _, reversed_ = _lps_oriented(volume)
    image = array[:, _oriented_index(int(y_index), array.shape[1], reversed_[1]), :][::-1]
    return _resample_2d(image if nearest else image.astype(np.float32), sz, sx, nearest)


def colorize_labels(labels: np.ndarray, colors: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """RGB uint8 image of a 2D label array; codes without a colour are grey."""
    lut = np.full((int(max(max(colors), int(labels.max(initial=0)))) + 1, 3), 128, np.uint8)
    for code, rgb in colors.items():
        lut[code] = rgb
    return lut[np.clip(labels, 0, len(lut) - 1).astype(np.intp)]


def diverging_to_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    """RGB uint8 image of a 2D signed array on a dark background: black at zero, brighter red
    above zero and brighter blue below, saturated at ``+limit`` and ``-limit`` (e.g. HU)."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    t = np.clip(np.asarray(values, dtype=np.float32) / float(limit), -1.0, 1.0)
    up, down = np.clip(t, 0.0, 1.0), np.clip(-t, 0.0, 1.0)
    # red (255, 60, 40) for +limit, blue (40, 120, 255) for -limit
    rgb = up[..., None] * np.array([255.0, 60.0, 40.0]) + down[..., None] * np.array([40.0, 120.0, 255.0])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def fit_width(panel: np.ndarray, width: int) -> np.ndarray:
    """A uint8 panel (grey or RGB) scaled to ``width`` pixels, aspect kept (Lanczos)."""
    image = _to_image(panel)
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.resize((int(width), height), Image.Resampling.LANCZOS))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _to_image(panel: np.ndarray) -> Image.Image:
    arr = np.asarray(panel)
    if arr.dtype != np.uint8:
        raise ValueError("panels must be uint8 (use window_to_uint8 or colorize_labels)")
    return Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB").convert("RGB")


def panel_grid(rows: Sequence[Sequence[tuple[str, np.ndarray]]], panel_height: int | None = 320,
               title_height: int = 22, gap: int = 6, background=(0, 0, 0), title_color=(235, 235, 235),
               footer: str | None = None) -> Image.Image:
    """Lay out titled panels, row by row.

    Args:
        rows: rows of ``(title, uint8 image)``; images are 2D grey or ``(h, w, 3)`` RGB.
        panel_height: every panel is scaled (aspect kept) to this height, or narrower when it
            would be wider than three times that; None keeps sizes.
        title_height: pixels above each panel for its title (Pillow's default font).
        gap: pixels between panels and around the grid.
        footer: optional line of text under the grid.

    Returns:
        An RGB ``PIL.Image``.
    """
    font = _font(max(10, title_height - 8))
    scaled: list[list[tuple[str, Image.Image]]] = []
    for row in rows:
        items = []
        for title, panel in row:
            image = _to_image(panel)
            if panel_height is not None and image.height != panel_height:
                scale = min(panel_height / image.height, 3 * panel_height / image.width)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(size, Image.Resampling.LANCZOS)
            items.append((title, image))
        scaled.append(items)
    row_heights = [max((im.height for _, im in row), default=0) + title_height for row in scaled]
    row_widths = [sum(im.width for _, im in row) + gap * (len(row) - 1) for row in scaled]
    footer_h = title_height if footer else 0
    width = max(row_widths, default=1) + 2 * gap
    height = sum(row_heights) + gap * (len(scaled) + 1) + footer_h
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    y = gap
    for row, row_h in zip(scaled, row_heights):
        x = gap
        for title, image in row:
            draw.text((x + 2, y + 3), title, fill=title_color, font=font)
            canvas.paste(image, (x, y + title_height))
            x += image.width + gap
        y += row_h + gap
    if footer:
        draw.text((gap + 2, y), footer, fill=title_color, font=font)
    return canvas


def legend_panel(entries: Sequence[tuple[str, tuple[int, int, int]]], height: int, width: int = 190,
                 background=(0, 0, 0)) -> np.ndarray:
    """An RGB uint8 panel listing colour swatches and names (fits ``height`` pixels)."""
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    line = max(10, min(18, height // max(len(entries), 1)))
    font = _font(max(9, line - 4))
    for k, (name, rgb) in enumerate(entries):
        y = 2 + k * line
        draw.rectangle([4, y + 2, 4 + line - 5, y + line - 3], fill=tuple(rgb))
        draw.text((line + 4, y), name, fill=(230, 230, 230), font=font)
    return np.asarray(image)


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as PNG atomically; returns the path."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)


def side_by_side(noncontrast: CTVolume, synthetic: CTVolume, real: CTVolume | None, focus_zyx: Sequence[int],
                 difference_limit_hu: float = 300.0, panel_width: int = 240, footer: str | None = None,
                 difference_mask: np.ndarray | None = None) -> Image.Image:
    """Axial and coronal rows through ``focus_zyx``: non-contrast (W400/L40) | synthetic (W700/L200)
    | real contrast (W700/L200) | synthetic − real (black where they agree, red where the synthetic
    image is brighter, blue where darker, saturated at ± ``difference_limit_hu``). Without ``real``
    the last two panels are left out. Every panel is ``panel_width`` pixels wide, so the columns line up.

    All volumes must share one grid (``real`` registered onto the non-contrast grid);
    ``focus_zyx`` are indices of that grid. ``difference_mask`` (``[z, y, x]`` bool on that grid)
    limits the difference to the voxels that were compared (black elsewhere).
    """
    for other in (synthetic, real):
        if other is not None and other.shape_zyx != noncontrast.shape_zyx:
            raise ValueError("side_by_side needs the volumes on one grid (register the real scan first)")
    (w_nc, l_nc), (w_c, l_c) = WINDOW_SOFT_TISSUE, WINDOW_CTA
    z, y = int(focus_zyx[0]), int(focus_zyx[1])
    rows = []
    for view, cut, index in (("axial", axial, z), ("coronal", coronal, y)):
        row = [(f"Non-contrast W{w_nc:.0f}/L{l_nc:.0f}", window_to_uint8(cut(noncontrast, index), w_nc, l_nc)),
               (f"SYNTHETIC W{w_c:.0f}/L{l_c:.0f}", window_to_uint8(cut(synthetic, index), w_c, l_c))]
        if real is not None:
            row.append((f"Real contrast W{w_c:.0f}/L{l_c:.0f}", window_to_uint8(cut(real, index), w_c, l_c)))
            difference = cut(synthetic, index) - cut(real, index)
            if difference_mask is not None:
                mask = noncontrast.with_array(np.asarray(difference_mask, dtype=np.uint8))
                difference = np.where(cut(mask, index, nearest=True) > 0, difference, 0.0)
            row.append((f"Synthetic - real, +-{difference_limit_hu:.0f} HU", diverging_to_rgb(difference, difference_limit_hu)))
        rows.append([(title, fit_width(panel, panel_width)) for title, panel in row])
    return panel_grid(rows, panel_height=None, title_height=18, gap=4, footer=footer)
