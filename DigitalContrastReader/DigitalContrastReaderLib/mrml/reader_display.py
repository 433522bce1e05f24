"""The MRML display of a reading session: blinded items in a MRML scene.

:class:`MRMLReaderDisplay` implements :class:`~DigitalContrastReaderLib.reading.session.ReaderDisplay`
(the state machine is :class:`~DigitalContrastReaderLib.reading.session.ReadingSession`). Showing an
item, its images become volume nodes named ``Image`` (single) or ``Image A`` (left) / ``Image B``
(right), read from memory so that no file name reaches a node name, storage node, description or
attribute; the previous item's nodes are removed; every view gets the study's window/level; the
reader layout shows one column of slice views per image (one row per orientation of the study's
``layout.views``) in one linked view group with neutral grey frames. Scrolling, panning, zooming
and window/level changes are reported to the session as interactions.

:func:`mrml_reading_session` wires a session to this display (what the Slicer module uses).
What the scene may reveal is checked by :mod:`DigitalContrastReaderLib.mrml.scene_audit`. The Qt
parts of blinding (view controllers, slice-view corner annotations, data probe, window title)
are the Slicer widget's job.

``slicer`` and ``vtk`` are imported inside functions: the module imports with slicer-core alone
(or without it), and the same code runs inside Slicer (``slicer.mrmlScene``,
``slicer.app.applicationLogic()``) and headless (:func:`DigitalContrastLib.mrml.headless.make_headless_scene`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.ct.display_presets import WindowLevel
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.mrml.views import (
    SliceViewSpec,
    show_layout,
    show_volumes_in_views,
    slice_views_layout_xml,
    volume_center_ras,
)
from DigitalContrastLib.mrml.volume_nodes import volume_to_node
from DigitalContrastReaderLib.reading.session import ReadingSession
from DigitalContrastReaderLib.store.base import ReaderStore
from DigitalContrastReaderLib.study.blinding import HANDLE_SINGLE, HANDLES_PAIR, ReaderItem
from DigitalContrastReaderLib.study.errors import StudyError

from .scene_audit import string_list

#: Layout ids of the reader layouts (Slicer's built-in ids are below 100; the review uses 3917-3920).
READER_SINGLE_LAYOUT_ID = 3930
READER_PAIR_LAYOUT_ID = 3931
#: Slice-view tags per handle (the orientation is appended: ``ReaderImageAAxial``).
VIEW_TAGS = {HANDLE_SINGLE: "ReaderImage", HANDLES_PAIR[0]: "ReaderImageA", HANDLES_PAIR[1]: "ReaderImageB"}
#: One frame colour for every reader view, so colour never tells the images apart.
NEUTRAL_VIEW_COLOR = "#808080"
#: The reader views' view group (linked views of one orientation follow each other).
READER_VIEW_GROUP = 0
#: Attribute that marks the volume nodes of the item on screen (value "1"). Neutral on purpose:
#: not even the module's name, which contains the word "contrast".
ITEM_IMAGE_ATTRIBUTE = "ReaderItemImage"
#: Study ``layout.views`` entries shown as slice views, and their Slicer orientation.
SLICE_ORIENTATIONS = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}


# --------------------------------------------------------------------------------------------
# Layout and images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderLayout:
    """The reader layout of one item.

    Attributes:
        layout_id: :data:`READER_SINGLE_LAYOUT_ID` or :data:`READER_PAIR_LAYOUT_ID`.
        xml: its Slicer layout description.
        view_names: slice views, row by row (one row per orientation), left to right.
        views_by_handle: handle -> its views (one per orientation).
        ignored_views: study ``layout.views`` entries that are not slice views (``3d``).
    """

    layout_id: int
    xml: str
    view_names: tuple[str, ...]
    views_by_handle: dict[str, tuple[str, ...]]
    ignored_views: tuple[str, ...] = ()


def reader_layout(handles: Sequence[str], views: Sequence[str]) -> ReaderLayout:
    """One column of slice views per image handle, one row per orientation of ``views``.

    Args:
        handles: ``("Image",)`` or ``("Image A", "Image B")`` (left to right).
        views: the study's ``layout.views`` (``axial``, ``coronal``, ``sagittal``; ``3d`` is not
            shown: a blinded 3D rendering is not part of reading sessions yet).
    """
    orientations = [SLICE_ORIENTATIONS[v] for v in views if v in SLICE_ORIENTATIONS] or ["Axial"]
    ignored = tuple(v for v in views if v not in SLICE_ORIENTATIONS)
    rows = []
    for orientation in orientations:
        rows.append([
            SliceViewSpec(
                VIEW_TAGS[handle] + orientation,
                handle if len(orientations) == 1 else f"{handle} ({orientation.lower()})",
                NEUTRAL_VIEW_COLOR,
                orientation,
                READER_VIEW_GROUP,
            )
            for handle in handles
        ])
    layout_id = READER_SINGLE_LAYOUT_ID if len(handles) == 1 else READER_PAIR_LAYOUT_ID
    return ReaderLayout(
        layout_id=layout_id,
        xml=slice_views_layout_xml(rows),
        view_names=tuple(spec.tag for row in rows for spec in row),
        views_by_handle={h: tuple(VIEW_TAGS[h] + o for o in orientations) for h in handles},
        ignored_views=ignored,
    )


def read_image_blind(path: str | Path) -> CTVolume:
    """Read an image file or DICOM series folder into memory as int16 HU, keeping nothing else.

    Only voxels and geometry are kept: no file name, header field or DICOM tag travels on
    (``metadata`` is empty). Voxels are rounded and clipped to int16, so the data type of a
    stored file (a synthetic image saved as float, say) cannot tell the sources apart.

    Raises:
        StudyError: the file cannot be read as a 3D scalar image.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise RuntimeError("no DICOM series in the folder")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise StudyError(f"An image of this item could not be read ({first_line}); tell the study admin to run "
                         "'digital-contrast-reader check' and restore the image.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyError("An image of this item is not a 3D scalar volume; tell the study admin to replace it.")
    array = sitk.GetArrayFromImage(image)
    if array.dtype != np.int16:
        info = np.iinfo(np.int16)
        array = np.clip(np.rint(array.astype(np.float64)), info.min, info.max).astype(np.int16)
    return CTVolume(array=array, spacing_mm=image.GetSpacing(), origin_mm=image.GetOrigin(),
                    direction=image.GetDirection())


def subject_hierarchy_of(scene: Any) -> Any:
    """The scene's subject hierarchy node (created if the scene has none yet, as Slicer does)."""
    import slicer

    return slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)


def _add_neutral_volume(scene: Any, volume: CTVolume, handle: str, window_level: WindowLevel) -> Any:
    """A volume node ``handle`` with nothing but voxels, geometry and a neutral display."""
    node = volume_to_node(scene, volume, handle, attributes={ITEM_IMAGE_ATTRIBUTE: "1"}, window_level=window_level)
    if node.GetName() != handle:  # the scene made the name unique: a stale node was left behind
        raise RuntimeError(f"a node named {handle!r} is still in the scene")
    node.SetDescription("")
    display = node.GetDisplayNode()
    display.SetName(f"{handle} display")
    display.SetDescription("")
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    while node.GetNumberOfStorageNodes():  # none from memory; never keep one that names a file
        storage = node.GetNthStorageNode(0)
        node.SetAndObserveNthStorageNodeID(0, None)
        if storage is not None and storage.GetScene() is scene:
            scene.RemoveNode(storage)
    hierarchy = subject_hierarchy_of(scene)
    item = hierarchy.GetItemByDataNode(node)  # inside Slicer a plugin has made it already
    if not item:
        item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    for name in string_list(hierarchy.GetItemAttributeNames(item)):
        hierarchy.RemoveItemAttribute(item, name)
    return node


def remove_item_nodes(scene: Any) -> int:
    """Remove every volume node of a reading item (and its display and subject-hierarchy item)
    from ``scene``; returns how many were removed. Safe to call on any scene."""
    removed = 0
    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    for node in list(_nodes_of_class(scene, "vtkMRMLScalarVolumeNode")):
        if node.GetAttribute(ITEM_IMAGE_ATTRIBUTE) != "1":
            continue
        displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if hierarchy is not None:
            item = hierarchy.GetItemByDataNode(node)
            if item:
                hierarchy.RemoveItem(item, False, False)
        scene.RemoveNode(node)
        for display in displays:
            if display is not None and display.GetScene() is scene:
                scene.RemoveNode(display)
        removed += 1
    return removed


def _nodes_of_class(scene: Any, class_name: str) -> list[Any]:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


# --------------------------------------------------------------------------------------------
# The display
# --------------------------------------------------------------------------------------------


@dataclass
class ItemDisplay:
    """What :meth:`MRMLReaderDisplay.show` put on screen.

    Attributes:
        item_id: the item shown.
        layout: the reader layout (ids, views).
        nodes: handle -> its volume node (``Image`` or ``Image A``/``Image B``).
        window_hu, level_hu: the window/level every image was given.

    It holds no slice logic on purpose: a ``vtkMRMLSliceLogic`` keeps a plain pointer to the
    application logic, and one that outlives it (a headless scene torn down in the wrong order)
    crashes the interpreter. Ask :meth:`MRMLReaderDisplay.slice_logic` when one is needed.
    """

    item_id: str
    layout: ReaderLayout
    nodes: dict[str, Any]
    window_hu: float
    level_hu: float

    def slice_node(self, scene: Any, view: str) -> Any:
        """The ``vtkMRMLSliceNode`` of one of the item's views."""
        return scene.GetSingletonNode(view, "vtkMRMLSliceNode")


class MRMLReaderDisplay:
    """A :class:`~DigitalContrastReaderLib.reading.session.ReaderDisplay` on a MRML scene.

    Args:
        scene: ``slicer.mrmlScene``, or the scene of :func:`~DigitalContrastLib.mrml.headless.make_headless_scene`.
        app_logic: ``slicer.app.applicationLogic()``, or the headless application logic.
        image_reader: path -> :class:`CTVolume` (default :func:`read_image_blind`).

    Attributes:
        shown: what is on screen (:class:`ItemDisplay`), None when nothing is.
    """

    def __init__(self, scene: Any, app_logic: Any, image_reader: Callable[[str | Path], CTVolume] = read_image_blind) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self.image_reader = image_reader
        self.shown: ItemDisplay | None = None
        self._on_interaction: Callable[[], None] | None = None
        self._observations: list[tuple[Any, int]] = []
        self._view_signatures: dict[str, tuple] = {}
        self._display_signatures: dict[str, tuple] = {}

    def show(self, item: ReaderItem, on_interaction: Callable[[], None]) -> None:
        """Put ``item`` on screen (blinded), in place of the previous item, and report view and
        window/level changes to ``on_interaction``. An image that cannot be read leaves no node."""
        self.clear()
        handles = tuple(image["handle"] for image in item.images)
        layout = reader_layout(handles, item.display.get("views", ["axial"]))
        window_level = WindowLevel("study", float(item.display["window"]), float(item.display["level"]), "")
        nodes = {}
        try:
            for image in item.images:
                volume = self.image_reader(image["path"])
                nodes[image["handle"]] = _add_neutral_volume(self.scene, volume, image["handle"], window_level)
        except BaseException:
            remove_item_nodes(self.scene)
            raise
        show_layout(self.scene, layout.layout_id, layout.xml, layout.view_names)
        backgrounds = {view: nodes[handle] for handle, views in layout.views_by_handle.items() for view in views}
        show_volumes_in_views(
            self.scene, self.app_logic, backgrounds, view_group=READER_VIEW_GROUP,
            center_ras_mm=volume_center_ras(nodes[handles[0]]), link=bool(item.display.get("link_views", True)),
        )
        self.shown = ItemDisplay(item.item_id, layout, nodes, window_level.window_hu, window_level.level_hu)
        self._on_interaction = on_interaction
        self._observe_interactions()

    def clear(self) -> None:
        """Remove the item's nodes from the scene and stop observing."""
        self._unobserve()
        remove_item_nodes(self.scene)
        self.shown = None
        self._on_interaction = None

    def slice_logic(self, view: str) -> Any:
        """The ``vtkMRMLSliceLogic`` of a view (do not keep it beyond the application logic)."""
        return self.app_logic.GetSliceLogicByLayoutName(view)

    def _observe_interactions(self) -> None:
        """Scrolling, panning, zooming a view or changing window/level counts as interaction."""
        import vtk

        assert self.shown is not None
        for view in self.shown.layout.view_names:
            slice_node = self.shown.slice_node(self.scene, view)
            self._view_signatures[view] = _view_signature(slice_node)
            tag = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, _weak_callback(self._on_view_modified))
            self._observations.append((slice_node, tag))
        for handle, node in self.shown.nodes.items():
            display = node.GetDisplayNode()
            self._display_signatures[display.GetID()] = _display_signature(display)
            tag = display.AddObserver(vtk.vtkCommand.ModifiedEvent, _weak_callback(self._on_display_modified))
            self._observations.append((display, tag))

    def _unobserve(self) -> None:
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations.clear()
        self._view_signatures.clear()
        self._display_signatures.clear()

    def _interaction(self) -> None:
        if self._on_interaction is not None:
            self._on_interaction()

    def _on_view_modified(self, slice_node: Any, _event: str) -> None:
        name = slice_node.GetLayoutName()
        signature = _view_signature(slice_node)
        if self._view_signatures.get(name) != signature:  # a resize of the window is not reading
            self._view_signatures[name] = signature
            self._interaction()

    def _on_display_modified(self, display: Any, _event: str) -> None:
        signature = _display_signature(display)
        if self._display_signatures.get(display.GetID()) != signature:
            self._display_signatures[display.GetID()] = signature
            self._interaction()


def mrml_reading_session(scene: Any, app_logic: Any, store: ReaderStore, reader_id: str, *,
                         image_reader: Callable[[str | Path], CTVolume] = read_image_blind,
                         **options: Any) -> ReadingSession:
    """A :class:`~DigitalContrastReaderLib.reading.session.ReadingSession` of ``reader_id`` shown in
    ``scene`` (``options``: ``token``, ``idle_after_seconds``, ``clock`` of the session).

    The Slicer module does exactly this::

        session = mrml_reading_session(slicer.mrmlScene, slicer.app.applicationLogic(), store, "r01", token=token)
        item = session.start()
    """
    return ReadingSession(store, MRMLReaderDisplay(scene, app_logic, image_reader), reader_id, **options)


def _weak_callback(method: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """A VTK observer callback that does not keep its display alive.

    A bound method given to ``AddObserver`` would make a reference cycle (display -> nodes ->
    observer -> display) that only the garbage collector breaks, and VTK objects torn down during
    that collection emit events into a half-cleared display (seen crashing the interpreter).
    The weak reference is dead by then, and the callback does nothing.
    """
    ref = weakref.WeakMethod(method)

    def callback(caller: Any, event: str) -> None:
        target = ref()
        if target is not None:
            target(caller, event)

    return callback


def _view_signature(slice_node: Any) -> tuple:
    """What the reader changes by scrolling, panning and zooming: the slice position, the pan and
    the scale in mm per pixel (a resized view keeps its scale: resizing is not reading)."""
    matrix = slice_node.GetSliceToRAS()
    width_px = max(slice_node.GetDimensions()[0], 1)
    return (tuple(round(matrix.GetElement(r, c), 6) for r in range(3) for c in range(4)),
            round(slice_node.GetFieldOfView()[0] / width_px, 6),
            tuple(round(v, 6) for v in slice_node.GetXYZOrigin()))


def _display_signature(display: Any) -> tuple:
    return (round(display.GetWindow(), 3), round(display.GetLevel(), 3))
