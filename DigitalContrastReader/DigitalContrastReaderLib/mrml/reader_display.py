"""A reader's reading session in a MRML scene: blinded items, fixed display, answers committed.

:class:`ReadingSessionLogic` drives one reader through their stored schedule:

* :meth:`~ReadingSessionLogic.start` enrols the reader if needed and resumes at the first
  unfinished item (the order is the stored schedule's; nothing is recomputed);
* :meth:`~ReadingSessionLogic.load_item` shows an item: its images become volume nodes named
  ``Image`` (single) or ``Image A`` (left) / ``Image B`` (right), read from memory so that no file
  name reaches a node name, storage node, description or attribute; the previous item's nodes
  are removed; every view gets the study's window/level; the reader layout shows one column of
  slice views per image (one row per orientation of the study's ``layout.views``) in one linked
  view group with neutral grey frames;
* :meth:`~ReadingSessionLogic.submit` commits the answers through the answer store (one
  transaction, fsync'd, see ``store.py``) with the active reading time
  (:class:`~DigitalContrastReaderLib.reading.active_time.ActiveTimeCounter`); :meth:`~ReadingSessionLogic.next`
  shows the next item, or reports a washout or the end.

What the scene may reveal is checked by :mod:`DigitalContrastReaderLib.mrml.scene_audit`. The Qt
parts of blinding (view controllers, slice-view corner annotations, data probe, window title)
are the Slicer widget's job.

``slicer`` and ``vtk`` are imported inside functions: the module imports with slicer-core alone
(or without it), and the same code runs inside Slicer (``slicer.mrmlScene``,
``slicer.app.applicationLogic()``) and headless (:func:`DigitalContrastLib.mrml.headless.make_headless_scene`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.ct.display_presets import WindowLevel
from DigitalContrastLib.mrml.layout import (
    SliceViewSpec,
    show_layout,
    show_volumes_in_views,
    slice_views_layout_xml,
    volume_center_ras,
)
from DigitalContrastLib.mrml.volume_nodes import volume_to_node
from DigitalContrastLib.ct.volume import CTVolume

from DigitalContrastReaderLib.reading.active_time import DEFAULT_IDLE_AFTER_SECONDS, ActiveTimeCounter
from DigitalContrastReaderLib.study.blinding import HANDLE_SINGLE, HANDLES_PAIR, ReaderItem
from DigitalContrastReaderLib.study.errors import AnswerError, StudyError
from .scene_audit import string_list
from DigitalContrastReaderLib.store.base import AnswerStore, SubmitReceipt

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

STATE_IDLE = "idle"  # not started
STATE_READING = "reading"  # an item is on screen
STATE_SUBMITTED = "submitted"  # the item on screen was submitted; next() shows the next one
STATE_WASHOUT = "washout"  # the next item opens later
STATE_FINISHED = "finished"  # every item is submitted


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
# The session
# --------------------------------------------------------------------------------------------


@dataclass
class ItemDisplay:
    """What :meth:`ReadingSessionLogic.load_item` put on screen.

    Attributes:
        item_id: the item shown.
        layout: the reader layout (ids, views).
        nodes: handle -> its volume node (``Image`` or ``Image A``/``Image B``).
        window_hu, level_hu: the window/level every image was given.

    It holds no slice logic on purpose: a ``vtkMRMLSliceLogic`` keeps a plain pointer to the
    application logic, and one that outlives it (a headless scene torn down in the wrong order)
    crashes the interpreter. Ask :meth:`ReadingSessionLogic.slice_logic` when one is needed.
    """

    item_id: str
    layout: ReaderLayout
    nodes: dict[str, Any]
    window_hu: float
    level_hu: float

    def slice_node(self, scene: Any, view: str) -> Any:
        """The ``vtkMRMLSliceNode`` of one of the item's views."""
        return scene.GetSingletonNode(view, "vtkMRMLSliceNode")


@dataclass(frozen=True)
class SessionProgress:
    """Where a reader is (what the "k of N" line says).

    Attributes:
        state: ``idle``, ``reading``, ``submitted``, ``washout`` or ``finished``.
        items_done / items_total: submitted and scheduled items (training items included).
        item_number: the number (1-based) of the item on screen among the training items when
            ``training``, else among the main items; None when no item is on screen.
        training: that item is a training item; training_done / training_total count them.
        session_no / sessions_total, position_in_session / items_in_session: the sitting.
        opens_at: ISO time the next item opens (washout), else None.
    """

    reader_id: str
    state: str
    items_done: int
    items_total: int
    item_number: int | None
    training: bool
    training_done: int
    training_total: int
    session_no: int | None
    sessions_total: int
    position_in_session: int | None
    items_in_session: int | None
    opens_at: str | None

    def text(self) -> str:
        """One line for the reader, e.g. ``Item 5 of 40 - session 2 of 3 (item 1 of 20)``."""
        if self.state == STATE_FINISHED:
            return f"All {self.items_total} items done. Thank you!"
        if self.state == STATE_WASHOUT:
            return (f"{self.items_done} of {self.items_total} items done. Session {self.session_no} of "
                    f"{self.sessions_total} opens {_readable_time(self.opens_at)} (washout).")
        if self.item_number is None:
            return f"{self.items_done} of {self.items_total} items done."
        kind = (f"Training item {self.item_number} of {self.training_total} (not scored)" if self.training
                else f"Item {self.item_number} of {self.items_total - self.training_total}")
        return (f"{kind} \u2013 session {self.session_no} of {self.sessions_total} "
                f"(item {self.position_in_session} of {self.items_in_session})")


def _readable_time(iso: str | None) -> str:
    if not iso:
        return "now"
    from datetime import datetime

    moment = datetime.fromisoformat(iso).astimezone()
    return "on " + moment.strftime("%Y-%m-%d at %H:%M")


class ReadingSessionLogic:
    """One reader's session on a MRML scene.

    Args:
        scene: ``slicer.mrmlScene``, or the scene of :func:`~DigitalContrastLib.mrml.headless.make_headless_scene`.
        app_logic: ``slicer.app.applicationLogic()``, or the headless application logic.
        store: the study's answer store (open).
        reader_id: the reader's code (listed in the study).
        enrol: enrol a listed reader who is not enrolled yet when the session starts.
        idle_after_seconds: time without interaction after which active time stops counting.
        clock: monotonic seconds for active time (tests pass a fake).
        image_reader: path -> :class:`CTVolume` (default :func:`read_image_blind`).

    Typical use (the Slicer widget does exactly this)::

        session = ReadingSessionLogic(slicer.mrmlScene, slicer.app.applicationLogic(), store, "r01")
        item = session.start()            # ReaderItem on screen (or None: washout / finished)
        receipt = session.submit(answers) # on disk when it returns
        item = session.next()
    """

    def __init__(self, scene: Any, app_logic: Any, store: AnswerStore, reader_id: str, *, enrol: bool = True,
                 idle_after_seconds: float = DEFAULT_IDLE_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic,
                 image_reader: Callable[[str | Path], CTVolume] = read_image_blind) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self.store = store
        self.reader_id = reader_id.strip()
        self.enrol = enrol
        self.active_time = ActiveTimeCounter(idle_after_seconds, clock)
        self.image_reader = image_reader
        self.state = STATE_IDLE
        self.current_item: ReaderItem | None = None
        self.display: ItemDisplay | None = None
        self.last_receipt: SubmitReceipt | None = None
        self._interaction_marked = False
        self._observations: list[tuple[Any, int]] = []
        self._view_signatures: dict[str, tuple] = {}
        self._display_signatures: dict[str, tuple] = {}
        self.on_interaction: Callable[[], None] | None = None  # the widget refreshes its clock

    # -- flow ------------------------------------------------------------------------------
    def start(self) -> ReaderItem | None:
        """Enrol if needed, then resume at the first unfinished item and show it.

        Returns the item on screen, or None when the reader has finished or the next item is
        still closed by a washout (see :attr:`state` and :meth:`progress`).
        """
        if not self.reader_id:
            raise AnswerError("Enter your reader code to start.", code="no_reader")
        self.store.study.reader(self.reader_id)  # unknown code: one sentence naming the study
        enrolled = {r.reader_id for r in self.store.readers()}
        if self.reader_id not in enrolled:
            if not self.enrol:
                raise AnswerError(f"Reader '{self.reader_id}' is not enrolled yet; ask the study admin to enrol you.",
                                  code="not_enrolled")
            self.store.enrol(self.reader_id)
        return self._advance()

    def next(self) -> ReaderItem | None:
        """Show the next unfinished item after a submit (or re-check a washout)."""
        if self.state == STATE_READING:
            raise AnswerError("Submit the answers to this item first.", code="not_submitted")
        return self._advance()

    def _advance(self) -> ReaderItem | None:
        item = self.store.resume(self.reader_id)
        if item is None:
            self._clear()
            self.current_item, self.state = None, STATE_FINISHED
            return None
        if item.opens_at:
            self._clear()
            self.current_item, self.state = item, STATE_WASHOUT
            return None
        item = self.store.open_item(self.reader_id, item.item_id)
        self.load_item(item)
        return item

    def load_item(self, item: ReaderItem) -> ItemDisplay:
        """Put ``item`` on screen (blinded) and start its active-time count.

        The previous item's nodes are removed first. The caller has recorded the display with
        ``store.open_item`` (:meth:`start`/:meth:`next` do).
        """
        self._clear()
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
        self.display = ItemDisplay(item.item_id, layout, nodes, window_level.window_hu, window_level.level_hu)
        self.current_item = item
        self.state = STATE_READING if item.editable and not item.done else STATE_SUBMITTED
        self._interaction_marked = False
        self._observe_interactions()
        self.active_time.start()
        return self.display

    def submit(self, answers: Mapping[str, Any]) -> SubmitReceipt:
        """Commit the answers to the item on screen; returns once they are on disk.

        The active time so far is stored with them. Invalid or missing answers raise
        :class:`AnswerError` and change nothing (the item stays on screen, its clock running).
        """
        if self.state != STATE_READING or self.current_item is None:
            raise AnswerError("There is no unanswered item on screen to submit.", code="nothing_to_submit")
        seconds = round(self.active_time.tick(), 3)
        receipt = self.store.submit(self.reader_id, self.current_item.item_id, dict(answers), active_seconds=seconds)
        self.active_time.stop()
        self.last_receipt = receipt
        self.state = STATE_SUBMITTED
        return receipt

    def submit_and_next(self, answers: Mapping[str, Any]) -> ReaderItem | None:
        """:meth:`submit`, then :meth:`next` (what Ctrl+N does)."""
        self.submit(answers)
        return self.next()

    def note_interaction(self) -> None:
        """The reader did something with the item on screen (the form calls it on every edit;
        view and window/level changes call it through MRML observers)."""
        if self.state != STATE_READING or self.current_item is None:
            return
        self.active_time.interaction()
        if not self._interaction_marked:
            self._interaction_marked = True
            self.store.mark_interaction(self.reader_id, self.current_item.item_id)
        if self.on_interaction is not None:
            self.on_interaction()

    def progress(self) -> SessionProgress:
        """Where the reader is, for the "k of N" line."""
        record = next((p for p in self.store.progress() if p.reader_id == self.reader_id), None)
        if record is None or not record.enrolled:
            return SessionProgress(self.reader_id, self.state, 0, 0, None, False, 0, 0, None, 0, None, None, None)
        shown = self.current_item if self.state in (STATE_READING, STATE_SUBMITTED) else None
        training = bool(shown and shown.training)
        number = None
        if shown is not None:  # training items come first in every schedule
            number = shown.order_index if training else shown.order_index - record.training_total
        return SessionProgress(
            reader_id=self.reader_id,
            state=self.state,
            items_done=record.items_done,
            items_total=record.items_total,
            item_number=number,
            training=training,
            training_done=record.training_done,
            training_total=record.training_total,
            session_no=shown.session_no if shown else record.current_session,
            sessions_total=record.sessions_total,
            position_in_session=shown.position_in_session if shown else None,
            items_in_session=shown.items_in_session if shown else None,
            opens_at=record.next_opens_at if self.state == STATE_WASHOUT else None,
        )

    def slice_logic(self, view: str) -> Any:
        """The ``vtkMRMLSliceLogic`` of a view (do not keep it beyond the application logic)."""
        return self.app_logic.GetSliceLogicByLayoutName(view)

    def close(self) -> None:
        """Remove the item from the scene and stop observing (answers are already on disk)."""
        self._clear()
        self.state = STATE_IDLE

    # -- scene ---------------------------------------------------------------------------
    def _clear(self) -> None:
        self._unobserve()
        if self.active_time.running:
            self.active_time.stop()
        remove_item_nodes(self.scene)
        self.display = None

    def _observe_interactions(self) -> None:
        """Scrolling, panning, zooming a view or changing window/level counts as interaction."""
        import vtk

        assert self.display is not None
        for view in self.display.layout.view_names:
            slice_node = self.display.slice_node(self.scene, view)
            self._view_signatures[view] = _view_signature(slice_node)
            tag = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, _weak_callback(self._on_view_modified))
            self._observations.append((slice_node, tag))
        for handle, node in self.display.nodes.items():
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

    def _on_view_modified(self, slice_node: Any, _event: str) -> None:
        name = slice_node.GetLayoutName()
        signature = _view_signature(slice_node)
        if self._view_signatures.get(name) != signature:  # a resize of the window is not reading
            self._view_signatures[name] = signature
            self.note_interaction()

    def _on_display_modified(self, display: Any, _event: str) -> None:
        signature = _display_signature(display)
        if self._display_signatures.get(display.GetID()) != signature:
            self._display_signatures[display.GetID()] = signature
            self.note_interaction()


def _weak_callback(method: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """A VTK observer callback that does not keep its session alive.

    A bound method given to ``AddObserver`` would make a reference cycle (session -> nodes ->
    observer -> session) that only the garbage collector breaks, and VTK objects torn down during
    that collection emit events into a half-cleared session (seen crashing the interpreter).
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
