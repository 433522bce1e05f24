"""Overlays on the synthetic volume in the review: the signed difference (synthetic - non-contrast) and the uncertainty map, with their colour tables.

Overlay volumes carry :data:`OVERLAY_FOR_ATTRIBUTE` (the synthetic node's id) and
:data:`OVERLAY_KIND_ATTRIBUTE` (``difference`` or ``uncertainty``), so they are found again rather than made twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.display_presets import WindowLevel
from DigitalContrastLib.ct.volume import CTVolume

from .node_files import array_to_node, node_voxels
from .volume_nodes import set_window_level

#: Attribute that marks nodes this module computed for a synthetic volume (overlay reuse).
OVERLAY_FOR_ATTRIBUTE = "DigitalContrast.OverlayFor"


OVERLAY_KIND_ATTRIBUTE = "DigitalContrast.OverlayKind"


DIFFERENCE_COLOR_NODE_NAME = "DigitalContrast difference (blue - / red +)"


UNCERTAINTY_COLOR_NODE_NAME = "DigitalContrast uncertainty"


#: The difference overlay spans -DIFFERENCE_RANGE_HU..+DIFFERENCE_RANGE_HU (saturates beyond).
DIFFERENCE_RANGE_HU = 400.0


#: Differences smaller than this are left transparent (noise level of an abdominal CT).
DIFFERENCE_TRANSPARENT_BELOW_HU = 30.0


def _lookup_table_node(scene: Any, name: str, rgba: np.ndarray) -> Any:
    """A user colour table node called ``name`` holding ``rgba`` (N x 4, 0..1), reused if present."""
    import slicer

    nodes = scene.GetNodesByClassByName("vtkMRMLColorTableNode", name)
    node = nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None
    if node is None:
        node = slicer.vtkMRMLColorTableNode()
        node.SetName(name)
        node.SetTypeToUser()
        node.SetHideFromEditors(False)
        scene.AddNode(node)
    node.SetNumberOfColors(len(rgba))
    for index, (r, g, b, a) in enumerate(rgba):
        node.SetColor(index, float(r), float(g), float(b), float(a))
    node.SetNamesFromColors()
    return node


def difference_color_table(scene: Any) -> Any:
    """Diverging blue (synthetic darker) - transparent - red (synthetic brighter) colour table.

    256 entries over the display range; the central ±``DIFFERENCE_TRANSPARENT_BELOW_HU`` band is
    fully transparent so unchanged tissue shows the grey image beneath.
    """
    t = np.linspace(-1.0, 1.0, 256)
    dead = DIFFERENCE_TRANSPARENT_BELOW_HU / DIFFERENCE_RANGE_HU
    alpha = np.clip((np.abs(t) - dead) / 0.25, 0.0, 1.0)
    rgba = np.zeros((256, 4))
    rgba[t < 0, :3] = (0.15, 0.45, 1.0)
    rgba[t >= 0, :3] = (1.0, 0.25, 0.1)
    rgba[:, 3] = alpha
    return _lookup_table_node(scene, DIFFERENCE_COLOR_NODE_NAME, rgba)


def uncertainty_color_table(scene: Any) -> Any:
    """Sequential transparent -> yellow -> red colour table (the lowest tenth is transparent)."""
    t = np.linspace(0.0, 1.0, 256)
    rgba = np.zeros((256, 4))
    rgba[:, 0] = 1.0
    rgba[:, 1] = 1.0 - 0.8 * t
    rgba[:, 2] = 0.1
    rgba[:, 3] = np.clip((t - 0.1) / 0.3, 0.0, 1.0)
    return _lookup_table_node(scene, UNCERTAINTY_COLOR_NODE_NAME, rgba)


def _overlay_node_for(scene: Any, synthetic_node: Any, kind: str) -> Any | None:
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.GetAttribute(OVERLAY_FOR_ATTRIBUTE) == synthetic_node.GetID() and node.GetAttribute(
            OVERLAY_KIND_ATTRIBUTE
        ) == kind:
            return node
    return None


def difference_volume_node(scene: Any, nc_node: Any, synthetic_node: Any) -> Any:
    """A volume node holding ``synthetic - non-contrast`` in HU (int16), diverging colours.

    Both nodes must be on the same grid (the synthesis keeps the input grid). An earlier
    difference node of the same synthetic volume is replaced, so copies do not pile up.

    Raises:
        InputError: the two volumes are on different grids.
    """
    nc, synthetic = node_voxels(nc_node), node_voxels(synthetic_node)
    same_grid = nc.array.shape == synthetic.array.shape and np.allclose(
        (*nc.spacing_mm, *nc.origin_mm, *nc.direction), (*synthetic.spacing_mm, *synthetic.origin_mm, *synthetic.direction),
        atol=1e-4)
    if not same_grid:
        raise InputError(
            f"Synthetic volume '{synthetic_node.GetName()}' and non-contrast volume '{nc_node.GetName()}' "
            "are on different grids: compute the difference from the synthesis of this non-contrast scan."
        )
    difference = np.subtract(synthetic.array, nc.array, dtype=np.int32)
    np.clip(difference, -32768, 32767, out=difference)
    volume = CTVolume(difference.astype(np.int16), nc.spacing_mm, nc.origin_mm, nc.direction)
    node = _overlay_node_for(scene, synthetic_node, "difference")
    if node is not None:
        scene.RemoveNode(node)
    window = WindowLevel("difference", 2.0 * DIFFERENCE_RANGE_HU, 0.0, "Synthetic minus non-contrast, HU")
    node = array_to_node(scene, volume, f"{synthetic_node.GetName()} minus non-contrast",
                         {OVERLAY_FOR_ATTRIBUTE: synthetic_node.GetID(), OVERLAY_KIND_ATTRIBUTE: "difference"}, window)
    node.GetDisplayNode().SetAndObserveColorNodeID(difference_color_table(scene).GetID())
    return node


def style_uncertainty(scene: Any, node: Any) -> None:
    """Sequential colours, window from zero to the 99th percentile of the map (from every 4th voxel per axis)."""
    if node.GetDisplayNode() is None:
        set_window_level(node, None)
    values = node_voxels(node).array[::4, ::4, ::4]  # a view: a GUI thread never scans every voxel
    top = float(np.percentile(values, 99)) if values.size else 1.0
    top = top if top > 0 else 1.0
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(uncertainty_color_table(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(top, top / 2.0)
