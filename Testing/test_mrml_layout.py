"""The review layout on a real vtkMRMLScene: linked views, presets, MIP, overlays, PNG renders.

The test volume (built here, LPS): an elliptic body of 40 HU in air, a spine of 700 HU, and an
"aorta" tube of radius 6 mm to the patient's left-anterior of the spine: 40 HU in the non-contrast
scan, 350 HU in the "synthetic" one, 330 HU in the "real" one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from DigitalContrastLib.ct.volume import CTVolume

pytestmark = pytest.mark.mrml

SHAPE_ZYX = (41, 96, 96)  # odd slice count: the centre slice is a voxel plane
SPACING_MM = (1.0, 1.0, 2.5)
ORIGIN_MM = (-48.0, -50.0, 0.0)
TUBE_CENTER_XY = (60, 44)  # voxel (x, y): x > centre = patient's left, y < spine = anterior
SPINE_CENTER_XY = (48, 70)
DOT_INDEX_ZYX = (22, 30, 30)  # a small calcification 5 mm above the centre slice (z index 20)


def phantom(lumen_hu: int, dot: bool = False) -> CTVolume:
    z, y, x = np.mgrid[0 : SHAPE_ZYX[0], 0 : SHAPE_ZYX[1], 0 : SHAPE_ZYX[2]]
    array = np.full(SHAPE_ZYX, -1000, np.int16)
    array[((x - 48) / 42.0) ** 2 + ((y - 50) / 34.0) ** 2 <= 1] = 40
    array[(x - SPINE_CENTER_XY[0]) ** 2 + (y - SPINE_CENTER_XY[1]) ** 2 <= 7**2] = 700
    array[(x - TUBE_CENTER_XY[0]) ** 2 + (y - TUBE_CENTER_XY[1]) ** 2 <= 6**2] = lumen_hu
    if dot:
        kz, ky, kx = DOT_INDEX_ZYX
        array[kz, ky - 1 : ky + 2, kx - 1 : kx + 2] = 1000
    return CTVolume(array, SPACING_MM, ORIGIN_MM)


def lps_to_ras(volume: CTVolume, index_xyz) -> tuple[float, float, float]:
    lps = volume.index_to_lps(np.asarray(index_xyz, dtype=float))
    return (-lps[0], -lps[1], lps[2])


@pytest.fixture()
def review_scene():
    from DigitalContrastLib.mrml.headless import make_headless_scene
    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    scene, app_logic = make_headless_scene()
    nodes = {
        "nc": volume_to_node(scene, phantom(40, dot=True), "case NC"),
        "synthetic": volume_to_node(scene, phantom(350), "case synthetic"),
        "real": volume_to_node(scene, phantom(330), "case real"),
    }
    return scene, app_logic, nodes


def _png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _panel(image: np.ndarray, index: int, size, columns: int) -> np.ndarray:
    from DigitalContrastLib.mrml.view_png import panel_offset_px

    x0, y0 = panel_offset_px(index, size, columns)
    return image[y0 : y0 + size[1], x0 : x0 + size[0]]


def _pixel(app_logic, name: str, ras, size) -> tuple[int, int]:
    from DigitalContrastLib.mrml.view_png import ras_to_view_pixel

    col, row = ras_to_view_pixel(app_logic.GetSliceLogicByLayoutName(name), ras, size)
    return int(round(col)), int(round(row))


def _grey_at(panel: np.ndarray, app_logic, name: str, ras, radius: int = 2) -> float:
    col, row = _pixel(app_logic, name, ras, panel.shape[1::-1])
    return float(panel[row - radius : row + radius + 1, col - radius : col + radius + 1].mean())


def test_review_layout_xml_is_valid_and_registered_idempotently(review_scene):
    from DigitalContrastLib.mrml.review_layout import (
        REVIEW_CORONAL_LAYOUT_ID,
        REVIEW_LAYOUT_ID,
        register_review_layouts,
        review_layout_xml,
    )
    from DigitalContrastLib.mrml.views import layout_node_of

    scene, _, _ = review_scene
    root = ElementTree.fromstring(review_layout_xml(True, True))
    tags = [view.get("singletontag") for view in root.iter("view")]
    assert tags == ["DCNonContrast", "DCSynthetic", "DCReal", "DCNonContrastCoronal", "DCSyntheticCoronal", "DCRealCoronal"]
    layout_node = layout_node_of(scene)
    register_review_layouts(layout_node)
    register_review_layouts(layout_node)
    assert layout_node.IsLayoutDescription(REVIEW_LAYOUT_ID)
    assert layout_node.GetLayoutDescription(REVIEW_CORONAL_LAYOUT_ID) == review_layout_xml(True, True)


def test_three_linked_views_show_nc_synthetic_real(review_scene):
    from DigitalContrastLib.mrml.review_layout import REVIEW_LAYOUT_ID, show_review
    from DigitalContrastLib.mrml.views import layout_node_of

    scene, app_logic, nodes = review_scene
    views = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"])
    assert layout_node_of(scene).GetViewArrangement() == REVIEW_LAYOUT_ID
    assert views.view_names == ["DCNonContrast", "DCSynthetic", "DCReal"]
    expected = {"DCNonContrast": "nc", "DCSynthetic": "synthetic", "DCReal": "real"}
    labels = {"DCNonContrast": "Non-contrast", "DCSynthetic": "Synthetic", "DCReal": "Real contrast"}
    for name, key in expected.items():
        composite = scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{name}")
        assert composite is not None, name
        assert composite.GetBackgroundVolumeID() == nodes[key].GetID()
        assert composite.GetForegroundVolumeID() is None
        assert composite.GetLinkedControl() == 1
        slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        assert slice_node.GetOrientation() == "Axial"
        assert slice_node.GetViewGroup() == 0
        assert slice_node.GetLayoutLabel() == labels[name]
        # the slice logic serving this view is registered where Slicer's code looks for it
        assert app_logic.GetSliceLogicByLayoutName(name).GetSliceNode() is slice_node
    groups = {scene.GetSingletonNode(n, "vtkMRMLSliceNode").GetViewGroup() for n in expected}
    assert len(groups) == 1


def test_synthetic_and_real_share_the_cta_window_and_nc_gets_soft_tissue(review_scene):
    from DigitalContrastLib.mrml.review_layout import show_review

    scene, app_logic, nodes = review_scene
    show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], preset="aorta-lumen")
    synthetic, real, nc = (nodes[k].GetDisplayNode() for k in ("synthetic", "real", "nc"))
    assert (synthetic.GetWindow(), synthetic.GetLevel()) == (real.GetWindow(), real.GetLevel()) == (600.0, 250.0)
    assert synthetic.GetAutoWindowLevel() == real.GetAutoWindowLevel() == 0
    assert (nc.GetWindow(), nc.GetLevel()) == (400.0, 40.0)


def test_linked_views_follow_each_other(review_scene):
    """Moving one view through its slice logic while interacting moves the other linked axial views."""
    import slicer

    from DigitalContrastLib.mrml.review_layout import show_review

    scene, app_logic, nodes = review_scene
    views = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"])
    synthetic = views.slice_logics["DCSynthetic"]
    synthetic.StartSliceOffsetInteraction()
    synthetic.SetSliceOffset(synthetic.GetSliceOffset() + 12.5)
    synthetic.EndSliceOffsetInteraction()
    offsets = {name: logic.GetSliceOffset() for name, logic in views.slice_logics.items()}
    assert len({round(v, 6) for v in offsets.values()}) == 1, offsets
    assert isinstance(synthetic, slicer.vtkMRMLSliceLogic)


def test_coronal_row_and_two_column_variants(review_scene):
    from DigitalContrastLib.mrml.review_layout import (
        REVIEW_CORONAL_LAYOUT_ID,
        REVIEW_TWO_LAYOUT_ID,
        show_review,
    )
    from DigitalContrastLib.mrml.views import layout_node_of

    scene, app_logic, nodes = review_scene
    views = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], coronal_row=True)
    assert layout_node_of(scene).GetViewArrangement() == REVIEW_CORONAL_LAYOUT_ID
    assert views.view_names[3:] == ["DCNonContrastCoronal", "DCSyntheticCoronal", "DCRealCoronal"]
    for name, key in zip(views.view_names[3:], ["nc", "synthetic", "real"]):
        assert scene.GetSingletonNode(name, "vtkMRMLSliceNode").GetOrientation() == "Coronal"
        composite = scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{name}")
        assert composite.GetBackgroundVolumeID() == nodes[key].GetID()
        assert composite.GetLinkedControl() == 1

    two = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"])
    assert layout_node_of(scene).GetViewArrangement() == REVIEW_TWO_LAYOUT_ID
    assert two.view_names == ["DCNonContrast", "DCSynthetic"]


def test_mip_slab_is_set_on_every_view_and_shows_an_off_plane_calcification(review_scene, tmp_path):
    import vtk

    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.view_png import render_views_png

    scene, app_logic, nodes = review_scene
    nc_volume = phantom(40, dot=True)
    dot_ras = lps_to_ras(nc_volume, DOT_INDEX_ZYX[::-1])
    size = (256, 256)

    thin = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"])
    thin_png = _png(render_views_png(scene, app_logic, thin.view_names, tmp_path / "thin.png", size))
    slab = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], coronal_row=True, mip_mm=12)
    for name in slab.view_names:
        slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        assert slice_node.GetSlabReconstructionEnabled()
        assert slice_node.GetSlabReconstructionType() == vtk.VTK_IMAGE_SLAB_MAX
        assert slice_node.GetSlabReconstructionThickness() == 12.0
    mip_png = _png(render_views_png(scene, app_logic, slab.view_names[:3], tmp_path / "mip.png", size))

    nc_slice = scene.GetSingletonNode("DCNonContrast", "vtkMRMLSliceNode")
    # the view's plane is the centre slice (z index 20); the dot lies 5 mm above it
    assert abs(nc_slice.GetSliceToRAS().GetElement(2, 3) - 50.0) < 1e-6
    in_plane = (dot_ras[0], dot_ras[1], 50.0)
    thin_grey = _grey_at(_panel(thin_png, 0, size, 3), app_logic, "DCNonContrast", in_plane, radius=0)
    mip_grey = _grey_at(_panel(mip_png, 0, size, 3), app_logic, "DCNonContrast", in_plane, radius=0)
    assert mip_grey > 240, "the 1000 HU dot inside the 12 mm slab is white in the MIP (soft-tissue window)"
    assert thin_grey < 150, "the thin slice does not see the dot 5 mm away (soft tissue, 40 HU)"

    show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], mip_mm=None)
    assert not nc_slice.GetSlabReconstructionEnabled()


def test_rendered_review_png_shows_the_lumen_brighter_in_synthetic_in_radiological_orientation(review_scene, tmp_path):
    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.view_png import render_views_png

    scene, app_logic, nodes = review_scene
    views = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"])
    shown = {name: logic.GetSliceNode().GetDimensions() for name, logic in views.slice_logics.items()}
    size = (320, 240)
    path = render_views_png(scene, app_logic, views.view_names, tmp_path / "review.png", size)
    assert {name: logic.GetSliceNode().GetDimensions() for name, logic in views.slice_logics.items()} == shown
    image = _png(path)
    assert image.shape[1] >= 3 * size[0] and image.shape[0] > size[1]

    volume = phantom(40)
    tube_ras = lps_to_ras(volume, (*TUBE_CENTER_XY, 20))
    tissue_ras = lps_to_ras(volume, (30, 55, 20))  # body soft tissue, away from tube and spine
    grey = {}
    for index, name in enumerate(views.view_names):
        panel = _panel(image, index, size, 3)
        grey[name] = (_grey_at(panel, app_logic, name, tube_ras), _grey_at(panel, app_logic, name, tissue_ras))
    nc_lumen, nc_tissue = grey["DCNonContrast"]
    syn_lumen, syn_tissue = grey["DCSynthetic"]
    real_lumen, real_tissue = grey["DCReal"]
    assert syn_lumen > nc_lumen + 40, grey
    assert abs(nc_lumen - nc_tissue) < 5, "unenhanced lumen looks like soft tissue"
    assert syn_lumen - syn_tissue > 80, "enhanced lumen stands out of soft tissue"
    assert real_lumen > real_tissue + 80

    # radiological convention, found from the pixels alone: the enhanced tube (synthetic - NC in
    # their own windows is largest there) is on the image right (patient's left) and above the spine
    synthetic_panel = _panel(image, 1, size, 3).mean(axis=2)
    bright = synthetic_panel > 175  # the tube (350 HU, CTA window: grey 182) and the spine (white)
    rows, cols = np.nonzero(bright & (synthetic_panel < 200))
    assert cols.mean() > size[0] / 2, "patient's left is on the image right"
    spine_rows, _ = np.nonzero(synthetic_panel > 250)
    assert rows.mean() < spine_rows.mean(), "the aorta lies anterior (up) of the spine"


def test_difference_overlay_is_computed_and_shown_over_the_synthetic_view_only(review_scene, tmp_path):
    from DigitalContrastLib.mrml.overlays import OVERLAY_KIND_ATTRIBUTE
    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.view_png import render_views_png
    from DigitalContrastLib.mrml.volume_nodes import node_to_volume

    scene, app_logic, nodes = review_scene
    views = show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], overlay="difference")
    overlay = views.overlay_node
    assert overlay.GetAttribute(OVERLAY_KIND_ATTRIBUTE) == "difference"
    difference = node_to_volume(overlay)
    expected = phantom(350).array.astype(int) - phantom(40, dot=True).array.astype(int)
    assert np.array_equal(difference.array, expected)
    assert difference.same_geometry(node_to_volume(nodes["nc"]))
    synthetic_composite = scene.GetNodeByID("vtkMRMLSliceCompositeNodeDCSynthetic")
    assert synthetic_composite.GetForegroundVolumeID() == overlay.GetID()
    assert synthetic_composite.GetForegroundOpacity() == 0.5
    assert scene.GetNodeByID("vtkMRMLSliceCompositeNodeDCReal").GetForegroundVolumeID() is None
    assert scene.GetNodeByID("vtkMRMLSliceCompositeNodeDCNonContrast").GetForegroundVolumeID() is None

    size = (256, 256)
    image = _png(render_views_png(scene, app_logic, views.view_names, tmp_path / "diff.png", size))
    col, row = _pixel(app_logic, "DCSynthetic", lps_to_ras(phantom(40), (*TUBE_CENTER_XY, 20)), size)
    r, g, b = _panel(image, 1, size, 3)[row, col]
    assert r > g + 40 and r > b + 40, "a positive difference is red"
    col, row = _pixel(app_logic, "DCSynthetic", lps_to_ras(phantom(40), (30, 55, 20)), size)
    r, g, b = _panel(image, 1, size, 3)[row, col]
    assert abs(r - g) < 3 and abs(g - b) < 3, "no difference: the grey image shows through"

    # the second call reuses the overlay node instead of piling up copies
    show_review(scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], overlay="difference")
    kinds = [
        scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetAttribute(OVERLAY_KIND_ATTRIBUTE)
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    assert kinds.count("difference") == 1


def test_uncertainty_map_is_a_foreground_with_opacity(review_scene):
    from DigitalContrastLib.mrml.overlays import UNCERTAINTY_COLOR_NODE_NAME
    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    scene, app_logic, nodes = review_scene
    sigma = phantom(0).with_array(np.random.default_rng(3).uniform(0, 30, SHAPE_ZYX).astype(np.float32))
    uncertainty = volume_to_node(scene, sigma, "uncertainty")
    views = show_review(
        scene, app_logic, nodes["nc"], nodes["synthetic"], nodes["real"], overlay=uncertainty, overlay_opacity=0.35
    )
    composite = scene.GetNodeByID("vtkMRMLSliceCompositeNodeDCSynthetic")
    assert composite.GetForegroundVolumeID() == uncertainty.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.35)
    assert views.overlay_node is uncertainty
    color = scene.GetNodeByID(uncertainty.GetDisplayNode().GetColorNodeID())
    assert color.GetName() == UNCERTAINTY_COLOR_NODE_NAME


def test_grids_that_differ_are_refused_for_the_difference(review_scene):
    from DigitalContrastLib.common.errors import InputError
    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    scene, app_logic, nodes = review_scene
    shifted = phantom(350)
    shifted.origin_mm = (0.0, 0.0, 0.0)
    other = volume_to_node(scene, shifted, "other grid")
    with pytest.raises(InputError, match="different grids"):
        show_review(scene, app_logic, nodes["nc"], other, overlay="difference")


@pytest.mark.realdata
def test_real_cta_review_render_shows_the_aorta_enhanced_only_where_contrast_is(real_data, tmp_path):
    """Real anatomy: a pseudo non-contrast scan (aortic lumen set to unenhanced blood, 40 +- 12 HU)
    beside the real arterial-phase CTA (standing in for both synthetic and real contrast), centred
    on the aorta with a coronal row."""
    import SimpleITK as sitk

    from DigitalContrastLib.mrml.headless import make_headless_scene
    from DigitalContrastLib.mrml.review_layout import show_review
    from DigitalContrastLib.mrml.view_png import ras_to_view_pixel, render_views_png
    from DigitalContrastLib.mrml.volume_nodes import load_volume_file, volume_to_node

    cta = CTVolume.from_sitk(sitk.ReadImage(str(real_data / "cta_chest_arterial.nii.gz")))
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(real_data / "cta_chest_arterial_aorta_mask.nii.gz"))) > 0
    pseudo_nc = cta.array.copy()
    pseudo_nc[aorta] = np.round(40 + np.random.default_rng(1).normal(0, 12, int(aorta.sum()))).astype(np.int16)

    scene, app_logic = make_headless_scene()
    nc = volume_to_node(scene, cta.with_array(pseudo_nc), "pseudo NC")
    real = load_volume_file(scene, real_data / "cta_chest_arterial.nii.gz", "CTA", app_logic)
    centroid_ras = lps_to_ras(cta, np.argwhere(aorta).mean(axis=0)[::-1])
    views = show_review(scene, app_logic, nc, real, real, coronal_row=True, center_ras_mm=centroid_ras)
    size = (300, 300)
    image = _png(render_views_png(scene, app_logic, views.view_names, tmp_path / "real_review.png", size, columns=3))
    assert image.shape == (2 * (size[1] + 42 + 4), 4 + 3 * (size[0] + 4), 3)

    # the centre slice's aortic voxels, projected into each axial panel
    slice_node = scene.GetSingletonNode("DCSynthetic", "vtkMRMLSliceNode")
    plane_z = slice_node.GetSliceToRAS().GetElement(2, 3)
    k = int(round(cta.lps_to_index(np.array([0.0, 0.0, plane_z]))[2]))
    ys, xs = np.nonzero(aorta[k])
    logic = app_logic.GetSliceLogicByLayoutName("DCSynthetic")
    pixels = [ras_to_view_pixel(logic, lps_to_ras(cta, (x, y, k)), size) for x, y in zip(xs, ys)]
    cols = np.clip(np.round([p[0] for p in pixels]).astype(int), 0, size[0] - 1)
    rows = np.clip(np.round([p[1] for p in pixels]).astype(int), 0, size[1] - 1)
    nc_grey = _panel(image, 0, size, 3)[rows, cols].mean()
    synthetic_grey = _panel(image, 1, size, 3)[rows, cols].mean()
    assert synthetic_grey > nc_grey + 40, (nc_grey, synthetic_grey)
