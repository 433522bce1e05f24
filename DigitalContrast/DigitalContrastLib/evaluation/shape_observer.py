"""A shape-aware reference observer for the lumen inside a thrombus-filled aneurysm sac (phantoms).

How well could *any* image model place the aortic lumen inside a sac that is partly filled with
thrombus, from the non-contrast scan alone? In the phantoms the thrombus is only 6-12 HU darker than
unenhanced blood, under spatially correlated noise of 8-25 HU SD. This module gives a reference that
knows more than a model can: like the intensity observer of :mod:`.validation` it is TOLD the true
aortic sac (lumen and thrombus labels) and the median non-contrast HU of lumen and thrombus, and on
top of that it knows the generator's shape: on every axial slice the lumen is one disk.

* :func:`fit_lumen_disks` fits, on every axial slice holding thrombus, the disk inside the sac that
  maximises ``sum(clip(nc - mid, -c, c))`` over its voxels (``mid``: the midpoint of the two
  medians, ``c``: :data:`EVIDENCE_CLIP_HU`). Unclipped, with known levels and Gaussian noise, this
  is the maximum-likelihood disk of that slice; clipped it is a robust (Huber-like) version of it,
  which a bright outlier such as the blur of a calcified plaque cannot pull towards itself.
* :func:`disk_lumen_mask` draws the fitted disks (optionally shrunk) as a lumen mask.
* :func:`placement_thrombus_bias_hu` scores a lumen mask by what it alone does to the thrombus
  bias: the mask is rendered the way the phantom renders its arterial phase (lumen level minus
  thrombus level, times the difference of the masks, through the case's partial-volume blur) and
  added to the real contrast scan. A mask equal to the true lumen scores 0 HU; lumen drawn into the
  thrombus scores above 0. This separates *where* a lumen is put from *how bright* an image draws
  the thrombus, so the model and the observer are compared on the same footing.

It is a reference, not a bound: an observer with a better prior (continuity along z, for one)
could do better. Pixel units: radii and centres are in voxels of the axial plane; masks ``[z, y, x]``.
Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

from .metrics import LUMEN_THRESHOLD_HU

#: Each voxel's evidence ``nc - mid`` is clipped to +-this (HU) before the disks are summed. Picked
#: from none, 40, 25 and 15 HU: over the 23 aneurysm cases of seeds 10000-10031 the thrombus bias
#: from placement was +32.4 HU unclipped, +17.9 at 40, +12.7 at 25 and +11.3 at 15 (selection seeds
#: 30000-30015 in the README).
EVIDENCE_CLIP_HU = 25.0
#: Radius step of the disk search (voxels).
RADIUS_STEP_VOXELS = 0.5
#: Smallest radius searched (voxels).
MIN_RADIUS_VOXELS = 1.5


def _disk_kernels(radii: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """rfft2 of centred disk indicators of ``radii`` (voxels) on a ``shape_yx`` grid: ``[r, y, x//2+1]``."""
    ny, nx = shape_yx
    yy = np.fft.ifftshift(np.arange(ny) - ny // 2)[:, None]
    xx = np.fft.ifftshift(np.arange(nx) - nx // 2)[None, :]
    dist2 = yy.astype(np.float64) ** 2 + xx.astype(np.float64) ** 2
    return np.stack([np.fft.rfft2((dist2 <= r * r).astype(np.float64)) for r in radii])


def fit_lumen_disks(noncontrast_hu: np.ndarray, lumen_mask: np.ndarray, thrombus_mask: np.ndarray,
                    evidence_clip_hu: float | None = EVIDENCE_CLIP_HU) -> dict[int, tuple[float, float, float]]:
    """The (robust) maximum-likelihood disk of the lumen on every axial slice that holds thrombus.

    Args:
        noncontrast_hu: ``[z, y, x]`` non-contrast scan (HU).
        lumen_mask, thrombus_mask: ``[z, y, x]`` bool, the true aortic lumen and thrombus (the sac is
            their union; the observer is told it, and the two medians, nothing else).
        evidence_clip_hu: clip of each voxel's ``nc - mid`` (HU); ``None``: the plain sum.

    Returns:
        ``{z: (radius, centre_y, centre_x)}`` in voxels, for each slice ``z`` with thrombus. The disk
        lies inside the sac (a disk reaching outside scores -10^4 per voxel outside).
    """
    nc = np.asarray(noncontrast_hu, dtype=np.float64)
    lumen, thrombus = np.asarray(lumen_mask, dtype=bool), np.asarray(thrombus_mask, dtype=bool)
    sac = lumen | thrombus
    slices = np.flatnonzero(thrombus.any(axis=(1, 2)))
    if slices.size == 0 or not lumen.any():
        return {}
    mid = 0.5 * (float(np.median(nc[lumen])) + float(np.median(nc[thrombus])))
    ys, xs = np.nonzero(sac[slices].any(axis=0))
    # one crop for all slices, padded so that the circular FFT convolution never wraps a disk around
    half = 0.5 * max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    radii = np.arange(MIN_RADIUS_VOXELS, max(half, MIN_RADIUS_VOXELS + RADIUS_STEP_VOXELS), RADIUS_STEP_VOXELS)
    pad = int(np.ceil(radii[-1])) + 1
    y0, x0 = ys.min() - pad, xs.min() - pad
    shape = (ys.max() + pad + 1 - y0, xs.max() + pad + 1 - x0)
    kernels = _disk_kernels(radii, shape)
    fits: dict[int, tuple[float, float, float]] = {}
    for z in slices:
        score = np.full(shape, -1e4)
        ylo, xlo = max(y0, 0), max(x0, 0)
        yhi, xhi = min(y0 + shape[0], nc.shape[1]), min(x0 + shape[1], nc.shape[2])
        evidence = nc[z, ylo:yhi, xlo:xhi] - mid
        if evidence_clip_hu is not None:
            evidence = np.clip(evidence, -evidence_clip_hu, evidence_clip_hu)
        window = np.where(sac[z, ylo:yhi, xlo:xhi], evidence, -1e4)
        score[ylo - y0:yhi - y0, xlo - x0:xhi - x0] = window
        sums = np.fft.irfft2(np.fft.rfft2(score)[None] * kernels, s=shape)
        r, cy, cx = np.unravel_index(int(np.argmax(sums)), sums.shape)
        fits[int(z)] = (float(radii[r]), float(cy + y0), float(cx + x0))
    return fits


def disk_lumen_mask(fits: dict[int, tuple[float, float, float]], lumen_mask: np.ndarray,
                    thrombus_mask: np.ndarray, shrink_voxels: float = 0.0) -> np.ndarray:
    """The observer's lumen: the true lumen, with each fitted slice replaced by its disk.

    The disk (radius minus ``shrink_voxels``, at least half a voxel) is cut to the sac. Slices without
    thrombus keep the true lumen: there the sac is the lumen and the observer is the label oracle.
    """
    lumen = np.asarray(lumen_mask, dtype=bool)
    sac = lumen | np.asarray(thrombus_mask, dtype=bool)
    out = lumen.copy()
    yy, xx = np.mgrid[:lumen.shape[1], :lumen.shape[2]]
    for z, (radius, cy, cx) in fits.items():
        r = max(radius - shrink_voxels, 0.5)
        out[z] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & sac[z]
    return out


def _blurred_move(lumen_pred: np.ndarray, lumen_mask: np.ndarray, blur_sigma_voxels: float) -> np.ndarray:
    """``G(lumen_pred - lumen_mask)`` (float32): where the lumen moved, through the phantom's blur ``G``."""
    from scipy import ndimage

    moved = np.asarray(lumen_pred, dtype=np.float32) - np.asarray(lumen_mask, dtype=np.float32)
    return ndimage.gaussian_filter(moved, float(blur_sigma_voxels))


def enhanced_lumen_mask(prediction_hu: np.ndarray, lumen_mask: np.ndarray, thrombus_mask: np.ndarray,
                        lumen_threshold_hu: float = LUMEN_THRESHOLD_HU) -> np.ndarray:
    """A prediction's lumen: where it reaches ``lumen_threshold_hu`` inside the true sac (bool ``[z, y, x]``),
    as the lumen Dice of :func:`~DigitalContrastLib.evaluation.metrics.roi_metrics` takes it."""
    sac = np.asarray(lumen_mask, dtype=bool) | np.asarray(thrombus_mask, dtype=bool)
    return sac & (np.asarray(prediction_hu) >= lumen_threshold_hu)


def rendered_lumen_prediction(lumen_pred: np.ndarray, lumen_mask: np.ndarray, contrast_hu: np.ndarray,
                              lumen_hu: float, thrombus_hu: float, blur_sigma_voxels: float) -> np.ndarray:
    """The real contrast scan with its lumen moved to ``lumen_pred`` (float32 ``[z, y, x]`` HU).

    ``contrast + (lumen_hu - thrombus_hu) * G(lumen_pred - lumen_mask)``, ``G`` the phantom's
    partial-volume blur (Gaussian, ``blur_sigma_voxels`` on every axis): what a perfect renderer
    would draw with this lumen. Equal masks give the contrast scan itself.
    """
    return np.asarray(contrast_hu, dtype=np.float32) + np.float32(lumen_hu - thrombus_hu) * _blurred_move(
        lumen_pred, lumen_mask, blur_sigma_voxels)


def placement_thrombus_bias_hu(lumen_pred: np.ndarray, lumen_mask: np.ndarray, thrombus_mask: np.ndarray,
                               lumen_hu: float, thrombus_hu: float, blur_sigma_voxels: float) -> float:
    """Thrombus bias (HU) caused by where ``lumen_pred`` puts the lumen alone (see the module text).

    Mean over the thrombus voxels of :func:`rendered_lumen_prediction` minus the contrast scan, i.e.
    ``(lumen_hu - thrombus_hu) * mean(G(lumen_pred - lumen_mask))`` there: 0 for the true lumen,
    positive where the lumen reaches into the thrombus. NaN without thrombus.
    """
    thrombus = np.asarray(thrombus_mask, dtype=bool)
    if not thrombus.any():
        return float("nan")
    return float(lumen_hu - thrombus_hu) * float(np.mean(_blurred_move(lumen_pred, lumen_mask, blur_sigma_voxels)[thrombus]))


def lumen_level_hu(contrast_hu: np.ndarray, lumen_mask: np.ndarray) -> float:
    """Median arterial-phase HU of the lumen two voxels in from its edge (away from the blur)."""
    from scipy import ndimage

    lumen = np.asarray(lumen_mask, dtype=bool)
    core = lumen & ~ndimage.binary_dilation(~lumen, iterations=2)
    return float(np.median(np.asarray(contrast_hu)[core if core.any() else lumen]))


def placement_beside_shape_observer(noncontrast_hu: np.ndarray, contrast_hu: np.ndarray, prediction_hu: np.ndarray,
                                    lumen_mask: np.ndarray, thrombus_mask: np.ndarray, thrombus_hu: float,
                                    blur_sigma_voxels: float, lumen_threshold_hu: float = LUMEN_THRESHOLD_HU) -> dict[str, float]:
    """Placement-only thrombus bias (HU) of a prediction's lumen and of the shape observer's.

    The prediction's lumen is :func:`enhanced_lumen_mask`; the observer's is :func:`fit_lumen_disks` drawn by :func:`disk_lumen_mask`.
    ``thrombus_hu``: the arterial-phase thrombus level; the lumen level is :func:`lumen_level_hu`.
    Returns ``{"prediction": HU, "shape_observer": HU}``, both NaN without thrombus.
    """
    lumen, thrombus = np.asarray(lumen_mask, dtype=bool), np.asarray(thrombus_mask, dtype=bool)
    if not thrombus.any() or not lumen.any():
        return {"prediction": float("nan"), "shape_observer": float("nan")}
    level = (lumen_level_hu(contrast_hu, lumen), float(thrombus_hu), float(blur_sigma_voxels))
    predicted = enhanced_lumen_mask(prediction_hu, lumen, thrombus, lumen_threshold_hu)
    observed = disk_lumen_mask(fit_lumen_disks(noncontrast_hu, lumen, thrombus), lumen, thrombus)
    return {"prediction": placement_thrombus_bias_hu(predicted, lumen, thrombus, *level),
            "shape_observer": placement_thrombus_bias_hu(observed, lumen, thrombus, *level)}
