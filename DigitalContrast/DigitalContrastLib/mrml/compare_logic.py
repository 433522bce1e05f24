"""Compare a synthetic volume node with the real contrast scan: registration, metrics, DICOM export.

Each step is a :class:`~DigitalContrastLib.mrml.gui_task.GuiTask`: the nodes it needs are written to
raw NRRD files a few slices per GUI tick, the computation runs in a worker ``--task`` process
(``worker.tasks``: SimpleITK, numpy, pydicom; never a Python thread of the Slicer process, where it
would only move while the GUI runs Python), and result nodes are built from files a few slices per
tick. ``task.wait()`` does it all for scripts and tests; *Cancel* (``task.discard()``) kills the
process at once.

* :func:`start_registration`: the real contrast scan resampled onto the non-contrast grid
  (``registration.register``: rigid; optionally rigid + B-spline, experimental), as a new node
  ``<real> registered`` with the registration's figures in ``DigitalContrast.Registration`` and a
  reference (``DigitalContrast.FieldOfView``) to a hidden mask node of the voxels the real scan
  covers after the transform.
* :func:`start_metrics`: the comparison metrics (``evaluation.comparison``) of the synthetic and, as
  the baseline, the non-contrast scan against the registered real scan, in a table node.
* :func:`start_export`: the synthetic node as a labelled DICOM series (``ct.dicom_export``), in the
  source's study when the source came from DICOM.
* :func:`start_dicom_meta`: the series facts of a node Slicer's DICOM module loaded (its headers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET, WindowLevel
from DigitalContrastLib.worker.process import Launcher
from DigitalContrastLib.worker.task_process import TaskProcess

from . import provenance as prov
from .gui_steps import BlockMonitor, Progress
from .gui_task import GuiTask, new_workspace, wait_for_process
from .node_files import VolumeRead, array_to_node, node_voxels, read_volume_steps, remove_steps, write_node_steps
from .table_nodes import metrics_to_table_node

REGISTERED_SUFFIX = " registered"
FIELD_OF_VIEW_SUFFIX = " registered field of view"
#: Node reference from a registered volume to its field-of-view mask.
FIELD_OF_VIEW_REFERENCE = "DigitalContrast.FieldOfView"
REGISTERED_FROM = prov.PREFIX + "RegisteredFrom"
REGISTERED_ONTO = prov.PREFIX + "RegisteredOnto"
REGISTRATION = prov.PREFIX + "Registration"
REGISTRATION_TRANSFORM = prov.PREFIX + "RegistrationTransform"
METRICS_FOR = prov.PREFIX + "MetricsFor"
METRICS_NOTES = prov.PREFIX + "MetricsNotes"
#: Methods offered to users: B-spline is marked experimental in the module.
REGISTRATION_METHODS = ("rigid", "bspline")
#: A mask shown as 0/1.
MASK_WINDOW = WindowLevel("mask", 1.0, 0.5, "A 0/1 mask")


@dataclass(frozen=True)
class TaskSettings:
    """How the tasks run: the worker launcher (Slicer: ``PythonSlicer``), where files go, who measures the GUI thread."""

    launcher: Launcher | None = None
    work_dir: Path | None = None
    monitor: BlockMonitor = field(default_factory=BlockMonitor)


def write_inputs(files: Sequence[tuple[Any, Path, str]]) -> Generator[Any, None, None]:
    """Pipeline steps writing each ``(node, path, what)`` to a raw NRRD, reporting ``what``."""
    for node, path, what in files:
        for fraction in write_node_steps(node, path):
            yield Progress(what, fraction)


def read_result(path: Path, what: str, expect_sha256: str | None = None) -> Generator[Any, None, VolumeRead]:
    """Pipeline steps reading a raw NRRD a worker wrote (checked against its SHA-256 when given); returns
    the filled :class:`VolumeRead`."""
    read = None
    for read in read_volume_steps(path, expect_sha256=expect_sha256):
        yield Progress(what, 1.0 if read.done else 0.5)
    assert read is not None
    return read


def remove_files(paths: Sequence[Path]) -> Generator[Any, None, None]:
    """Pipeline steps deleting the volume files a task no longer needs, a slab per step."""
    for fraction in remove_steps(list(paths)):
        yield Progress("cleaning up", fraction)


def _remove_nodes_with(scene: Any, attribute: str, value: str) -> None:
    for node in [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]:
        if node is not None and node.GetAttribute(attribute) == value:
            scene.RemoveNode(node)


# ---------------------------------------------------------------------------- registration
@dataclass
class RegisteredReal:
    """A finished registration.

    Attributes:
        node: ``<real> registered``, the real scan on the non-contrast grid (int16 HU, -1024 where
            the real scan has no data).
        field_of_view_node: hidden uint8 mask node, 1 where the real scan has data after the transform.
        figures: method, final stage, metric values, iterations, seconds, ``rigid_parameters``
            (``rotation_deg``, ``translation_mm``, ``center_mm``).
        transform_text: the transform from non-contrast points to real-scan points (LPS mm), as ITK's
            ``.tfm`` text (also on the node, ``DigitalContrast.RegistrationTransform``); :attr:`transform`
            reads it.
    """

    node: Any
    field_of_view_node: Any
    figures: dict[str, Any]
    transform_text: str = field(repr=False, default="")

    @property
    def transform(self) -> Any:
        """The ``SimpleITK.Transform`` (read on first use: SimpleITK is not imported while the GUI polls)."""
        import os
        import tempfile

        import SimpleITK as sitk

        handle, name = tempfile.mkstemp(suffix=".tfm")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(self.transform_text)
            return sitk.ReadTransform(name)
        finally:
            os.unlink(name)


def start_registration(scene: Any, nc_node: Any, real_node: Any, method: str = "rigid",
                       settings: TaskSettings | None = None, **options: Any) -> GuiTask:
    """Register the real contrast scan onto the non-contrast grid in a worker process.

    Args:
        scene: the nodes' scene.
        nc_node: the fixed scan (its grid is the result's).
        real_node: the moving scan (any grid, same patient and frame of reference).
        method: ``"rigid"`` or ``"bspline"`` (rigid, then a coarse B-spline; experimental).
        settings: launcher, work folder and GUI-thread monitor.
        options: passed to ``registration.register`` (``seed``, ``initializer``, ``threads``...).

    Returns:
        The started task; its result is a :class:`RegisteredReal`. An earlier registration of the
        same real node is replaced.
    """
    if method not in REGISTRATION_METHODS:
        raise JobError(f"Unknown registration method '{method}': choose one of {', '.join(REGISTRATION_METHODS)}.",
                       code="bad_method")
    settings = settings or TaskSettings()
    workspace = new_workspace(settings.work_dir, "registration")
    real_id, real_name, nc_id = real_node.GetID(), real_node.GetName(), nc_node.GetID()
    paths = {key: workspace / f"{key}.nrrd" for key in ("fixed", "moving", "registered", "field_of_view")}
    arguments = {**{key: str(path) for key, path in paths.items()}, "method": method, "options": options,
                 "fixed_name": f"non-contrast volume '{nc_node.GetName()}'", "transform": str(workspace / "t.tfm"),
                 "moving_name": f"contrast volume '{real_name}'"}

    def pipeline() -> Generator[Any, None, RegisteredReal]:
        yield from write_inputs([(nc_node, paths["fixed"], "writing the non-contrast scan"),
                                 (real_node, paths["moving"], "writing the contrast scan")])
        process = TaskProcess(["--task", "register"], arguments, launcher=settings.launcher)
        figures = yield from wait_for_process(process, "registration")
        registered = yield from read_result(paths["registered"], "loading the registered scan")
        covered = yield from read_result(paths["field_of_view"], "loading its field of view")
        transform = Path(arguments["transform"]).read_text()
        yield from remove_files([paths[key] for key in ("fixed", "moving", "registered", "field_of_view")])
        _remove_nodes_with(scene, REGISTERED_FROM, real_id)
        attributes = {REGISTERED_FROM: real_id, REGISTERED_ONTO: nc_id, REGISTRATION: prov.to_json(figures),
                      REGISTRATION_TRANSFORM: transform}
        node = array_to_node(scene, registered.volume(), real_name + REGISTERED_SUFFIX, attributes, CONTRAST_PRESET)
        mask = array_to_node(scene, covered.volume(), real_name + FIELD_OF_VIEW_SUFFIX, {REGISTERED_FROM: real_id},
                             MASK_WINDOW)
        mask.SetHideFromEditors(True)
        node.SetNodeReferenceID(FIELD_OF_VIEW_REFERENCE, mask.GetID())
        prov.place_beside(scene, node, scene.GetNodeByID(real_id))
        return RegisteredReal(node, mask, figures, transform)

    return GuiTask("registration", pipeline(), workspace, settings.monitor).start()


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


def start_metrics(scene: Any, nc_node: Any, synthetic_node: Any, real_node: Any, label_node: Any | None = None,
                  table_name: str | None = None, settings: TaskSettings | None = None) -> GuiTask:
    """Compute the comparison metrics in a worker process; the result is a :class:`MetricsOutcome`.

    ``real_node`` must be on the non-contrast grid: the ``<real> registered`` node of
    :func:`start_registration` (its field of view is used). A label volume on another grid is
    resampled onto it (nearest neighbour, scanner coordinates). An earlier table of the same
    synthetic node is replaced. The task fails with one sentence (InputError) when the synthetic
    or real volume is not on the non-contrast grid.
    """
    settings = settings or TaskSettings()
    workspace = new_workspace(settings.work_dir, "metrics")
    mask_node = real_node.GetNodeReference(FIELD_OF_VIEW_REFERENCE)
    nodes = {"noncontrast": nc_node, "synthetic": synthetic_node, "real": real_node, "labels": label_node,
             "field_of_view": mask_node}
    files = [(node, workspace / f"{key}.nrrd", f"writing {key.replace('_', ' ')}") for key, node in nodes.items()
             if node is not None]
    arguments = {key: str(workspace / f"{key}.nrrd") for key, node in nodes.items() if node is not None}
    arguments.update(synthetic_name=f"Synthetic volume '{synthetic_node.GetName()}'",
                     real_name=f"Contrast volume '{real_node.GetName()}'")
    synthetic_id = synthetic_node.GetID()
    name = table_name or f"{synthetic_node.GetName()} metrics"

    def pipeline() -> Generator[Any, None, MetricsOutcome]:
        yield from write_inputs(files)
        process = TaskProcess(["--task", "metrics"], arguments, launcher=settings.launcher)
        value = yield from wait_for_process(process, "metrics")
        yield from remove_files([path for _, path, _ in files])
        rows, notes = value["rows"], value["notes"]
        _remove_nodes_with(scene, METRICS_FOR, synthetic_id)
        table = metrics_to_table_node(scene, rows, name)
        table.SetAttribute(METRICS_FOR, synthetic_id)
        table.SetAttribute(METRICS_NOTES, " ".join(notes))
        return MetricsOutcome(rows, notes, table)

    return GuiTask("metrics", pipeline(), workspace, settings.monitor).start()


# ---------------------------------------------------------------------------- export
def series_folder(parent: str | os.PathLike, synthetic_node: Any) -> Path:
    """``parent/<node name>`` with characters that are unsafe in file names replaced by ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", synthetic_node.GetName()).strip("._") or "synthetic"
    return Path(parent) / name


def start_export(synthetic_node: Any, out_dir: str | os.PathLike, *, source_node: Any | None = None,
                 overwrite: bool = False, settings: TaskSettings | None = None) -> GuiTask:
    """Write a synthetic node as a labelled DICOM series in a worker process; the result is the files.

    The labels (model id, version, weights sha256) come from the node's attributes; the source
    series' DICOM facts from the node's ``DigitalContrast.SourceDicomMeta`` (copied when it was
    synthesized), else ``source_node``'s ``DigitalContrast.DicomMeta``; without them the series
    gets a new study with anonymous patient placeholders.

    Raises:
        InputError: the node is not a synthetic volume made by this module (nothing is started).
    """
    if synthetic_node.GetAttribute(prov.SYNTHETIC) != "1":
        raise InputError(f"Volume '{synthetic_node.GetName()}' is not a synthetic volume made by Digital Contrast: "
                         "only synthesized volumes can be exported as labelled synthetic series.",
                         code="not_synthetic")
    settings = settings or TaskSettings()
    workspace = new_workspace(settings.work_dir, "export")
    arguments = {"synthetic": str(workspace / "synthetic.nrrd"), "out_dir": os.fspath(out_dir),
                 "provenance": prov.export_provenance(synthetic_node), "overwrite": overwrite,
                 "source_dicom_meta": prov.source_dicom_meta(synthetic_node, source_node)}

    def pipeline() -> Generator[Any, None, list[Path]]:
        yield from write_inputs([(synthetic_node, workspace / "synthetic.nrrd", "writing the synthetic volume")])
        process = TaskProcess(["--task", "export"], arguments, launcher=settings.launcher)
        value = yield from wait_for_process(process, "export")
        yield from remove_files([workspace / "synthetic.nrrd"])
        return [Path(path) for path in value["files"]]

    return GuiTask("export", pipeline(), workspace, settings.monitor).start()


def dicom_meta_steps(node: Any, files: Sequence[str | os.PathLike],
                     settings: TaskSettings | None = None) -> Generator[Any, None, dict[str, Any]]:
    """Pipeline steps reading the headers of the DICOM ``files`` a node was loaded from, in a worker
    process; they set its ``DigitalContrast.DicomMeta`` and return the facts (see :mod:`~DigitalContrastLib.ct.dicom_meta`)."""

    settings = settings or TaskSettings()
    voxels = node_voxels(node)
    arguments = {"files": [os.fspath(f) for f in files], "slices": int(voxels.array.shape[0]),
                 "direction": list(voxels.direction)}
    process = TaskProcess(["--task", "dicom_meta"], arguments, launcher=settings.launcher)
    meta = yield from wait_for_process(process, "reading DICOM headers")
    node.SetAttribute(prov.DICOM_META, prov.to_json(meta))
    return meta


def start_dicom_meta(node: Any, files: Sequence[str | os.PathLike], settings: TaskSettings | None = None) -> GuiTask:
    """:func:`dicom_meta_steps` as a running task."""
    settings = settings or TaskSettings()
    return GuiTask("dicom_meta", dicom_meta_steps(node, files, settings), None, settings.monitor).start()
