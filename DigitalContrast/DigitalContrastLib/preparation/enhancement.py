"""The enhancement mask of a registered pair: where the contrast scan is brighter, with no hand labels.

On the non-contrast grid (arrays ``[z, y, x]``, HU), with the contrast scan registered onto it:

1. both scans are smoothed by a 3 x 3 x 3 median (noise of 10-25 HU in each scan would otherwise
   scatter single voxels over the threshold; edges stay put);
2. a voxel enhances where the smoothed rise reaches :data:`ENHANCEMENT_MIN_HU`, inside the body and
   the contrast scan's field of view, away from bone: not within one voxel of non-contrast HU at
   or above :data:`BONE_HU`, and below :data:`CONTRAST_BONE_HU` in the contrast scan (bone and
   calcium are bright in both scans; a sub-millimetre misalignment at a cortical edge makes rises
   of hundreds of HU that are not contrast, and no lumen reads that high);
3. connected regions (26-connected) smaller than :data:`MIN_REGION_ML` are dropped (noise, rims);
4. vessels are separated from enhancing organs where the HU allow it: enhanced blood rises by at
   least :data:`VESSEL_MIN_RISE_HU` to at least :data:`VESSEL_MIN_HU` (an arterial lumen reads
   250-450 HU); kidney cortex (150-200 HU), spleen, pancreas, veins and partial-volume rims stay
   below that and are ``enhancing_tissue``.

Codes: :data:`~DigitalContrastLib.ct.labels.ENHANCEMENT_CODES` (0 none, 1 vessel, 2 enhancing tissue).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from DigitalContrastLib.ct.labels import ENHANCEMENT_CODES
from DigitalContrastLib.synthesis.contrast_evidence import median_3x3x3

ENHANCEMENT_MIN_HU = 60.0
BONE_HU = 200.0
CONTRAST_BONE_HU = 700.0
MIN_REGION_ML = 0.1
VESSEL_MIN_RISE_HU = 150.0
VESSEL_MIN_HU = 200.0


def enhancement_mask(noncontrast_hu: np.ndarray, contrast_hu: np.ndarray, spacing_xyz_mm, body: np.ndarray,
                     covered: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[z, y, x]`` codes (0 none, 1 vessel, 2 enhancing tissue); see the module docstring.

    Args:
        noncontrast_hu, contrast_hu: the pair on one grid (the contrast scan registered), HU.
        spacing_xyz_mm: voxel size (x, y, z) in mm (for the region size).
        body: bool mask of the body on that grid.
        covered: bool mask of the voxels the contrast scan covers (None: all).
    """
    nc = median_3x3x3(np.asarray(noncontrast_hu, dtype=np.float32))
    c = median_3x3x3(np.asarray(contrast_hu, dtype=np.float32))
    rise = c - nc
    near_bone = ndimage.binary_dilation(nc >= BONE_HU, structure=ndimage.generate_binary_structure(3, 1))
    candidate = (rise >= ENHANCEMENT_MIN_HU) & body & ~near_bone & (c < CONTRAST_BONE_HU)
    if covered is not None:
        candidate &= covered
    voxel_ml = float(np.prod(spacing_xyz_mm)) / 1000.0
    labels, count = ndimage.label(candidate, structure=np.ones((3, 3, 3), bool))
    if count:
        sizes = np.bincount(labels.ravel())
        keep = sizes * voxel_ml >= MIN_REGION_ML
        keep[0] = False
        candidate = keep[labels]
    out = np.zeros(candidate.shape, dtype=np.uint8)
    vessel = candidate & (rise >= VESSEL_MIN_RISE_HU) & (c >= VESSEL_MIN_HU)
    out[candidate] = ENHANCEMENT_CODES["enhancing_tissue"]
    out[vessel] = ENHANCEMENT_CODES["vessel"]
    return out


def mask_volumes_ml(mask: np.ndarray, spacing_xyz_mm) -> dict[str, float]:
    """Millilitres of each non-zero code of an enhancement mask (``vessel_ml``, ``enhancing_tissue_ml``)."""
    voxel_ml = float(np.prod(spacing_xyz_mm)) / 1000.0
    return {f"{name}_ml": round(float(np.count_nonzero(mask == code)) * voxel_ml, 2)
            for name, code in ENHANCEMENT_CODES.items() if code}
