"""Work the Slicer module hands to a process of its own: input check, registration, metrics, DICOM export.

Inside Slicer a Python thread advances only while the GUI thread runs Python, so every heavy step
runs here, in ``python -m DigitalContrastLib.worker --task NAME`` (``PythonSlicer
Scripts/DigitalContrastWorker.py --task NAME`` in Slicer), the same process that synthesizes. A task
reads one JSON object of arguments on stdin (paths of raw NRRD files the module wrote, options),
reports ``stage``/``progress`` messages and ends with one ``task_result`` (a JSON value) or one
``error``, as a job does (``protocol.py``). Nothing here imports torch or touches MRML.

=============  ====================================================================================
task           arguments -> value
=============  ====================================================================================
gate           input, metadata (the node's DICOM facts) -> the input gate's report (``GateReport``)
register       fixed, moving, method, options, registered, field_of_view, transform (outputs) -> figures
metrics        noncontrast, synthetic, real, labels?, field_of_view? -> {rows, notes}
export         synthetic, out_dir, provenance, source_dicom_meta, overwrite -> {files}
dicom_meta     files (a series' DICOM files), slices, direction (the volume's) -> the series' facts
server_check   url, token -> the synthesis service's health and models (checks the token)
server_cancel  url, token, job_id -> the job's status once cancelled on the service
=============  ====================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.dicom_export import export_synthetic_dicom
from DigitalContrastLib.ct.dicom_meta import dicom_meta_from_files
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.synthesis.gate import check_volume

TaskFunction = Callable[[Mapping[str, Any], ProgressCallback], Any]


def _volume(arguments: Mapping[str, Any], key: str, what: str) -> CTVolume:
    volume = read_volume(arguments[key])
    volume.metadata["path"] = what
    return volume


def gate_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The input gate on a node's voxels, with the DICOM facts the node carried."""

    progress("gate", 0, 1)
    volume = read_volume(arguments["input"])
    volume.metadata.update(arguments.get("metadata") or {})
    report = check_volume(volume)
    progress("gate", 1, 1)
    return report.to_dict()


def register_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The real scan registered onto the non-contrast grid; writes it and its field of view (uint8)."""
    from DigitalContrastLib.evaluation.comparison import register_with_field_of_view

    fixed = _volume(arguments, "fixed", arguments.get("fixed_name", "the non-contrast volume"))
    moving = _volume(arguments, "moving", arguments.get("moving_name", "the contrast volume"))
    result, covered = register_with_field_of_view(fixed, moving, arguments.get("method", "rigid"), progress,
                                                  **(arguments.get("options") or {}))
    progress("write", 0, 2)
    write_volume(result.registered, Path(arguments["registered"]))
    write_volume(fixed.with_array(covered.astype(np.uint8)), Path(arguments["field_of_view"]))
    if arguments.get("transform"):
        import SimpleITK as sitk

        sitk.WriteTransform(result.transform, str(arguments["transform"]))
    progress("write", 2, 2)
    return {"method": result.method, "final_stage": result.final_stage, "metric_value": result.metric_value,
            "stage_metric_values": result.stage_metric_values, "iterations": result.iterations,
            "seconds": round(result.seconds, 3), "rigid_parameters": result.rigid_parameters,
            "experimental": result.method == "bspline"}


def metrics_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Comparison metrics of the synthetic and the non-contrast scan against the (registered) real scan."""
    from DigitalContrastLib.evaluation.comparison import comparison_metrics
    from DigitalContrastLib.evaluation.registration import resample_to

    nc = read_volume(arguments["noncontrast"])
    synthetic = read_volume(arguments["synthetic"])
    real = read_volume(arguments["real"])
    for volume, what, fix in ((synthetic, arguments.get("synthetic_name", "The synthetic volume"),
                               "compute the metrics with the non-contrast scan it was synthesized from"),
                              (real, arguments.get("real_name", "The contrast volume"),
                               "register it onto the non-contrast scan first")):
        if not volume.same_geometry(nc):
            raise InputError(f"{what} is not on the non-contrast scan's grid; {fix}.", code="grid_mismatch")
    labels = None
    if arguments.get("labels"):
        labels = read_volume(arguments["labels"])
        if not labels.same_geometry(nc):
            labels = resample_to(labels, nc, None, default_hu=0, interpolator="nearest")
    field_of_view = read_volume(arguments["field_of_view"]).array.astype(bool) if arguments.get("field_of_view") \
        else None
    rows, notes = comparison_metrics(nc, synthetic, real, labels, field_of_view, progress)
    return {"rows": rows, "notes": notes}


def export_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The synthetic volume as a labelled DICOM series."""

    volume = read_volume(arguments["synthetic"])
    files = export_synthetic_dicom(volume, arguments["out_dir"], arguments["provenance"],
                                   source_dicom_meta=arguments.get("source_dicom_meta"),
                                   overwrite=bool(arguments.get("overwrite")), progress=progress)
    return {"files": [str(path) for path in files]}


def dicom_meta_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The DICOM facts of a series Slicer loaded (every header read here, not in the GUI)."""

    progress("read", 0, 1)
    meta = dicom_meta_from_files(arguments["files"], int(arguments["slices"]), arguments["direction"])
    progress("read", 1, 1)
    return meta


#: task name -> (function, the arguments it requires).
def server_check_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The 'Remote server' device's Check button: health and models of the service (HTTP in this process)."""
    from .relay import check_server

    return check_server(arguments)


def server_cancel_task(arguments: Mapping[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Cancel a job on the service after its relay was killed."""
    from .relay import cancel_on_server

    return cancel_on_server(arguments)


TASKS: dict[str, tuple[TaskFunction, tuple[str, ...]]] = {
    "gate": (gate_task, ("input",)),
    "register": (register_task, ("fixed", "moving", "registered", "field_of_view")),
    "metrics": (metrics_task, ("noncontrast", "synthetic", "real")),
    "export": (export_task, ("synthetic", "out_dir", "provenance")),
    "dicom_meta": (dicom_meta_task, ("files", "slices", "direction")),
    "server_check": (server_check_task, ("url",)),
    "server_cancel": (server_cancel_task, ("url", "job_id")),
}


def run_task(name: str, arguments: Any, progress: ProgressCallback | None = None) -> Any:
    """Run task ``name`` on its arguments (a JSON object); returns its JSON-able value.

    Raises:
        JobError: unknown task, or arguments that are not an object or lack a field.
        InputError, OutputError, ...: what the task itself raises (one sentence each).
    """
    if name not in TASKS:
        raise JobError(f"unknown task {name!r}; the tasks are {', '.join(sorted(TASKS))}.", code="unknown_task")
    if not isinstance(arguments, Mapping):
        raise JobError(f"the arguments of task {name!r} must be a JSON object.", code="bad_task")
    function, required = TASKS[name]
    missing = [key for key in required if key not in arguments]
    if missing:
        raise JobError(f"task {name!r} lacks its argument(s) {', '.join(missing)}; this is a bug of the caller.",
                       code="bad_task")
    return function(arguments, progress or no_progress)
