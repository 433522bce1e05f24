"""The reading station's :class:`~DigitalContrastReaderLib.reading.session.ReaderDisplay`: the Slicer
module's MRML display, in trame-slicer's remote slice views.

Before an item is shown, its hanging protocol (:func:`~DigitalContrastReaderLib.mrml.reader_display.reader_layout`:
one column per image, one row per orientation, neutral labels) becomes the page's layout, so the
slice views it names exist; then :class:`~DigitalContrastReaderLib.mrml.reader_display.MRMLReaderDisplay`
puts the images in them exactly as in Slicer (neutral node names, voxels only, the study's
window/level, linked views). The window/level is then locked: the station shows every image at the
study's fixed setting, while scrolling, zooming and panning stay free.

A remote view learns its size from the browser, after the item was put in it: until the reader
first touches the item, every resize fits the images to the views again (neither the resize nor
the fit is the reader's interaction, so they do not start the item's active time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trame_slicer.views import slicer_layout_to_vue

from DigitalContrastReaderLib.mrml.reader_display import MRMLReaderDisplay, reader_layout
from DigitalContrastReaderLib.study.blinding import ReaderItem


class StationDisplay:
    """Shows reading items in the views of a trame-slicer page.

    Args:
        scene, app_logic: the page's ``SlicerApp`` scene and application logic.
        view_manager, layouts: the page's trame-slicer ``ViewManager`` and ``LayoutManager``.
    """

    def __init__(self, scene: Any, app_logic: Any, view_manager: Any, layouts: Any) -> None:
        self.mrml = MRMLReaderDisplay(scene, app_logic)
        self.view_manager = view_manager
        self.layouts = layouts
        self._resizing = False
        self._touched = False
        self._watched: set[str] = set()

    def show(self, item: ReaderItem, on_interaction: Callable[[], None]) -> None:
        """Lay out the item's views, show its images (blinded), lock window/level, render."""
        handles = tuple(image["handle"] for image in item.images)
        layout = reader_layout(handles, item.display.get("views", ["axial"]))
        layout_key = f"reader-{len(handles)}-" + "-".join(layout.view_names)  # neutral: handles, orientations
        if not self.layouts.has_layout(layout_key):
            self.layouts.register_layout(layout_key, slicer_layout_to_vue(layout.xml))
        self.layouts.set_layout(layout_key)
        self._watch_resizes()
        self._touched = False

        def interaction() -> None:
            if not self._resizing:
                self._touched = True
                on_interaction()

        self.mrml.show(item, interaction)
        assert self.mrml.shown is not None
        for node in self.mrml.shown.nodes.values():
            node.GetDisplayNode().SetWindowLevelLocked(True)
        self.render()

    def _watch_resizes(self) -> None:
        for view in self.view_manager.get_slice_views():
            tag = view.get_singleton_tag()
            if tag in self._watched:
                continue
            self._watched.add(tag)
            # before and after trame-slicer's own resize observer (priority 0), which resizes the slice node
            view.interactor().AddObserver("WindowResizeEvent", self._resize_starts, 10.0)
            view.interactor().AddObserver("WindowResizeEvent", self._resize_ends, -10.0)

    def _resize_starts(self, *_: Any) -> None:
        self._resizing = True

    def _resize_ends(self, *_: Any) -> None:
        try:
            if self.mrml.shown is not None and not self._touched:
                self.fit()
        finally:
            self._resizing = False

    def fit(self) -> None:
        """Fit every view of the item to its image and centre it, as when the item was shown."""
        shown = self.mrml.shown
        if shown is None:
            return
        bounds = [0.0] * 6
        next(iter(shown.nodes.values())).GetRASBounds(bounds)
        center = ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
        for name in shown.layout.view_names:
            logic = self.mrml.slice_logic(name)
            if logic is not None:
                logic.FitSliceToAll()
                logic.GetSliceNode().JumpSliceByCentering(*center)
        self.render()

    def clear(self) -> None:
        self.mrml.clear()
        self.render()

    def render(self) -> None:
        for view in self.view_manager.get_slice_views():
            view.schedule_render()
