"""Training patches: :class:`PatchSampler` draws vessel-over-sampled patches from the cases.

Each patch (``patch_size_zyx``) is centred on a vessel voxel with probability ``positive_fraction``
(aortic lumen, thrombus, wall, calcium, branch arteries from the labels; without labels, voxels whose
HU rises by more than 100 between the scans), else on a random body voxel; optional thrombus-centred
patches, pseudo non-contrast inputs and the augmentations of :mod:`.augment` follow. MONAI transforms
flip it along z and y (never left-right: anatomy is not mirror-symmetric) and shift the input HU a
little. Every random draw comes from the sampler's own generator (the MONAI transforms are seeded
from it), in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from .augment import brighten_blood_pools, inplane_footprint, inplane_grid, jitter_appearance, warp_inplane
from .cases import TrainingCase, label_code, vessel_codes
from .config import TrainConfig


def _crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``array[start:start+size]`` with ``fill`` where the window leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, length in zip(start, size, array.shape):
        lo, hi = max(s, 0), min(s + n, length)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws vessel-over-sampled training patches and applies MONAI augmentations."""

    def __init__(self, cases: list[TrainingCase], config: TrainConfig, rng: np.random.Generator) -> None:
        from monai.transforms import Compose, RandFlipd, RandShiftIntensityd  # lazy: MONAI is slow to import

        self.cases = cases
        self.config = config
        self.rng = rng
        keys = ["image", "target", "weight", "nc_hu", "c_hu"]
        if config.lumen_mask_weight > 0:
            keys += ["lumen", "sac"]
        shift = config.intensity_shift_hu / config.scale_hu
        # flips along z and y only: a left-right flip would swap the aorta (patient's left) and the
        # inferior vena cava (right), two blood-density tubes of which only the aorta enhances
        self.augment = Compose([
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            # a calibration offset of the scanner: shifts the input only (the residual is unchanged)
            RandShiftIntensityd(keys=["image"], offsets=(-shift, shift), prob=0.5),
        ])
        self.augment.set_random_state(seed=int(rng.integers(2**31)))
        volumes = np.array([c.thrombus_voxels for c in cases], dtype=np.float64)
        self.thrombus_case_p = volumes / volumes.sum() if volumes.sum() > 0 else None

    def _centre(self, case: TrainingCase) -> tuple[int, int, int]:
        if case.positives.size and self.rng.random() < self.config.positive_fraction:
            flat = int(case.positives[self.rng.integers(case.positives.size)])
            return tuple(int(v) for v in np.unravel_index(flat, case.noncontrast.shape))  # type: ignore[return-value]
        return tuple(int(self.rng.integers(lo, hi)) for lo, hi in case.body_box)  # type: ignore[return-value]

    def sample(self) -> dict[str, torch.Tensor]:
        """One patch: ``image``/``target``/``weight``/``nc_hu``/``c_hu`` as ``[1, z, y, x]`` float32."""
        size = self.config.patch_size_zyx
        if (self.thrombus_case_p is not None and self.config.thrombus_centre_fraction > 0
                and self.rng.random() < self.config.thrombus_centre_fraction):
            case = self.cases[int(self.rng.choice(len(self.cases), p=self.thrombus_case_p))]
            flat = int(case.thrombus_positives[self.rng.integers(case.thrombus_positives.size)])
            centre = tuple(int(v) for v in np.unravel_index(flat, case.noncontrast.shape))
        else:
            case = self.cases[int(self.rng.integers(len(self.cases)))]
            centre = self._centre(case)
        cfg = self.config
        turn = cfg.geometric_fraction > 0 and self.rng.random() < cfg.geometric_fraction
        if turn:
            angle = math.radians(float(self.rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)))
            scale = math.exp(float(self.rng.uniform(-1.0, 1.0)) * math.log1p(cfg.scale_range))
            crop_size = (size[0], *inplane_footprint(size[1:], angle, scale))
            grid = inplane_grid(crop_size, size, angle, scale)  # one grid for every array of this patch
        else:
            crop_size = tuple(size)
        start = [c - n // 2 for c, n in zip(centre, crop_size)]
        # keep the patch inside the volume where the volume is big enough
        start = [min(max(s, 0), max(length - n, 0)) for s, n, length in zip(start, crop_size, case.noncontrast.shape)]

        def cut(array: np.ndarray, fill: float, nearest: bool = False) -> np.ndarray:
            out = _crop(array, start, crop_size, fill)
            return warp_inplane(out, grid, nearest=nearest) if turn else out

        nc = cut(case.noncontrast, -1024).astype(np.float32)
        c = cut(case.contrast, -1024).astype(np.float32)
        tissue = cut(case.tissue, 0, nearest=True) if case.tissue is not None else None

        def mask(name: str, stored: np.ndarray | None) -> np.ndarray | None:
            if tissue is not None:
                return tissue == label_code(name)
            return cut(stored, False, nearest=True) if stored is not None else None

        lumen_label = (mask("aortic_lumen", case.aortic_lumen)
                       if cfg.pseudo_noncontrast_fraction > 0 or cfg.lumen_mask_weight > 0 else None)
        if cfg.pseudo_noncontrast_fraction > 0:
            lumen = lumen_label
            if lumen is not None and self.rng.random() < cfg.pseudo_noncontrast_fraction:
                # pseudo non-contrast input: the contrast phase everywhere but in the aortic lumen
                if cfg.pseudo_noncontrast_margin_voxels > 0:
                    lumen = ndimage.binary_dilation(lumen, iterations=cfg.pseudo_noncontrast_margin_voxels)
                if tissue is not None and tuple(cfg.pseudo_noncontrast_neighbour_gain) != (1.0, 1.0):
                    brighten_blood_pools(nc, c, np.where(lumen, 0, tissue), self.rng, cfg.pseudo_noncontrast_neighbour_gain)
                nc = np.where(lumen, nc, c)
        if tissue is not None and cfg.appearance_jitter > 0 and self.rng.random() < cfg.appearance_jitter:
            jitter_appearance(nc, c, tissue, self.rng, cfg.appearance_offset_hu, cfg.appearance_bone_scale)
        vessel = np.isin(tissue, vessel_codes()) if tissue is not None else cut(case.vessel, False, nearest=True)
        weight = 1.0 + cfg.vessel_weight * vessel.astype(np.float32)
        thrombus = mask("thrombus", case.thrombus)
        if thrombus is not None and cfg.thrombus_weight:
            weight += cfg.thrombus_weight * thrombus.astype(np.float32)
        item = {
            "image": ((np.clip(nc, *cfg.clip_hu) - cfg.offset_hu) / cfg.scale_hu)[None],
            "target": ((c - nc) / cfg.output_scale_hu)[None],
            "weight": weight[None],
            "nc_hu": nc[None],
            "c_hu": c[None],
        }
        if cfg.lumen_mask_weight > 0:
            # without labels the case has no sac: both masks empty, the term leaves the patch out
            empty = np.zeros(nc.shape, dtype=bool)
            lumen_mask = lumen_label if lumen_label is not None else empty
            item["lumen"] = lumen_mask[None].astype(np.float32)
            item["sac"] = (lumen_mask | (thrombus if thrombus is not None else empty))[None].astype(np.float32)
        item = self.augment({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in item.items()})
        return {k: torch.as_tensor(np.ascontiguousarray(v)).float() for k, v in item.items()}

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        """``size`` patches of :meth:`sample`, stacked: each key ``[size, 1, z, y, x]`` float32."""
        items = [self.sample() for _ in range(size)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
