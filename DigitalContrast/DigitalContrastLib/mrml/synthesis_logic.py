"""Synthesis of a MRML volume node in the background worker, and what the module does with results.

:class:`SynthesisLogic` is the Slicer module's logic without Qt: it runs inside Slicer
(``slicer.mrmlScene``, ``slicer.app.applicationLogic()``) and headless in tests and scripts
(:func:`DigitalContrastLib.mrml.headless.make_headless_scene`). One job at a time:

1. :meth:`~SynthesisLogic.start` copies the non-contrast node's voxels, runs the input gate on
   them in this process (errors refuse the job; warnings refuse it too unless
   ``allow_warnings=True``: the widget asks the user first), writes them to a private temporary
   folder (raw NRRD, about 0.1 s for 512x512x300) and starts the job through the worker client
   (``client.py``): torch and the model live in the worker process only;
2. :meth:`~SynthesisLogic.poll` (from a GUI timer, every 100-250 ms; never blocks) returns the
   client's events; the ``end`` event comes last, after every line of output, and only then is the
   result loaded: a new node ``<input> SYNTHETIC contrast`` on exactly the input's grid, under the
   input's study in the subject hierarchy, with the provenance attributes of
   :mod:`~DigitalContrastLib.mrml.provenance`;
3. :meth:`~SynthesisLogic.cancel` kills the worker's process tree; no node is added and the
   temporary folder is removed (also after an error).

:meth:`~SynthesisLogic.process` is the one-call version (``waitForCompletion=True`` for scripts
and tests). Registration, metrics, review and export are in :mod:`~DigitalContrastLib.mrml.compare_logic`
and reachable from here too (:meth:`register_real`, :meth:`compute_metrics`, :meth:`export_dicom`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import provenance as prov
from DigitalContrastLib.worker.outcome import Event, JobOutcome
from DigitalContrastLib.worker.client import WorkerClient
from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET
from DigitalContrastLib.common.errors import GateWarningError, InputError, JobError
from DigitalContrastLib.synthesis.gate import GateReport, check_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.synthesis.options import SynthesisOptions

#: Name of the synthetic node: the input's name plus this.
SYNTHETIC_SUFFIX = " SYNTHETIC contrast"
UNCERTAINTY_SUFFIX = " SYNTHETIC uncertainty"
#: Node reference from a synthetic volume to its uncertainty map.
UNCERTAINTY_REFERENCE = "DigitalContrast.Uncertainty"
WORKSPACE_PREFIX = "dc-slicer-"

ClientFactory = Callable[[], WorkerClient]


@dataclass
class SynthesisJob:
    """One synthesis started by :class:`SynthesisLogic` and what became of it.

    Attributes:
        job_id: the worker job's id.
        input_node_id, input_name: the non-contrast node (its name when the job started).
        gate_report: the input gate's report on the node's voxels (warnings accepted by the user).
        workspace: the private temporary folder (removed when the job ends).
        status: ``running``, ``ok``, ``error`` or ``cancelled``.
        stage, overall_fraction, eta_s: the latest progress (``eta_s`` None until known).
        log: plain log lines of the worker, in order.
        warnings: ``(code, message)`` warnings the worker reported.
        outcome: the client's :class:`~DigitalContrastLib.worker.client.JobOutcome` once ended.
        result_node_id, uncertainty_node_id: the nodes made from the result (``ok`` only).
    """

    job_id: str
    input_node_id: str
    input_name: str
    gate_report: GateReport
    workspace: Path
    options: dict[str, Any]
    geometry: dict[str, Any] = field(repr=False, default_factory=dict)
    source_dicom_meta: dict[str, Any] | None = field(repr=False, default=None)
    status: str = "running"
    stage: str | None = None
    overall_fraction: float = 0.0
    eta_s: float | None = None
    log: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    outcome: JobOutcome | None = None
    result_node_id: str | None = None
    uncertainty_node_id: str | None = None
    error_message: str | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def status_text(self) -> str:
        """One line for the module panel: stage, percentage and time left."""
        if self.status == "running":
            eta = "" if self.eta_s is None else f", about {_duration(self.eta_s)} left"
            return f"{self.stage or 'starting'}: {self.overall_fraction:.0%}{eta}"
        if self.status == "ok":
            return f"done in {_duration(self.outcome.elapsed_s if self.outcome else 0.0)}"
        if self.status == "cancelled":
            return "cancelled"
        return f"failed: {self.error_message}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def default_client_factory() -> WorkerClient:
    """A worker client running ``python -m DigitalContrastLib.worker`` with this Python."""
    return WorkerClient()


class SynthesisLogic:
    """Synthesis of volume nodes in the background worker (one job at a time).

    Args:
        scene: the ``vtkMRMLScene`` (``slicer.mrmlScene`` in Slicer).
        app_logic: the application logic (``slicer.app.applicationLogic()``); needed for the
            review layout only.
        client_factory: makes the :class:`~DigitalContrastLib.worker.client.WorkerClient` (called once,
            at the first job, and again after :meth:`set_client_factory`). In Slicer:
            ``lambda: WorkerClient(worker_script_launcher(PythonSlicer), persistent=True)``; in
            tests ``lambda: WorkerClient(dummy=True)``.
        work_dir: where the private job folders go (default: the system temp folder).
    """

    def __init__(self, scene: Any, app_logic: Any | None = None, client_factory: ClientFactory | None = None,
                 *, work_dir: str | os.PathLike | None = None) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self._client_factory = client_factory or default_client_factory
        self._client: WorkerClient | None = None
        self.work_dir = Path(work_dir) if work_dir else None
        self.job: SynthesisJob | None = None

    # ------------------------------------------------------------------ client
    @property
    def client(self) -> WorkerClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def set_client_factory(self, factory: ClientFactory) -> None:
        """Use another kind of worker from the next job on (the current worker is stopped)."""
        if self.running:
            raise JobError("a synthesis is running; cancel it or wait before changing the worker.", code="job_running")
        self.close()
        self._client_factory = factory

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.finished

    # ------------------------------------------------------------------ gate
    def check_input(self, nc_node: Any) -> GateReport:
        """The input gate's report on a node's voxels (about 1.6 s for 512x512x300 on one core)."""
        return check_volume(prov.volume_of_node(nc_node))

    # ------------------------------------------------------------------ starting
    def start(self, nc_node: Any, *, model_id: str | None = None, device: str = "auto", overlap: float | None = None,
              uncertainty: bool = False, allow_warnings: bool = False) -> SynthesisJob:
        """Start synthesizing ``nc_node`` in the background; returns the running job at once.

        Args:
            nc_node: a scalar volume node holding a non-contrast CT in HU (not under a transform).
            model_id: a model on the search path (None: the default model).
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
            overlap: sliding-window overlap in ``[0, 1)``; None: the model card's.
            uncertainty: also compute the uncertainty map (about 4 times the inference time).
            allow_warnings: start even though the input gate warned (e.g. the scan looks
                contrast-enhanced, or its slices are thick). Without it, a warning raises
                :class:`~DigitalContrastLib.common.errors.GateWarningError` carrying the report.

        Raises:
            InputError: the node cannot be used (no voxels, under a transform) or the gate found an error.
            GateWarningError: the gate warned and ``allow_warnings`` is False (nothing was started).
            JobError: a job is already running, or an option value is invalid.
        """
        if self.running:
            raise JobError("a synthesis is already running; cancel it or wait.", code="job_running")
        volume = prov.volume_of_node(nc_node)
        report = check_volume(volume)
        if not report.ok:
            first = report.errors[0]
            raise InputError(first.message, code=first.code)
        if report.warnings and not allow_warnings:
            raise GateWarningError(report)

        from DigitalContrastLib.ct.io import write_volume
        from DigitalContrastLib.worker.protocol import make_job

        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix=WORKSPACE_PREFIX, dir=self.work_dir))
        try:
            input_path = write_volume(volume, workspace / "input.nrrd")
            options = SynthesisOptions(model_id=model_id, device=device, overlap=overlap,
                                       uncertainty_output=str(workspace / "uncertainty.nrrd") if uncertainty else None)
            job = make_job(input_path, workspace / "synthetic.nrrd", options)
            job_id = self.client.start(job)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        self.job = SynthesisJob(
            job_id=job_id, input_node_id=nc_node.GetID(), input_name=nc_node.GetName(), gate_report=report,
            workspace=workspace, options={"model_id": model_id, "device": device, "overlap": overlap,
                                          "uncertainty": uncertainty},
            geometry={"spacing_mm": volume.spacing_mm, "origin_mm": volume.origin_mm, "direction": volume.direction,
                      "shape_zyx": volume.shape_zyx},
            source_dicom_meta=volume.metadata.get("dicom"),
        )
        return self.job

    # ------------------------------------------------------------------ following
    def poll(self) -> list[Event]:
        """The job's events since the last call (never blocks). After the ``end`` event the job is
        finished and, when it succeeded, its nodes are in the scene (``job.result_node_id``)."""
        job = self.job
        if job is None or job.finished:
            return []
        events = self.client.poll()
        for event in events:
            self._note(job, event)
        return events

    def _note(self, job: SynthesisJob, event: Event) -> None:
        if event.overall_fraction is not None:
            job.overall_fraction = max(job.overall_fraction, event.overall_fraction)
        if event.type in ("stage", "progress"):
            job.stage = event.data.get("stage", job.stage)
            job.eta_s = event.eta_s
        elif event.type == "log":
            job.log.append(event.data["line"])
        elif event.type == "warning":
            job.warnings.append((event.data["code"], event.data["message"]))
        elif event.type == "end":
            self._finish(job, self.client.outcome)

    def _finish(self, job: SynthesisJob, outcome: JobOutcome | None) -> None:
        job.outcome = outcome
        try:
            if outcome is not None and outcome.ok:
                self._add_result_nodes(job, outcome)
                job.status = "ok"
            elif outcome is not None and outcome.status == "cancelled":
                job.status = "cancelled"
            else:
                job.status = "error"
                job.error_message = str((outcome.error or {}).get("message") if outcome else "no outcome")
        except Exception as error:  # noqa: BLE001 - the result could not be loaded: the job failed, say why
            job.status = "error"
            job.error_message = str(error)
        finally:
            shutil.rmtree(job.workspace, ignore_errors=True)
            job.eta_s = None

    def _add_result_nodes(self, job: SynthesisJob, outcome: JobOutcome) -> None:
        from DigitalContrastLib.ct.io import read_volume
        from .overlays import OVERLAY_FOR_ATTRIBUTE, OVERLAY_KIND_ATTRIBUTE
        from .volume_nodes import volume_to_node

        result = outcome.result or {}
        grid = job.geometry
        synthetic = read_volume(result["output"])
        expected = CTVolume(synthetic.array, grid["spacing_mm"], grid["origin_mm"], grid["direction"])
        if not synthetic.same_geometry(expected) or synthetic.shape_zyx != tuple(grid["shape_zyx"]):
            raise InputError(f"The synthesis of '{job.input_name}' came back on another grid than its input; "
                             "this is a bug, report it with the log.", code="grid_changed")
        nc_node = self.scene.GetNodeByID(job.input_node_id)
        model = result.get("model") or {}
        provenance = result.get("provenance") or {}
        attributes = {
            prov.SYNTHETIC: "1",
            prov.MODEL_ID: model.get("id") or "",
            prov.MODEL_VERSION: model.get("version") or "",
            prov.WEIGHTS_SHA256: model.get("weights_sha256") or "",
            prov.DEVICE: result.get("device") or "",
            prov.JOB_ID: job.job_id,
            prov.OUTPUT_SHA256: result.get("sha256") or "",
            prov.GATE_WARNINGS: prov.to_json([{"code": w.code, "message": w.message}
                                              for w in job.gate_report.warnings]),
            prov.SOURCE_NODE_ID: job.input_node_id,
            prov.PROVENANCE: prov.to_json(provenance),
        }
        if job.source_dicom_meta:
            attributes[prov.SOURCE_DICOM_META] = prov.to_json(job.source_dicom_meta)
        # the input's grid, bit for bit (the file round trip keeps it; this makes it certain)
        node = volume_to_node(self.scene, expected, job.input_name + SYNTHETIC_SUFFIX, attributes=attributes,
                              window_level=CONTRAST_PRESET)
        node.SetDescription(
            f"SYNTHETIC contrast-enhanced CT computed from '{job.input_name}' by model {attributes[prov.MODEL_ID]} "
            f"{attributes[prov.MODEL_VERSION]}; not an acquired contrast study.")
        prov.place_beside(self.scene, node, nc_node)
        job.result_node_id = node.GetID()

        if result.get("uncertainty_output"):
            sd = read_volume(result["uncertainty_output"])
            sd_node = volume_to_node(
                self.scene, CTVolume(sd.array, grid["spacing_mm"], grid["origin_mm"], grid["direction"]),
                job.input_name + UNCERTAINTY_SUFFIX,
                attributes={prov.SYNTHETIC: "1", prov.JOB_ID: job.job_id, OVERLAY_FOR_ATTRIBUTE: node.GetID(),
                            OVERLAY_KIND_ATTRIBUTE: "uncertainty"})
            prov.place_beside(self.scene, sd_node, nc_node)
            node.SetNodeReferenceID(UNCERTAINTY_REFERENCE, sd_node.GetID())
            job.uncertainty_node_id = sd_node.GetID()

    def wait(self, timeout: float | None = None, on_event: Callable[[Event], None] | None = None) -> Any:
        """Block until the job ends; return the synthetic node, or raise the job's error.

        Raises:
            JobCancelled: the job was cancelled; the UserError subclass of a failure (InputError,
            ModelError, OutOfMemoryError...; WorkerError for a crash); TimeoutError after
            ``timeout`` seconds (the job keeps running).
        """
        job = self.job
        if job is None:
            raise JobError("no synthesis was started; call start() first.", code="no_job")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.finished:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if job.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the synthesis of '{job.input_name}' is still running after {timeout:g} s")
            time.sleep(0.05)
        if job.outcome is not None and not job.ok:
            job.outcome.raise_for_error()
        if not job.ok:
            raise JobError(f"the synthesis of '{job.input_name}' failed: {job.error_message}", code="job_failed")
        return self.scene.GetNodeByID(job.result_node_id)

    def cancel(self, reason: str = "cancelled by the user") -> SynthesisJob | None:
        """Kill the running job's worker (its whole process tree); nothing is added to the scene."""
        job = self.job
        if job is None or job.finished:
            return job
        self.client.cancel(reason)
        for event in self.client.poll():  # the end event: the job is finished, its folder removed
            self._note(job, event)
        if not job.finished:  # no end event came (should not happen): finish it here
            self._finish(job, self.client.outcome)
        return job

    def process(self, nc_node: Any, *, model_id: str | None = None, device: str = "auto", overlap: float | None = None,
                uncertainty: bool = False, allow_warnings: bool = False, waitForCompletion: bool = True,
                timeout: float | None = None) -> Any:
        """:meth:`start`, then (``waitForCompletion``) :meth:`wait`: the synthetic node, or the job."""
        job = self.start(nc_node, model_id=model_id, device=device, overlap=overlap, uncertainty=uncertainty,
                         allow_warnings=allow_warnings)
        if not waitForCompletion:
            return job
        return self.wait(timeout)

    def close(self) -> None:
        """Cancel a running job and stop the worker."""
        if self.running:
            self.cancel("closed")
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ the rest of the workflow
    def register_real(self, nc_node: Any, real_node: Any, method: str = "rigid", *, wait: bool = True,
                      **options: Any) -> Any:
        """Register the real contrast scan onto the non-contrast grid (see :func:`~DigitalContrastLib.mrml.compare_logic.start_registration`).

        ``wait=True`` blocks and returns the :class:`~DigitalContrastLib.mrml.compare_logic.RegisteredReal`;
        ``wait=False`` returns the running :class:`~DigitalContrastLib.common.background.BackgroundTask`.
        """
        from .compare_logic import start_registration

        task = start_registration(self.scene, nc_node, real_node, method, **options)
        return task.wait() if wait else task

    def compute_metrics(self, nc_node: Any, synthetic_node: Any, real_node: Any, label_node: Any | None = None, *,
                        wait: bool = True) -> Any:
        """Metrics of the synthetic against the (registered) real scan (see :func:`~DigitalContrastLib.mrml.compare_logic.start_metrics`)."""
        from .compare_logic import start_metrics

        task = start_metrics(self.scene, nc_node, synthetic_node, real_node, label_node)
        return task.wait() if wait else task

    def export_dicom(self, synthetic_node: Any, out_dir: str | os.PathLike, **options: Any) -> list[Path]:
        """The synthetic node as a labelled DICOM series (see :func:`~DigitalContrastLib.mrml.compare_logic.export_synthetic_node`)."""
        from .compare_logic import export_synthetic_node

        return export_synthetic_node(synthetic_node, out_dir, **options)

    def show_review(self, nc_node: Any, synthetic_node: Any, real_node: Any | None = None, **options: Any) -> Any:
        """The review layout (``mrml.review_layout.show_review``) in this logic's scene."""
        from .review_layout import show_review

        if self.app_logic is None:
            raise JobError("the review layout needs the application logic; pass app_logic to SynthesisLogic.",
                           code="no_app_logic")
        return show_review(self.scene, self.app_logic, nc_node, synthetic_node, real_node, **options)
