"""Reading and writing CT volumes: DICOM series (pydicom) and NRRD/NIfTI/MetaImage (SimpleITK).

Real files throughout: DICOM series written with pydicom (shuffled file names, rescale,
compressed transfer syntaxes), the real JPEG 2000 series and the real CTA from ../shared/data,
pydicom's own CT_small.dcm.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from ct_test_inputs import ct_like_volume, write_dicom_series
from scipy.spatial.transform import Rotation

from DigitalContrastLib.common.errors import InputError, OutputError
from DigitalContrastLib.ct import dicom
from DigitalContrastLib.ct.io import list_dicom_series, read_volume, write_volume
from DigitalContrastLib.ct.volume import CTVolume

OBLIQUE_TILT_DEG = (17.0, -31.0, 43.0)


def _oblique_volume(flip: bool) -> CTVolume:
    """An int16 volume with an oblique direction (optionally left-handed) and awkward numbers."""
    rotation = Rotation.from_euler("xyz", OBLIQUE_TILT_DEG, degrees=True).as_matrix()
    direction = rotation @ np.diag([1.0, -1.0, 1.0]) if flip else rotation
    rng = np.random.default_rng(3)
    array = rng.integers(-1024, 3071, size=(7, 9, 11), dtype=np.int16)
    return CTVolume(array, (0.7123456789, 0.9100000001, 2.5), (-123.456789, 45.6789012, -987.654321), tuple(direction.ravel()))


# ----------------------------------------------------------------------------- round trips
#: Geometry tolerance per written format: (spacing relative, direction, origin mm). NRRD and
#: MetaImage write doubles as text (exact); NIfTI keeps its transform in float32.
ROUND_TRIP_TOLERANCE = {
    ".nrrd": (0.0, 1e-15, 0.0),
    ".mha": (0.0, 1e-15, 0.0),
    ".nii.gz": (1e-6, 1e-6, 1e-4),
    ".nii": (1e-6, 1e-6, 1e-4),
}


@pytest.mark.parametrize("flip", [False, True], ids=["rotation", "rotation+flip"])
@pytest.mark.parametrize("ext", list(ROUND_TRIP_TOLERANCE))
def test_round_trip_keeps_voxels_type_and_geometry(tmp_path, ext, flip):
    spacing_rtol, direction_atol, origin_atol = ROUND_TRIP_TOLERANCE[ext]
    volume = _oblique_volume(flip)
    back = read_volume(write_volume(volume, tmp_path / f"v{ext}"))
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, rtol=spacing_rtol, atol=0)
    np.testing.assert_allclose(back.direction, volume.direction, rtol=0, atol=direction_atol)
    np.testing.assert_allclose(back.origin_mm, volume.origin_mm, rtol=0, atol=origin_atol)
    # the far corner voxel lands at the same place in the patient
    corner = np.array([10, 8, 6])
    np.testing.assert_allclose(back.index_to_lps(corner), volume.index_to_lps(corner), rtol=0, atol=max(origin_atol, 1e-9))


@pytest.mark.parametrize("ext", [".nhdr", ".mhd"])
def test_two_file_formats_are_read(tmp_path, ext):
    import SimpleITK as sitk

    volume = _oblique_volume(True)
    sitk.WriteImage(volume.to_sitk(), str(tmp_path / f"v{ext}"))
    back = read_volume(tmp_path / f"v{ext}")
    assert np.array_equal(back.array, volume.array) and back.same_geometry(volume, tol_mm=1e-12)
    assert back.metadata["format"] == {".nhdr": "nrrd", ".mhd": "metaimage"}[ext]


def test_write_is_atomic_and_refuses_unknown_extensions(tmp_path):
    volume = _oblique_volume(False)
    with pytest.raises(OutputError) as caught:
        write_volume(volume, tmp_path / "v.png")
    assert caught.value.code == "unknown_extension" and caught.value.exit_code == 7
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError) as caught:
        write_volume(volume, blocker / "v.nrrd")
    assert caught.value.code == "not_writable" and str(blocker) in caught.value.message
    target = tmp_path / "kept.nrrd"
    write_volume(volume, target)
    before = target.read_bytes()
    with pytest.raises(ValueError):  # a failing write leaves the previous file as it was
        write_volume(CTVolume(np.zeros((2, 3, 4, 5), np.int16)), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "kept.nrrd"]


def test_write_leaves_no_partial_file_when_the_writer_fails(tmp_path):
    volume = CTVolume(np.zeros((2, 3, 4, 5), np.int16))  # 4D: the writer refuses before writing
    with pytest.raises(ValueError):
        write_volume(volume, tmp_path / "v.nrrd")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- DICOM
def test_dicom_series_is_sorted_along_the_normal_not_by_file_name(tmp_path):
    """Oblique orientation, random file names, negative slice direction: order and geometry from positions."""
    hu = ct_like_volume((18, 32, 40), pixel_mm=6.0)
    rotation = Rotation.from_euler("x", 20, degrees=True).as_matrix()
    row, col = rotation[:, 0], rotation[:, 1]
    write_dicom_series(tmp_path, hu, (0.8, 0.6, 1.25), (10.0, -20.0, 30.0), (*row, *col))
    volume = read_volume(tmp_path)
    assert volume.shape_zyx == (18, 32, 40)
    assert np.array_equal(volume.array, hu)
    # x from the column spacing; z from positions written with 6 decimals (DICOM DS)
    assert volume.spacing_mm == pytest.approx((0.8, 0.6, 1.25), abs=1e-6)
    assert volume.origin_mm == pytest.approx((10.0, -20.0, 30.0), abs=1e-6)
    np.testing.assert_allclose(volume.direction_matrix[:, 0], row, atol=1e-7)
    np.testing.assert_allclose(volume.direction_matrix[:, 1], col, atol=1e-7)
    np.testing.assert_allclose(volume.direction_matrix[:, 2], np.cross(row, col), atol=1e-7)
    # the last slice's recorded position is where the geometry puts index (0, 0, 17)
    last = volume.metadata["dicom"]["ImagePositionsPatient"][-1]
    np.testing.assert_allclose(volume.index_to_lps(np.array([0, 0, 17])), last, atol=1e-5)
    geometry = volume.metadata["dicom"]["slice_geometry"]
    assert geometry["missing_slices"] == 0 and geometry["gantry_tilt_deg"] < 1e-3


def test_dicom_rescale_slope_and_intercept_give_hu(tmp_path):
    hu = (ct_like_volume((4, 16, 16), pixel_mm=12.0) // 2) * 2  # even values survive slope 2
    write_dicom_series(tmp_path / "a", hu, rescale=(2.0, -1000.0))
    volume = read_volume(tmp_path / "a")
    assert volume.array.dtype == np.int16
    assert np.array_equal(volume.array, hu)
    write_dicom_series(tmp_path / "b", hu, rescale=(0.5, -1024.0))  # non-integral slope -> float32 HU
    volume = read_volume(tmp_path / "b")
    assert np.array_equal(volume.array, hu.astype(np.float32))


@pytest.mark.parametrize("compression", ["rle", "jpeg2000"])
def test_compressed_transfer_syntaxes_decode_losslessly(tmp_path, compression):
    hu = ct_like_volume((4, 64, 64), pixel_mm=4.0)  # JPEG 2000 needs tiles of 64 pixels or more
    write_dicom_series(tmp_path, hu, compression=compression)
    volume = read_volume(tmp_path)
    assert np.array_equal(volume.array, hu)
    assert volume.metadata["dicom"]["TransferSyntaxUID"] in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90")


def test_several_series_choose_by_uid_or_fail_with_the_list(tmp_path):
    hu = ct_like_volume((4, 16, 16), pixel_mm=12.0)
    write_dicom_series(tmp_path, hu, series_uid="1.2.3.1", description="soft kernel", seed=1)
    write_dicom_series(tmp_path, hu + 7, series_uid="1.2.3.2", description="bone kernel", seed=2)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 200)
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path)
    message = caught.value.message
    assert caught.value.code == "several_series"
    assert "1.2.3.1 ('soft kernel', 4 slices)" in message and "1.2.3.2 ('bone kernel', 4 slices)" in message
    assert "--series" in message and message.count(". ") == 0 and "\n" not in message
    chosen = read_volume(tmp_path, series_uid="1.2.3.2")
    assert np.array_equal(chosen.array, hu + 7)
    assert chosen.metadata["dicom"]["SeriesDescription"] == "bone kernel"
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path, series_uid="9.9.9")
    assert caught.value.code == "series_not_found" and "1.2.3.1" in caught.value.message
    listed = list_dicom_series(tmp_path)
    assert [(s.series_uid, s.description, s.modality, s.n_files) for s in listed] == [
        ("1.2.3.1", "soft kernel", "CT", 4),
        ("1.2.3.2", "bone kernel", "CT", 4),
    ]


def test_dicom_metadata_keeps_what_a_derived_series_needs(tmp_path):
    hu = ct_like_volume((3, 16, 16), pixel_mm=12.0)
    files = write_dicom_series(tmp_path, hu, contrast_agent="OMNIPAQUE 350", study_uid="1.2.840.99.1")
    volume = read_volume(tmp_path)
    meta = volume.metadata["dicom"]
    import pydicom

    sops = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    assert meta["SOPInstanceUIDs"] == sops  # slice order
    assert meta["StudyInstanceUID"] == "1.2.840.99.1" and meta["FrameOfReferenceUID"]
    assert meta["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"
    assert meta["ContrastBolusAgent"] == "OMNIPAQUE 350" and meta["contrast_agent_given"] is True
    assert meta["PatientID"] == "DC-TEST-1" and meta["KVP"] == 120.0 and meta["SliceThickness"] == 2.0
    header = dicom.first_slice_dataset(volume)
    assert header.StudyInstanceUID == "1.2.840.99.1" and header.PatientName == "Test^Phantom"
    assert "PixelData" not in header
    import json

    json.dumps(volume.metadata)  # plain values only: it travels to the worker and provenance files


def test_single_dicom_file_reads_as_one_slice_matching_pydicom(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_rescale

    path = get_testdata_file("CT_small.dcm")
    volume = read_volume(path)
    reference = pydicom.dcmread(path)
    assert volume.shape_zyx == (1, 128, 128)
    assert np.array_equal(volume.array[0], apply_rescale(reference.pixel_array, reference))
    assert volume.spacing_mm[:2] == pytest.approx((0.661468, 0.661468))
    assert volume.origin_mm == pytest.approx((-158.135803, -179.035797, -75.699997))
    assert volume.metadata["dicom"]["Modality"] == "CT"


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda p: p / "missing.nrrd", "not_found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "empty_folder"),
        (lambda p: (p / "x.png").write_bytes(b"\x89PNG....") and p / "x.png", "unknown_format"),
        (lambda p: (p / "zero.nii.gz").write_bytes(b"") or p / "zero.nii.gz", "unreadable"),
    ],
    ids=["not_found", "empty_folder", "unknown_format", "empty_file"],
)
def test_reader_errors_name_the_file_in_one_sentence(tmp_path, make, code):
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        read_volume(path)
    assert caught.value.code == code
    assert str(path) in caught.value.message and caught.value.message.endswith(".")
    assert "\n" not in caught.value.message


def test_empty_folder_points_at_a_volume_file_inside(tmp_path):
    write_volume(_oblique_volume(False), tmp_path / "scan.nrrd")
    with pytest.raises(InputError) as caught:
        read_volume(tmp_path)
    assert caught.value.code == "empty_folder" and "scan.nrrd" in caught.value.message


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_jpeg2000_series_reads_with_geometry_and_hu(real_data, tmp_path):
    """20 real slices, JPEG 2000 lossless; shuffled copies give the same volume."""
    import pydicom
    from pydicom.pixels import apply_rescale

    folder = real_data / "dicom_abdomen_contrast"
    volume = read_volume(folder)
    assert volume.shape_zyx == (20, 512, 512)
    # positions step 2.0 mm (slices overlap: Slice Thickness is 3 mm)
    assert volume.spacing_mm == pytest.approx((0.9765625, 0.9765625, 2.0), abs=1e-9)
    assert volume.metadata["dicom"]["SliceThickness"] == 3.0
    assert volume.metadata["dicom"]["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    assert volume.origin_mm == pytest.approx((-249.51171875, -437.51171875, -804.5))
    files = volume.metadata["dicom"]["files"]
    for k in (0, 19):
        reference = pydicom.dcmread(files[k])
        assert float(reference.ImagePositionPatient[2]) == pytest.approx(volume.index_to_lps(np.array([0, 0, k]))[2])
        assert np.array_equal(volume.array[k], apply_rescale(reference.pixel_array, reference))
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(7)
    for i, source in enumerate(rng.permutation(sorted(folder.iterdir()))):
        shutil.copy(source, shuffled / f"{i:03d}")
    again = read_volume(shuffled)
    assert np.array_equal(again.array, volume.array) and again.same_geometry(volume, tol_mm=1e-9)


@pytest.mark.realdata
def test_real_cta_reads_and_round_trips(real_data, tmp_path):
    volume = read_volume(real_data / "cta_chest_arterial.nii.gz")
    assert volume.shape_zyx == (164, 126, 120) and volume.array.dtype == np.int16
    assert volume.spacing_mm == pytest.approx((1.5, 1.5, 1.5))
    assert (int(volume.array.min()), int(volume.array.max())) == (-1078, 3343)
    back = read_volume(write_volume(volume, tmp_path / "cta.nrrd"))
    assert np.array_equal(back.array, volume.array) and back.same_geometry(volume, tol_mm=0)
