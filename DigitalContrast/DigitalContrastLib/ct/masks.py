"""Masks derived from a CT volume's HU values."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask_from_ct(ct_hu: np.ndarray, threshold_hu: float = -500.0, dilation_vox: int = 0) -> np.ndarray:
    """The patient's body: the largest connected region above ``threshold_hu``, holes filled.

    Steps: threshold (``> threshold_hu``); keep the largest 6-connected 3D component (drops the
    table, cables and noise when they do not touch the body); fill holes slice by slice in the
    axial plane (lungs, bowel gas and airways enclosed by the body wall in that slice); optionally
    dilate by ``dilation_vox`` voxels (6-connected steps; SynthRAD scores MAE on a dilated mask).

    Args:
        ct_hu: ``[z, y, x]`` HU volume.
        threshold_hu: air/body threshold in HU.
        dilation_vox: dilation iterations, 0 for none.

    Returns:
        ``[z, y, x]`` bool mask; all False when nothing exceeds the threshold.
    """
    above = np.asarray(ct_hu) > threshold_hu
    labelled, count = ndimage.label(above)
    if count == 0:
        return np.zeros(above.shape, dtype=bool)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    body = labelled == int(np.argmax(sizes))
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    # With an in-plane structure the fill works per axial slice (the lungs fill, as on a slice).
    body = ndimage.binary_fill_holes(body, structure=in_plane)
    if dilation_vox > 0:
        body = ndimage.binary_dilation(body, iterations=int(dilation_vox))
    return body
