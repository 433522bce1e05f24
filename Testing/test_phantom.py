"""Paired CT phantoms: HU per label, noise, determinism, thrombus, geometry on disk, CLI.

Most checks run on a coarse grid (128 x 128 x 64 voxels at 2.8 x 2.8 x 5 mm, the whole body)
for 20 seeds. HU are measured in the *interior* of each label: voxels at least 2.5 blur sigmas
from any other label, where partial volume cannot reach (the blur is part of the image, so a
thin structure's voxels are truly mixed). Labels thinner than that at the coarse spacing
(kidney medulla, discs, veins, cortical bone) are measured on one full-resolution phantom; the
aortic wall, calcified plaques and branch arteries are thinner than that even at 1.4 mm, so their
noise-free levels are checked in the recorded tables for every seed (and the branch arteries'
enhancement in the image).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from DigitalContrastLib.common.errors import EXIT_BAD_JOB, JobError
from DigitalContrastLib.ct import labels as labels_module
from DigitalContrastLib.ct.labels import LABEL_COLORS, LABELS
from DigitalContrastLib.phantoms import generator as ph
from DigitalContrastLib.phantoms.aorta.layout import ANEURYSM_PROBABILITY
from DigitalContrastLib.phantoms.generator import (
    make_phantom,
    read_phantom,
    write_phantom,
)
from DigitalContrastLib.phantoms.hu_tables import HU_RANGES
from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

COARSE_SIZE = (128, 128, 64)
COARSE_SPACING = (2.8, 2.8, 5.0)
SEEDS = range(20)
MIN_VOXELS = 20


@pytest.fixture(scope="module")
def coarse_cases():
    return [make_phantom(seed, size_xyz=COARSE_SIZE, spacing_xyz_mm=COARSE_SPACING) for seed in SEEDS]


def interior(case, sigmas: float = 2.5) -> np.ndarray:
    """Voxels at least ``sigmas`` blur sigmas (and 1 voxel) away from any other label."""
    labels = case.labels.array
    edge = np.zeros(labels.shape, bool)
    for axis in range(3):
        differs = np.diff(labels, axis=axis) != 0
        lead = [slice(None)] * 3
        lead[axis] = slice(1, None)
        trail = [slice(None)] * 3
        trail[axis] = slice(None, -1)
        edge[tuple(lead)] |= differs
        edge[tuple(trail)] |= differs
    distance = ndimage.distance_transform_edt(~edge)  # voxels; the blur sigma is isotropic in voxels
    return distance >= max(1.0, sigmas * case.params["blur"]["sigma_voxels"])


def label_region(case, name: str, inside: np.ndarray) -> np.ndarray:
    region = (case.labels.array == LABELS[name]) & inside
    if name == "vena_cava":  # its documented contrast range is the unenhanced part below the renal veins
        z_mm = case.labels.origin_mm[2] + np.arange(region.shape[0]) * case.labels.spacing_mm[2]
        region &= (z_mm < case.params["vena_cava"]["renal_veins_z_mm"] - 10)[:, None, None]
    return region


def check_medians(case) -> set[str]:
    """Assert each measurable label's median HU (both scans) is in its documented range; return them."""
    inside = interior(case)
    measured = set()
    for name in LABELS:
        region = label_region(case, name, inside)
        n = int(region.sum())
        if n < MIN_VOXELS:
            continue
        measured.add(name)
        for phase, volume, k in (("noncontrast", case.noncontrast, 0), ("contrast", case.contrast, 1)):
            median = float(np.median(volume.array[region]))
            lo, hi = HU_RANGES[name][k]
            sigma = case.params["noise"][phase]["sigma_sampled_hu"]
            tolerance = max(5.0, 4 * sigma / math.sqrt(n))  # the median's own sampling error, generously
            assert lo - tolerance <= median <= hi + tolerance, (
                f"seed {case.params['seed']}: {name} {phase} median {median} HU outside {lo}..{hi} (n={n})"
            )
    return measured


def test_label_medians_inside_documented_ranges(coarse_cases):
    counts: dict[str, int] = {}
    for case in coarse_cases:
        measured = check_medians(case)
        assert {"outside", "fat", "muscle", "liver", "bowel"} <= measured, measured
        for name in measured:
            counts[name] = counts.get(name, 0) + 1
    # the thick structures must really have been measured, not skipped
    for name in ("aortic_lumen", "thrombus", "vena_cava", "bone_marrow", "kidney_cortex", "spleen",
                 "pancreas", "fluid", "soft_tissue"):
        assert counts.get(name, 0) >= 1, f"{name} never had interior voxels at the coarse spacing: {counts}"
    assert counts["aortic_lumen"] >= 10 and counts["bone_marrow"] >= 15, counts


@pytest.mark.slow
def test_thin_label_medians_at_full_resolution():
    # seed 1 draws the least blur (0.5 voxel), so the thin labels keep interior voxels at 1.4 mm;
    # the aortic wall (1.5-2.5 mm), calcified plaques and branch arteries never do: their levels
    # are checked in the table (test_noise_free_levels_...)
    case = make_phantom(1, size_xyz=(256, 256, 96), spacing_xyz_mm=(1.4, 1.4, 2.5))
    assert case.params["blur"]["sigma_voxels"] < 0.55
    measured = check_medians(case)
    assert {"kidney_medulla", "kidney_cortex", "vein", "disc", "aortic_lumen", "thrombus"} <= measured, measured
    # branch arteries (2.6-3.4 mm radius) keep no voxel free of partial volume, but they enhance
    # like the lumen: their brightest voxels reach aortic levels in the contrast scan only
    branch = case.labels.array == LABELS["branch_artery"]
    assert np.percentile(case.contrast.array[branch], 90) > 200
    assert np.percentile(case.noncontrast.array[branch], 90) < 100


def test_noise_free_levels_inside_documented_ranges_for_every_label(coarse_cases):
    for case in coarse_cases:
        p = case.params
        for name, (nc_range, c_range) in HU_RANGES.items():
            assert nc_range[0] <= p["hu_noncontrast"][name] <= nc_range[1], (name, p["hu_noncontrast"][name])
            assert c_range[0] <= p["hu_contrast"][name] <= c_range[1], (name, p["hu_contrast"][name])
        extras = p["hu_extras"]
        assert 6 <= p["hu_noncontrast"]["aortic_lumen"] - p["hu_noncontrast"]["thrombus"] <= 12
        assert extras["thrombus_below_blood_hu"] == pytest.approx(
            p["hu_noncontrast"]["aortic_lumen"] - p["hu_noncontrast"]["thrombus"], abs=1e-5)
        # the craniocaudal lumen gradient keeps every level of the lumen inside 250..450 HU
        mid, g = extras["lumen_contrast_mid_hu"], extras["lumen_gradient_fraction"]
        assert 0 <= g <= 0.15 and 250 <= mid * (1 - g / 2) and mid * (1 + g / 2) <= 450


def test_lumen_gradient_is_mild_and_recorded(coarse_cases):
    for case in coarse_cases[:5]:
        inside = interior(case, sigmas=2.0)
        region = label_region(case, "aortic_lumen", inside)
        per_slice = [np.median(case.contrast.array[k][region[k]]) for k in range(region.shape[0]) if region[k].sum() >= 3]
        if len(per_slice) < 4:
            continue
        extras = case.params["hu_extras"]
        spread = (max(per_slice) - min(per_slice)) / extras["lumen_contrast_mid_hu"]
        assert spread < extras["lumen_gradient_fraction"] + 0.2  # gradient plus noise of a few voxels


def test_noise_sigma_measured_in_homogeneous_liver_within_20_percent(coarse_cases):
    for case in coarse_cases:
        region = label_region(case, "liver", interior(case, sigmas=3.0))
        assert region.sum() >= 200
        for phase, volume in (("noncontrast", case.noncontrast), ("contrast", case.contrast)):
            noise = case.params["noise"][phase]
            assert 8 <= noise["sigma_sampled_hu"] <= 25
            assert noise["sigma_realised_hu"] == pytest.approx(noise["sigma_sampled_hu"], rel=1e-3)
            measured = float(np.std(volume.array[region].astype(np.float64)))
            assert measured == pytest.approx(noise["sigma_sampled_hu"], rel=0.2), (case.params["seed"], phase)


def test_noise_power_spectrum_peaks_near_the_sampled_frequency():
    rng = np.random.default_rng(0)
    for peak in (0.2, 0.3):
        noise, info = ph._correlated_noise(rng, (8, 256, 256), (1.0, 1.0, 2.5), 15.0, peak, 0.6)
        assert float(noise.std()) == pytest.approx(15.0, rel=1e-3)
        power = np.mean(np.abs(np.fft.fft2(noise, axes=(1, 2))) ** 2, axis=0)
        fy, fx = np.meshgrid(np.fft.fftfreq(256, 1.0), np.fft.fftfreq(256, 1.0), indexing="ij")
        radius = np.hypot(fx, fy)
        bins = np.arange(0.0, 0.5, 0.02)
        radial = [power[(radius >= a) & (radius < a + 0.02)].mean() for a in bins]
        measured_peak = bins[int(np.argmax(radial))] + 0.01
        assert abs(measured_peak - peak) <= 0.04, (peak, measured_peak)
        assert info["nps_peak_per_mm"] == peak


def test_noise_is_independent_between_the_two_scans(coarse_cases):
    case = coarse_cases[0]
    region = label_region(case, "liver", interior(case, sigmas=3.0))
    a = case.noncontrast.array[region].astype(float)
    b = case.contrast.array[region].astype(float)
    assert abs(np.corrcoef(a - a.mean(), b - b.mean())[0, 1]) < 0.15


def test_same_seed_same_arrays_different_seed_differs():
    a = make_phantom(5, size_xyz=(64, 64, 32), spacing_xyz_mm=(5.6, 5.6, 10.0))
    b = make_phantom(5, size_xyz=(64, 64, 32), spacing_xyz_mm=(5.6, 5.6, 10.0))
    c = make_phantom(6, size_xyz=(64, 64, 32), spacing_xyz_mm=(5.6, 5.6, 10.0))
    for key in ("noncontrast", "contrast", "labels"):
        assert np.array_equal(getattr(a, key).array, getattr(b, key).array)
        assert not np.array_equal(getattr(a, key).array, getattr(c, key).array)
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)


def test_anatomy_is_defined_in_millimetres_not_voxels():
    # odd sizes put every coarse voxel centre exactly on a fine one: the label maps must agree there
    fine = make_phantom(4, size_xyz=(129, 129, 65), spacing_xyz_mm=(2.8, 2.8, 5.0))
    coarse = make_phantom(4, size_xyz=(65, 65, 33), spacing_xyz_mm=(5.6, 5.6, 10.0))
    assert np.allclose(coarse.labels.origin_mm, fine.labels.origin_mm)
    assert np.array_equal(coarse.labels.array, fine.labels.array[::2, ::2, ::2])
    for key in ("aneurysm", "levels_z_mm", "hu_noncontrast", "hu_contrast", "kidneys", "calcified_plaques"):
        assert coarse.params[key] == fine.params[key]


CHEST_LABELS = ("myocardium", "heart_left", "heart_right", "pulmonary_artery")


def test_chest_field_of_view_shows_heart_lungs_and_the_thoracic_aorta():
    # 3.5 mm pixels, 5 mm slices, centred on the chest: kidneys to the aortic arch
    for seed in (2, 11):
        case = make_phantom(seed, size_xyz=(100, 100, 80), spacing_xyz_mm=(3.5, 3.5, 5.0),
                            center_z_mm=ph.CHEST_CENTER_Z_MM)
        labels, nc, c = case.labels.array, case.noncontrast.array, case.contrast.array
        chest = case.params["chest"]
        z = case.labels.origin_mm[2] + 5.0 * np.arange(labels.shape[0])
        for name in CHEST_LABELS:
            assert (labels == LABELS[name]).sum() > 50, (seed, name)
        # the blood pools look like unenhanced blood without contrast and enhance with it
        for name in ("heart_left", "heart_right"):
            pool = ndimage.binary_erosion(labels == LABELS[name], iterations=1)
            assert 0 < np.median(nc[pool]) < 80 and np.median(c[pool]) > 120, (seed, name)
        # between the aortic root and the arch, one axial slice cuts the aorta twice: the
        # ascending aorta in front and the descending aorta beside the spine, on the left
        lumen = labels == LABELS["aortic_lumen"]
        level = int(np.argmin(np.abs(z - (chest["z_arch_mm"] - 25))))
        parts, n = ndimage.label(lumen[level])
        assert n >= 2, (seed, n)
        centres = ndimage.center_of_mass(lumen[level], parts, range(1, n + 1))
        big = sorted(centres, key=lambda yx: yx[0])  # rows: y grows posteriorly
        x_of = lambda col: case.labels.origin_mm[0] + 3.5 * col  # noqa: E731
        ascending, descending = big[0], big[-1]
        assert descending[0] - ascending[0] > 40 / 3.5, (seed, centres)
        assert x_of(descending[1]) > 5, (seed, centres)  # patient's left of the midline
        assert np.median(c[level][parts == parts[tuple(np.round(descending).astype(int))]]) > 200
        # lungs fill much of the chest
        assert (labels[level] == LABELS["lung"]).sum() > 0.2 * (labels[level] > 0).sum()


AORTA_PARTS = ("aortic_lumen", "aortic_wall", "thrombus", "calcification")


def _periaortic_shell(case, lo_mm: float, hi_mm: float) -> np.ndarray:
    """Labels in-plane ``lo_mm``...``hi_mm`` outside the thoracic aorta (10 mm clear of the dome and arch)."""
    labels = case.labels.array
    z = case.labels.origin_mm[2] + case.labels.spacing_mm[2] * np.arange(labels.shape[0])
    chest = case.params["chest"]
    thoracic = (z > chest["z_chest_mm"] + 10) & (z < chest["z_arch_mm"] - 10)
    aorta = np.isin(labels, [LABELS[n] for n in AORTA_PARTS]) & thoracic[:, None, None]
    distance = np.full(labels.shape, np.inf, np.float32)
    for k in np.nonzero(aorta.any(axis=(1, 2)))[0]:
        distance[k] = ndimage.distance_transform_edt(~aorta[k], sampling=case.labels.spacing_mm[:2])
    return labels[(distance > lo_mm) & (distance < hi_mm)]


def test_thoracic_aorta_lies_against_lung_and_soft_tissue_not_in_fat(monkeypatch):
    # a real chest (the shared CTA: 7-8 % fat 4.5-7.5 mm round its aorta) has little fat beside the
    # descending aorta; generator 1.3.0 drew it inside the mediastinal fat block (32-47 % fat here)
    import DigitalContrastLib.phantoms.aorta.build as aorta_build

    grid = dict(size_xyz=(180, 180, 80), spacing_xyz_mm=(2.0, 2.0, 4.0), center_z_mm=ph.CHEST_CENTER_Z_MM)
    painter = aorta_build.paint_periaortic
    fat_now, fat_before = [], []
    for seed in range(4):
        case = make_phantom(seed, **grid)
        monkeypatch.setattr(aorta_build, "paint_periaortic", lambda *args: None)
        before = make_phantom(seed, **grid)
        monkeypatch.setattr(aorta_build, "paint_periaortic", painter)
        p = case.params["chest"]["periaortic"]
        assert 0 <= p["sleeve_mm"] <= 8 and 0.5 <= p["lung_gap_mm"] <= 3, p
        # only fat and soft tissue changed, into soft tissue or lung, and only above the right dome
        changed = case.labels.array != before.labels.array
        assert changed.any(), seed
        pairs = set(zip(before.labels.array[changed].tolist(), case.labels.array[changed].tolist()))
        assert pairs <= {(LABELS["fat"], LABELS["soft_tissue"]), (LABELS["fat"], LABELS["lung"]),
                         (LABELS["soft_tissue"], LABELS["lung"])}, pairs
        z = case.labels.origin_mm[2] + 4.0 * np.arange(changed.shape[0])
        assert z[changed.any(axis=(1, 2))].min() > case.params["chest"]["z_chest_mm"]
        fat_now.append(np.mean(_periaortic_shell(case, 2, 7) == LABELS["fat"]))
        fat_before.append(np.mean(_periaortic_shell(before, 2, 7) == LABELS["fat"]))
        if p["lung_contact"]:  # the lung now reaches the aorta's surroundings
            assert np.mean(_periaortic_shell(case, 2, 7) == LABELS["lung"]) > np.mean(
                _periaortic_shell(before, 2, 7) == LABELS["lung"]), seed
    assert min(fat_before) > 0.3 and max(fat_now) < 0.2 and np.mean(fat_now) < 0.1, (fat_now, fat_before)


def test_chest_draws_nothing_below_the_right_dome(coarse_cases):
    # the chest has its own random stream and starts above the right diaphragmatic dome, so the
    # abdominal field of view (centred on z = 0) holds none of its labels
    for case in coarse_cases:
        assert not np.isin(case.labels.array, [LABELS[n] for n in CHEST_LABELS]).any(), case.params["seed"]
        assert case.params["chest"]["z_chest_mm"] == case.params["levels_z_mm"]["diaphragm_dome_right"]
        assert case.params["center_z_mm"] == 0.0


@pytest.mark.slow
def test_thrombus_does_not_enhance_and_hides_in_the_non_contrast_scan():
    # 1.4 mm pixels over the aneurysm's levels, so both medians rest on hundreds of voxels: with
    # noise sigma up to 25 HU, a few dozen voxels could not resolve a 15 HU criterion
    tested = 0
    for seed in range(12):
        case = make_phantom(seed, size_xyz=(256, 256, 48), spacing_xyz_mm=(1.4, 1.4, 2.5))
        inside = interior(case)
        thrombus = label_region(case, "thrombus", inside)
        lumen = label_region(case, "aortic_lumen", inside)
        if thrombus.sum() < 300 or lumen.sum() < 300:
            continue
        tested += 1
        nc, c = case.noncontrast.array, case.contrast.array
        assert np.median(c[thrombus]) - np.median(nc[thrombus]) < 60
        assert np.median(c[lumen]) - np.median(nc[lumen]) > 200
        assert abs(np.median(nc[lumen]) - np.median(nc[thrombus])) < 15
        if tested == 4:
            break
    assert tested == 4


def test_aneurysm_sampled_per_seed_and_recorded(coarse_cases):
    present = [c.params["aneurysm"]["present"] for c in coarse_cases]
    assert all(c.params["aneurysm"]["probability"] == ANEURYSM_PROBABILITY == 0.7 for c in coarse_cases)
    assert 8 <= sum(present) <= 19  # 20 draws at p = 0.7
    for case in coarse_cases:
        an = case.params["aneurysm"]
        widest = max(case.params["aorta_per_slice"]["outer_diameter_mm"])
        if an["present"]:
            assert 35 <= an["max_diameter_mm"] <= 80
            assert widest == pytest.approx(an["max_diameter_mm"], abs=3.0)  # 5 mm slices sample the peak
            assert np.count_nonzero(case.labels.array == LABELS["thrombus"]) > 0
        else:
            assert widest < 30 and np.count_nonzero(case.labels.array == LABELS["thrombus"]) == 0


def test_everything_inside_the_body_has_a_label(coarse_cases):
    for case in coarse_cases[:5]:
        labels = case.labels.array
        body = labels > 0
        for k in range(labels.shape[0]):
            filled = ndimage.binary_fill_holes(body[k])
            assert np.array_equal(filled, body[k]), f"unlabelled hole inside the body in slice {k}"
        outside = labels == 0
        assert np.median(case.noncontrast.array[outside]) < -950


def test_label_codes_fixed_unique_and_documented():
    assert len(set(LABELS.values())) == len(LABELS)
    assert {"outside": 0, "aortic_lumen": 10, "thrombus": 11, "calcification": 12, "aortic_wall": 13}.items() <= LABELS.items()
    doc = labels_module.__doc__
    for name, code in LABELS.items():
        assert f"{code:<6d}{name}" in doc, f"label {code} {name} missing from the module docstring"
    assert set(HU_RANGES) == set(LABELS)
    assert set(LABEL_COLORS) == set(LABELS.values())


def test_default_grid_is_identity_lps_centred_on_the_body():
    for seed in range(4):
        case = make_phantom(seed, size_xyz=(128, 128, 8), spacing_xyz_mm=(2.8, 2.8, 50.0))
        vol = case.labels
        assert vol.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        assert np.allclose(vol.origin_mm, case.params["origin_lps_mm"], atol=1e-5)
        body = vol.array > 0
        # the whole body inside a 358 mm field of view, with margins balanced to a few voxels
        for axis in (1, 2):
            present = np.nonzero(body.any(axis=tuple(a for a in (0, 1, 2) if a != axis)))[0]
            before, after = present[0], body.shape[axis] - 1 - present[-1]
            assert before > 0 and after > 0 and abs(before - after) <= 3, (seed, axis, before, after)
        centre = vol.index_to_lps(np.array([(s - 1) / 2 for s in vol.size_xyz]))
        assert abs(centre[0]) < 1e-6 and abs(centre[2]) < 1e-6


def test_write_read_round_trip_is_exact(tmp_path, coarse_cases):
    case = coarse_cases[3]
    paths = write_phantom(case, tmp_path / "case")
    assert {p.name for p in paths.values()} == {"noncontrast.nrrd", "contrast.nrrd", "labels.nrrd", "phantom.json"}
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == sorted(p.name for p in paths.values())
    back = read_phantom(tmp_path / "case")
    for key in ("noncontrast", "contrast", "labels"):
        a, b = getattr(case, key), getattr(back, key)
        assert b.array.dtype == np.int16
        assert np.array_equal(a.array, b.array)
        assert a.spacing_mm == b.spacing_mm and a.origin_mm == b.origin_mm and a.direction == b.direction
    assert back.params == json.loads(json.dumps(case.params))
    assert back.params["seed"] == 3 and back.params["generator_version"] == ph.GENERATOR_VERSION
    assert back.params["labels"] == LABELS


def test_write_phantom_into_an_unwritable_place_is_a_one_sentence_output_error(tmp_path, coarse_cases):
    from DigitalContrastLib.common.errors import EXIT_OUTPUT, OutputError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as info:
        write_phantom(coarse_cases[0], blocker / "case")
    assert str(blocker) in str(info.value) and info.value.exit_code == EXIT_OUTPUT


def test_rewriting_a_folder_replaces_the_whole_set(tmp_path, coarse_cases):
    write_phantom(coarse_cases[0], tmp_path)
    write_phantom(coarse_cases[1], tmp_path)
    back = read_phantom(tmp_path)
    assert back.params["seed"] == 1 and np.array_equal(back.labels.array, coarse_cases[1].labels.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contrast.nrrd", "labels.nrrd", "noncontrast.nrrd", "phantom.json"]


def test_read_phantom_names_the_missing_file(tmp_path):
    from DigitalContrastLib.common.errors import InputError

    with pytest.raises(InputError, match="noncontrast.nrrd"):
        read_phantom(tmp_path)


def test_misregistration_is_recorded_and_the_recorded_transform_registers_the_pair():
    import SimpleITK as sitk

    grid = dict(size_xyz=(96, 96, 48), spacing_xyz_mm=(3.73, 3.73, 6.0))
    motion = RigidMisregistration(rotation_z_deg=4.0, rotation_x_deg=-2.0, rotation_y_deg=1.5,
                                  translation_mm=(6.0, -4.0, 9.0))
    plain = make_phantom(2, **grid)
    moved = make_phantom(2, **grid, misregistration=motion)
    assert np.array_equal(plain.labels.array, moved.labels.array)  # labels stay on the non-contrast anatomy
    assert np.array_equal(plain.noncontrast.array, moved.noncontrast.array)
    record = moved.params["misregistration"]
    assert record["rotation_z_deg"] == 4.0 and record["translation_mm"] == [6.0, -4.0, 9.0]
    matrix = np.array(record["matrix_4x4"])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    fixed = plain.contrast.to_sitk()
    realigned = sitk.GetArrayFromImage(
        sitk.Resample(sitk.Cast(moved.contrast.to_sitk(), sitk.sitkFloat32), fixed, transform, sitk.sitkLinear, -1000.0))
    body = plain.labels.array > 0
    bright = plain.contrast.array > 200

    def dice(a, b):
        return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))

    before = dice(bright & body, (moved.contrast.array > 200) & body)
    after = dice(bright & body, (realigned > 200) & body)
    assert before < 0.7 and after > 0.85, (before, after)
    err_before = np.abs(moved.contrast.array[body].astype(float) - plain.contrast.array[body]).mean()
    err_after = np.abs(realigned[body] - plain.contrast.array[body]).mean()
    assert err_after < 0.5 * err_before


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(size_xyz=(-1, 10, 10)), "size"),
        (dict(size_xyz=(10, 0, 10)), "size"),
        (dict(spacing_xyz_mm=(1.0, 0.0, 1.0)), "spacing"),
        (dict(spacing_xyz_mm=(1.0, 1.0, -2.0)), "spacing"),
        (dict(ifu="brain"), "aorta"),
        (dict(center_z_mm=float("nan")), "z centre"),
    ],
)
def test_bad_requests_raise_a_one_sentence_job_error(kwargs, words):
    with pytest.raises(JobError) as info:
        make_phantom(0, **kwargs)
    message = str(info.value)
    assert words in message and message.endswith(".") and message.count(". ") == 0
    assert info.value.exit_code == EXIT_BAD_JOB


def test_ifu_registry_lists_aorta():
    assert "aorta" in ph.known_ifus()


# --------------------------------------------------------------------------- CLI
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", "phantom", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.process
def test_cli_writes_the_four_files_preview_and_records_misregistration(tmp_path):
    out = tmp_path / "phantom"
    result = run_cli(str(out), "--seed", "7", "--size", "64", "64", "32", "--spacing", "5.6", "5.6", "10",
                     "--misregister", "--png")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {"noncontrast.nrrd", "contrast.nrrd", "labels.nrrd", "phantom.json", "preview.png"}
    for name in names:
        assert f"wrote {out / name}" in result.stdout
    assert "aneurysm" in result.stdout and "lumen" in result.stdout
    params = json.loads((out / "phantom.json").read_text())
    assert params["seed"] == 7 and params["size_xyz"] == [64, 64, 32]
    motion = params["misregistration"]
    assert motion is not None and len(motion["matrix_4x4"]) == 4 and "ZXY" in motion["convention"]
    assert not np.allclose(np.array(motion["matrix_4x4"]), np.eye(4))
    assert params["center_z_mm"] == 0.0


@pytest.mark.process
def test_cli_chest_centres_the_field_of_view_on_the_chest(tmp_path):
    out = tmp_path / "chest"
    result = run_cli(str(out), "--seed", "7", "--size", "64", "64", "40", "--spacing", "5.6", "5.6", "10", "--chest")
    assert result.returncode == 0, result.stderr
    case = read_phantom(out)
    assert case.params["center_z_mm"] == ph.CHEST_CENTER_Z_MM
    assert case.labels.origin_mm[2] == pytest.approx(ph.CHEST_CENTER_Z_MM - 19.5 * 10)
    abdomen = make_phantom(7, size_xyz=(64, 64, 40), spacing_xyz_mm=(5.6, 5.6, 10.0))
    lung = LABELS["lung"]
    assert (case.labels.array == LABELS["myocardium"]).any()
    assert (case.labels.array == lung).mean() > 3 * (abdomen.labels.array == lung).mean()


@pytest.mark.process
@pytest.mark.parametrize(
    "args, words",
    [
        (["--size", "-5", "64", "32"], "size"),
        (["--spacing", "1", "0", "1"], "spacing"),
        (["--ifu", "coronary"], "aorta"),
    ],
)
def test_cli_bad_option_value_exits_4_with_one_sentence(tmp_path, args, words):
    out = tmp_path / "phantom"
    result = run_cli(str(out), "--seed", "1", *args)
    assert result.returncode == EXIT_BAD_JOB
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()
