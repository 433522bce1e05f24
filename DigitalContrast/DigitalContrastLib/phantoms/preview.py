"""A picture of a phantom: axial and coronal views of both scans and the label map, with a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from DigitalContrastLib.ct.labels import LABEL_COLORS, LABELS
from DigitalContrastLib.ct.render import (
    WINDOW_CTA,
    WINDOW_SOFT_TISSUE,
    axial,
    colorize_labels,
    coronal,
    legend_panel,
    panel_grid,
    window_to_uint8,
)


def phantom_preview(case, panel_height: int = 360) -> Image.Image:
    """Axial and coronal views through the aorta of a phantom: non-contrast (W400/L40), arterial
    contrast (W700/L200) and the colour-coded label map, with a legend of the labels present.

    The axial slice is the widest aortic slice below the renal arteries, the coronal plane runs
    through the flowing lumen (``params["focus_index_zyx"]``). ``case`` is a
    :class:`~DigitalContrastLib.phantoms.generator.PhantomCase`.
    """
    p = case.params
    zi, yi, _ = p.get("focus_index_zyx") or [s // 2 for s in case.noncontrast.shape_zyx]
    (w_nc, l_nc), (w_c, l_c) = WINDOW_SOFT_TISSUE, WINDOW_CTA
    rows = []
    for view, cut, index in (("axial", axial, zi), ("coronal", coronal, yi)):
        rows.append([
            (f"Non-contrast {view}  W{w_nc:.0f}/L{l_nc:.0f}", window_to_uint8(cut(case.noncontrast, index), w_nc, l_nc)),
            (f"Arterial contrast {view}  W{w_c:.0f}/L{l_c:.0f}", window_to_uint8(cut(case.contrast, index), w_c, l_c)),
            (f"Labels {view}", colorize_labels(cut(case.labels, index, nearest=True), LABEL_COLORS)),
        ])
    an = p.get("aneurysm", {})
    sac = f"AAA {an['max_diameter_mm']:.0f} mm" if an.get("present") else "no aneurysm"
    footer = (f"SYNTHETIC PHANTOM  seed {p.get('seed')}, {p.get('ifu')}, generator {p.get('generator_version')}: {sac}; "
              f"lumen {p['hu_noncontrast']['aortic_lumen']:.0f} / {p['hu_contrast']['aortic_lumen']:.0f} HU; "
              f"noise sigma {p['noise']['noncontrast']['sigma_sampled_hu']:.0f} / "
              f"{p['noise']['contrast']['sigma_sampled_hu']:.0f} HU")
    title_height, gap = 22, 6
    grid = panel_grid(rows, panel_height=panel_height, title_height=title_height, gap=gap, footer=footer)
    present = set(np.unique(case.labels.array).tolist())
    entries = [(f"{code:2d} {name}", LABEL_COLORS[code]) for name, code in LABELS.items() if code in present]
    legend = Image.fromarray(legend_panel(entries, height=grid.height - 2 * gap - title_height))
    out = Image.new("RGB", (grid.width + legend.width + gap, grid.height), (0, 0, 0))
    out.paste(grid, (0, 0))
    out.paste(legend, (grid.width, gap + title_height))
    return out
