"""Synthetic DICOM export: labelled as synthetic, geometry and HU exact, in the source's study.

The non-contrast source is a real DICOM series written here with pydicom (oblique, right-handed
orientation) or, with the realdata marker, the real 20-slice abdominal series (JPEG 2000).
Everything is re-read with pydicom and with SimpleITK (GDCM), independently of the exporter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from DigitalContrastLib.common.errors import JobError, OutputError
from DigitalContrastLib.ct.dicom_export import (
    CONTRAST_BOLUS_KEYWORDS,
    CT_IMAGE_STORAGE,
    export_synthetic_dicom,
    hu_to_stored,
)
from DigitalContrastLib.ct.volume import CTVolume

PROVENANCE = {
    "method": "DigitalContrast residual 3D U-Net",
    "model_id": "dc-aorta-phantom",
    "model_version": "0.3.1",
    "weights_sha256": "5f" * 32,
    "software_version": "0.1.0",
}


def _tilted_direction() -> np.ndarray:
    """Right-handed, slightly oblique (a gantry-tilt-like rotation plus a small yaw)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [8.0, 0.0, 4.0], degrees=True).as_matrix()


def _source_volume() -> CTVolume:
    rng = np.random.default_rng(7)
    array = np.round(40 + rng.normal(0, 15, (6, 20, 24))).astype(np.int16)
    array[:, :3, :] = -1000
    return CTVolume(array, (0.75, 0.8, 3.0), (-9.5, 20.25, -120.0), _tilted_direction().ravel())


def _write_source_series(volume: CTVolume, folder: Path) -> list[Path]:
    """A minimal non-contrast CT series (what a scanner would send), written with pydicom."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    d = volume.direction_matrix
    paths = []
    for k in range(volume.shape_zyx[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "P-0042", "19600101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240105", "101500", "ACC77", "S1"
        ds.StudyDescription, ds.SeriesDescription, ds.Modality = "CT ABDOMEN", "NCCT 3 mm", "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in volume.index_to_lps(np.array([0, 0, k]))]
        ds.ImageOrientationPatient = [float(v) for v in (*d[:, 0], *d[:, 1])]
        ds.PixelSpacing = [volume.spacing_mm[1], volume.spacing_mm[0]]
        ds.SliceThickness = volume.spacing_mm[2]
        ds.Rows, ds.Columns = volume.shape_zyx[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (volume.array[k].astype(np.int32) + 1024).astype("<u2").tobytes()
        path = folder / f"src{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _read_series(folder: Path) -> tuple[CTVolume, dict]:
    """The series as SimpleITK reads it, plus the DICOM dict contract (what io.read_volume records)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    volume = CTVolume.from_sitk(reader.Execute())
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    first = headers[0]
    meta = {
        "StudyInstanceUID": first.StudyInstanceUID,
        "SeriesInstanceUID": first.SeriesInstanceUID,
        "FrameOfReferenceUID": first.FrameOfReferenceUID,
        "SOPClassUID": first.SOPClassUID or first.file_meta.MediaStorageSOPClassUID,
        # de-identified files may blank the data set's UID: the file meta keeps it
        "SOPInstanceUIDs": [h.SOPInstanceUID or h.file_meta.MediaStorageSOPInstanceUID for h in headers],
        "ImagePositionPatient": [[float(v) for v in h.ImagePositionPatient] for h in headers],
    }
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "StudyDescription"):
        if keyword in first:
            meta[keyword] = str(first.data_element(keyword).value)
    return volume, meta


def _enhanced(source: CTVolume) -> CTVolume:
    """A "synthetic" volume: the source with a bright tube, HU up to 450 and one at -2 (odd values)."""
    array = source.array.copy()
    array[:, 8:12, 10:14] = 450
    array[0, 5, 5] = -2
    return source.with_array(array)


@pytest.fixture()
def exported(tmp_path):
    source_volume = _source_volume()
    _write_source_series(source_volume, tmp_path / "nc")
    source, meta = _read_series(tmp_path / "nc")
    synthetic = _enhanced(source)
    files = export_synthetic_dicom(synthetic, tmp_path / "synthetic", PROVENANCE, source_dicom_meta=meta)
    datasets = [pydicom.dcmread(f) for f in files]
    return {"source": source, "meta": meta, "synthetic": synthetic, "files": files, "datasets": datasets}


def test_source_fixture_is_a_real_oblique_series(exported):
    source = exported["source"]
    np.testing.assert_allclose(source.direction, _tilted_direction().ravel(), atol=1e-5)
    np.testing.assert_array_equal(source.array, _source_volume().array)


def test_series_reads_back_in_simpleitk_with_identical_geometry_and_hu(exported):
    import SimpleITK as sitk

    folder = exported["files"][0].parent
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    back = CTVolume.from_sitk(reader.Execute())
    synthetic = exported["synthetic"]
    np.testing.assert_allclose(back.origin_mm, synthetic.origin_mm, atol=1e-4)
    np.testing.assert_allclose(back.spacing_mm, synthetic.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(back.direction, synthetic.direction, atol=1e-4)
    assert np.array_equal(back.array.astype(np.int32), synthetic.array.astype(np.int32))


def test_series_reads_back_in_pydicom_slice_by_slice(exported):
    synthetic = exported["synthetic"]
    d = synthetic.direction_matrix
    for k, ds in enumerate(exported["datasets"]):
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(hu, synthetic.array[k])
        assert ds.pixel_array.dtype == np.int16
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], synthetic.index_to_lps(np.array([0, 0, k])), atol=1e-4)
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [*d[:, 0], *d[:, 1]], atol=1e-6)
        # PixelSpacing is row spacing \ column spacing = y \ x
        assert [float(v) for v in ds.PixelSpacing] == [synthetic.spacing_mm[1], synthetic.spacing_mm[0]]
        assert float(ds.SliceThickness) == pytest.approx(synthetic.spacing_mm[2], abs=1e-4)
        assert (ds.Rows, ds.Columns) == synthetic.shape_zyx[1:]
        assert ds.InstanceNumber == k + 1


def test_synthetic_data_flag_is_yes(exported):
    assert all(ds.SyntheticData == "YES" for ds in exported["datasets"])


def test_image_type_is_derived_secondary(exported):
    assert all(list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] for ds in exported["datasets"])


def test_derivation_description_names_method_model_hash_and_says_not_acquired(exported):
    for ds in exported["datasets"]:
        text = ds.DerivationDescription
        assert PROVENANCE["method"] in text
        assert PROVENANCE["model_id"] in text and PROVENANCE["model_version"] in text
        assert PROVENANCE["weights_sha256"] in text
        assert "Not an acquired contrast study" in text


def test_derivation_code_sequence_codes_ai_synthesis(exported):
    for ds in exported["datasets"]:
        codes = [(item.CodeValue, item.CodingSchemeDesignator) for item in ds.DerivationCodeSequence]
        assert ("123110", "DCM") in codes
        assert all(item.CodeMeaning for item in ds.DerivationCodeSequence)


def test_series_description_starts_with_synthetic(exported):
    assert all(ds.SeriesDescription.startswith("SYNTHETIC ") for ds in exported["datasets"])
    assert all(len(ds.SeriesDescription) <= 64 for ds in exported["datasets"])


def test_no_contrast_bolus_attributes(exported):
    for ds in exported["datasets"]:
        assert "ContrastBolusAgent" not in ds
        assert (0x0018, 0x0010) not in ds
        assert not [kw for kw in CONTRAST_BOLUS_KEYWORDS if kw in ds]
        assert not [e.keyword for e in ds.iterall() if "Contrast" in e.keyword or "Bolus" in e.keyword]


def test_burned_in_annotation_is_no(exported):
    assert all(ds.BurnedInAnnotation == "NO" for ds in exported["datasets"])


def test_study_and_frame_of_reference_kept_series_and_instances_new(exported):
    meta, datasets = exported["meta"], exported["datasets"]
    assert {ds.StudyInstanceUID for ds in datasets} == {meta["StudyInstanceUID"]}
    assert {ds.FrameOfReferenceUID for ds in datasets} == {meta["FrameOfReferenceUID"]}
    series = {ds.SeriesInstanceUID for ds in datasets}
    assert len(series) == 1 and meta["SeriesInstanceUID"] not in series
    sops = [ds.SOPInstanceUID for ds in datasets]
    assert len(set(sops)) == len(sops) and not set(sops) & set(meta["SOPInstanceUIDs"])
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in datasets)
    assert all(ds.SOPClassUID == CT_IMAGE_STORAGE for ds in datasets)
    # patient and study module copied from the source
    assert {(str(ds.PatientName), ds.PatientID, ds.AccessionNumber) for ds in datasets} == {("Doe^Jane", "P-0042", "ACC77")}


def test_source_image_sequence_references_the_source_slice_at_the_same_position(exported):
    meta = exported["meta"]
    for k, ds in enumerate(exported["datasets"]):
        (reference,) = ds.SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == meta["SOPInstanceUIDs"][k]
        assert reference.ReferencedSOPClassUID == meta["SOPClassUID"]
        assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], meta["ImagePositionPatient"][k], atol=1e-4)


def test_non_dicom_source_gets_a_new_study_and_anonymous_placeholders(tmp_path):
    source = _source_volume()
    files = export_synthetic_dicom(_enhanced(source), tmp_path / "out", PROVENANCE, source=source)
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert all(str(ds.PatientName) == "ANONYMOUS^SYNTHETIC" and ds.PatientID == "ANONYMOUS" for ds in datasets)
    assert all("SourceImageSequence" not in ds for ds in datasets)
    named = export_synthetic_dicom(
        _enhanced(source), tmp_path / "named", {**PROVENANCE, "PatientID": "PHANTOM-1", "PatientName": "Phantom^One"}
    )
    assert pydicom.dcmread(named[0]).PatientID == "PHANTOM-1"


def test_blank_source_uids_are_replaced_not_copied(exported, tmp_path):
    meta = {**exported["meta"], "StudyInstanceUID": "", "SOPInstanceUIDs": [""] * 6}
    files = export_synthetic_dicom(exported["synthetic"], tmp_path / "blank", PROVENANCE, source_dicom_meta=meta)
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1 and datasets[0].StudyInstanceUID
    assert {ds.FrameOfReferenceUID for ds in datasets} == {meta["FrameOfReferenceUID"]}
    assert all("SourceImageSequence" not in ds for ds in datasets)
    with pytest.raises(JobError, match="6 slices"):
        export_synthetic_dicom(
            exported["synthetic"], tmp_path / "short", PROVENANCE,
            source_dicom_meta={**exported["meta"], "SOPInstanceUIDs": exported["meta"]["SOPInstanceUIDs"][:5]},
        )


def test_hu_outside_int16_and_fractional_hu_are_stored_as_exactly_as_possible(tmp_path):
    wide = CTVolume(np.array([[[-3024, 0, 40000]]], dtype=np.int32).repeat(2, axis=0))
    stored, intercept = hu_to_stored(wide.array)
    assert stored.dtype == np.int16 and intercept != 0
    files = export_synthetic_dicom(wide, tmp_path / "wide", PROVENANCE)
    ds = pydicom.dcmread(files[0])
    assert (ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)).tolist() == [[-3024, 0, 40000]]
    fractional = CTVolume(np.array([[[40.4, 349.6, -0.5]]], dtype=np.float32))
    ds = pydicom.dcmread(export_synthetic_dicom(fractional, tmp_path / "float", PROVENANCE)[0])
    assert (ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)).tolist() == [[40, 350, 0]]


def test_missing_provenance_is_refused(tmp_path):
    with pytest.raises(JobError, match="weights_sha256"):
        export_synthetic_dicom(_source_volume(), tmp_path / "x", {"model_id": "m", "model_version": "1"})
    assert not (tmp_path / "x").exists()


def test_export_is_atomic(tmp_path):
    volume = _source_volume()
    out = tmp_path / "series"
    out.mkdir()
    (out / "keep.dcm").write_bytes(b"old")
    with pytest.raises(OutputError, match="not empty"):
        export_synthetic_dicom(volume, out, PROVENANCE)
    assert [p.name for p in out.iterdir()] == ["keep.dcm"]

    def fail_at_third_slice(stage, done, total):
        if done == 3:
            raise KeyboardInterrupt  # e.g. the user cancels half-way

    with pytest.raises(KeyboardInterrupt):
        export_synthetic_dicom(volume, tmp_path / "cancelled", PROVENANCE, progress=fail_at_third_slice)
    assert not (tmp_path / "cancelled").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # no staging folder left

    files = export_synthetic_dicom(volume, out, PROVENANCE, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [f.name for f in files]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


@pytest.mark.realdata
def test_real_contrast_series_as_source_drops_its_contrast_tags_and_references_it(real_data, tmp_path):
    """The real series (JPEG 2000, de-identified, ContrastBolusAgent = APPLIED) as the source.

    Its de-identification blanked the Study Instance UID (a new study UID is made) but kept the
    Frame of Reference UID (kept) and the SOP Instance UIDs in the file meta (referenced in order).
    """
    folder = real_data / "dicom_abdomen_contrast"
    source, meta = _read_series(folder)
    first = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert first.ContrastBolusAgent == "APPLIED" and first.StudyInstanceUID == ""
    files = export_synthetic_dicom(source, tmp_path / "syn", PROVENANCE, source_dicom_meta=meta)
    assert len(files) == 20
    datasets = [pydicom.dcmread(f) for f in files]
    study = {ds.StudyInstanceUID for ds in datasets}
    assert len(study) == 1 and "" not in study
    assert {ds.FrameOfReferenceUID for ds in datasets} == {meta["FrameOfReferenceUID"]} != {""}
    assert [ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in datasets] == meta["SOPInstanceUIDs"]
    assert all(uid for uid in meta["SOPInstanceUIDs"])
    for ds in datasets:
        assert ds.SyntheticData == "YES"
        assert not [e.keyword for e in ds.iterall() if "Contrast" in e.keyword or "Bolus" in e.keyword]
    back, _ = _read_series(tmp_path / "syn")
    assert back.same_geometry(source, tol_mm=1e-4)
    assert np.array_equal(back.array.astype(np.int32), source.array.astype(np.int32))
