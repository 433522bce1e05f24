"""Real anatomy: a real chest CTA whose aortic lumen is replaced by unenhanced blood, synthesized."""

from __future__ import annotations

import numpy as np
import pytest

from DigitalContrastLib.validation import LUMEN_RANGE_HU, pseudo_noncontrast, realdata_check

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_pseudo_noncontrast_replaces_only_the_lumen(real_data):
    from DigitalContrastLib.io import read_volume

    cta = read_volume(real_data / "cta_chest_arterial.nii.gz")
    mask = read_volume(real_data / "cta_chest_arterial_aorta_mask.nii.gz").array > 0
    pseudo = pseudo_noncontrast(cta.array, mask)
    assert 30 <= np.median(pseudo[mask]) <= 50
    np.testing.assert_array_equal(pseudo[~mask], cta.array[~mask])


@pytest.mark.xfail(strict=True, reason=(
    "measured miss of the shipped phantom-trained model: it enhances a real chest aorta only partly (synthetic lumen "
    "median 176 HU, target 250-450; recorded in its model card). strict: a model that passes must drop this mark"))
def test_synthetic_aortic_lumen_of_a_real_chest_cta(real_data):
    report = realdata_check(real_data / "cta_chest_arterial.nii.gz", real_data / "cta_chest_arterial_aorta_mask.nii.gz",
                            device="cpu")
    median = report["synthetic_lumen_median_hu"]
    assert report["pseudo_noncontrast_lumen_median_hu"] < 60 and np.isfinite(median)
    assert LUMEN_RANGE_HU[0] <= median <= LUMEN_RANGE_HU[1], report
