"""The review layout: non-contrast | synthetic | real contrast in linked slice views.

Layouts (registered with :func:`register_review_layouts`; a scene file does not store custom
layout descriptions, so call it at start-up and again after a scene is loaded):

=====  ===========================================================================
id     views
=====  ===========================================================================
3917   ``DCNonContrast | DCSynthetic | DCReal`` (axial)
3918   the same, plus a second row ``DCNonContrastCoronal | DCSyntheticCoronal |
       DCRealCoronal`` (coronal)
3919   ``DCNonContrast | DCSynthetic`` (axial; no real contrast scan)
3920   the two-column layout plus its coronal row
=====  ===========================================================================

Every view is a slice view in view group 0 whose composite node is linked, so scrolling,
panning and zooming one moves the others of the same orientation. Window/level is per display
node in Slicer (not linked): :func:`show_review` sets the same contrast preset on the synthetic
and the real scan, and a soft-tissue preset on the non-contrast scan.

Views render without OpenGL through each slice logic's ``GetImageDataConnection()``
(:func:`render_views_png`), in Slicer's radiological convention: axial views show the patient's
left on the image right and anterior up; coronal views show superior up.

The generic pieces (:class:`SliceViewSpec`, :func:`slice_views_layout_xml`, :func:`show_layout`,
:func:`show_volumes_in_views`) build any grid of linked slice views; the reader-study module uses
them for its neutral ``Image A | Image B`` layouts.

``slicer``/``vtk`` are imported inside the functions (the core library imports without them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET, NON_CONTRAST_PRESET, get_preset
from DigitalContrastLib.common.errors import InputError
from .volume_nodes import node_to_volume, set_window_level, volume_to_node

REVIEW_LAYOUT_ID = 3917
REVIEW_CORONAL_LAYOUT_ID = 3918
REVIEW_TWO_LAYOUT_ID = 3919
REVIEW_TWO_CORONAL_LAYOUT_ID = 3920

#: Slice views of the same orientation in one group follow each other when linked.
REVIEW_VIEW_GROUP = 0

#: Attribute that marks nodes this module computed for a synthetic volume (overlay reuse).
OVERLAY_FOR_ATTRIBUTE = "DigitalContrast.OverlayFor"
OVERLAY_KIND_ATTRIBUTE = "DigitalContrast.OverlayKind"

DIFFERENCE_COLOR_NODE_NAME = "DigitalContrast difference (blue - / red +)"
UNCERTAINTY_COLOR_NODE_NAME = "DigitalContrast uncertainty"
#: The difference overlay spans -DIFFERENCE_RANGE_HU..+DIFFERENCE_RANGE_HU (saturates beyond).
DIFFERENCE_RANGE_HU = 400.0
#: Differences smaller than this are left transparent (noise level of an abdominal CT).
DIFFERENCE_TRANSPARENT_BELOW_HU = 30.0


@dataclass(frozen=True)
class ReviewColumn:
    """One column of the review layout: which scan, its view tag, label and frame colour."""

    key: str  # "nc", "synthetic", "real"
    tag: str  # singleton tag of the axial view; the coronal one adds "Coronal"
    label: str  # shown in the view controller and above the rendered panel
    color: str  # view frame colour (#RRGGBB): the synthetic view is orange, always


COLUMNS: tuple[ReviewColumn, ...] = (
    ReviewColumn("nc", "DCNonContrast", "Non-contrast", "#8C8C8C"),
    ReviewColumn("synthetic", "DCSynthetic", "Synthetic", "#E8891E"),
    ReviewColumn("real", "DCReal", "Real contrast", "#3A86C8"),
)
_ORIENTATION_SUFFIX = {"Axial": "", "Coronal": "Coronal"}


def view_name(key: str, orientation: str = "Axial") -> str:
    """The slice view (singleton tag / layout name) of column ``key`` in ``orientation``."""
    column = next(c for c in COLUMNS if c.key == key)
    return column.tag + _ORIENTATION_SUFFIX[orientation]


def _columns(with_real: bool) -> tuple[ReviewColumn, ...]:
    return COLUMNS if with_real else COLUMNS[:2]


def review_layout_id(with_real: bool = True, coronal_row: bool = False) -> int:
    """The layout id for the chosen columns and rows."""
    if with_real:
        return REVIEW_CORONAL_LAYOUT_ID if coronal_row else REVIEW_LAYOUT_ID
    return REVIEW_TWO_CORONAL_LAYOUT_ID if coronal_row else REVIEW_TWO_LAYOUT_ID


def review_view_names(with_real: bool = True, coronal_row: bool = False) -> list[str]:
    """View names of a review layout, row by row (axial row first)."""
    orientations = ["Axial", "Coronal"] if coronal_row else ["Axial"]
    return [view_name(c.key, o) for o in orientations for c in _columns(with_real)]


def review_layout_xml(with_real: bool = True, coronal_row: bool = False) -> str:
    """Slicer layout XML: one row of axial views, optionally a second row of coronal views."""
    orientations = ["Axial", "Coronal"] if coronal_row else ["Axial"]
    rows = [
        [
            SliceViewSpec(
                column.tag + _ORIENTATION_SUFFIX[orientation],
                column.label if orientation == "Axial" else f"{column.label} (coronal)",
                column.color,
                orientation,
            )
            for column in _columns(with_real)
        ]
        for orientation in orientations
    ]
    return slice_views_layout_xml(rows)


@dataclass(frozen=True)
class SliceViewSpec:
    """One slice view of a layout.

    Attributes:
        tag: singleton tag of its slice node (also the layout name, e.g. ``DCSynthetic``).
        label: shown in the view controller and above rendered panels.
        color: frame colour ``#RRGGBB``.
        orientation: ``Axial``, ``Coronal`` or ``Sagittal``.
        view_group: views of one group with the same orientation follow each other when linked.
    """

    tag: str
    label: str
    color: str
    orientation: str = "Axial"
    view_group: int = REVIEW_VIEW_GROUP


def slice_views_layout_xml(rows: Sequence[Sequence[SliceViewSpec]]) -> str:
    """Slicer layout XML for rows of slice views (one row: a horizontal layout; several rows: a
    vertical layout of horizontal rows)."""

    def view(spec: SliceViewSpec) -> str:
        return (
            f'<item><view class="vtkMRMLSliceNode" singletontag="{spec.tag}">'
            f'<property name="orientation" action="default">{spec.orientation}</property>'
            f'<property name="viewlabel" action="default">{spec.label}</property>'
            f'<property name="viewcolor" action="default">{spec.color}</property>'
            f'<property name="viewgroup" action="default">{spec.view_group}</property>'
            "</view></item>"
        )

    def row(specs: Sequence[SliceViewSpec]) -> str:
        return f'<layout type="horizontal">{"".join(view(s) for s in specs)}</layout>'

    if len(rows) == 1:
        return row(rows[0])
    return '<layout type="vertical">' + "".join(f"<item>{row(r)}</item>" for r in rows) + "</layout>"


def set_layout_description(layout_node: Any, layout_id: int, xml: str) -> None:
    """Add (or refresh) one layout description on a ``vtkMRMLLayoutNode``."""
    if layout_node.IsLayoutDescription(layout_id):
        layout_node.SetLayoutDescription(layout_id, xml)
    else:
        layout_node.AddLayoutDescription(layout_id, xml)


def register_review_layouts(layout_node: Any) -> None:
    """Add (or refresh) the four review layout descriptions on a ``vtkMRMLLayoutNode``.

    Inside Slicer: ``register_review_layouts(slicer.app.layoutManager().layoutLogic().GetLayoutNode())``
    at start-up and after a scene is loaded (custom layouts are not saved in scenes).
    """
    for with_real in (True, False):
        for coronal_row in (False, True):
            layout_id = review_layout_id(with_real, coronal_row)
            set_layout_description(layout_node, layout_id, review_layout_xml(with_real, coronal_row))


def layout_node_of(scene: Any) -> Any:
    """The scene's ``vtkMRMLLayoutNode`` (created with a layout logic when the scene has none)."""
    import slicer

    node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if node is None:
        layout_logic = slicer.vtkMRMLLayoutLogic()
        layout_logic.SetMRMLScene(scene)
        node = layout_logic.GetLayoutNode()
    return node


def show_layout(scene: Any, layout_id: int, xml: str, view_names: Sequence[str]) -> Any:
    """Register layout ``layout_id`` as ``xml``, select it and make sure its slice views exist.

    Returns the scene's ``vtkMRMLLayoutNode``. Custom layouts are not stored in scene files, so
    the description is (re)registered every time.
    """
    layout_node = layout_node_of(scene)
    set_layout_description(layout_node, layout_id, xml)
    layout_node.SetViewArrangement(layout_id)
    _ensure_view_nodes(scene, list(view_names))
    return layout_node


def _ensure_view_nodes(scene: Any, names: list[str]) -> None:
    """Create the slice nodes of the current layout if no layout logic did (headless scenes).

    Inside Slicer the layout manager's logic creates them when the arrangement changes; a bare
    scene has no such observer, so a layout logic is attached for the moment it takes.
    """
    import slicer

    if all(scene.GetSingletonNode(name, "vtkMRMLSliceNode") is not None for name in names):
        return
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)  # creates the missing views of the current arrangement
    missing = [name for name in names if scene.GetSingletonNode(name, "vtkMRMLSliceNode") is None]
    if missing:
        raise RuntimeError(f"the layout did not create the slice views {missing}")


def slice_logic_for_view(scene: Any, app_logic: Any, name: str) -> Any:
    """The ``vtkMRMLSliceLogic`` of slice view ``name``, made and registered if none exists yet.

    A new logic is bound to the layout's own slice node with ``SetSliceNode`` (not
    ``AddSliceNode``, which would make a separate "Reformat" node that linking ignores) and added
    to the application logic's slice-logic collection, as Slicer's slice widgets do.
    """
    import slicer
    import vtk

    logic = app_logic.GetSliceLogicByLayoutName(name)
    if logic is not None:
        return logic
    slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
    if slice_node is None:
        raise ValueError(f"no slice view named {name!r} in the scene: select a layout that has it first")
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app_logic)
    logic.SetSliceNode(slice_node)
    if app_logic.GetSliceLogics() is None:
        app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.GetSliceLogics().AddItem(logic)
    return logic


# ---------------------------------------------------------------------------- overlays
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
    nc = node_to_volume(nc_node)
    synthetic = node_to_volume(synthetic_node)
    if not nc.same_geometry(synthetic):
        raise InputError(
            f"Synthetic volume '{synthetic_node.GetName()}' and non-contrast volume '{nc_node.GetName()}' "
            "are on different grids: compute the difference from the synthesis of this non-contrast scan."
        )
    difference = np.clip(synthetic.array.astype(np.int32) - nc.array.astype(np.int32), -32768, 32767)
    volume = nc.with_array(difference.astype(np.int16))
    node = _overlay_node_for(scene, synthetic_node, "difference")
    if node is not None:
        scene.RemoveNode(node)
    node = volume_to_node(
        scene,
        volume,
        f"{synthetic_node.GetName()} minus non-contrast",
        attributes={OVERLAY_FOR_ATTRIBUTE: synthetic_node.GetID(), OVERLAY_KIND_ATTRIBUTE: "difference"},
    )
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(difference_color_table(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(2.0 * DIFFERENCE_RANGE_HU, 0.0)
    return node


def _style_uncertainty(scene: Any, node: Any) -> None:
    """Sequential colours, window from zero to the 99th percentile of the map."""
    if node.GetDisplayNode() is None:
        set_window_level(node, None)
    values = node_to_volume(node).array
    top = float(np.percentile(values, 99)) if values.size else 1.0
    top = top if top > 0 else 1.0
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(uncertainty_color_table(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(top, top / 2.0)


# ---------------------------------------------------------------------------- review
@dataclass
class ReviewViews:
    """What :func:`show_review` set up.

    Attributes:
        layout_id: the layout now shown.
        view_names: slice views, row by row (axial first).
        volume_ids: background volume node id per view.
        slice_logics: ``vtkMRMLSliceLogic`` per view.
        overlay_node: the foreground overlay (difference or uncertainty), if any.
    """

    layout_id: int
    view_names: list[str]
    volume_ids: dict[str, str]
    slice_logics: dict[str, Any] = field(repr=False)
    overlay_node: Any | None = field(default=None, repr=False)


def show_review(
    scene: Any,
    app_logic: Any,
    nc_node: Any,
    synthetic_node: Any,
    real_node: Any | None = None,
    preset: str = CONTRAST_PRESET,
    coronal_row: bool = False,
    mip_mm: float | None = None,
    overlay: str | Any | None = None,
    *,
    nc_preset: str | None = NON_CONTRAST_PRESET,
    overlay_opacity: float = 0.5,
    center_ras_mm: tuple[float, float, float] | None = None,
) -> ReviewViews:
    """Show non-contrast | synthetic | real contrast side by side in linked views.

    Args:
        scene, app_logic: ``slicer.mrmlScene`` and ``slicer.app.applicationLogic()`` in Slicer, or
            the pair from :func:`mrml_headless.make_headless_scene`.
        nc_node, synthetic_node, real_node: scalar volume nodes; without ``real_node`` the
            two-column layout is used.
        preset: window/level preset (:mod:`display_presets`) set identically on the synthetic and
            the real display nodes.
        coronal_row: add a second row of coronal views.
        mip_mm: slab thickness in mm for a maximum-intensity projection in every view
            (``None`` or 0: thin slices).
        overlay: ``"difference"`` (synthetic - non-contrast, computed as a new volume with a
            diverging colour table), a volume node (e.g. an uncertainty map, shown with a
            sequential colour table), or ``None``; shown as foreground over the synthetic views.
        nc_preset: preset for the non-contrast scan (``None``: the same as ``preset``).
        overlay_opacity: foreground opacity of the overlay, 0..1.
        center_ras_mm: point to centre every view on (e.g. the aorta's centroid, RAS mm);
            default: the centre of the non-contrast volume.

    Returns:
        :class:`ReviewViews`. Background volumes are set before the views are linked, so the
        linking does not copy one view's volume to the others.
    """
    with_real = real_node is not None
    layout_node = layout_node_of(scene)
    register_review_layouts(layout_node)
    layout_id = review_layout_id(with_real, coronal_row)
    names = review_view_names(with_real, coronal_row)
    show_layout(scene, layout_id, review_layout_xml(with_real, coronal_row), names)

    contrast = get_preset(preset)
    non_contrast = get_preset(nc_preset) if nc_preset else contrast
    set_window_level(nc_node, non_contrast)
    set_window_level(synthetic_node, contrast)
    if real_node is not None:
        set_window_level(real_node, contrast)

    overlay_node = None
    if isinstance(overlay, str):
        if overlay != "difference":
            raise ValueError(f"overlay must be 'difference', a volume node or None, not {overlay!r}")
        overlay_node = difference_volume_node(scene, nc_node, synthetic_node)
    elif overlay is not None:
        overlay_node = overlay
        _style_uncertainty(scene, overlay_node)

    by_key = {"nc": nc_node, "synthetic": synthetic_node, "real": real_node}
    backgrounds = {name: by_key[next(c.key for c in COLUMNS if name.startswith(c.tag))] for name in names}
    foregrounds = {}
    if overlay_node is not None:
        foregrounds = {name: (overlay_node, float(overlay_opacity)) for name in names
                       if name.startswith(view_name("synthetic"))}
    if center_ras_mm is None:
        center_ras_mm = volume_center_ras(nc_node)
    logics = show_volumes_in_views(scene, app_logic, backgrounds, foregrounds=foregrounds, mip_mm=mip_mm,
                                   center_ras_mm=center_ras_mm)
    volume_ids = {name: node.GetID() for name, node in backgrounds.items()}
    return ReviewViews(layout_id, names, volume_ids, logics, overlay_node)


def volume_center_ras(node: Any) -> tuple[float, float, float]:
    """The centre of a volume node's bounding box in RAS mm."""
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    return ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)


def show_volumes_in_views(
    scene: Any,
    app_logic: Any,
    backgrounds: Mapping[str, Any],
    *,
    foregrounds: Mapping[str, tuple[Any, float]] | None = None,
    view_group: int = REVIEW_VIEW_GROUP,
    mip_mm: float | None = None,
    center_ras_mm: tuple[float, float, float] | None = None,
    link: bool = True,
) -> dict[str, Any]:
    """Show one volume per slice view, in linked views of one view group.

    Args:
        backgrounds: view name -> background volume node (the views must exist: :func:`show_layout`).
        foregrounds: view name -> ``(volume node, opacity 0..1)`` shown over the background; every
            other view gets no foreground. Label layers are cleared.
        view_group: the views' group (linking only reaches views of one group and orientation).
        mip_mm: slab thickness in mm of a maximum-intensity projection (``None`` or 0: thin slices).
        center_ras_mm: point every view is centred on (default: the first background's centre).
        link: link the views (scroll, pan and zoom one, the others of its orientation follow).

    Returns:
        The ``vtkMRMLSliceLogic`` of each view. Volumes are assigned with linking off, so that
        the linking does not copy one view's volume to the others, and linking is switched on last.
    """
    import vtk

    foregrounds = foregrounds or {}
    logics: dict[str, Any] = {}
    for name, node in backgrounds.items():
        logic = slice_logic_for_view(scene, app_logic, name)
        logics[name] = logic
        composite = logic.GetSliceCompositeNode()
        composite.SetLinkedControl(0)  # no broadcast while volumes are assigned view by view
        composite.SetBackgroundVolumeID(node.GetID())
        composite.SetLabelVolumeID(None)
        if name in foregrounds:
            overlay_node, opacity = foregrounds[name]
            composite.SetForegroundVolumeID(overlay_node.GetID())
            composite.SetForegroundOpacity(float(opacity))
        else:
            composite.SetForegroundVolumeID(None)
            composite.SetForegroundOpacity(0.0)

        slice_node = logic.GetSliceNode()
        slice_node.SetViewGroup(view_group)
        if mip_mm:
            slice_node.SetSlabReconstructionEnabled(True)
            slice_node.SetSlabReconstructionType(vtk.VTK_IMAGE_SLAB_MAX)
            slice_node.SetSlabReconstructionThickness(float(mip_mm))
        else:
            slice_node.SetSlabReconstructionEnabled(False)

    if center_ras_mm is None and backgrounds:
        center_ras_mm = volume_center_ras(next(iter(backgrounds.values())))
    for logic in logics.values():
        logic.FitSliceToAll()
        if center_ras_mm is not None:
            logic.GetSliceNode().JumpSliceByCentering(*center_ras_mm)
    for logic in logics.values():
        logic.GetSliceCompositeNode().SetLinkedControl(1 if link else 0)
    return logics


# ---------------------------------------------------------------------------- rendering
TITLE_HEIGHT_PX = 42
GAP_PX = 4
BACKGROUND_RGB = (24, 24, 24)


def panel_offset_px(index: int, size: tuple[int, int], columns: int) -> tuple[int, int]:
    """Top-left pixel ``(x, y)`` of panel ``index``'s image in :func:`render_views_png` output."""
    width, height = size
    row, col = divmod(index, columns)
    return (GAP_PX + col * (width + GAP_PX), row * (height + TITLE_HEIGHT_PX + GAP_PX) + TITLE_HEIGHT_PX)


def ras_to_view_pixel(slice_logic: Any, ras_mm: tuple[float, float, float], size: tuple[int, int]) -> tuple[float, float]:
    """Where RAS point ``ras_mm`` lands in the view rendered at ``size`` by :func:`render_view_rgb`.

    Returns ``(column, row)`` in pixels, row 0 at the top (as in the PNG).
    """
    import vtk

    width, height = size
    slice_node = slice_logic.GetSliceNode()
    shown_width, shown_height, _ = slice_node.GetDimensions()
    slice_logic.ResizeSliceNode(width, height)
    try:
        ras_to_xy = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(slice_node.GetXYToRAS(), ras_to_xy)
        x, y, _, _ = ras_to_xy.MultiplyPoint((*ras_mm, 1.0))
    finally:
        if (shown_width, shown_height) != (width, height):
            slice_logic.ResizeSliceNode(shown_width, shown_height)
    return (x, height - 1 - y)


def _edge_letter(vector: np.ndarray) -> str:
    """Anatomical letter of the direction ``vector`` (RAS) points to, e.g. (-1, 0, 0) -> "L"."""
    axis = int(np.argmax(np.abs(vector)))
    return ("RL", "AP", "SI")[axis][0 if vector[axis] > 0 else 1]


def render_view_rgb(scene: Any, app_logic: Any, name: str, size: tuple[int, int]) -> np.ndarray:
    """The blended slice view ``name`` as an ``(height, width, 3)`` uint8 array, row 0 at the top.

    Rendered through the slice logic's ``GetImageDataConnection()`` (window/level, colour tables,
    foreground opacity and slab applied; no OpenGL). The view is resized to ``size`` for the render
    (keeping its field of view's scale, as a resized Slicer window does) and given its own size
    back afterwards.
    """
    from vtk.util import numpy_support

    logic = slice_logic_for_view(scene, app_logic, name)
    width, height = size
    shown_width, shown_height, _ = logic.GetSliceNode().GetDimensions()
    logic.ResizeSliceNode(width, height)
    try:
        connection = logic.GetImageDataConnection()
        producer = connection.GetProducer()
        producer.Update()
        image = producer.GetOutputDataObject(connection.GetIndex())
        nx, ny, _ = image.GetDimensions()
        scalars = image.GetPointData().GetScalars()
        if scalars is None:
            return np.zeros((height, width, 3), np.uint8)
        # VTK rows run bottom-up; copy before the view is given its own size back
        rgba = numpy_support.vtk_to_numpy(scalars).reshape(ny, nx, -1)[::-1].copy()
    finally:
        if (shown_width, shown_height) != (width, height):
            logic.ResizeSliceNode(shown_width, shown_height)  # a visible Slicer view keeps its size
    if rgba.shape[2] < 4:
        return np.ascontiguousarray(rgba[:, :, :3])
    # Outside every volume alpha is 0: composite on black, as Slicer's slice views show it.
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    return ((rgba[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def render_views_png(
    scene: Any,
    app_logic: Any,
    view_names: list[str],
    path: str | os.PathLike,
    size: tuple[int, int] = (320, 320),
    columns: int | None = None,
) -> Path:
    """Render slice views side by side, each under its title, into one PNG (written atomically).

    Args:
        view_names: slice views in reading order (e.g. ``ReviewViews.view_names``).
        path: the PNG to write.
        size: ``(width, height)`` of each view in pixels.
        columns: panels per row (default: all in one row).

    Each title is the view's label plus its window/level (and the slab thickness when a MIP is
    on); orientation letters mark the image edges (axial: R on the left, L on the right).
    """
    from PIL import Image, ImageDraw

    columns = columns or len(view_names)
    rows = -(-len(view_names) // columns)
    width, height = size
    canvas = Image.new(
        "RGB",
        (GAP_PX + columns * (width + GAP_PX), rows * (height + TITLE_HEIGHT_PX + GAP_PX)),
        BACKGROUND_RGB,
    )
    draw = ImageDraw.Draw(canvas)
    title_font = _font(15)
    detail_font = _font(12)
    letter_font = _font(13)
    for index, name in enumerate(view_names):
        pixels = render_view_rgb(scene, app_logic, name, size)
        x0, y0 = panel_offset_px(index, size, columns)
        canvas.paste(Image.fromarray(pixels, "RGB"), (x0, y0))
        logic = slice_logic_for_view(scene, app_logic, name)
        slice_node = logic.GetSliceNode()
        color = _hex_rgb(slice_node.GetLayoutColor()) if hasattr(slice_node, "GetLayoutColor") else (200, 200, 200)
        draw.rectangle([x0, y0 - TITLE_HEIGHT_PX, x0 + width - 1, y0 - TITLE_HEIGHT_PX + 3], fill=color)
        label, details = _title_lines(scene, logic)
        top = y0 - TITLE_HEIGHT_PX
        draw.text((x0 + 4, top + 6), _fit_text(draw, label, title_font, width - 8), fill=(240, 240, 240), font=title_font)
        draw.text((x0 + 4, top + 24), _fit_text(draw, details, detail_font, width - 8), fill=(170, 170, 170), font=detail_font)
        slice_to_ras = slice_node.GetSliceToRAS()
        right = np.array([slice_to_ras.GetElement(r, 0) for r in range(3)])
        up = np.array([slice_to_ras.GetElement(r, 1) for r in range(3)])
        marks = {
            (x0 + 4, y0 + height // 2 - 7): _edge_letter(-right),
            (x0 + width - 13, y0 + height // 2 - 7): _edge_letter(right),
            (x0 + width // 2 - 4, y0 + 3): _edge_letter(up),
            (x0 + width // 2 - 4, y0 + height - 17): _edge_letter(-up),
        }
        for xy, letter in marks.items():
            draw.text(xy, letter, fill=(255, 220, 60), font=letter_font, stroke_width=1, stroke_fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _title_lines(scene: Any, logic: Any) -> tuple[str, str]:
    """``(view label, "W 700 / L 200 · MIP 10 mm · overlay ...")`` for a panel's title."""
    slice_node = logic.GetSliceNode()
    composite = logic.GetSliceCompositeNode()
    details = []
    volume = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
    display = volume.GetDisplayNode() if volume is not None else None
    if display is not None:
        details.append(f"W {display.GetWindow():.0f} / L {display.GetLevel():.0f}")
    if slice_node.GetSlabReconstructionEnabled():
        details.append(f"MIP {slice_node.GetSlabReconstructionThickness():g} mm")
    overlay = scene.GetNodeByID(composite.GetForegroundVolumeID() or "")
    if overlay is not None and composite.GetForegroundOpacity() > 0:
        kind = overlay.GetAttribute(OVERLAY_KIND_ATTRIBUTE) or overlay.GetName()
        details.append(f"overlay: {kind}")
    return slice_node.GetLayoutLabel() or slice_node.GetName(), " \u00b7 ".join(details)


def _fit_text(draw: Any, text: str, font: Any, max_width_px: int) -> str:
    """``text`` cut with an ellipsis so that it fits ``max_width_px``."""
    if draw.textlength(text, font=font) <= max_width_px:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > max_width_px:
        text = text[:-1]
    return text + "\u2026"


def _hex_rgb(color: Any) -> tuple[int, int, int]:
    """A view colour (``(r, g, b)`` floats 0..1) as 8-bit RGB."""
    return tuple(int(round(255 * float(c))) for c in color[:3])  # type: ignore[return-value]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()
