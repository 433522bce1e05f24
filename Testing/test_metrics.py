"""Image and clinical metrics on arrays whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from DigitalContrastLib.ct.labels import LABEL_CODES
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.evaluation import metrics
from DigitalContrastLib.evaluation.metrics import (
    HU_RANGE,
    body_metrics,
    dice,
    masked_mae_hu,
    masked_ms_ssim,
    masked_psnr_db,
    masked_ssim,
    max_diameter_per_slice_mm,
    roi_metrics,
)

LUMEN, THROMBUS, CALCIFICATION, WALL = (LABEL_CODES[k] for k in ("lumen", "thrombus", "calcification", "wall"))


def _ct_like(shape=(24, 48, 48), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A small CT-like volume (air, soft-tissue ellipse, bone block, lung hole) and its body mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (0.4 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 <= 1
    ct = np.full(shape, -1000.0)
    ct[body] = 40.0
    ct[body & (np.abs(x - cx) < 4) & (y > cy + 5) & (y < cy + 12)] = 900.0  # spine
    ct[body & (((y - cy + 4) / 5) ** 2 + ((x - cx - 8) / 6) ** 2 <= 1)] = -850.0  # lung
    ct += rng.normal(0, 10, shape)
    return ct, body


def _coords_mm(shape_zyx, spacing_xyz_mm, centre_xy_mm):
    ny, nx = shape_zyx[1:]
    y = (np.arange(ny) * spacing_xyz_mm[1] - centre_xy_mm[1])[:, None]
    x = (np.arange(nx) * spacing_xyz_mm[0] - centre_xy_mm[0])[None, :]
    return y, x


# --------------------------------------------------------------------------------------- MAE
def test_constant_offset_gives_mae_equal_to_offset_and_bias_with_its_sign():
    ref, body = _ct_like()
    for offset in (25.0, -40.0):
        pred = ref + offset
        assert masked_mae_hu(pred, ref, body) == pytest.approx(abs(offset))
        labels = np.zeros(ref.shape, dtype=np.int16)
        labels[body] = LUMEN
        roi = roi_metrics(pred, ref, labels, (1.0, 1.0, 1.0))
        assert roi["lumen_mae_hu"] == pytest.approx(abs(offset))
        assert roi["lumen_bias_hu"] == pytest.approx(offset)  # pred − ref keeps its sign


def test_image_metrics_clip_to_the_fixed_hu_range():
    ref = np.full((4, 4, 4), 2000.0)
    pred = np.full((4, 4, 4), 5000.0)  # clipped to 3000
    mask = np.ones(ref.shape, dtype=bool)
    assert masked_mae_hu(pred, ref, mask) == pytest.approx(HU_RANGE[1] - 2000.0)
    assert masked_mae_hu(np.full((4, 4, 4), -3000.0), np.full((4, 4, 4), -1024.0), mask) == 0.0


def test_changes_outside_the_mask_do_not_change_any_figure():
    ref, body = _ct_like()
    rng = np.random.default_rng(1)
    pred = ref + rng.normal(0, 30, ref.shape)
    before = body_metrics(pred, ref, body)
    before_ms = masked_ms_ssim(*(np.pad(a, 48, mode="edge") for a in (pred, ref, body)))
    pred2 = pred.copy()
    pred2[~body] = rng.uniform(-1024, 3000, int((~body).sum()))  # garbage outside the body
    after = body_metrics(pred2, ref, body)
    after_ms = masked_ms_ssim(*(np.pad(a, 48, mode="edge") for a in (pred2, ref, body)))
    assert after == pytest.approx(before, rel=1e-12)
    assert after_ms == pytest.approx(before_ms, rel=1e-12)


def test_empty_mask_gives_nan_not_an_exception():
    ref, _ = _ct_like()
    empty = np.zeros(ref.shape, dtype=bool)
    result = body_metrics(ref + 1, ref, empty)
    assert all(math.isnan(v) for v in result.values())


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one \\[z, y, x\\] grid"):
        masked_mae_hu(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), np.ones((2, 3, 4), dtype=bool))


# --------------------------------------------------------------------------------------- PSNR
def test_psnr_follows_its_formula_for_a_known_mse():
    ref = np.zeros((6, 6, 6))
    pred = ref.copy()
    pred[::2] = 30.0
    pred[1::2] = -10.0  # squared errors 900 and 100 in equal numbers: MSE = 500
    mask = np.ones(ref.shape, dtype=bool)
    assert masked_psnr_db(pred, ref, mask) == pytest.approx(10 * math.log10(4024.0**2 / 500.0))
    assert masked_psnr_db(pred, ref, mask, data_range=1000.0) == pytest.approx(10 * math.log10(1000.0**2 / 500.0))
    assert masked_psnr_db(ref, ref, mask) == math.inf


# --------------------------------------------------------------------------------------- SSIM
def test_ssim_is_one_for_identical_images_and_falls_as_noise_grows():
    ref, body = _ct_like()
    assert masked_ssim(ref, ref, body) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(2)
    values = [masked_ssim(ref + rng.normal(0, sigma, ref.shape), ref, body) for sigma in (10, 50, 200)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_of_two_constant_images_equals_the_luminance_formula():
    # No variance: SSIM reduces to (2ab + C1) / (a² + b² + C1) on the shifted values.
    a_hu, b_hu = 40.0, 400.0
    pred = np.full((12, 12, 12), a_hu)
    ref = np.full((12, 12, 12), b_hu)
    mask = np.ones(ref.shape, dtype=bool)
    a, b = a_hu + 1024, b_hu + 1024
    c1 = (0.01 * 4024.0) ** 2
    assert masked_ssim(pred, ref, mask) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-10)


def test_ssim_map_matches_a_direct_gaussian_weighted_sum_at_an_interior_voxel():
    rng = np.random.default_rng(3)
    x = rng.normal(1000, 100, (15, 15, 15))
    y = x + rng.normal(0, 60, x.shape)
    ssim, cs = metrics.ssim_map(x, y, data_range=4024.0)
    offsets = np.arange(-5, 6)  # 11-voxel window: σ 1.5 truncated at 3.5 σ
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    w /= w.sum()
    px, py = x[2:13, 2:13, 2:13], y[2:13, 2:13, 2:13]  # window centred on voxel (7, 7, 7)
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
    cxy = (w * (px - mx) * (py - my)).sum()
    c1, c2 = (0.01 * 4024) ** 2, (0.03 * 4024) ** 2
    expected_cs = (2 * cxy + c2) / (vx + vy + c2)
    expected = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * expected_cs
    assert ssim[7, 7, 7] == pytest.approx(expected, rel=1e-9)
    assert cs[7, 7, 7] == pytest.approx(expected_cs, rel=1e-9)


def test_ssim_crops_a_three_voxel_border():
    ref = np.zeros((12, 12, 12))
    pred = ref.copy()
    pred[:3] = 500.0  # differences only within 3 voxels of a face ...
    mask = np.zeros(ref.shape, dtype=bool)
    mask[:3] = True  # ... and the mask only there: nothing is left to average
    assert math.isnan(masked_ssim(pred, ref, mask))


def test_ssim_physical_window_on_anisotropic_spacing():
    ref, body = _ct_like()
    noisy = ref + np.random.default_rng(4).normal(0, 50, ref.shape)
    same = masked_ssim(noisy, ref, body, spacing_xyz_mm=(2.0, 2.0, 2.0))
    assert same == pytest.approx(masked_ssim(noisy, ref, body))  # isotropic: σ 1.5 voxels either way
    thick = masked_ssim(noisy, ref, body, spacing_xyz_mm=(1.0, 1.0, 3.0))
    assert thick != pytest.approx(same) and 0 < thick < 1


def test_ms_ssim_is_one_for_identical_images_falls_with_noise_and_is_nan_when_too_small():
    ref, body = _ct_like(shape=(112, 112, 112))
    assert masked_ms_ssim(ref, ref, body) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(5)
    low = masked_ms_ssim(ref + rng.normal(0, 20, ref.shape), ref, body)
    high = masked_ms_ssim(ref + rng.normal(0, 200, ref.shape), ref, body)
    assert 1.0 > low > high > 0.0
    small, small_body = _ct_like()
    assert math.isnan(masked_ms_ssim(small, small, small_body))


# --------------------------------------------------------------------------------------- body mask
def test_body_mask_keeps_the_body_fills_the_lung_and_drops_the_table():
    ct, body = _ct_like()
    ct[:, -3:, :] = 300.0  # a table at the bottom rows, not touching the body
    mask = body_mask_from_ct(ct)
    assert np.array_equal(mask, body)  # lung filled, table dropped, nothing else
    dilated = body_mask_from_ct(ct, dilation_vox=2)
    assert dilated[body].all() and dilated.sum() > body.sum()
    assert not body_mask_from_ct(np.full((4, 5, 6), -1000.0)).any()


# --------------------------------------------------------------------------------------- Dice
def test_dice_of_two_overlapping_boxes_equals_the_analytic_value():
    a = np.zeros((10, 20, 20), dtype=bool)
    b = np.zeros_like(a)
    a[2:8, 0:10, 0:10] = True  # 600 voxels
    b[2:8, 5:15, 0:10] = True  # 600 voxels, overlap 6·5·10 = 300
    assert dice(a, b) == pytest.approx(2 * 300 / 1200)
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_lumen_dice_thresholds_inside_the_sac_only():
    shape = (6, 40, 40)
    labels = np.zeros(shape, dtype=np.int16)
    labels[:, 10:30, 10:30] = THROMBUS
    labels[:, 15:25, 15:25] = LUMEN  # 100 voxels per slice
    ref = np.full(shape, 40.0)
    ref[labels == LUMEN] = 350.0
    pred = ref.copy()
    pred[:, 15:25, 15:20] = 40.0  # half the lumen missed: 50 voxels per slice
    pred[:, 10:15, 10:20] = 300.0  # 50 voxels of thrombus called lumen
    pred[:, 0:5, 0:5] = 400.0  # enhancement outside the sac does not count
    roi = roi_metrics(pred, ref, labels, (1.0, 1.0, 1.0))
    # |A| = 50 + 50, |B| = 100, |A∩B| = 50 per slice
    assert roi["lumen_dice"] == pytest.approx(2 * 50 / 200)
    assert roi["thrombus_bias_hu"] == pytest.approx(50 * 260 / (400 - 100))
    assert roi["lumen_median_hu_ref"] == 350.0


# --------------------------------------------------------------------------------------- diameters
@pytest.mark.parametrize("radius_mm", [6.0, 11.3, 27.5])
def test_a_disc_on_anisotropic_pixels_measures_its_diameter_within_one_voxel(radius_mm):
    spacing = (0.7, 1.3, 2.5)
    shape = (3, 80, 140)
    y, x = _coords_mm(shape, spacing, (49.0, 52.3))
    disc = (x**2 + y**2) <= radius_mm**2
    mask = np.zeros(shape, dtype=bool)
    mask[1] = disc
    d = max_diameter_per_slice_mm(mask, spacing)
    assert math.isnan(d[0]) and math.isnan(d[2])
    assert abs(d[1] - 2 * radius_mm) <= max(spacing[:2])


def test_an_ellipse_measures_its_major_axis_at_any_orientation():
    spacing = (0.8, 0.8, 1.0)
    shape = (1, 120, 120)
    y, x = _coords_mm(shape, spacing, (48.0, 48.0))
    theta = np.deg2rad(30.0)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    mask = ((u / 35.0) ** 2 + (v / 15.0) ** 2 <= 1)[None]
    assert abs(max_diameter_per_slice_mm(mask, spacing)[0] - 70.0) <= 0.8


def test_diameter_uses_the_largest_component_of_each_slice():
    spacing = (1.0, 1.0, 1.0)
    mask = np.zeros((2, 60, 60), dtype=bool)
    mask[0, 5:15, 5:15] = True  # 10 × 10 voxels
    mask[0, 30:33, 30:58] = True  # 3 × 28 = 84 voxels, fewer than 100, although longer
    mask[1, 20, 10:30] = True  # a one-voxel-wide line of 20 voxels
    d = max_diameter_per_slice_mm(mask, spacing)
    # the 0.5 contour runs through edge midpoints and cuts the corners: (4.5, 5) to (14.5, 14)
    assert d[0] == pytest.approx(math.hypot(10, 9))
    assert d[1] == pytest.approx(20.0)


def test_roi_metrics_diameters_and_missing_thrombus():
    spacing = (0.8, 0.8, 3.0)
    shape = (5, 100, 100)
    y, x = _coords_mm(shape, spacing, (40.3, 39.9))  # centre between voxel centres
    r2 = x**2 + y**2
    labels = np.zeros(shape, dtype=np.int16)
    labels[:, r2 <= 22.0**2] = WALL
    labels[:, r2 <= 20.0**2] = LUMEN  # no thrombus at all
    ref = np.where(labels == LUMEN, 350.0, 40.0)
    pred = np.where(r2 <= 15.0**2, 350.0, 40.0) * np.ones(shape)  # synthetic lumen 10 mm too narrow
    pred[0] = 40.0  # ... and missed completely on slice 0
    roi = roi_metrics(pred, ref, labels, spacing)
    assert math.isnan(roi["thrombus_mae_hu"]) and math.isnan(roi["thrombus_bias_hu"])
    assert math.isnan(roi["thrombus_median_hu_pred"])
    assert abs(roi["max_diameter_mm_ref"] - 40.0) <= 0.8
    assert abs(roi["max_diameter_mm_pred"] - 30.0) <= 0.8
    assert abs(roi["max_diameter_error_mm"] + 10.0) <= 0.8
    assert abs(roi["sac_max_diameter_mm"] - 44.0) <= 0.8
    assert roi["diameter_slices"] == 5
    # four slices 10 mm short, one 40 mm short
    assert roi["diameter_bias_mm"] == pytest.approx(-(4 * 10 + 40) / 5, abs=0.8)
    assert roi["diameter_max_abs_error_mm"] == pytest.approx(40.0, abs=0.8)


def test_roi_metrics_without_any_aorta_gives_nan_everywhere():
    ref, _ = _ct_like()
    roi = roi_metrics(ref + 5, ref, np.zeros(ref.shape, dtype=np.int16), (1.0, 1.0, 1.0))
    assert roi["diameter_slices"] == 0
    assert all(math.isnan(v) for k, v in roi.items() if k != "diameter_slices")


def test_roi_metrics_accepts_other_label_codes():
    labels = np.zeros((3, 10, 10), dtype=np.int16)
    labels[:, 2:8, 2:8] = 1
    ref = np.where(labels == 1, 300.0, 0.0)
    roi = roi_metrics(ref - 20, ref, labels, (1, 1, 1), label_codes={"lumen": 1, "thrombus": 2})
    assert roi["lumen_bias_hu"] == pytest.approx(-20.0)
    assert roi["lumen_dice"] == 1.0


@pytest.mark.slow
def test_full_size_volume_takes_seconds():
    import time

    shape = (160, 256, 256)
    rng = np.random.default_rng(6)
    ref = rng.normal(40, 20, shape).astype(np.int16)
    pred = (ref + rng.normal(0, 20, shape)).astype(np.int16)
    body = np.ones(shape, dtype=bool)
    body[:, :20] = False
    labels = np.zeros(shape, dtype=np.int16)
    labels[:, 100:140, 100:140] = THROMBUS
    labels[:, 110:130, 110:130] = LUMEN
    start = time.perf_counter()
    body_metrics(pred, ref, body)
    roi_metrics(pred + 300 * (labels == LUMEN), ref + 300 * (labels == LUMEN), labels, (0.8, 0.8, 1.5))
    assert time.perf_counter() - start < 30.0  # a few seconds on one idle core
