"""Metrics inside a prepared case's enhancement mask: where a site's pair says contrast arrived.

A site has no hand labels; ``prepare`` derives an enhancement mask from the registered pair
(codes :data:`~DigitalContrastLib.ct.labels.ENHANCEMENT_CODES`: 1 vessel, 2 enhancing tissue). On
the non-contrast grid (``[z, y, x]``, HU):

* ``mask_mae_hu`` and ``mask_bias_hu``: mean ``|pred - ref|`` and ``pred - ref`` over every mask voxel
  (vessel and enhancing tissue): how well the enhancement is predicted where it happens;
* ``vessel_mae_hu``, ``vessel_bias_hu``: the same over the vessel code alone;
* ``lumen_dice``: the Dice of the enhanced lumen (``HU >= LUMEN_THRESHOLD_HU``, 150 HU) of the
  prediction and of the real scan, inside the vessel region grown by one voxel (26-connected) and
  kept below :data:`BONE_HU` in the non-contrast scan (bone is above 150 HU in both and would
  count as agreement).

Undefined results (an empty region) are ``nan``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from DigitalContrastLib.ct.labels import ENHANCEMENT_CODES

from .metrics import LUMEN_THRESHOLD_HU, dice

BONE_HU = 200.0


def _mae_bias(pred: np.ndarray, ref: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    if not region.any():
        return float("nan"), float("nan")
    diff = pred[region].astype(np.float64) - ref[region].astype(np.float64)
    return float(np.abs(diff).mean()), float(diff.mean())


def mask_metrics(pred_hu: np.ndarray, ref_hu: np.ndarray, noncontrast_hu: np.ndarray, mask: np.ndarray,
                 lumen_threshold_hu: float = LUMEN_THRESHOLD_HU) -> dict[str, float]:
    """``mask_mae_hu``, ``mask_bias_hu``, ``vessel_mae_hu``, ``vessel_bias_hu``, ``lumen_dice`` and
    ``mask_voxels`` (see the module docstring)."""
    pred, ref, mask = np.asarray(pred_hu), np.asarray(ref_hu), np.asarray(mask)
    vessel = mask == ENHANCEMENT_CODES["vessel"]
    mae, bias = _mae_bias(pred, ref, mask > 0)
    vessel_mae, vessel_bias = _mae_bias(pred, ref, vessel)
    region = ndimage.binary_dilation(vessel, structure=np.ones((3, 3, 3), bool)) & (np.asarray(noncontrast_hu) < BONE_HU)
    lumen_dice = dice((pred >= lumen_threshold_hu) & region, (ref >= lumen_threshold_hu) & region) if region.any() \
        else float("nan")
    return {"mask_mae_hu": mae, "mask_bias_hu": bias, "vessel_mae_hu": vessel_mae, "vessel_bias_hu": vessel_bias,
            "lumen_dice": lumen_dice, "mask_voxels": int(np.count_nonzero(mask))}
