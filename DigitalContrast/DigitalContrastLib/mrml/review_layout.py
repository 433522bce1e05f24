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

The generic pieces (linked slice views, layouts) are in :mod:`.views`, the overlays in
:mod:`.overlays`, PNG rendering in :mod:`.view_png`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET, NON_CONTRAST_PRESET, get_preset

from .overlays import difference_volume_node, style_uncertainty
from .views import (
    SliceViewSpec,
    layout_node_of,
    set_layout_description,
    show_layout,
    show_volumes_in_views,
    slice_views_layout_xml,
    volume_center_ras,
)
from .volume_nodes import set_window_level

REVIEW_LAYOUT_ID = 3917
REVIEW_CORONAL_LAYOUT_ID = 3918
REVIEW_TWO_LAYOUT_ID = 3919
REVIEW_TWO_CORONAL_LAYOUT_ID = 3920


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


def register_review_layouts(layout_node: Any) -> None:
    """Add (or refresh) the four review layout descriptions on a ``vtkMRMLLayoutNode``.

    Inside Slicer: ``register_review_layouts(slicer.app.layoutManager().layoutLogic().GetLayoutNode())``
    at start-up and after a scene is loaded (custom layouts are not saved in scenes).
    """
    for with_real in (True, False):
        for coronal_row in (False, True):
            layout_id = review_layout_id(with_real, coronal_row)
            set_layout_description(layout_node, layout_id, review_layout_xml(with_real, coronal_row))


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
            the pair from :func:`~DigitalContrastLib.mrml.headless.make_headless_scene`.
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
        style_uncertainty(scene, overlay_node)

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


