"""Augmentations of a training patch (numpy, ``[z, y, x]``), the same in both scans.

Geometric: :func:`inplane_grid` / :func:`warp_inplane` turn and scale a patch about z (images linear,
labels nearest), cut from a crop of :func:`inplane_footprint`. Appearance (labels needed):
:func:`brighten_blood_pools` scales the enhancement of the blood pools beside the aorta,
:func:`jitter_appearance` shifts the HU of non-vessel tissues and scales bone contrast without
changing the residual ``contrast - noncontrast`` that the network learns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .cases import label_code


def inplane_footprint(size_yx: Sequence[int], angle_rad: float, scale: float) -> tuple[int, int]:
    """In-plane size (voxels) of the crop that a ``size_yx`` patch turned by ``angle_rad`` and scaled by
    ``scale`` (> 1: anatomy enlarged) samples from, with one voxel to spare on each side."""
    reach = (abs(math.cos(angle_rad)) + abs(math.sin(angle_rad))) / scale
    return tuple(int(math.ceil(n * reach)) + 2 for n in size_yx)  # type: ignore[return-value]


def inplane_grid(crop_zyx: Sequence[int], size_zyx: Sequence[int], angle_rad: float, scale: float) -> torch.Tensor:
    """Sampling grid (for :func:`warp_inplane`) of the centre ``size_zyx`` of a ``crop_zyx`` block turned by
    ``angle_rad`` about z and scaled by ``scale``.

    Output voxel ``p`` (from the output centre, in voxels; x and y spacing equal) samples the block at
    ``R(angle) p / scale`` from its centre; z is kept (``size_zyx[0]`` must equal ``crop_zyx[0]``).
    One grid serves every array cut from the same crop.
    """
    depth, height, width = (int(v) for v in crop_zyx)
    d, h, w = (int(v) for v in size_zyx)
    if d != depth:
        raise ValueError(f"inplane_grid keeps z: {d} output slices from {depth}")
    cos, sin = math.cos(angle_rad) / scale, math.sin(angle_rad) / scale
    theta = torch.tensor([[[cos * w / width, -sin * h / width, 0.0, 0.0],
                           [sin * w / height, cos * h / height, 0.0, 0.0],
                           [0.0, 0.0, 1.0, 0.0]]], dtype=torch.float32)
    return torch.nn.functional.affine_grid(theta, [1, 1, d, h, w], align_corners=False)


def warp_inplane(array: np.ndarray, grid: torch.Tensor, nearest: bool = False) -> np.ndarray:
    """``array`` ``[z, y, x]`` sampled on ``grid`` (from :func:`inplane_grid` for ``array.shape``).

    Linear interpolation, or nearest for labels and masks; the dtype is kept (bool stays bool).
    """
    source = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    out = torch.nn.functional.grid_sample(source, grid, mode="nearest" if nearest else "bilinear",
                                          padding_mode="border", align_corners=False)[0, 0].numpy()
    if array.dtype == bool:
        return out > 0.5
    if np.issubdtype(array.dtype, np.integer):
        return np.rint(out).astype(array.dtype)
    return out.astype(array.dtype)


def labels_present(tissue: np.ndarray) -> set[int]:
    """The label codes found in a uint8 ``tissue`` patch (a bincount: no sort of the patch)."""
    return set(np.flatnonzero(np.bincount(tissue.ravel(), minlength=256)).tolist())


#: blood pools beside the aorta whose enhancement brighten_blood_pools scales (never the aorta or its branches)
NEIGHBOUR_BLOOD_POOLS = ("heart_left", "heart_right", "pulmonary_artery", "vein", "vena_cava")


def brighten_blood_pools(nc_hu: np.ndarray, c_hu: np.ndarray, tissue: np.ndarray, rng: np.random.Generator,
                         gain: Sequence[float]) -> None:
    """Scale the enhancement (contrast - non-contrast, HU) of each :data:`NEIGHBOUR_BLOOD_POOLS` label in
    ``tissue`` by its own factor drawn from ``gain`` (lo, hi), in ``c_hu`` (in place). ``tissue`` is a
    uint8 label array (0 where excluded); a pseudo non-contrast patch built from ``c_hu`` afterwards sees
    the brighter pools in its input and its target alike."""
    present = labels_present(tissue)
    for name in NEIGHBOUR_BLOOD_POOLS:
        code = label_code(name)
        if code in present:
            where = tissue == code
            c_hu[where] = nc_hu[where] + float(rng.uniform(*gain)) * (c_hu[where] - nc_hu[where])


# tissues whose look is varied by jitter_appearance (same change in both scans); every other label
# (blood, vessel walls, thrombus, calcification, air, lung) keeps its values
APPEARANCE_OFFSET_TISSUES = ("soft_tissue", "fat", "muscle", "liver", "kidney_cortex", "kidney_medulla", "bowel",
                             "spleen", "disc", "pancreas", "fluid", "myocardium")


APPEARANCE_BONE_TISSUES = ("cortical_bone", "bone_marrow")


BONE_SCALE_CENTRE_HU = 40.0


def jitter_appearance(nc_hu: np.ndarray, c_hu: np.ndarray, tissue: np.ndarray, rng: np.random.Generator,
                      offset_hu: float, bone_scale: Sequence[float]) -> None:
    """Give a patch's non-vessel tissues another look, in place and identically in both scans.

    Each tissue of :data:`APPEARANCE_OFFSET_TISSUES` present is shifted by its own offset drawn from
    ``U(-offset_hu, offset_hu)``; bone (:data:`APPEARANCE_BONE_TISSUES`) has its contrast against
    40 HU scaled by one factor from ``U(*bone_scale)`` in the non-contrast scan, its enhancement kept.
    ``c_hu - nc_hu`` (the residual the network learns) is unchanged everywhere.

    Args:
        nc_hu, c_hu: float32 ``[z, y, x]`` patches in HU (modified).
        tissue: uint8 label codes of the patch (phantom :data:`~DigitalContrastLib.ct.labels.LABELS`).
    """
    present = labels_present(tissue)
    for name in APPEARANCE_OFFSET_TISSUES:
        code = label_code(name)
        if code in present:
            where = tissue == code
            offset = float(rng.uniform(-offset_hu, offset_hu))
            nc_hu[where] += offset
            c_hu[where] += offset
    bone = np.isin(tissue, [label_code(n) for n in APPEARANCE_BONE_TISSUES])
    if bone.any():
        scale = float(rng.uniform(*bone_scale))
        enhancement = c_hu[bone] - nc_hu[bone]
        nc_hu[bone] = BONE_SCALE_CENTRE_HU + (nc_hu[bone] - BONE_SCALE_CENTRE_HU) * scale
        c_hu[bone] = nc_hu[bone] + enhancement
