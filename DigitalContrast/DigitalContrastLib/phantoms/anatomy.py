"""What an intended use's phantom builder returns: the label map on its grid and the case's HU tables.

A builder is ``build(seed, grid) -> Anatomy`` (:data:`AnatomyBuilder`): it draws one patient from
``seed`` on the :class:`~DigitalContrastLib.phantoms.canvas.Grid` it is given (re-centred on the
body where needed); :func:`~DigitalContrastLib.phantoms.generator.make_phantom` turns the anatomy
into the paired scans (HU tables, misregistration, blur, noise) the same way for every intended use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .canvas import Grid


@dataclass
class Anatomy:
    """What an IFU's builder returns: the label map on ``grid`` and the per-case HU tables.

    ``grid`` is the grid the builder was given, re-centred by it on the body where needed.
    """

    grid: Grid
    labels: np.ndarray  # int16 [z, y, x] label codes (LABELS) on ``grid``
    hu_noncontrast: dict[str, float]  # label name -> noise-free level (HU), non-contrast scan
    hu_contrast: dict[str, float]  # label name -> noise-free level (HU), arterial phase
    contrast_z_offsets: dict[str, np.ndarray]  # label name -> (nz,) HU added in the contrast scan
    params: dict[str, Any]  # the builder's sampled parameters (JSON-able), merged into phantom.json
    focus_index_zyx: tuple[int, int, int]  # where a preview should look (aorta, widest slice)


AnatomyBuilder = Callable[[int, Grid], Anatomy]
"""``build(seed, grid) -> Anatomy``: one intended use's phantom patient."""

