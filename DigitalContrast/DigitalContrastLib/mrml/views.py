"""Grids of linked slice views in an MRML scene: layout XML, the layout node, per-view slice logics, and volumes put into views.

Any grid of slice views (:class:`SliceViewSpec` rows) becomes a layout with :func:`slice_views_layout_xml`
and :func:`show_layout`; every view is in one view group with linked composite nodes, so scrolling,
panning and zooming one moves the others of the same orientation. The review layout and the reader
study's neutral ``Image A | Image B`` layouts are built from these pieces.

``slicer``/``vtk`` are imported inside the functions (the core library imports without them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Slice views of the same orientation in one group follow each other when linked.
LINKED_VIEW_GROUP = 0


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
    view_group: int = LINKED_VIEW_GROUP


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
    view_group: int = LINKED_VIEW_GROUP,
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
