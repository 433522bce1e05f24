"""Real anatomy: a real chest CTA whose aortic lumen is replaced by unenhanced blood, synthesized."""

from __future__ import annotations

import numpy as np
import pytest

from DigitalContrastLib.training.validation import (
    LUMEN_RANGE_HU,
    lumen_medians_by_level,
    pseudo_noncontrast,
    realdata_check,
)

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_pseudo_noncontrast_replaces_only_the_lumen(real_data):
    from DigitalContrastLib.ct.io import read_volume

    cta = read_volume(real_data / "cta_chest_arterial.nii.gz")
    mask = read_volume(real_data / "cta_chest_arterial_aorta_mask.nii.gz").array > 0
    pseudo = pseudo_noncontrast(cta.array, mask)
    assert 30 <= np.median(pseudo[mask]) <= 50
    np.testing.assert_array_equal(pseudo[~mask], cta.array[~mask])


def test_real_scan_is_least_enhanced_in_the_inferior_third_of_its_aorta(real_data):
    # what the real-anatomy figure is judged against: the shared CTA (early arterial phase) has its
    # contrast layered in the lower descending aorta, so the real lumen median there is far below
    # the whole mask's (about 355 HU) and below the 250 HU the synthetic median is held to overall
    from DigitalContrastLib.ct.io import read_volume

    cta = read_volume(real_data / "cta_chest_arterial.nii.gz")
    mask = read_volume(real_data / "cta_chest_arterial_aorta_mask.nii.gz").array > 0
    levels = lumen_medians_by_level(cta, mask, {"real": cta.array})
    assert [lv["level"] for lv in levels] == ["inferior", "middle", "superior"]
    assert sum(lv["voxels"] for lv in levels) == mask.sum()
    inferior, middle, superior = (lv["real_median_hu"] for lv in levels)
    assert inferior < LUMEN_RANGE_HU[0] < middle and superior > 400, levels


def test_synthetic_aortic_lumen_of_a_real_chest_cta(real_data):
    # aorta-phantom-v1 1.8.0 is the first shipped model that passes (251 HU in bf16, 250 HU in fp32,
    # recorded in its model card; 1.7.0 gave 228): a pass by one or two HU, not a comfortable one
    report = realdata_check(real_data / "cta_chest_arterial.nii.gz", real_data / "cta_chest_arterial_aorta_mask.nii.gz",
                            device="cpu")
    median = report["synthetic_lumen_median_hu"]
    assert report["pseudo_noncontrast_lumen_median_hu"] < 60 and np.isfinite(median)
    assert LUMEN_RANGE_HU[0] <= median <= LUMEN_RANGE_HU[1], report
