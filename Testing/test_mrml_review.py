"""The review of a synthesized phantom: linked views, shared window, one PNG of the slice renders.

The phantom is synthesized by the background worker (the real default model where it is
installed, else the numpy-only dummy worker) and shown by the module's logic; the PNG is what
``digital-contrast screenshots`` commits as Resources/Screenshots/review.png.
"""

from __future__ import annotations

import pytest
from module_support import PHANTOM_SIZE_XYZ, PHANTOM_SPACING_MM, dummy_client_factory, real_engine_unavailable

pytestmark = [pytest.mark.mrml, pytest.mark.process]


def test_review_of_a_synthesized_phantom_shows_the_lumen_enhanced_in_the_synthetic_view(tmp_path):
    from PIL import Image

    from DigitalContrastLib.mrml.review_layout import REVIEW_CORONAL_LAYOUT_ID
    from DigitalContrastLib.mrml.screenshots import make_review_screenshot
    from DigitalContrastLib.mrml.views import layout_node_of
    from DigitalContrastLib.worker.client import WorkerClient

    (tmp_path / "jobs").mkdir()
    factory = (dummy_client_factory(tmp_path / "jobs") if real_engine_unavailable()
               else (lambda: WorkerClient(work_root=tmp_path / "jobs")))
    panel = (240, 240)
    shot = make_review_screenshot(tmp_path / "review.png", client_factory=factory, seed=2, size_xyz=PHANTOM_SIZE_XYZ,
                                  spacing_xyz_mm=PHANTOM_SPACING_MM, panel_size=panel, device="cpu")
    scene, nodes = shot.scene, shot.nodes
    print(f"model {shot.model}; lumen grey per view ({shot.lumen_voxels} voxels): {shot.lumen_grey}")

    assert layout_node_of(scene).GetViewArrangement() == REVIEW_CORONAL_LAYOUT_ID
    assert shot.view_names[:3] == ["DCNonContrast", "DCSynthetic", "DCReal"]
    for name, key in zip(shot.view_names, ["nc", "synthetic", "real"] * 2):
        composite = scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{name}")
        assert composite.GetBackgroundVolumeID() == nodes[key].GetID(), name
        assert composite.GetLinkedControl() == 1
    synthetic_display, real_display = nodes["synthetic"].GetDisplayNode(), nodes["real"].GetDisplayNode()
    assert (synthetic_display.GetWindow(), synthetic_display.GetLevel()) == \
        (real_display.GetWindow(), real_display.GetLevel()) == (700.0, 200.0)

    image = Image.open(shot.path)
    assert image.size == (4 + 3 * (panel[0] + 4), 2 * (panel[1] + 42 + 4)), "3 columns, axial and coronal rows"
    assert shot.lumen_voxels >= 20
    # the views use different windows (NC 400/40, synthetic and real 700/200): compare the lumen in HU, read back
    # from each view's grey level through its own window
    lumen_hu = {}
    for name, key in zip(shot.view_names[:3], ["nc", "synthetic", "real"]):
        display = nodes[key].GetDisplayNode()
        low = display.GetLevel() - display.GetWindow() / 2
        lumen_hu[name] = low + shot.lumen_grey[name] / 255.0 * display.GetWindow()
    assert lumen_hu["DCSynthetic"] > lumen_hu["DCNonContrast"] + 150, lumen_hu
    assert lumen_hu["DCReal"] > lumen_hu["DCNonContrast"] + 150, lumen_hu
