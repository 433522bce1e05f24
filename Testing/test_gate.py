"""The input gate and ``digital-contrast check``: every bad input gets its code and one sentence.

A corpus of real bad files is written to a temporary folder (truncated files, 2D, RGB, 4D, NaN,
zero spacing, 8-bit and MR-like intensities, too few slices, DICOM series with a missing slice,
uneven spacing, gantry tilt, duplicates, two series, MR modality) and each goes through the
library, the CLI entry point and, once, the installed console script in a real subprocess.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from ct_test_inputs import ct_like_volume, write_dicom_series

from DigitalContrastLib.commands.cli import main
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.synthesis import gate
from DigitalContrastLib.synthesis.contrast_evidence import find_contrast_evidence, median_3x3x3
from DigitalContrastLib.synthesis.gate import check_path, check_volume

SERIES_SHAPE = (20, 32, 32)  # small DICOM series: 20 slices of 32x32, 10 mm pixels
SERIES_SPACING = (10.0, 10.0, 2.0)


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message)


def _write_sitk(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _ct(shape=(40, 48, 48), pixel_mm=6.0) -> CTVolume:
    return CTVolume(ct_like_volume(shape, pixel_mm=pixel_mm), (pixel_mm, pixel_mm, 2.5), (-140.0, -140.0, 0.0))


def _series(folder: Path, **kw) -> Path:
    write_dicom_series(folder, ct_like_volume(SERIES_SHAPE, pixel_mm=10.0), SERIES_SPACING, **kw)
    return folder


def _positions(steps_mm, shear_per_slice_mm=0.0):
    z, positions = 0.0, []
    for k, step in enumerate([0.0, *steps_mm]):
        z += step
        positions.append((-160.0, -160.0 + k * shear_per_slice_mm, z))
    return positions


def _build_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input path, expected error code)."""
    corpus: dict[str, tuple[Path, str]] = {}
    good = _ct()

    corpus["truncated_nrrd"] = (_truncate(write_volume(good, root / "truncated.nrrd")), "unreadable")
    corpus["truncated_nii_gz"] = (_truncate(write_volume(good, root / "truncated.nii.gz")), "unreadable")
    broken = _series(root / "truncated_dicom")
    _truncate(sorted(broken.iterdir())[5], keep=0.6)
    corpus["truncated_dicom"] = (broken, "unreadable")

    corpus["2d"] = (_write_sitk(sitk.GetImageFromArray(good.array[10]), root / "slice.nrrd"), "not_3d_scalar")
    rgb = sitk.GetImageFromArray(np.zeros((8, 16, 16, 3), np.uint8), isVector=True)
    corpus["rgb"] = (_write_sitk(rgb, root / "rgb.mha"), "not_3d_scalar")
    four_d = sitk.JoinSeries([good.to_sitk()] * 3)
    corpus["4d"] = (_write_sitk(four_d, root / "phases.nii.gz"), "not_3d_scalar")

    with_nan = good.array.astype(np.float32)
    with_nan[5, 20, 20] = np.nan
    corpus["nan"] = (write_volume(good.with_array(with_nan), root / "nan.nrrd"), "non_finite")
    zero = root / "zero_spacing.nrrd"
    zero.write_bytes(
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 48 48 40\nendian: little\nencoding: raw\nspacings: 1 1 0\n\n"
        + good.array.astype("<i2").tobytes()
    )
    corpus["zero_spacing"] = (zero, "bad_spacing")

    eight_bit = np.clip((good.array.astype(float) + 1000) / 8, 0, 255).astype(np.uint8)
    corpus["0_255"] = (write_volume(good.with_array(eight_bit), root / "picture.nrrd"), "not_ct_hu")
    mr_like = np.clip(good.array.astype(float) + 1000, 0, None) * 0.8
    mr_like = (mr_like + np.random.default_rng(1).rayleigh(8.0, mr_like.shape)).astype(np.uint16)
    corpus["mr_like"] = (write_volume(good.with_array(mr_like), root / "t1.nii.gz"), "not_ct_hu")
    corpus["too_few_slices"] = (write_volume(_ct(shape=(8, 48, 48)), root / "eight_slices.nrrd"), "too_few_slices")

    missing = _series(root / "missing_slice")
    files = sorted(missing.iterdir(), key=lambda p: read_volume(p).origin_mm[2])
    files[9].unlink()
    corpus["missing_slice"] = (missing, "missing_slices")
    steps = [2.0] * 9 + [3.0] * 10
    corpus["uneven_spacing"] = (_series(root / "uneven", positions_lps_mm=_positions(steps)), "uneven_spacing")
    tilt = 2.0 * math.tan(math.radians(15.0))  # 15 degree gantry tilt: each slice shifted along y
    corpus["gantry_tilt"] = (_series(root / "tilted", positions_lps_mm=_positions([2.0] * 19, tilt)), "gantry_tilt")
    dup_steps = [2.0] * 9 + [0.0] + [2.0] * 9
    corpus["duplicate_slices"] = (_series(root / "duplicates", positions_lps_mm=_positions(dup_steps)), "duplicate_slices")
    two = _series(root / "two_series", series_uid="1.2.826.0.1.1", description="soft", seed=1)
    _series(two, series_uid="1.2.826.0.1.2", description="lung", seed=2)
    corpus["two_series"] = (two, "several_series")
    corpus["mr_modality"] = (_series(root / "mr_series", modality="MR"), "not_ct_modality")
    corpus["not_found"] = (root / "no_such_scan.nrrd", "not_found")
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _build_corpus(tmp_path_factory.mktemp("bad_inputs"))


CASES = [
    "truncated_nrrd", "truncated_nii_gz", "truncated_dicom", "2d", "rgb", "4d", "nan", "zero_spacing", "0_255",
    "mr_like", "too_few_slices", "missing_slice", "uneven_spacing", "gantry_tilt", "duplicate_slices",
    "two_series", "mr_modality", "not_found",
]


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_gets_its_code_and_one_sentence(corpus, case):
    path, code = corpus[case]
    report, volume = check_path(path)
    assert not report.ok
    assert code in report.error_codes(), report.errors
    for message in report.errors:
        assert _one_sentence(message.message), message.message
        assert str(path) in message.message
    assert (volume is None) == (report.shape_zyx is None)


@pytest.mark.parametrize("case", CASES)
def test_cli_exits_2_with_the_code_and_no_traceback(corpus, case, capsys):
    path, code = corpus[case]
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert f"ERROR   [{code}]" in out
    assert "Traceback" not in err and "Traceback" not in out
    assert main(["check", str(path), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and code in [e["code"] for e in report["errors"]]


def test_messages_carry_the_measured_facts(corpus):
    assert "15.0°" in check_path(corpus["gantry_tilt"][0])[0].errors[0].message
    missing = check_path(corpus["missing_slice"][0])[0]
    assert "missing 1 slice" in missing.errors[0].message
    several = check_path(corpus["two_series"][0])[0].errors[0].message
    assert "1.2.826.0.1.1 ('soft', 20 slices)" in several and "--series UID" in several
    chosen, volume = check_path(corpus["two_series"][0], series_uid="1.2.826.0.1.2")
    assert chosen.ok and volume.metadata["dicom"]["SeriesDescription"] == "lung"


@pytest.mark.process
def test_installed_console_script_in_a_real_process(corpus, tmp_path):
    script = Path(sys.executable).with_name("digital-contrast")
    if not script.exists():
        script = Path(shutil.which("digital-contrast") or "digital-contrast")
    bad = subprocess.run([str(script), "check", str(corpus["gantry_tilt"][0])], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "ERROR   [gantry_tilt]" in bad.stdout and "Traceback" not in bad.stderr
    good = write_volume(_ct(), tmp_path / "ok.nrrd")
    ok = subprocess.run([str(script), "check", str(good), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True and report["errors"] == [] and report["shape_zyx"] == [40, 48, 48]
    assert report["contrast_enhanced"] is False and "Traceback" not in ok.stderr


# ----------------------------------------------------------------------------- volumes in memory
def test_a_clean_non_contrast_volume_passes_with_its_facts():
    report = check_volume(_ct())
    assert report.ok and report.errors == [] and report.warnings == []
    assert report.contrast_enhanced is False
    assert report.shape_zyx == [40, 48, 48] and report.spacing_xyz_mm == [6.0, 6.0, 2.5]
    stats = report.hu_stats
    assert stats["min"] < -950 and stats["p1"] < -900 and 0 < stats["body_fraction"] < 1
    assert report.memory_estimate_mb == pytest.approx(40 * 48 * 48 * 4 * 6 / 2**20, abs=0.1)
    json.dumps(report.to_dict())


@pytest.mark.parametrize(
    "volume, code",
    [
        (CTVolume(np.zeros((20, 20), np.int16)), "not_3d_scalar"),
        (_ct().with_array(_ct().array.astype(np.float32) * np.inf), "non_finite"),
        (CTVolume(_ct().array, (1.0, 0.0, 2.0)), "bad_spacing"),
        (CTVolume(_ct().array, (1.0, 1.0, -2.0)), "bad_spacing"),
        (CTVolume(_ct().array, direction=(1, 0, 0, 0, 1, 0, 0, 0, 0)), "bad_direction"),
        (_ct().with_array(_ct().array > 0), "not_ct_hu"),
        (_ct().with_array(_ct().array.astype(np.float32) / 3000.0), "not_ct_hu"),
        (CTVolume(ct_like_volume((30, 10, 10), pixel_mm=30.0)), "too_small"),
    ],
    ids=["2d", "inf", "zero", "negative", "singular", "mask", "normalised", "tiny"],
)
def test_volumes_in_memory_get_their_code(volume, code):
    report = check_volume(volume)
    assert not report.ok and code in report.error_codes()
    assert all(_one_sentence(m.message) for m in report.errors)


def test_warnings_thick_slices_and_large_volume(monkeypatch):
    thick = CTVolume(ct_like_volume((20, 48, 48), pixel_mm=6.0), (6.0, 6.0, 5.0))
    report = check_volume(thick)
    assert report.ok and "thick_slices" in report.warning_codes()
    monkeypatch.setattr(gate, "LARGE_VOLUME_MB", 1.0)
    report = check_volume(_ct())
    assert report.ok and "large_volume" in report.warning_codes()
    message = next(m.message for m in report.warnings if m.code == "large_volume")
    assert "48x48x40" in message and _one_sentence(message)


def test_contrast_tag_alone_makes_a_warning(tmp_path):
    folder = _series(tmp_path / "tagged", contrast_agent="APPLIED")
    report, _ = check_path(folder)
    assert report.ok and report.contrast_enhanced is True and "contrast_enhanced" in report.warning_codes()
    assert "'APPLIED'" in report.warnings[0].message
    none_given, _ = check_path(_series(tmp_path / "none", contrast_agent="NONE"))
    assert "contrast_enhanced" not in none_given.warning_codes()


def test_image_evidence_on_a_phantom_with_and_without_contrast():
    """Blood at 40 HU: no evidence (the spine's tube has a bony rim); aorta at 350 HU: evidence."""
    plain = CTVolume(ct_like_volume(aorta_hu=40.0), (3.0, 3.0, 2.5))
    evidence = find_contrast_evidence(plain)
    assert evidence.enhanced is False
    assert evidence.tube is not None and evidence.tube["rim_excess_hu"] > gate_rim_limit()  # the vertebral column
    enhanced = CTVolume(ct_like_volume(aorta_hu=350.0), (3.0, 3.0, 2.5))
    evidence = find_contrast_evidence(enhanced)
    assert evidence.enhanced is True
    assert evidence.tube["median_hu"] == pytest.approx(350, abs=15) and evidence.tube["diameter_mm"] == pytest.approx(24, abs=4)
    report = check_volume(enhanced)
    assert report.ok and report.contrast_enhanced is True and "contrast_enhanced" in report.warning_codes()


def test_image_evidence_follows_the_direction_not_the_array_axes():
    """A volume stored sagittally (index z = patient left-right) is searched in its axial planes."""
    axial = ct_like_volume(aorta_hu=350.0)  # [S, P, L]
    sagittal = np.ascontiguousarray(np.transpose(axial, (2, 0, 1)))  # [L, S, P] as [z, y, x]
    # index x -> P (0,1,0), index y -> S (0,0,1), index z -> L (1,0,0)
    direction = (0, 0, 1, 1, 0, 0, 0, 1, 0)
    evidence = find_contrast_evidence(CTVolume(sagittal, (3.0, 2.5, 3.0), direction=direction))
    assert evidence.enhanced is True


def gate_rim_limit() -> float:
    from DigitalContrastLib.synthesis.contrast_evidence import MAX_RIM_EXCESS_HU

    return MAX_RIM_EXCESS_HU


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_cta_is_flagged_contrast_enhanced(real_data):
    report, volume = check_path(real_data / "cta_chest_arterial.nii.gz")
    assert report.ok and report.contrast_enhanced is True
    assert report.warning_codes() == ["contrast_enhanced"]
    tube = report.contrast_evidence["tube"]
    assert tube["qualifies"] and tube["median_hu"] > 250 and tube["length_mm"] >= 50
    assert report.shape_zyx == [164, 126, 120] and report.spacing_xyz_mm == [1.5, 1.5, 1.5]
    assert (report.hu_stats["min"], report.hu_stats["max"]) == (-1078, 3343)


@pytest.mark.realdata
def test_real_cta_with_unenhanced_aorta_is_not_flagged(real_data):
    """The aortic lumen (mask) replaced by 40 HU blood plus noise: no image evidence left."""
    volume = read_volume(real_data / "cta_chest_arterial.nii.gz")
    mask = read_volume(real_data / "cta_chest_arterial_aorta_mask.nii.gz").array > 0
    array = volume.array.copy()
    noise = np.random.default_rng(0).normal(0.0, 20.0, int(mask.sum()))
    array[mask] = np.rint(40.0 + noise).astype(np.int16)
    report = check_volume(volume.with_array(array))
    assert report.contrast_evidence["enhanced"] is False
    assert report.ok and report.contrast_enhanced is False and report.warnings == []


@pytest.mark.realdata
def test_real_dicom_series_reads_and_its_tag_says_contrast(real_data):
    report, volume = check_path(real_data / "dicom_abdomen_contrast")
    assert report.ok, report.errors
    assert report.shape_zyx == [20, 512, 512]
    assert report.spacing_xyz_mm == pytest.approx([0.9765625, 0.9765625, 2.0])
    assert report.slice_thickness_mm == 3.0
    assert report.contrast_enhanced is True and "'APPLIED'" in report.warnings[0].message


@pytest.mark.realdata
def test_pydicom_ct_small_reads_but_has_too_few_slices():
    from pydicom.data import get_testdata_file

    report, volume = check_path(get_testdata_file("CT_small.dcm"))
    assert volume is not None and volume.shape_zyx == (1, 128, 128)
    assert report.error_codes() == ["too_few_slices"]
    assert "folder that holds the whole series" in report.errors[0].message


@pytest.mark.parametrize("shape, dtype", [((9, 17, 23), np.int16), ((1, 5, 7), np.int16), ((4, 3, 2), np.float32),
                                          ((12, 40, 30), np.float32)])
def test_the_gates_median_equals_scipys(shape, dtype):
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape))
    array = rng.integers(-1024, 3000, shape).astype(dtype)
    # a small slab forces several slabs, and a transposed view is taken as it comes (the gate passes views)
    np.testing.assert_array_equal(median_3x3x3(array, voxels_per_slab=50), ndimage.median_filter(array, size=3))
    view = np.transpose(array, (0, 2, 1))
    np.testing.assert_array_equal(median_3x3x3(view), ndimage.median_filter(view, size=3))
