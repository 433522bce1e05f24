"""Image and clinical metrics comparing a synthetic CT with the real contrast CT.

All functions take ``[z, y, x]`` numpy arrays in Hounsfield units (any int or float dtype; the
arithmetic is float64), boolean masks on the same grid and spacings ``(x, y, z)`` in mm.

**Image metrics (whole body)** follow the definitions of the SynthRAD challenges (Thummerer et al.,
SynthRAD2023 / SynthRAD2025), reimplemented here from the published definition:

* both images are clipped to :data:`HU_RANGE` (−1024…3000 HU) before any image metric;
* MAE: mean ``|pred − ref|`` over the mask voxels;
* PSNR: ``10·log10(data_range² / MSE)`` with MSE over the mask voxels and ``data_range = 4024``;
* SSIM: voxels outside the mask are set to −1024, both images are shifted by +1024 (so they lie in
  ``[0, 4024]``), the 3D SSIM map (Wang et al., IEEE TIP 2004; K1 = 0.01, K2 = 0.03, L = 4024) is
  computed with a Gaussian window of σ = 1.5 voxels (truncated at 3.5 σ: an 11-voxel window), and
  its mean is taken over the mask voxels after cropping a 3-voxel border of the volume;
* MS-SSIM (SynthRAD2025 variant): 5 scales weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
  2×2×2 mean down-sampling between scales (Wang et al., Asilomar 2003).

**Clinical ROI metrics** use the phantom's label map (codes in :data:`~DigitalContrastLib.ct.labels.LABEL_CODES`): HU error and
bias of the lumen and thrombus, Dice of the enhanced lumen inside the aortic sac, and the axial
maximum diameter (max Feret) of the enhanced lumen. See :func:`roi_metrics`.

Undefined results (an empty mask or ROI) are ``nan``, never an exception, so that a cohort table
keeps one row per case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from DigitalContrastLib.ct.labels import LABEL_CODES

#: The fixed HU range of the SynthRAD image metrics.
HU_RANGE: tuple[float, float] = (-1024.0, 3000.0)
#: ``HU_RANGE[1] - HU_RANGE[0]``: the PSNR and SSIM data range.
DATA_RANGE_HU: float = HU_RANGE[1] - HU_RANGE[0]
#: Where a synthetic or real CTA counts as enhanced lumen (``HU >= threshold``): the lumen Dice and
#: diameters of :func:`roi_metrics`, the placement figures and the training's lumen-mask term.
LUMEN_THRESHOLD_HU: float = 150.0

#: SSIM window: Gaussian σ in voxels and truncation in σ (radius int(3.5·1.5 + 0.5) = 5 voxels).
SSIM_SIGMA_VOX: float = 1.5
SSIM_TRUNCATE_SIGMAS: float = 3.5
#: Voxels cropped at each face of the volume before averaging the SSIM map.
SSIM_BORDER_CROP_VOX: int = 3
#: SSIM stabilising constants (Wang et al. 2004).
SSIM_K1: float = 0.01
SSIM_K2: float = 0.03
#: MS-SSIM scale weights of SynthRAD2025 (finest scale first).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ---------------------------------------------------------------------------------------------
# helpers
def _as_float(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _check_same_shape(*arrays: np.ndarray) -> None:
    shapes = {tuple(np.shape(a)) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"arrays must share one [z, y, x] grid, got shapes {sorted(shapes)}")


def _clipped(array: np.ndarray) -> np.ndarray:
    return np.clip(_as_float(array), HU_RANGE[0], HU_RANGE[1])


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


# ---------------------------------------------------------------------------------------------
# image metrics (SynthRAD definitions)
def masked_mae_hu(pred_hu: np.ndarray, ref_hu: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error in HU over ``mask``, both images clipped to :data:`HU_RANGE`.

    Args:
        pred_hu, ref_hu: ``[z, y, x]`` HU volumes on the same grid.
        mask: ``[z, y, x]`` bool, the voxels that count.

    Returns:
        ``mean(|clip(pred) − clip(ref)|)`` over the mask, HU; ``nan`` for an empty mask.
    """
    _check_same_shape(pred_hu, ref_hu, mask)
    m = np.asarray(mask, dtype=bool)
    return _mean_or_nan(np.abs(_clipped(pred_hu[m]) - _clipped(ref_hu[m])))


def masked_psnr_db(
    pred_hu: np.ndarray, ref_hu: np.ndarray, mask: np.ndarray, data_range: float = DATA_RANGE_HU
) -> float:
    """Peak signal-to-noise ratio in dB over ``mask``, both images clipped to :data:`HU_RANGE`.

    ``PSNR = 10·log10(data_range² / MSE)``, MSE over the mask voxels (HU²). ``inf`` when the images
    agree exactly inside the mask; ``nan`` for an empty mask.
    """
    _check_same_shape(pred_hu, ref_hu, mask)
    m = np.asarray(mask, dtype=bool)
    mse = _mean_or_nan((_clipped(pred_hu[m]) - _clipped(ref_hu[m])) ** 2)
    if np.isnan(mse):
        return float("nan")
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


def _ssim_sigmas_vox(spacing_xyz_mm: Sequence[float] | None) -> tuple[float, float, float]:
    """Gaussian σ per array axis ``(z, y, x)`` in voxels.

    Without spacing: σ = 1.5 voxels on every axis (the challenge definition, on its grid). With a
    spacing: a physically isotropic window of σ = 1.5 × the finest spacing in mm, so that an
    anisotropic grid is not smoothed more across slices than in-plane.
    """
    if spacing_xyz_mm is None:
        return (SSIM_SIGMA_VOX,) * 3
    sx, sy, sz = (float(v) for v in spacing_xyz_mm)
    if min(sx, sy, sz) <= 0:
        raise ValueError(f"spacing_xyz_mm must be positive, got {spacing_xyz_mm}")
    sigma_mm = SSIM_SIGMA_VOX * min(sx, sy, sz)
    return (sigma_mm / sz, sigma_mm / sy, sigma_mm / sx)


def ssim_map(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float = DATA_RANGE_HU,
    sigmas_zyx_vox: Sequence[float] = (SSIM_SIGMA_VOX,) * 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Local SSIM and its contrast-structure part, Gaussian-weighted (Wang et al. 2004).

    Args:
        x, y: ``[z, y, x]`` images (any units; float64 internally).
        data_range: L in the constants ``C1 = (K1·L)²``, ``C2 = (K2·L)²``.
        sigmas_zyx_vox: Gaussian σ per axis in voxels (truncated at 3.5 σ, mirror at the edges).

    Returns:
        ``(ssim, cs)``, both ``[z, y, x]`` float64: ``ssim = l·cs`` with
        ``l = (2 μx μy + C1) / (μx² + μy² + C1)`` and ``cs = (2 σxy + C2) / (σx² + σy² + C2)``
        (population moments under the window).
    """
    xf, yf = _as_float(x), _as_float(y)
    _check_same_shape(xf, yf)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=tuple(sigmas_zyx_vox), truncate=SSIM_TRUNCATE_SIGMAS, mode="reflect")

    mu_x, mu_y = blur(xf), blur(yf)
    var_x = blur(xf * xf) - mu_x * mu_x
    var_y = blur(yf * yf) - mu_y * mu_y
    cov_xy = blur(xf * yf) - mu_x * mu_y
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    cs = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    return luminance * cs, cs


def _prepare_ssim_inputs(pred_hu, ref_hu, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip, set outside-mask voxels to −1024, shift by +1024 (values in [0, 4024])."""
    _check_same_shape(pred_hu, ref_hu, mask)
    m = np.asarray(mask, dtype=bool)
    prepared = []
    for image in (pred_hu, ref_hu):
        a = _clipped(image)
        a[~m] = HU_RANGE[0]
        prepared.append(a - HU_RANGE[0])
    return prepared[0], prepared[1], m


def _cropped_masked_mean(values: np.ndarray, mask: np.ndarray, crop: int = SSIM_BORDER_CROP_VOX) -> float:
    inner = tuple(slice(crop, n - crop) for n in values.shape)
    m = mask[inner]
    return _mean_or_nan(values[inner][m])


def masked_ssim(
    pred_hu: np.ndarray,
    ref_hu: np.ndarray,
    mask: np.ndarray,
    spacing_xyz_mm: Sequence[float] | None = None,
) -> float:
    """Structural similarity over ``mask``, SynthRAD style.

    Steps: clip both images to −1024…3000 HU; set voxels outside ``mask`` to −1024; shift by +1024;
    compute the 3D SSIM map (:func:`ssim_map`, Gaussian window σ = 1.5 voxels, L = 4024); average it
    over the mask voxels that are more than 3 voxels from every face of the volume.

    Args:
        pred_hu, ref_hu: ``[z, y, x]`` HU volumes on the same grid.
        mask: ``[z, y, x]`` bool (usually the body mask).
        spacing_xyz_mm: if given, the window is made physically isotropic (σ = 1.5 × the finest
            spacing, in mm, on every axis) instead of 1.5 voxels per axis.

    Returns:
        SSIM in [−1, 1], 1 for identical images inside the mask; ``nan`` if no mask voxel survives
        the border crop.
    """
    x, y, m = _prepare_ssim_inputs(pred_hu, ref_hu, mask)
    ssim, _ = ssim_map(x, y, DATA_RANGE_HU, _ssim_sigmas_vox(spacing_xyz_mm))
    return _cropped_masked_mean(ssim, m)


def _downsample_mean_2x(a: np.ndarray) -> np.ndarray:
    """2×2×2 block mean (a trailing odd row/column/slice is dropped)."""
    z, y, x = (n // 2 * 2 for n in a.shape)
    a = a[:z, :y, :x]
    return a.reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))


def masked_ms_ssim(
    pred_hu: np.ndarray,
    ref_hu: np.ndarray,
    mask: np.ndarray,
    spacing_xyz_mm: Sequence[float] | None = None,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> float:
    """Multi-scale SSIM over ``mask`` (SynthRAD2025 variant), in [0, 1].

    The images are prepared as in :func:`masked_ssim` (clip, −1024 outside the mask, +1024). At each
    of ``len(weights)`` scales the contrast-structure map (the full SSIM map at the coarsest scale)
    is averaged over the mask with the 3-voxel border crop; between scales images are 2×2×2
    block-averaged and the mask keeps the blocks that are at least half inside. Negative scale
    values are clipped to 0 before the weighted geometric mean
    ``Π cs_j^w_j · ssim_M^w_M``.

    Returns ``nan`` when the volume is too small for the coarsest scale (every axis needs at least
    ``2^(scales−1) · 7`` voxels) or the mask is empty there.
    """
    x, y, m = _prepare_ssim_inputs(pred_hu, ref_hu, mask)
    sigmas = _ssim_sigmas_vox(spacing_xyz_mm)
    m_float = m.astype(np.float64)
    values = []
    for scale in range(len(weights)):
        if min(x.shape) < 2 * SSIM_BORDER_CROP_VOX + 1:
            return float("nan")
        ssim, cs = ssim_map(x, y, DATA_RANGE_HU, sigmas)
        value = _cropped_masked_mean(ssim if scale == len(weights) - 1 else cs, m_float >= 0.5)
        if np.isnan(value):
            return float("nan")
        values.append(max(value, 0.0))
        if scale < len(weights) - 1:
            x, y, m_float = _downsample_mean_2x(x), _downsample_mean_2x(y), _downsample_mean_2x(m_float)
    return float(np.prod(np.power(values, np.asarray(weights, dtype=np.float64))))


def body_metrics(pred_hu: np.ndarray, ref_hu: np.ndarray, body_mask: np.ndarray) -> dict[str, float]:
    """The three SynthRAD image metrics over the body mask.

    Returns:
        ``{"body_mae_hu", "body_psnr_db", "body_ssim"}`` (see the module docstring).
    """
    return {
        "body_mae_hu": masked_mae_hu(pred_hu, ref_hu, body_mask),
        "body_psnr_db": masked_psnr_db(pred_hu, ref_hu, body_mask),
        "body_ssim": masked_ssim(pred_hu, ref_hu, body_mask),
    }


# ---------------------------------------------------------------------------------------------
# diameters
def max_diameter_per_slice_mm(mask_zyx: np.ndarray, spacing_xyz_mm: Sequence[float]) -> np.ndarray:
    """Maximum in-plane diameter of each axial slice's largest component, in mm.

    The diameter is the **maximum Feret (caliper) diameter**: the largest distance between two
    points of the cross-section's boundary, which is what a reader measures with calipers for the
    maximum aneurysm diameter (unlike the equal-area circle diameter, it does not under-report an
    eccentric or bilobed sac). The boundary is the 0.5 iso-contour of the binary mask (as marching
    squares draws it): the midpoints between each inside voxel centre and its outside 4-neighbours.
    Distances use the in-plane spacings, so anisotropic pixels are handled; the largest component
    is taken with 4-connectivity in the slice.

    Args:
        mask_zyx: ``[z, y, x]`` bool.
        spacing_xyz_mm: voxel size ``(x, y, z)`` in mm.

    Returns:
        ``(z,)`` float64 diameters in mm; ``nan`` where the slice is empty.
    """
    mask = np.asarray(mask_zyx, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask_zyx must be a [z, y, x] array, got shape {mask.shape}")
    sx, sy = float(spacing_xyz_mm[0]), float(spacing_xyz_mm[1])
    diameters = np.full(mask.shape[0], np.nan)
    if not mask.any():
        return diameters

    # Largest 4-connected component per slice: one labelling of the whole volume with an
    # in-plane structure, then per slice the label with the most voxels.
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labelled, count = ndimage.label(mask, structure=in_plane)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    objects = ndimage.find_objects(labelled)
    slice_of = np.array([obj[0].start for obj in objects])
    ids = np.arange(1, count + 1)
    # sort by slice, then by size descending: the first id per slice is its largest component
    order = np.lexsort((-sizes[1:], slice_of))
    first = np.r_[True, slice_of[order][1:] != slice_of[order][:-1]]
    keep = np.zeros(count + 1, dtype=bool)
    keep[ids[order][first]] = True
    largest = keep[labelled]

    # Boundary points: midpoints between inside voxels and outside 4-neighbours.
    padded = np.pad(largest, ((0, 0), (1, 1), (1, 1)))
    inside = padded[:, 1:-1, 1:-1]
    zs, ys, xs = [], [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[:, 1 + dy : padded.shape[1] - 1 + dy, 1 + dx : padded.shape[2] - 1 + dx]
        z, y, x = np.nonzero(inside & ~neighbour)
        zs.append(z)
        ys.append((y + 0.5 * dy) * sy)
        xs.append((x + 0.5 * dx) * sx)
    z_all = np.concatenate(zs)
    points = np.column_stack([np.concatenate(xs), np.concatenate(ys)])
    order = np.argsort(z_all, kind="stable")
    z_all, points = z_all[order], points[order]
    starts = np.flatnonzero(np.r_[True, z_all[1:] != z_all[:-1]])
    ends = np.r_[starts[1:], z_all.size]
    for start, end in zip(starts, ends):
        pts = points[start:end]
        if len(pts) > 32:  # the farthest pair lies on the convex hull
            pts = pts[ConvexHull(pts).vertices]
        diff = pts[:, None, :] - pts[None, :, :]
        diameters[z_all[start]] = float(np.sqrt((diff**2).sum(axis=-1).max()))
    return diameters


# ---------------------------------------------------------------------------------------------
# clinical ROI metrics
def _hu_error_summary(prefix: str, pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """MAE, bias (pred − ref) and both medians of one ROI's voxel values, HU."""
    diff = _as_float(pred) - _as_float(ref)
    return {
        f"{prefix}_mae_hu": _mean_or_nan(np.abs(diff)),
        f"{prefix}_bias_hu": _mean_or_nan(diff),
        f"{prefix}_median_hu_pred": float(np.median(pred)) if pred.size else float("nan"),
        f"{prefix}_median_hu_ref": float(np.median(ref)) if ref.size else float("nan"),
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A|+|B|)`` of two bool arrays; ``nan`` when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else float("nan")


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")


def roi_metrics(
    pred_hu: np.ndarray,
    ref_hu: np.ndarray,
    labels: np.ndarray,
    spacing_xyz_mm: Sequence[float],
    lumen_threshold_hu: float = LUMEN_THRESHOLD_HU,
    label_codes: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Clinical agreement of a synthetic CTA with the real CTA inside the aorta.

    Regions from ``labels`` (codes :data:`LABEL_CODES` unless ``label_codes`` is given):
    lumen; thrombus; the *aortic sac* = lumen ∪ thrombus (where the enhanced lumen may be);
    the *outer sac* = lumen ∪ thrombus ∪ calcification ∪ wall (the outer-wall cross-section).
    HU values are not clipped here (clinical HU).

    Args:
        pred_hu, ref_hu: ``[z, y, x]`` HU volumes (synthetic, real contrast) on one grid.
        labels: ``[z, y, x]`` integer label map on the same grid.
        spacing_xyz_mm: voxel size ``(x, y, z)`` in mm.
        lumen_threshold_hu: enhanced-lumen threshold (``HU >= threshold``).
        label_codes: mapping with keys ``"lumen"``, ``"thrombus"``, ``"calcification"``, ``"wall"``.

    Returns (HU, mm; ``nan`` where a region is missing, never an exception):
        ``lumen_mae_hu``, ``lumen_bias_hu`` (mean pred − ref), ``lumen_median_hu_pred``,
        ``lumen_median_hu_ref``, ``thrombus_mae_hu``, ``thrombus_bias_hu``,
        ``thrombus_median_hu_pred``, ``thrombus_median_hu_ref``;
        ``lumen_dice``: Dice of ``sac & pred >= thr`` with ``sac & ref >= thr`` (does the synthetic
        image put the enhanced lumen where the real one is, and not in the thrombus);
        ``max_diameter_mm_pred``, ``max_diameter_mm_ref``, ``max_diameter_error_mm`` (pred − ref):
        maximum over axial slices of the max Feret diameter of that enhanced lumen, i.e. the
        diameter of the flow channel each image shows;
        ``diameter_mae_mm``, ``diameter_bias_mm``, ``diameter_max_abs_error_mm``,
        ``diameter_slices``: per-slice enhanced-lumen diameter errors over the slices where either
        image shows a lumen (a lumen missing in one image counts as diameter 0 there);
        ``sac_max_diameter_mm``: max Feret diameter of the outer sac from the labels (the clinical
        AAA diameter, outer wall to outer wall; the same for both images, reported as context).

    Limitation: diameters are measured on axial slices, which over-estimate the true diameter
    (orthogonal to the centreline) where the aorta runs obliquely.
    """
    _check_same_shape(pred_hu, ref_hu, labels)
    codes = {**LABEL_CODES, **(label_codes or {})}
    labels = np.asarray(labels)
    pred = np.asarray(pred_hu)
    ref = np.asarray(ref_hu)
    lumen = labels == codes["lumen"]
    thrombus = labels == codes["thrombus"]
    sac = lumen | thrombus
    outer_sac = sac | (labels == codes["calcification"]) | (labels == codes["wall"])

    out: dict[str, float] = {}
    out.update(_hu_error_summary("lumen", pred[lumen], ref[lumen]))
    out.update(_hu_error_summary("thrombus", pred[thrombus], ref[thrombus]))

    enhanced_pred = sac & (pred >= lumen_threshold_hu)
    enhanced_ref = sac & (ref >= lumen_threshold_hu)
    out["lumen_dice"] = dice(enhanced_pred, enhanced_ref) if sac.any() else float("nan")

    d_pred = max_diameter_per_slice_mm(enhanced_pred, spacing_xyz_mm)
    d_ref = max_diameter_per_slice_mm(enhanced_ref, spacing_xyz_mm)
    out["max_diameter_mm_pred"] = _nanmax(d_pred)
    out["max_diameter_mm_ref"] = _nanmax(d_ref)
    out["max_diameter_error_mm"] = out["max_diameter_mm_pred"] - out["max_diameter_mm_ref"]
    either = np.isfinite(d_pred) | np.isfinite(d_ref)
    per_slice_error = np.nan_to_num(d_pred[either]) - np.nan_to_num(d_ref[either])
    out["diameter_mae_mm"] = _mean_or_nan(np.abs(per_slice_error))
    out["diameter_bias_mm"] = _mean_or_nan(per_slice_error)
    out["diameter_max_abs_error_mm"] = float(np.abs(per_slice_error).max()) if per_slice_error.size else float("nan")
    out["diameter_slices"] = int(either.sum())
    out["sac_max_diameter_mm"] = _nanmax(max_diameter_per_slice_mm(outer_sac, spacing_xyz_mm))
    return out
