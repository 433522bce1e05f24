"""Site-like phantom pairs: separate acquisitions, the patient's motion, the scanner, DICOM series."""

from __future__ import annotations

import numpy as np
import pytest

from DigitalContrastLib.phantoms.scanner import SHIFTED_SCANNER, ScannerProfile
from DigitalContrastLib.phantoms.site_pairs import SMALL_PROTOCOL, make_site_pair, site_motion, target_registration_error_mm


def test_the_motion_between_the_scans_is_a_2_to_5_degree_turn_and_a_5_to_15_mm_table_shift():
    motions = [site_motion(seed, visit) for seed in range(40) for visit in (0, 1)]
    for m in motions:
        assert 2.0 <= abs(m.rotation_z_deg) <= 5.0 and abs(m.rotation_x_deg) <= 1.0 and abs(m.rotation_y_deg) <= 1.0
        assert 5.0 <= abs(m.translation_mm[2]) <= 15.0 and max(abs(v) for v in m.translation_mm[:2]) <= 3.0
    assert {np.sign(m.rotation_z_deg) for m in motions} == {-1.0, 1.0}
    assert {np.sign(m.translation_mm[2]) for m in motions} == {-1.0, 1.0}
    assert site_motion(3, 0) == site_motion(3, 0) and site_motion(3, 0) != site_motion(3, 1)


def test_the_contrast_scan_is_a_separate_acquisition_whose_landmarks_follow_the_motion():
    import SimpleITK as sitk

    from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

    pair = make_site_pair(30007, SMALL_PROTOCOL)
    nc, c = pair.noncontrast, pair.contrast
    assert nc.spacing_mm != c.spacing_mm and nc.size_xyz != c.size_xyz and nc.origin_mm[2] != c.origin_mm[2]
    motion = pair.truth["motion"]
    truth = RigidMisregistration(motion["rotation_z_deg"], motion["rotation_x_deg"], motion["rotation_y_deg"],
                                 tuple(motion["translation_mm"])).to_sitk(motion["center_lps_mm"])
    assert target_registration_error_mm(pair.truth, truth)["mean_mm"] < 1e-3
    assert target_registration_error_mm(pair.truth, sitk.Euler3DTransform())["mean_mm"] > 4.0
    # the anatomy really moved: the contrast scan resampled through the true motion lines up with the
    # non-contrast bone, and better than without it
    from DigitalContrastLib.evaluation.registration import resample_to

    bone = nc.array > 700
    moved, still = resample_to(c, nc, truth).array > 700, resample_to(c, nc, None).array > 700
    both = resample_to(c.with_array(np.ones(c.shape_zyx, np.uint8)), nc, truth, default_hu=0,
                       interpolator="nearest").array > 0

    def dice(a, b):
        return 2 * (a & b & both).sum() / ((a & both).sum() + (b & both).sum())

    assert dice(bone, moved) > dice(bone, still) + 0.05
    # no empty wedge at the edges: the moved anatomy was drawn beyond the field of view
    assert (c.array[[0, -1]] > -500).mean() > 0.2


def test_the_shifted_scanner_shows_in_the_images():
    plain = make_site_pair(30008, SMALL_PROTOCOL)
    site = make_site_pair(30008, SMALL_PROTOCOL, SHIFTED_SCANNER)
    labels = plain.labels.array
    from DigitalContrastLib.ct.labels import LABELS

    muscle = labels == LABELS["muscle"]
    assert np.median(site.noncontrast.array[muscle]) - np.median(plain.noncontrast.array[muscle]) == pytest.approx(25, abs=4)
    assert ScannerProfile() == ScannerProfile() and SHIFTED_SCANNER.iodine_gain == 1.25


def test_a_series_written_as_dicom_reads_back_voxel_for_voxel(tmp_path):
    from DigitalContrastLib.ct.io import read_volume
    from DigitalContrastLib.phantoms.dicom_series import write_ct_series

    pair = make_site_pair(30009, SMALL_PROTOCOL)
    files = write_ct_series(pair.contrast, tmp_path / "cta", {"PatientID": "X1", "ContrastBolusAgent": "IOHEXOL",
                                                              "KVP": "100", "ConvolutionKernel": "B70"})
    assert len(files) == pair.contrast.shape_zyx[0]
    back = read_volume(tmp_path / "cta")
    np.testing.assert_array_equal(back.array, pair.contrast.array)
    assert back.same_geometry(pair.contrast)
    meta = back.metadata["dicom"]
    assert meta["contrast_agent_given"] and meta["KVP"] == 100.0 and meta["ConvolutionKernel"] == "B70"
    with pytest.raises(ValueError):
        write_ct_series(pair.contrast, tmp_path / "bad", {"PatientsName": "typo"})
    assert not (tmp_path / "bad").exists()
