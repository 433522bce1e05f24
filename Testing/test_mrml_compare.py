"""Registration, metrics and labelled DICOM export through the module's logic, on real scenes.

Registration runs in a background thread while the test polls it as the module's timer does; it
must recover the phantom's known rigid misregistration. The DICOM export of a synthetic node is
re-read with pydicom and SimpleITK, independently of the exporter.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pydicom
import pytest
from module_support import (
    PHANTOM_SIZE_XYZ,
    PHANTOM_SPACING_MM,
    array_of,
    dummy_client_factory,
    geometry_of,
    headless,
    node_in_study,
    small_phantom,
)

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.dicom_meta import dicom_meta_from_files
from DigitalContrastLib.mrml import provenance as prov

pytestmark = pytest.mark.mrml

#: Fixed -> moving: 3 deg about z, -2 deg about x, 1.5 deg about y, (4, -3, 5) mm.
MISREGISTRATION = dict(rotation_z_deg=3.0, rotation_x_deg=-2.0, rotation_y_deg=1.5, translation_mm=(4.0, -3.0, 5.0))


@pytest.fixture(scope="module")
def misregistered_case():
    from DigitalContrastLib.phantoms.generator import make_phantom
    from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

    motion = RigidMisregistration(**MISREGISTRATION)
    case = make_phantom(4, size_xyz=PHANTOM_SIZE_XYZ, spacing_xyz_mm=PHANTOM_SPACING_MM, misregistration=motion)
    return case, motion


def _displacement_error_mm(case, estimated, truth) -> np.ndarray:
    """|estimated(p) - truth(p)| in mm for (about 5,000) body voxels p of the non-contrast scan."""
    from DigitalContrastLib.ct.masks import body_mask_from_ct

    index = np.argwhere(body_mask_from_ct(case.noncontrast.array))
    index = index[:: max(1, len(index) // 5000)]
    points = case.noncontrast.index_to_lps(index[:, ::-1].astype(float))
    mapped = [(np.array(estimated.TransformPoint(tuple(p))), np.array(truth.TransformPoint(tuple(p)))) for p in points]
    return np.array([np.linalg.norm(a - b) for a, b in mapped])


@pytest.mark.slow
def test_registration_in_the_background_recovers_a_known_rigid_misregistration_within_1mm(misregistered_case):
    import SimpleITK as sitk

    from DigitalContrastLib.mrml.compare_logic import FIELD_OF_VIEW_REFERENCE, REGISTERED_FROM, REGISTRATION
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    case, motion = misregistered_case
    scene, app_logic = headless()
    nc_node = node_in_study(scene, case.noncontrast, "NC")[0]
    real_node = node_in_study(scene, case.contrast, "Arterial")[0]
    logic = SynthesisLogic(scene, app_logic)
    task = logic.register_real(nc_node, real_node, "rigid", wait=False, seed=0)

    polls, slowest_poll_s, progress = 0, 0.0, []
    while not task.finished:  # the module's timer: the GUI thread keeps running meanwhile
        started = time.perf_counter()
        for event in task.poll():
            if event.type == "progress":
                progress.append((event.stage, event.fraction))
            elif event.type == "error":
                raise event.error
        slowest_poll_s = max(slowest_poll_s, time.perf_counter() - started)
        polls += 1
        time.sleep(0.05)
    registered = task.result
    truth = motion.to_sitk(case.params["misregistration"]["center_lps_mm"])
    before = _displacement_error_mm(case, sitk.Transform(3, sitk.sitkIdentity), truth)
    after = _displacement_error_mm(case, registered.transform, truth)
    print(f"registration {task.seconds:.1f} s, {polls} polls (slowest {slowest_poll_s * 1000:.0f} ms): mean "
          f"displacement error {before.mean():.2f} mm before, {after.mean():.3f} mm after (95th pct "
          f"{np.percentile(after, 95):.3f} mm)")
    assert before.mean() > 5.0, "the misregistration is real"
    assert after.mean() < 1.0
    assert polls >= 5 and slowest_poll_s < 0.5, "the GUI thread was never blocked for long"
    stages = list(dict.fromkeys(stage for stage, _ in progress))
    assert "registration" in stages, stages
    for stage in stages:  # each stage's progress only goes forward
        fractions = [fraction for name, fraction in progress if name == stage]
        assert fractions == sorted(fractions), (stage, fractions)

    node = registered.node
    assert node.GetName() == "Arterial registered" and geometry_of(node) == geometry_of(nc_node)
    assert node.GetAttribute(REGISTERED_FROM) == real_node.GetID()
    figures = json.loads(node.GetAttribute(REGISTRATION))
    assert figures["method"] == "rigid" and figures["final_stage"] == "rigid"
    assert figures["rigid_parameters"]["rotation_deg"] == pytest.approx([-2.0, 1.5, 3.0], abs=0.3)
    mask = node.GetNodeReference(FIELD_OF_VIEW_REFERENCE)
    assert mask is registered.field_of_view_node and mask.GetHideFromEditors()
    covered = array_of(mask).astype(bool)
    assert 0.8 < covered.mean() < 1.0, "the 5 mm shift moves a few slices out of the real scan"

    # what a reader sees: the registered lumen sits where the non-contrast lumen is
    from DigitalContrastLib.ct.labels import LABELS

    lumen = (case.labels.array == LABELS["aortic_lumen"]) & covered
    registered_lumen_hu = array_of(node)[lumen].mean()
    print(f"lumen HU in the real scan at the NC lumen: {case.contrast.array[lumen].mean():.0f} before, "
          f"{registered_lumen_hu:.0f} after registration")
    assert registered_lumen_hu > case.contrast.array[lumen].mean() + 50

    again = logic.register_real(nc_node, real_node, "rigid", seed=0)
    assert scene.GetNodesByName("Arterial registered").GetNumberOfItems() == 1, "a new registration replaces the old"
    assert again.node.GetNodeReference(FIELD_OF_VIEW_REFERENCE) is not None


def test_metrics_of_the_synthetic_against_the_registered_real_scan(tmp_path):
    from DigitalContrastLib.evaluation.comparison import NO_LABELS_NOTE
    from DigitalContrastLib.mrml.compare_logic import METRICS_FOR
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic
    from DigitalContrastLib.mrml.table_nodes import table_node_to_metrics
    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    (tmp_path / "jobs").mkdir()
    case = small_phantom()
    scene, app_logic = headless()
    nc_node = node_in_study(scene, case.noncontrast, "NC")[0]
    real_node = node_in_study(scene, case.contrast, "Arterial")[0]
    labels_node = volume_to_node(scene, case.labels, "Labels")
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(tmp_path / "jobs"))
    synthetic_node = logic.process(nc_node, timeout=120)
    logic.close()

    outcome = logic.compute_metrics(nc_node, synthetic_node, real_node, labels_node)
    synthetic, baseline = outcome.rows
    assert (synthetic["comparison"], baseline["comparison"]) == ("synthetic vs real", "non-contrast vs real")
    print({k: round(v, 2) for k, v in synthetic.items() if isinstance(v, float)})
    # the dummy adds +300 HU to the lumen: it is far closer to the real lumen (250-450 HU) than the NC is
    assert synthetic["lumen_mae_hu"] < 0.5 * baseline["lumen_mae_hu"]
    assert baseline["lumen_median_hu_pred"] < 100 < 200 < synthetic["lumen_median_hu_pred"]
    assert 0 < synthetic["body_ssim"] <= 1 and synthetic["body_psnr_db"] > 0
    assert np.isfinite(synthetic["max_diameter_mm_ref"]) and synthetic["max_diameter_mm_ref"] > 10
    table = outcome.table_node
    assert table.GetAttribute(METRICS_FOR) == synthetic_node.GetID()
    rows = table_node_to_metrics(table)
    assert rows[0]["lumen_mae_hu"] == pytest.approx(synthetic["lumen_mae_hu"])
    assert table.GetColumnUnitLabel("lumen_mae_hu") == "HU"

    body_only = logic.compute_metrics(nc_node, synthetic_node, real_node)
    assert NO_LABELS_NOTE in body_only.notes and "lumen_mae_hu" not in body_only.synthetic
    assert body_only.synthetic["body_mae_hu"] == pytest.approx(synthetic["body_mae_hu"])
    tables = scene.GetNodesByClass("vtkMRMLTableNode")
    assert sum(tables.GetItemAsObject(i).GetAttribute(METRICS_FOR) == synthetic_node.GetID()
               for i in range(tables.GetNumberOfItems())) == 1, "one metrics table per synthetic volume"

    shifted = case.contrast.with_array(case.contrast.array)
    shifted.origin_mm = (shifted.origin_mm[0] + 7.0, *shifted.origin_mm[1:])
    elsewhere = volume_to_node(scene, shifted, "Unregistered")
    with pytest.raises(InputError, match="register it onto the non-contrast scan first"):
        logic.compute_metrics(nc_node, synthetic_node, elsewhere)


def test_a_dicom_input_keeps_its_series_facts_and_the_export_joins_its_study(tmp_path):
    """DICOM in (read by the library), dummy synthesis, labelled DICOM out; re-read independently."""
    import SimpleITK as sitk
    from ct_test_inputs import ct_like_volume, write_dicom_series

    from DigitalContrastLib.ct.dicom_export import CONTRAST_BOLUS_KEYWORDS
    from DigitalContrastLib.ct.volume import CTVolume
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    (tmp_path / "jobs").mkdir()
    hu = ct_like_volume((20, 64, 64), pixel_mm=3.0)
    files = write_dicom_series(tmp_path / "ncct", hu, spacing_xyz_mm=(3.0, 3.0, 2.5), description="NCCT 2.5 mm")
    source_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID

    scene, app_logic = headless()
    nc_node = prov.load_volume_node(scene, tmp_path / "ncct")
    assert nc_node.GetName() == "NCCT 2.5 mm"
    meta = json.loads(nc_node.GetAttribute(prov.DICOM_META))
    assert meta["SOPInstanceUIDs"] == source_uids and meta["StudyInstanceUID"] == study_uid
    nc_volume = prov.volume_of_node(nc_node)
    assert np.array_equal(nc_volume.array, hu)
    # a node Slicer's DICOM module loaded: the same facts from its files, in slice order
    shuffled = list(reversed(files))
    assert dicom_meta_from_files(shuffled, nc_volume.shape_zyx[0], nc_volume.direction) == meta

    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(tmp_path / "jobs"))
    synthetic_node = logic.process(nc_node, timeout=120)
    logic.close()
    assert json.loads(synthetic_node.GetAttribute(prov.SOURCE_DICOM_META)) == meta
    scene.RemoveNode(nc_node)  # the export must not need the source node any more

    written = logic.export_dicom(synthetic_node, tmp_path / "synthetic_dicom")
    assert len(written) == 20
    datasets = [pydicom.dcmread(f) for f in written]
    synthetic = prov.volume_of_node(synthetic_node)
    for k, ds in enumerate(datasets):
        assert ds.SyntheticData == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription.startswith("SYNTHETIC ")
        assert "dummy" in ds.DerivationDescription and prov.DUMMY_WEIGHTS_LABEL in ds.DerivationDescription
        assert "Not an acquired contrast study" in ds.DerivationDescription
        assert not [kw for kw in CONTRAST_BOLUS_KEYWORDS if kw in ds]
        assert ds.StudyInstanceUID == study_uid and ds.SeriesInstanceUID != meta["SeriesInstanceUID"]
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source_uids[k]
        hu_k = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(hu_k, synthetic.array[k])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "synthetic_dicom")))
    back = CTVolume.from_sitk(reader.Execute())
    assert back.same_geometry(synthetic, tol_mm=1e-4)
    assert np.array_equal(back.array.astype(np.int32), synthetic.array.astype(np.int32))


def test_only_synthetic_volumes_are_exported_as_synthetic_series(tmp_path):
    from DigitalContrastLib.mrml.compare_logic import start_export
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    scene, app_logic = headless()
    nc_node = node_in_study(scene, small_phantom().noncontrast, "NC")[0]
    with pytest.raises(InputError, match="not a synthetic volume"):
        SynthesisLogic(scene, app_logic).export_dicom(nc_node, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    nc_node.SetAttribute(prov.SYNTHETIC, "1")  # marked synthetic but no model named: refused by the exporter
    task = start_export(nc_node, tmp_path / "out")
    with pytest.raises(Exception, match="model_id"):
        task.wait(timeout=60)
    assert not (tmp_path / "out").exists()
