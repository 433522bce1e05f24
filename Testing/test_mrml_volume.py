"""CTVolume <-> MRML volume node, and volume files through Slicer's readers (real vtkMRMLScene)."""

from __future__ import annotations

import numpy as np
import pytest

from DigitalContrastLib.common.errors import InputError, OutputError
from DigitalContrastLib.ct.volume import CTVolume

pytestmark = pytest.mark.mrml


def _oblique_direction() -> np.ndarray:
    """A right-handed rotation about a skew axis (not a permutation: every cosine is non-trivial)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [12.0, -7.0, 25.0], degrees=True).as_matrix()


def _volume(dtype=np.int16) -> CTVolume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 3000, size=(7, 9, 11)).astype(dtype)
    return CTVolume(array, (0.7, 0.8, 2.5), (-12.3, 45.6, -789.01), _oblique_direction().ravel())


@pytest.fixture()
def headless():
    from DigitalContrastLib.mrml.headless import make_headless_scene

    return make_headless_scene()


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_node_round_trip_is_exact(headless, dtype):
    from DigitalContrastLib.mrml.volume_nodes import node_to_volume, volume_to_node

    scene, _ = headless
    volume = _volume(dtype)
    node = volume_to_node(scene, volume, "case 1 NC")
    back = node_to_volume(node)
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)
    # bit-exact geometry: the LPS<->RAS flip only negates, and the node stores the parts separately
    assert back.spacing_mm == volume.spacing_mm
    assert back.origin_mm == volume.origin_mm
    assert back.direction == volume.direction


def test_node_places_voxels_where_lps_says_in_ras(headless):
    """The node's IJK->RAS maps every index to the RAS of the volume's LPS position (x, y negated)."""
    import vtk

    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    scene, _ = headless
    volume = _volume()
    node = volume_to_node(scene, volume, "nc")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    for index in [(0, 0, 0), (10, 0, 0), (0, 8, 0), (0, 0, 6), (10, 8, 6), (3.5, 2.25, 1.0)]:
        ras = np.array(ijk_to_ras.MultiplyPoint((*index, 1.0))[:3])
        lps = volume.index_to_lps(np.array(index))
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
    # the voxel [z, y, x] = [6, 8, 10] is the image data's point (i, j, k) = (10, 8, 6)
    assert node.GetImageData().GetScalarComponentAsDouble(10, 8, 6, 0) == volume.array[6, 8, 10]


def test_attributes_window_level_and_copy_semantics(headless):
    from DigitalContrastLib.mrml.volume_nodes import node_to_volume, volume_to_node

    scene, _ = headless
    volume = _volume()
    node = volume_to_node(scene, volume, "synthetic", {"DigitalContrast.ModelSha256": "ab" * 32}, "cta")
    assert node.GetAttribute("DigitalContrast.ModelSha256") == "ab" * 32
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (700.0, 200.0)
    assert display.GetAutoWindowLevel() == 0
    original = int(volume.array[0, 0, 0])
    volume.array[0, 0, 0] = original + 1  # the node holds its own copy
    back = node_to_volume(node)
    assert back.array[0, 0, 0] == original
    assert back.metadata["mrml_attributes"]["DigitalContrast.ModelSha256"] == "ab" * 32
    back.array[0, 0, 0] = -999  # and node_to_volume returns a copy
    assert node.GetImageData().GetScalarComponentAsDouble(0, 0, 0, 0) != -999


def test_transformed_or_empty_node_is_refused_with_a_fix(headless):
    import slicer

    from DigitalContrastLib.mrml.volume_nodes import node_to_volume, volume_to_node

    scene, _ = headless
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="has no voxels"):
        node_to_volume(empty)
    node = volume_to_node(scene, _volume(), "moved")
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="harden the transform"):
        node_to_volume(node)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_file_written_by_simpleitk_loads_through_slicer_with_the_same_geometry(headless, tmp_path, suffix):
    """A headless scene reads a file with vtkSlicerVolumesLogic: voxels and LPS geometry as ITK wrote them."""
    import SimpleITK as sitk

    from DigitalContrastLib.mrml.volume_nodes import load_volume_file, node_to_volume

    scene, app_logic = headless
    volume = _volume()
    path = tmp_path / f"nc{suffix}"
    sitk.WriteImage(volume.to_sitk(), str(path))
    node = load_volume_file(scene, path, "nc", app_logic)
    back = node_to_volume(node)
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, volume.array)
    tol = 1e-4 if suffix == ".nii.gz" else 1e-9  # NIfTI stores its affine in float32
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, atol=tol)
    np.testing.assert_allclose(back.origin_mm, volume.origin_mm, atol=tol * 100)
    np.testing.assert_allclose(back.direction, volume.direction, atol=tol)


def test_saved_node_reads_back_in_simpleitk_and_slicer(headless, tmp_path):
    import SimpleITK as sitk

    from DigitalContrastLib.mrml.volume_nodes import load_volume_file, node_to_volume, save_volume_node, volume_to_node

    scene, app_logic = headless
    volume = _volume()
    node = volume_to_node(scene, volume, "synthetic")
    path = save_volume_node(node, tmp_path / "out" / "synthetic.nrrd")
    assert sorted(p.name for p in path.parent.iterdir()) == ["synthetic.nrrd"]  # no temporary left
    from_itk = CTVolume.from_sitk(sitk.ReadImage(str(path)))
    assert np.array_equal(from_itk.array, volume.array)
    assert from_itk.same_geometry(volume, tol_mm=1e-9)
    again = node_to_volume(load_volume_file(scene, path, "again", app_logic))
    assert np.array_equal(again.array, volume.array) and again.same_geometry(volume, tol_mm=1e-9)


def test_save_refuses_detached_formats_and_load_reports_missing_files(headless, tmp_path):
    from DigitalContrastLib.mrml.volume_nodes import load_volume_file, save_volume_node, volume_to_node

    scene, app_logic = headless
    node = volume_to_node(scene, _volume(), "nc")
    with pytest.raises(OutputError, match="use one of"):
        save_volume_node(node, tmp_path / "nc.nhdr")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="does not exist"):
        load_volume_file(scene, tmp_path / "missing.nrrd", "x", app_logic)
    (tmp_path / "junk.nrrd").write_bytes(b"not a volume")
    with pytest.raises(InputError, match="could not read"):
        load_volume_file(scene, tmp_path / "junk.nrrd", "junk", app_logic)


@pytest.mark.realdata
def test_real_cta_loads_through_slicer_as_simpleitk_reads_it(headless, real_data):
    import SimpleITK as sitk

    from DigitalContrastLib.mrml.volume_nodes import load_volume_file, node_to_volume

    scene, app_logic = headless
    path = real_data / "cta_chest_arterial.nii.gz"
    expected = CTVolume.from_sitk(sitk.ReadImage(str(path)))
    back = node_to_volume(load_volume_file(scene, path, "cta", app_logic))
    assert back.shape_zyx == (164, 126, 120)
    assert np.array_equal(back.array, expected.array)
    assert back.same_geometry(expected, tol_mm=1e-4)
