"""A synthetic scan against the real contrast scan of the same patient: registration and comparison metrics.

Pure functions over :class:`~DigitalContrastLib.ct.volume.CTVolume` objects: they run in the
background worker's ``--task`` processes for the Slicer module (``worker.tasks``) and anywhere else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from DigitalContrastLib.common.progress import ProgressCallback
from DigitalContrastLib.ct.labels import LABEL_CODES
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.ct.volume import CTVolume

from .metrics import body_metrics, roi_metrics
from .registration import register, resample_to

NO_LABELS_NOTE = ("No lumen label volume given: body metrics only (MAE, PSNR, SSIM); lumen HU and diameters need a "
                  "label map of the aorta (phantom codes, or 1 = lumen).")


def register_with_field_of_view(fixed: CTVolume, moving: CTVolume, method: str = "rigid",
                     progress: ProgressCallback | None = None, **options: Any) -> tuple[Any, np.ndarray]:
    """``registration.register`` plus the field of view: ``[z, y, x]`` bool on the fixed grid,
    True where the transformed moving scan has data."""
    result = register(fixed, moving, method, progress, **options)
    ones = moving.with_array(np.ones(moving.shape_zyx, np.uint8))
    covered = resample_to(ones, fixed, result.transform, default_hu=0, interpolator="nearest").array.astype(bool)
    return result, covered


def lumen_label_codes(labels: np.ndarray) -> tuple[dict[str, int] | None, str | None]:
    """The codes of a label map: the phantom's (:data:`~DigitalContrastLib.ct.labels.LABEL_CODES`) when it holds the lumen
    code 10, ``1 = lumen`` for a 0/1 mask; ``(None, why)`` otherwise."""
    values = set(np.unique(labels).tolist())
    if LABEL_CODES["lumen"] in values:
        return dict(LABEL_CODES), None
    if values <= {0, 1} and 1 in values:
        return {"lumen": 1, "thrombus": -1, "calcification": -1, "wall": -1}, \
            "The label volume is a 0/1 mask, taken as the lumen: thrombus figures are empty."
    return None, (f"The label volume holds the values {sorted(values)[:8]}, neither the phantom's codes (10 = lumen) "
                  "nor a 0/1 lumen mask: lumen metrics skipped.")


def comparison_metrics(nc: CTVolume, synthetic: CTVolume, real: CTVolume, labels: CTVolume | None = None,
                       field_of_view: np.ndarray | None = None,
                       progress: ProgressCallback | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Metrics of the synthetic and the non-contrast scan (baseline) against the real scan. Pure.

    All volumes are on one grid (the non-contrast scan's). The body mask is the non-contrast
    scan's (``metrics.body_mask_from_ct``), restricted to ``field_of_view`` (where the registered
    real scan has data). ROI metrics (lumen and thrombus HU, Dice, diameters) need ``labels``.

    Returns:
        ``(rows, notes)``: one row per comparison, notes on coverage.
    """
    notes: list[str] = []
    body = body_mask_from_ct(nc.array)
    if field_of_view is not None:
        outside = int((body & ~field_of_view).sum())
        body &= field_of_view
        if outside:
            notes.append(f"{outside} body voxels outside the real scan's field of view are left out.")
    codes = label_array = None
    if labels is None:
        notes.append(NO_LABELS_NOTE)
    else:
        label_array = np.asarray(labels.array)
        if field_of_view is not None:
            label_array = np.where(field_of_view, label_array, 0)
        codes, why = lumen_label_codes(label_array)
        if why:
            notes.append(why)
    comparisons = (("synthetic vs real", synthetic), ("non-contrast vs real", nc))
    rows = []
    for step, (name, predicted) in enumerate(comparisons):
        if progress is not None:
            progress("metrics", step, len(comparisons))
        row: dict[str, Any] = {"comparison": name, **body_metrics(predicted.array, real.array, body),
                               "body_voxels": int(body.sum())}
        if codes is not None:
            row.update(roi_metrics(predicted.array, real.array, label_array, nc.spacing_mm, label_codes=codes))
        rows.append(row)
    if progress is not None:
        progress("metrics", len(comparisons), len(comparisons))
    return rows, notes
