"""The QC picture of a prepared case: the pair fused before and after registration, and the mask.

Rows: axial and coronal, through the slice with the most vessel in the enhancement mask. Columns:

* **before** and **after**: a colour fusion, the contrast scan in red and the non-contrast scan in
  green and blue (both W 700 / L 200): what lines up is grey, the contrast scan's edges where it
  does not line up show red on one side and cyan on the other; enhanced blood is red in both;
* **mask**: the non-contrast scan (W 400 / L 40) with the enhancement mask over it (red vessel,
  yellow enhancing tissue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from DigitalContrastLib.ct.labels import ENHANCEMENT_CODES
from DigitalContrastLib.ct.render import (
    WINDOW_CTA,
    WINDOW_SOFT_TISSUE,
    axial,
    coronal,
    fit_width,
    panel_grid,
    save_png,
    window_to_uint8,
)
from DigitalContrastLib.ct.volume import CTVolume

MASK_COLORS = {ENHANCEMENT_CODES["vessel"]: (255, 40, 40), ENHANCEMENT_CODES["enhancing_tissue"]: (255, 210, 0)}


def focus_index(mask: np.ndarray) -> tuple[int, int]:
    """``(z, y)``: the axial slice with the most vessel voxels (else any enhancement, else the middle)
    and the coronal row through their centre there."""
    nz, ny, _ = mask.shape
    for code in (ENHANCEMENT_CODES["vessel"], None):
        region = mask == code if code is not None else mask > 0
        if region.any():
            z = int(np.argmax(region.reshape(nz, -1).sum(axis=1)))
            return z, int(round(np.nonzero(region[z])[0].mean()))
    return nz // 2, ny // 2


def _fusion(nc: np.ndarray, c: np.ndarray) -> np.ndarray:
    w, level = WINDOW_CTA
    g, r = window_to_uint8(nc, w, level), window_to_uint8(c, w, level)
    return np.stack([r, g, g], axis=-1)


def _overlay(nc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w, level = WINDOW_SOFT_TISSUE
    grey = window_to_uint8(nc, w, level)
    rgb = np.stack([grey] * 3, axis=-1).astype(np.float32)
    for code, color in MASK_COLORS.items():
        inside = mask == code
        rgb[inside] = 0.45 * rgb[inside] + 0.55 * np.asarray(color, np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_qc_picture(path: str | Path, noncontrast: CTVolume, before: CTVolume, after: CTVolume, mask: np.ndarray,
                     footer: str, panel_width: int = 240) -> Path:
    """Write the QC picture (PNG, atomically); every volume on the non-contrast grid."""
    z, y = focus_index(mask)
    mask_volume = noncontrast.with_array(np.asarray(mask, dtype=np.uint8))
    rows = []
    for view, cut, index in (("axial", axial, z), ("coronal", coronal, y)):
        nc = cut(noncontrast, index)
        row = [(f"before registration ({view})", _fusion(nc, cut(before, index))),
               (f"after registration ({view})", _fusion(nc, cut(after, index))),
               ("enhancement mask: vessel, tissue", _overlay(nc, cut(mask_volume, index, nearest=True)))]
        rows.append([(title, fit_width(panel, panel_width)) for title, panel in row])
    return save_png(panel_grid(rows, panel_height=None, title_height=18, gap=4, footer=footer), path)
