"""Registration of a contrast CT onto a non-contrast CT: known misregistrations must be recovered.

The test volumes are built here from an analytic CT-like anatomy (body with a fat layer, liver,
kidneys, bowel gas, a spine of vertebrae and discs, an aorta) evaluated at each scan's voxel centres,
so the moving scan is the exact image of the fixed anatomy under a known transform. The aortic
blood is 40 HU in the fixed (non-contrast) scan and 350 HU in the moving (contrast) scan; each scan
has its own spatially correlated noise (σ 15 HU).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.evaluation.metrics import masked_mae_hu
from DigitalContrastLib.evaluation.registration import RegistrationResult, register, resample_to

BLOOD_NCCT_HU, BLOOD_CTA_HU = 40.0, 350.0
AORTA_RADIUS_MM = 12.0


def _aorta_centre_x(z):
    return 10.0 + 5.0 * np.sin(z / 60.0)


def _anatomy(points_lps: np.ndarray, blood_hu: float) -> np.ndarray:
    """HU at LPS points ``(..., 3)`` in mm (the body is centred on the origin)."""
    x, y, z = points_lps[..., 0], points_lps[..., 1], points_lps[..., 2]
    hu = np.full(x.shape, -1000.0)
    a, b = 150 + 10 * np.sin(z / 40), 105 + 8 * np.cos(z / 50)  # body outline varies along z
    hu[(x / a) ** 2 + (y / b) ** 2 <= 1] = -100.0  # subcutaneous fat
    inner = (x / (a - 15)) ** 2 + (y / (b - 15)) ** 2 <= 1
    hu[inner] = 40.0
    hu[inner & (((x + 60) / 70) ** 2 + ((y + 10) / 60) ** 2 + ((z - 40) / 60) ** 2 <= 1)] = 60.0  # liver
    for kidney_x in (-70.0, 70.0):
        hu[((x - kidney_x) / 25) ** 2 + ((y - 50) / 30) ** 2 + ((z + 20) / 50) ** 2 <= 1] = 30.0
    for cx, cy, cz in [(-30, -60, 10), (40, -50, -30), (0, -70, 50)]:
        hu[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 12**2] = -800.0  # bowel gas
    spine = x**2 + (y - 60) ** 2  # posterior is +y in LPS
    vertebra = np.mod(z + 7, 31) < 25  # 25 mm vertebral bodies, 6 mm discs
    hu[(spine <= 18**2) & vertebra] = 300.0
    hu[(spine <= 18**2) & (spine >= 15**2) & vertebra] = 800.0  # cortical shell
    hu[(spine <= 18**2) & ~vertebra] = 70.0
    hu[(np.abs(x) < 5) & (y > 78) & (y < 100) & vertebra] = 700.0  # spinous process
    hu[(x - _aorta_centre_x(z)) ** 2 + (y - 25) ** 2 <= AORTA_RADIUS_MM**2] = blood_hu
    return hu


def _grid(shape_zyx, spacing_xyz):
    origin = tuple(-(n - 1) * s / 2 for n, s in zip(shape_zyx[::-1], spacing_xyz))
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    points = np.stack([i * spacing_xyz[0], j * spacing_xyz[1], k * spacing_xyz[2]], -1) + np.asarray(origin)
    return points, origin


def _noise(shape, sigma_hu, seed):
    n = ndimage.gaussian_filter(np.random.default_rng(seed).normal(0.0, 1.0, shape), 0.8)
    return n / n.std() * sigma_hu


def _true_transform() -> sitk.Euler3DTransform:
    """Fixed → moving: 2° about x, 3° about z, translation (4, −3, 5) mm, about the body centre."""
    t = sitk.Euler3DTransform()
    t.SetRotation(np.deg2rad(2.0), 0.0, np.deg2rad(3.0))
    t.SetTranslation((4.0, -3.0, 5.0))
    return t


def _warp_displacement(points_lps: np.ndarray, warp_mm: float) -> np.ndarray:
    """A smooth non-rigid displacement (mm) at LPS points ``(..., 3)``: a lateral bend along z."""
    d = np.zeros_like(points_lps)
    d[..., 0] = warp_mm * np.sin(2 * np.pi * points_lps[..., 2] / 160.0)
    d[..., 1] = 0.6 * warp_mm * np.cos(2 * np.pi * points_lps[..., 0] / 300.0)
    return d


def _pair(shape=(64, 128, 128), spacing=(2.5, 2.5, 2.5), transform=None, warp_mm=0.0):
    """(fixed NCCT, moving CTA) where moving(T(p)) shows the anatomy at fixed point p.

    ``warp_mm`` adds a smooth non-rigid displacement to the moving scan's anatomy.
    """
    points, origin = _grid(shape, spacing)
    fixed = _anatomy(points, BLOOD_NCCT_HU) + _noise(shape, 15.0, 1)
    inverse = (transform or sitk.Transform(3, sitk.sitkIdentity)).GetInverse()
    matrix = np.asarray(inverse.GetMatrix()).reshape(3, 3) if transform else np.eye(3)
    centre = np.asarray(inverse.GetCenter()) if transform else np.zeros(3)
    translation = np.asarray(inverse.GetTranslation()) if transform else np.zeros(3)
    source = (points - centre) @ matrix.T + centre + translation
    source = source + _warp_displacement(source, warp_mm)
    moving = _anatomy(source, BLOOD_CTA_HU) + _noise(shape, 15.0, 2)

    def volume(a, name):
        return CTVolume(np.clip(np.rint(a), -1024, 3071).astype(np.int16), spacing, origin, metadata={"path": name})

    return volume(fixed, "ncct.nrrd"), volume(moving, "cta.nrrd")


def _aorta_mask(volume: CTVolume, erode_mm: float = 3.0) -> np.ndarray:
    points, _ = _grid(volume.shape_zyx, volume.spacing_mm)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return (x - _aorta_centre_x(z)) ** 2 + (y - 25) ** 2 <= (AORTA_RADIUS_MM - erode_mm) ** 2


def _target_registration_error_mm(fixed: CTVolume, estimated, truth) -> np.ndarray:
    """Distance between the estimated and true images of (about 10,000) fixed body voxels, mm."""
    index = np.argwhere(body_mask_from_ct(fixed.array))
    index = index[:: max(1, len(index) // 10_000)]
    points = fixed.index_to_lps(index[:, ::-1].astype(float))
    return np.linalg.norm(_map_points(estimated, points) - _map_points(truth, points), axis=1)


def _map_points(transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(tuple(p)) for p in points])


@pytest.mark.slow
def test_rigid_registration_recovers_a_known_misregistration_within_1mm():
    truth = _true_transform()
    fixed, moving = _pair(transform=truth)
    calls = []
    result = register(fixed, moving, "rigid", progress=lambda *a: calls.append(a), seed=0)

    assert isinstance(result, RegistrationResult) and result.method == "rigid"
    before = _target_registration_error_mm(fixed, sitk.Transform(3, sitk.sitkIdentity), truth)
    after = _target_registration_error_mm(fixed, result.transform, truth)
    assert before.mean() > 5.0  # the misregistration is real
    assert after.mean() < 1.0, f"mean TRE {after.mean():.2f} mm"
    assert np.percentile(after, 95) < 1.5
    assert result.rigid_parameters["rotation_deg"] == pytest.approx([2.0, 0.0, 3.0], abs=0.3)
    assert result.stage_metric_values["rigid"] < result.stage_metric_values["initial"] == pytest.approx(
        register(fixed, moving, "none").metric_value
    )

    # what the user sees: the registered contrast scan matches the noise-free contrast anatomy on
    # the fixed grid (its own noise and interpolation aside), and did not before
    assert result.registered.same_geometry(fixed) and result.registered.array.dtype == np.int16
    ideal = _anatomy(_grid(fixed.shape_zyx, fixed.spacing_mm)[0], BLOOD_CTA_HU)
    inner = body_mask_from_ct(fixed.array)
    inner[:4] = inner[-4:] = False  # slices that the z translation moves out of the moving scan
    mae_after = masked_mae_hu(result.registered.array, ideal, inner)
    mae_before = masked_mae_hu(resample_to(moving, fixed).array, ideal, inner)
    assert mae_after < 0.5 * mae_before, (mae_after, mae_before)

    # progress: stage "register", never backwards, ends complete
    assert {c[0] for c in calls} == {"register"}
    done = [c[1] for c in calls]
    assert done == sorted(done) and calls[-1][1] == calls[-1][2] and result.iterations > 10

    # the same seed gives the same transform (up to the order of multi-threaded sums)
    again = register(fixed, moving, "rigid", seed=0)
    assert again.transform.GetParameters() == pytest.approx(result.transform.GetParameters(), abs=1e-5)


@pytest.mark.slow
def test_bspline_stage_improves_the_metric_of_a_warped_scan_and_keeps_the_alignment():
    warp_mm = 6.0
    truth = _true_transform()
    fixed, moving = _pair(shape=(40, 64, 64), spacing=(5.0, 5.0, 4.0), transform=truth, warp_mm=warp_mm)
    calls = []
    result = register(
        fixed, moving, "bspline", progress=lambda *a: calls.append(a), bspline_iterations=8, bspline_metric_samples=8000
    )
    done = [c[1] for c in calls]
    assert done == sorted(done) and calls[-1][1:] == (3 * 200 + 2 * 8, 3 * 200 + 2 * 8)

    metrics = result.stage_metric_values
    assert metrics["bspline"] < metrics["rigid"] < metrics["initial"]
    assert result.metric_value == metrics["bspline"] and result.final_stage == "bspline"
    assert result.registered.same_geometry(fixed)

    # true fixed → moving map: p -> T(u) with u + warp(u) = p (solved by fixed-point iteration)
    index = np.argwhere(body_mask_from_ct(fixed.array))[::4]
    index = index[(index[:, 0] > 2) & (index[:, 0] < fixed.shape_zyx[0] - 6)]  # inside both scans
    points = fixed.index_to_lps(index[:, ::-1].astype(float))
    u = points.copy()
    for _ in range(40):
        u = points - _warp_displacement(u, warp_mm)
    true_points = _map_points(truth, u)

    def tre(transform):
        return np.linalg.norm(_map_points(transform, points) - true_points, axis=1).mean()

    assert tre(result.transform) <= tre(result.transform.GetNthTransform(0)) + 0.25


def test_method_none_resamples_onto_the_fixed_grid_exactly():
    rng = np.random.default_rng(7)
    base = rng.integers(-100, 400, size=(12, 20, 24)).astype(np.int16)
    spacing, origin = (0.8, 1.1, 2.5), (-10.0, 20.0, 30.0)
    fixed = CTVolume(base, spacing, origin)
    # the moving scan holds a sub-block, stored with its x axis reversed (direction −1 along x)
    block = base[2:10, 3:17, 4:20]
    flipped = CTVolume(
        np.ascontiguousarray(block[:, :, ::-1]),
        spacing,
        (origin[0] + 19 * spacing[0], origin[1] + 3 * spacing[1], origin[2] + 2 * spacing[2]),
        direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1),
    )
    result = register(fixed, flipped, "none")
    assert result.registered.same_geometry(fixed) and result.iterations == 0
    expected = np.full(base.shape, -1024, dtype=np.int16)
    expected[2:10, 3:17, 4:20] = block
    assert np.array_equal(result.registered.array, expected)
    assert result.rigid_parameters["rotation_deg"] == [0.0, 0.0, 0.0]

    labels = (base > 200).astype(np.uint8) * 10
    moved_labels = resample_to(CTVolume(labels, spacing, origin), fixed, interpolator="nearest", default_hu=0)
    assert moved_labels.array.dtype == np.uint8 and np.array_equal(moved_labels.array, labels)


def test_scans_that_do_not_overlap_are_refused_with_one_sentence():
    fixed, moving = _pair(shape=(16, 32, 32), spacing=(10.0, 10.0, 10.0))
    far = CTVolume(moving.array, moving.spacing_mm, (5000.0, 0.0, 0.0), metadata={"path": "cta.nrrd"})
    with pytest.raises(InputError, match="cta.nrrd does not overlap") as info:
        register(fixed, far, "rigid")
    assert info.value.exit_code == 2 and info.value.message.count(". ") == 0
    # centring the boxes is the way out the message offers
    assert register(fixed, far, "none", initializer="geometry").registered.array.max() > 0


def test_a_fixed_scan_without_a_body_is_refused():
    air = CTVolume(np.full((8, 8, 8), -1000, dtype=np.int16), metadata={"path": "air.nrrd"})
    with pytest.raises(InputError, match="air.nrrd shows no body"):
        register(air, air)
    with pytest.raises(ValueError, match="method"):
        register(air, air, method="affine")


@pytest.mark.realdata
@pytest.mark.slow
def test_rigid_registration_of_a_real_cta_onto_its_pseudo_non_contrast_scan(real_data):
    """Real anatomy: the real CTA, misregistered by a known transform, onto a pseudo-NCCT of itself."""
    cta = CTVolume.from_sitk(sitk.ReadImage(str(real_data / "cta_chest_arterial.nii.gz")))
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(real_data / "cta_chest_arterial_aorta_mask.nii.gz"))) > 0
    rng = np.random.default_rng(11)
    ncct = cta.array.astype(np.float64)
    ncct[aorta] = BLOOD_NCCT_HU + rng.normal(0.0, 15.0, int(aorta.sum()))  # unenhanced blood
    fixed = cta.with_array(np.rint(ncct).astype(np.int16), path="pseudo_ncct.nii.gz")

    truth = _true_transform()
    truth.SetCenter(tuple(cta.index_to_lps((np.asarray(cta.size_xyz) - 1) / 2.0)))
    moved = resample_to(cta, cta, truth.GetInverse())  # moving(T(p)) = cta(p)
    noisy = moved.array + rng.normal(0.0, 10.0, moved.array.shape) * (moved.array > -1000)
    moving = moved.with_array(np.rint(noisy).astype(np.int16), path="cta.nii.gz")

    result = register(fixed, moving, "rigid")
    error = _target_registration_error_mm(fixed, result.transform, truth)
    assert _target_registration_error_mm(fixed, sitk.Transform(3, sitk.sitkIdentity), truth).mean() > 5.0
    assert error.mean() < 1.0, f"mean TRE {error.mean():.2f} mm"
    # the real contrast lumen lands on the pseudo-NCCT's aorta
    assert np.median(result.registered.array[ndimage.binary_erosion(aorta, iterations=2)]) > 250
