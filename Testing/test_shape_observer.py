"""The shape observer: the disk fit finds a known lumen; the placement bias scores where a lumen is put."""

import numpy as np
import pytest

from DigitalContrastLib.evaluation.shape_observer import (
    disk_lumen_mask,
    fit_lumen_disks,
    placement_thrombus_bias_hu,
    rendered_lumen_prediction,
)

SHAPE_ZYX = (6, 96, 96)
SAC_CENTRE, SAC_RADIUS = (48.0, 48.0), 22.0
#: per slice: lumen radius and centre (y, x), eccentric inside the sac as in the phantoms
LUMENS = [(9.0, 52.0, 43.0), (10.0, 53.0, 44.0), (11.5, 54.0, 45.0), (12.0, 54.0, 46.0), (10.5, 53.0, 47.0), (8.0, 52.0, 47.5)]
BLOOD_HU, THROMBUS_HU = 42.0, 33.0  # 9 HU apart, as in the phantoms (6-12)


def _disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SHAPE_ZYX[1], :SHAPE_ZYX[2]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _case(noise_sd_hu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(noncontrast HU, lumen, thrombus): a round sac holding an eccentric round lumen on every slice."""
    sac = np.broadcast_to(_disk(*SAC_CENTRE, SAC_RADIUS), SHAPE_ZYX)
    lumen = np.stack([_disk(cy, cx, r) for r, cy, cx in LUMENS])
    thrombus = sac & ~lumen
    nc = np.where(lumen, BLOOD_HU, np.where(thrombus, THROMBUS_HU, -100.0))
    nc = nc + np.random.default_rng(3).normal(0.0, noise_sd_hu, SHAPE_ZYX)
    return nc, lumen, thrombus


@pytest.mark.parametrize("noise_sd_hu", [0.0, 4.0])
def test_the_disk_fit_finds_the_lumen_on_every_slice(noise_sd_hu):
    nc, lumen, thrombus = _case(noise_sd_hu)
    fits = fit_lumen_disks(nc, lumen, thrombus)
    assert sorted(fits) == list(range(SHAPE_ZYX[0]))
    for z, (r, cy, cx) in enumerate(LUMENS):
        fr, fy, fx = fits[z]
        assert abs(fr - r) <= 1.0 and abs(fy - cy) <= 1.0 and abs(fx - cx) <= 1.0, (z, fits[z], LUMENS[z])
    drawn = disk_lumen_mask(fits, lumen, thrombus)
    overlap = 2 * (drawn & lumen).sum() / (drawn.sum() + lumen.sum())
    assert overlap > 0.93


def test_the_blur_of_a_calcified_plaque_in_the_thrombus_does_not_pull_the_robust_fit():
    nc, lumen, thrombus = _case(0.0)
    # a bright spot 4 voxels beyond the lumen's edge, in the thrombus (in the phantoms the thrombus within
    # 2 voxels of a calcified plaque has a median of about 128 HU against about 30 elsewhere)
    for z, (r, cy, cx) in enumerate(LUMENS):
        nc[z][_disk(cy - r - 4.0, cx, 2.0) & thrombus[z]] = 400.0
    robust = fit_lumen_disks(nc, lumen, thrombus)
    plain = fit_lumen_disks(nc, lumen, thrombus, evidence_clip_hu=None)
    for z, (r, cy, cx) in enumerate(LUMENS):
        fr, fy, fx = robust[z]
        assert abs(fr - r) <= 1.0 and abs(fy - cy) <= 1.0 and abs(fx - cx) <= 1.0, (z, robust[z], LUMENS[z])
    # the plain maximum-likelihood sum swallows the spot: its disks reach into the thrombus
    assert placement_thrombus_bias_hu(disk_lumen_mask(plain, lumen, thrombus), lumen, thrombus, 350.0, 45.0, 0.0) > \
        placement_thrombus_bias_hu(disk_lumen_mask(robust, lumen, thrombus), lumen, thrombus, 350.0, 45.0, 0.0) + 5.0


def test_without_thrombus_the_observer_is_the_label_oracle():
    nc, lumen, thrombus = _case(0.0)
    sac = lumen | thrombus
    assert fit_lumen_disks(nc, sac, np.zeros_like(sac)) == {}
    assert np.array_equal(disk_lumen_mask({}, sac, np.zeros_like(sac)), sac)


def test_placement_bias_is_zero_for_the_true_lumen_and_positive_when_it_reaches_into_thrombus():
    nc, lumen, thrombus = _case(0.0)
    contrast = np.where(lumen, 350.0, nc)
    args = (thrombus, 350.0, 45.0, 0.7)
    assert placement_thrombus_bias_hu(lumen, lumen, *args) == pytest.approx(0.0, abs=1e-4)
    assert np.array_equal(rendered_lumen_prediction(lumen, lumen, contrast, 350.0, 45.0, 0.7), contrast.astype(np.float32))
    fits = {z: (r, cy, cx) for z, (r, cy, cx) in enumerate(LUMENS)}
    wider = disk_lumen_mask({z: (r + 2.0, cy, cx) for z, (r, cy, cx) in fits.items()}, lumen, thrombus)
    narrower = disk_lumen_mask(fits, lumen, thrombus, shrink_voxels=2.0)
    lit = (wider & thrombus).sum() / thrombus.sum()
    # lumen drawn 2 voxels wider: without blur exactly (350 - 45) x the share of thrombus it covers;
    # the blur spreads part of that rim into the lumen and the tissue around
    sharp = placement_thrombus_bias_hu(wider, lumen, thrombus, 350.0, 45.0, 0.0)
    assert sharp == pytest.approx(305.0 * lit, rel=1e-5)
    assert 0.5 * sharp < placement_thrombus_bias_hu(wider, lumen, *args) < sharp
    assert placement_thrombus_bias_hu(narrower, lumen, *args) < 0.0
    assert np.isnan(placement_thrombus_bias_hu(lumen, lumen, np.zeros_like(thrombus), 350.0, 45.0, 0.7))
