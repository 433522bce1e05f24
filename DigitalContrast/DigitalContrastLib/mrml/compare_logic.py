"""Compare a synthetic volume node with the real contrast scan: registration, metrics, DICOM export.

Each long step runs as a :class:`~DigitalContrastLib.common.background.BackgroundTask`: the nodes' voxels
are copied in the calling (GUI) thread, the computation (SimpleITK, numpy, pydicom) runs in a
thread that never touches MRML, and the nodes are made when the GUI thread polls the finished
task (``task.wait()`` does both for scripts and tests). SimpleITK and numpy release the GIL while
they compute, so Slicer stays responsive; a thread cannot be killed, so *Cancel* only discards
the result (registration of a 512x512x300 pair takes tens of seconds, not minutes).

* :func:`start_registration`: the real contrast scan resampled onto the non-contrast grid
  (``registration.register``: rigid; optionally rigid + B-spline, experimental), as a new node
  ``<real> registered`` with the registration's figures in ``DigitalContrast.Registration`` and a
  reference (``DigitalContrast.FieldOfView``) to a hidden mask node of the voxels the real scan
  covers after the transform.
* :func:`start_metrics`: the library's metrics (``metrics.body_metrics``, ``metrics.roi_metrics``)
  of the synthetic and, as the baseline, the non-contrast scan against the registered real scan,
  inside the non-contrast body mask (and the real scan's field of view), in a table node.
* :func:`start_export` / :func:`export_synthetic_node`: the synthetic node as a labelled DICOM
  series (``dicom_export``), in the source's study when the source came from DICOM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import provenance as prov
from DigitalContrastLib.common.background import BackgroundTask
from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET
from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.ct.labels import LABEL_CODES
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.evaluation.metrics import body_metrics, roi_metrics
from DigitalContrastLib.common.progress import ProgressCallback
from DigitalContrastLib.ct.volume import CTVolume

REGISTERED_SUFFIX = " registered"
FIELD_OF_VIEW_SUFFIX = " registered field of view"
#: Node reference from a registered volume to its field-of-view mask.
FIELD_OF_VIEW_REFERENCE = "DigitalContrast.FieldOfView"
REGISTERED_FROM = prov.PREFIX + "RegisteredFrom"
REGISTERED_ONTO = prov.PREFIX + "RegisteredOnto"
REGISTRATION = prov.PREFIX + "Registration"
METRICS_FOR = prov.PREFIX + "MetricsFor"
METRICS_NOTES = prov.PREFIX + "MetricsNotes"
#: Methods offered to users: B-spline is marked experimental in the module.
REGISTRATION_METHODS = ("rigid", "bspline")

NO_LABELS_NOTE = ("No lumen label volume given: body metrics only (MAE, PSNR, SSIM); lumen HU and diameters need a "
                  "label map of the aorta (phantom codes, or 1 = lumen).")


# ---------------------------------------------------------------------------- registration
@dataclass
class RegisteredReal:
    """A finished registration.

    Attributes:
        node: ``<real> registered``, the real scan on the non-contrast grid (int16 HU, -1024 where
            the real scan has no data).
        field_of_view_node: hidden uint8 mask node, 1 where the real scan has data after the transform.
        result: the library's :class:`~DigitalContrastLib.evaluation.registration.RegistrationResult`
            (``result.transform`` maps non-contrast points to real-scan points, LPS mm).
    """

    node: Any
    field_of_view_node: Any
    result: Any


def register_volumes(fixed: CTVolume, moving: CTVolume, method: str = "rigid",
                     progress: ProgressCallback | None = None, **options: Any) -> tuple[Any, np.ndarray]:
    """``registration.register`` plus the field of view: ``[z, y, x]`` bool on the fixed grid,
    True where the transformed moving scan has data. Pure (runs in a worker thread)."""
    from DigitalContrastLib.evaluation.registration import register, resample_to

    result = register(fixed, moving, method, progress, **options)
    ones = moving.with_array(np.ones(moving.shape_zyx, np.uint8))
    covered = resample_to(ones, fixed, result.transform, default_hu=0, interpolator="nearest").array.astype(bool)
    return result, covered


def _remove_nodes_with(scene: Any, attribute: str, value: str) -> None:
    for node in [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]:
        if node is not None and node.GetAttribute(attribute) == value:
            scene.RemoveNode(node)


def start_registration(scene: Any, nc_node: Any, real_node: Any, method: str = "rigid",
                       **options: Any) -> BackgroundTask:
    """Register the real contrast scan onto the non-contrast grid in a thread.

    Args:
        scene: the nodes' scene.
        nc_node: the fixed scan (its grid is the result's).
        real_node: the moving scan (any grid, same patient and frame of reference).
        method: ``"rigid"`` or ``"bspline"`` (rigid, then a coarse B-spline; experimental).
        options: passed to ``registration.register`` (``seed``, ``initializer``, ``threads``...).

    Returns:
        The started task; its result (after ``poll``/``wait`` in this thread) is a
        :class:`RegisteredReal`. An earlier registration of the same real node is replaced.
    """
    from .volume_nodes import node_to_volume, volume_to_node

    if method not in REGISTRATION_METHODS:
        raise JobError(f"Unknown registration method '{method}': choose one of {', '.join(REGISTRATION_METHODS)}.",
                       code="bad_method")
    fixed, moving = node_to_volume(nc_node), node_to_volume(real_node)
    fixed.metadata["path"] = f"non-contrast volume '{nc_node.GetName()}'"
    moving.metadata["path"] = f"contrast volume '{real_node.GetName()}'"
    real_id, real_name, nc_id = real_node.GetID(), real_node.GetName(), nc_node.GetID()

    def finish(value: tuple[Any, np.ndarray]) -> RegisteredReal:
        result, covered = value
        _remove_nodes_with(scene, REGISTERED_FROM, real_id)
        figures = {
            "method": result.method, "final_stage": result.final_stage, "metric_value": result.metric_value,
            "stage_metric_values": result.stage_metric_values, "iterations": result.iterations,
            "seconds": round(result.seconds, 3), "rigid_parameters": result.rigid_parameters,
            "experimental": result.method == "bspline",
        }
        attributes = {REGISTERED_FROM: real_id, REGISTERED_ONTO: nc_id, REGISTRATION: prov.to_json(figures)}
        node = volume_to_node(scene, result.registered, real_name + REGISTERED_SUFFIX, attributes=attributes,
                              window_level=CONTRAST_PRESET)
        mask = volume_to_node(scene, fixed.with_array(covered.astype(np.uint8)), real_name + FIELD_OF_VIEW_SUFFIX,
                              attributes={REGISTERED_FROM: real_id})
        mask.SetHideFromEditors(True)
        node.SetNodeReferenceID(FIELD_OF_VIEW_REFERENCE, mask.GetID())
        prov.place_beside(scene, node, scene.GetNodeByID(real_id))
        return RegisteredReal(node, mask, result)

    return BackgroundTask("registration", register_volumes, fixed, moving, method, finish=finish, **options).start()


# ---------------------------------------------------------------------------- metrics
@dataclass
class MetricsOutcome:
    """Metrics of one synthetic volume against the real scan.

    Attributes:
        rows: one dict per comparison (``comparison``: ``synthetic vs real``, then the baseline
            ``non-contrast vs real``), the library's column names (``body_mae_hu``, ``lumen_mae_hu``...).
        notes: what the figures cover and what they do not (shown in the module panel).
        table_node: the ``vtkMRMLTableNode`` holding ``rows``.
    """

    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    table_node: Any = None

    @property
    def synthetic(self) -> dict[str, Any]:
        return self.rows[0]


def lumen_label_codes(labels: np.ndarray) -> tuple[dict[str, int] | None, str | None]:
    """The codes of a label map: the phantom's (:data:`metrics.LABEL_CODES`) when it holds the lumen
    code 10, ``1 = lumen`` for a 0/1 mask; ``(None, why)`` otherwise."""
    values = set(np.unique(labels).tolist())
    if LABEL_CODES["lumen"] in values:
        return dict(LABEL_CODES), None
    if values <= {0, 1} and 1 in values:
        return {"lumen": 1, "thrombus": -1, "calcification": -1, "wall": -1}, \
            "The label volume is a 0/1 mask, taken as the lumen: thrombus figures are empty."
    return None, (f"The label volume holds the values {sorted(values)[:8]}, neither the phantom's codes (10 = lumen) "
                  "nor a 0/1 lumen mask: lumen metrics skipped.")


def comparison_metrics(nc: CTVolume, synthetic: CTVolume, real: CTVolume, labels: CTVolume | None = None,
                       field_of_view: np.ndarray | None = None,
                       progress: ProgressCallback | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Metrics of the synthetic and the non-contrast scan (baseline) against the real scan. Pure.

    All volumes are on one grid (the non-contrast scan's). The body mask is the non-contrast
    scan's (``metrics.body_mask_from_ct``), restricted to ``field_of_view`` (where the registered
    real scan has data). ROI metrics (lumen and thrombus HU, Dice, diameters) need ``labels``.

    Returns:
        ``(rows, notes)``: one row per comparison, notes on coverage.
    """
    notes: list[str] = []
    body = body_mask_from_ct(nc.array)
    if field_of_view is not None:
        outside = int((body & ~field_of_view).sum())
        body &= field_of_view
        if outside:
            notes.append(f"{outside} body voxels outside the real scan's field of view are left out.")
    codes = label_array = None
    if labels is None:
        notes.append(NO_LABELS_NOTE)
    else:
        label_array = np.asarray(labels.array)
        if field_of_view is not None:
            label_array = np.where(field_of_view, label_array, 0)
        codes, why = lumen_label_codes(label_array)
        if why:
            notes.append(why)
    comparisons = (("synthetic vs real", synthetic), ("non-contrast vs real", nc))
    rows = []
    for step, (name, predicted) in enumerate(comparisons):
        if progress is not None:
            progress("metrics", step, len(comparisons))
        row: dict[str, Any] = {"comparison": name, **body_metrics(predicted.array, real.array, body),
                               "body_voxels": int(body.sum())}
        if codes is not None:
            row.update(roi_metrics(predicted.array, real.array, label_array, nc.spacing_mm, label_codes=codes))
        rows.append(row)
    if progress is not None:
        progress("metrics", len(comparisons), len(comparisons))
    return rows, notes


def _on_grid(volume: CTVolume, reference: CTVolume, what: str, fix: str) -> None:
    if not volume.same_geometry(reference):
        raise InputError(f"{what} is not on the non-contrast scan's grid; {fix}.", code="grid_mismatch")


def start_metrics(scene: Any, nc_node: Any, synthetic_node: Any, real_node: Any, label_node: Any | None = None,
                  table_name: str | None = None) -> BackgroundTask:
    """Compute the comparison metrics in a thread; the result is a :class:`MetricsOutcome`.

    ``real_node`` must be on the non-contrast grid: the ``<real> registered`` node of
    :func:`start_registration` (its field of view is used). A label volume on another grid is
    resampled onto it (nearest neighbour, scanner coordinates). An earlier table of the same
    synthetic node is replaced.

    Raises:
        InputError: the synthetic or real volume is not on the non-contrast grid.
    """
    from .table_nodes import metrics_to_table_node
    from .volume_nodes import node_to_volume
    from DigitalContrastLib.evaluation.registration import resample_to

    nc, synthetic, real = (node_to_volume(n) for n in (nc_node, synthetic_node, real_node))
    _on_grid(synthetic, nc, f"Synthetic volume '{synthetic_node.GetName()}'",
             "compute the metrics with the non-contrast scan it was synthesized from")
    _on_grid(real, nc, f"Contrast volume '{real_node.GetName()}'", "register it onto the non-contrast scan first")
    labels = None
    if label_node is not None:
        labels = node_to_volume(label_node)
        if not labels.same_geometry(nc):
            labels = resample_to(labels, nc, None, default_hu=0, interpolator="nearest")
    mask_node = real_node.GetNodeReference(FIELD_OF_VIEW_REFERENCE)
    field_of_view = node_to_volume(mask_node).array.astype(bool) if mask_node is not None else None
    synthetic_id = synthetic_node.GetID()
    name = table_name or f"{synthetic_node.GetName()} metrics"

    def finish(value: tuple[list[dict[str, Any]], list[str]]) -> MetricsOutcome:
        rows, notes = value
        _remove_nodes_with(scene, METRICS_FOR, synthetic_id)
        table = metrics_to_table_node(scene, rows, name)
        table.SetAttribute(METRICS_FOR, synthetic_id)
        table.SetAttribute(METRICS_NOTES, " ".join(notes))
        return MetricsOutcome(rows, notes, table)

    return BackgroundTask("metrics", comparison_metrics, nc, synthetic, real, labels, field_of_view,
                          finish=finish).start()


# ---------------------------------------------------------------------------- export
def _export_inputs(synthetic_node: Any, source_node: Any | None) -> tuple[CTVolume, dict[str, Any], Mapping | None]:
    from .volume_nodes import node_to_volume

    if synthetic_node.GetAttribute(prov.SYNTHETIC) != "1":
        raise InputError(f"Volume '{synthetic_node.GetName()}' is not a synthetic volume made by Digital Contrast: "
                         "only synthesized volumes can be exported as labelled synthetic series.",
                         code="not_synthetic")
    return node_to_volume(synthetic_node), prov.export_provenance(synthetic_node), \
        prov.source_dicom_meta(synthetic_node, source_node)


def export_synthetic_node(synthetic_node: Any, out_dir: str | os.PathLike, *, source_node: Any | None = None,
                          overwrite: bool = False, progress: ProgressCallback | None = None) -> list[Path]:
    """Write a synthetic node as a labelled DICOM series (blocking; see :func:`start_export`).

    The labels (model id, version, weights sha256) come from the node's attributes; the source
    series' DICOM facts from the node's ``DigitalContrast.SourceDicomMeta`` (copied when it was
    synthesized), else ``source_node``'s ``DigitalContrast.DicomMeta``; without them the series
    gets a new study with anonymous patient placeholders.

    Raises:
        InputError: the node is not a synthetic volume made by this module.
        JobError, OutputError: as ``dicom_export.export_synthetic_dicom``.
    """
    from DigitalContrastLib.ct.dicom_export import export_synthetic_dicom

    volume, provenance, meta = _export_inputs(synthetic_node, source_node)
    return export_synthetic_dicom(volume, out_dir, provenance, source_dicom_meta=meta, overwrite=overwrite,
                                  progress=progress)


def series_folder(parent: str | os.PathLike, synthetic_node: Any) -> Path:
    """``parent/<node name>`` with characters that are unsafe in file names replaced by ``_``."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", synthetic_node.GetName()).strip("._") or "synthetic"
    return Path(parent) / name


def start_export(synthetic_node: Any, out_dir: str | os.PathLike, *, source_node: Any | None = None,
                 overwrite: bool = False) -> BackgroundTask:
    """:func:`export_synthetic_node` in a thread (the voxels are copied here first); result: the files."""
    from DigitalContrastLib.ct.dicom_export import export_synthetic_dicom

    volume, provenance, meta = _export_inputs(synthetic_node, source_node)
    return BackgroundTask("export", export_synthetic_dicom, volume, out_dir, provenance, source_dicom_meta=meta,
                          overwrite=overwrite).start()
