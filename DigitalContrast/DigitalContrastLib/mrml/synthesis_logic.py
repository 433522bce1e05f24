"""Synthesis of a MRML volume node in the background worker, and what the module does with results.

:class:`SynthesisLogic` is the Slicer module's logic without Qt: it runs inside Slicer
(``slicer.mrmlScene``, ``slicer.app.applicationLogic()``) and headless in tests and scripts
(:func:`DigitalContrastLib.mrml.headless.make_headless_scene`). One job at a time, and the GUI
thread is never held for long (each call returns within about :data:`~.gui_steps.STEP_BUDGET_S`
plus its bookkeeping; :attr:`SynthesisLogic.monitor` records the longest):

1. :meth:`~SynthesisLogic.start` returns the job at once; the following :meth:`~SynthesisLogic.poll`
   calls (a GUI timer, every 100-250 ms) write the node's voxels to a private folder a few slices at
   a time (raw NRRD), run the input gate in a worker ``--task`` process (errors end the job; warnings
   wait in status ``awaiting_confirmation`` until :meth:`~SynthesisLogic.accept_warnings` or
   :meth:`~SynthesisLogic.cancel`, unless ``allow_warnings=True``), then start the synthesis through
   the worker client: torch and the model live in the worker process only;
2. the client's events come out of :meth:`~SynthesisLogic.poll` (never blocking); after its ``end``
   event the result is read back a few slices at a time and becomes a node ``<input> SYNTHETIC
   contrast`` on exactly the input's grid, under the input's study in the subject hierarchy, with
   the provenance attributes of :mod:`~DigitalContrastLib.mrml.provenance`;
3. :meth:`~SynthesisLogic.cancel` kills the worker's process tree without waiting; no node is added
   and the temporary folder is removed (also after an error).

:meth:`~SynthesisLogic.process` is the one-call version (``waitForCompletion=True`` for scripts
and tests). Registration, metrics and export are in :mod:`~DigitalContrastLib.mrml.compare_logic`
and reachable from here too (:meth:`register_real`, :meth:`compute_metrics`, :meth:`export_dicom`).
"""

from __future__ import annotations

import getpass
import os
import shutil
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.errors import GateWarningError, InputError, JobError, MissingPackageError
from DigitalContrastLib.common.paths import transfer_dir
from DigitalContrastLib.ct.display_presets import CONTRAST_PRESET, WindowLevel
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.synthesis.gate import GateReport
from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.client import WorkerClient
from DigitalContrastLib.worker.outcome import Event, JobCancelled, JobOutcome
from DigitalContrastLib.worker.process import Launcher
from DigitalContrastLib.worker.protocol import make_job
from DigitalContrastLib.worker.task_process import TaskProcess

from . import provenance as prov
from .compare_logic import (
    TaskSettings,
    dicom_meta_steps,
    read_result,
    remove_files,
    start_dicom_meta,
    start_export,
    start_metrics,
    start_registration,
    write_inputs,
)
from .gui_steps import WAIT, BlockMonitor, StepRunner
from .gui_task import GuiTask, new_workspace, wait_for_process
from .node_files import array_to_node, node_voxels
from .overlays import OVERLAY_FOR_ATTRIBUTE, OVERLAY_KIND_ATTRIBUTE
from .review_layout import show_review

#: Name of the synthetic node: the input's name plus this.
SYNTHETIC_SUFFIX = " SYNTHETIC contrast"
UNCERTAINTY_SUFFIX = " SYNTHETIC uncertainty"
#: Node reference from a synthetic volume to its uncertainty map.
UNCERTAINTY_REFERENCE = "DigitalContrast.Uncertainty"
WORKSPACE_PREFIX = "dc-slicer-"
#: How an uncertainty map (SD in HU) is first shown; the review restyles it from its own values.
UNCERTAINTY_WINDOW = WindowLevel("uncertainty", 60.0, 30.0, "Voxel-wise SD of the flip passes, 0-60 HU")

ClientFactory = Callable[[], WorkerClient]


@dataclass
class SynthesisJob:
    """One synthesis started by :class:`SynthesisLogic` and what became of it.

    Attributes:
        job_id: the worker job's id (``""`` until the worker job starts).
        input_node_id, input_name: the non-contrast node (its name when the job started).
        gate_report: the input gate's report on the node's voxels (None until checked).
        workspace: the private temporary folder (removed when the job ends).
        status: ``preparing`` (writing, checking), ``awaiting_confirmation`` (the gate warned),
            ``running``, ``ok``, ``error`` or ``cancelled``.
        stage, overall_fraction, eta_s: the latest progress (``eta_s`` None until known).
        log: plain log lines of the worker, in order.
        warnings: ``(code, message)`` warnings the worker reported.
        outcome: the client's :class:`~DigitalContrastLib.worker.outcome.JobOutcome` once ended.
        result_node_id, uncertainty_node_id: the nodes made from the result (``ok`` only).
        error: the exception that ended the job, when it failed before or after the worker's part.
    """

    input_node_id: str
    input_name: str
    workspace: Path
    options: dict[str, Any]
    job_id: str = ""
    gate_report: GateReport | None = None
    geometry: dict[str, Any] = field(repr=False, default_factory=dict)
    source_dicom_meta: dict[str, Any] | None = field(repr=False, default=None)
    status: str = "preparing"
    stage: str | None = None
    overall_fraction: float = 0.0
    eta_s: float | None = None
    log: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    outcome: JobOutcome | None = None
    result_node_id: str | None = None
    uncertainty_node_id: str | None = None
    error_message: str | None = None
    error: BaseException | None = field(repr=False, default=None)
    warnings_accepted: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.status in ("ok", "error", "cancelled")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def status_text(self) -> str:
        """One line for the module panel: stage, percentage and time left."""
        if self.status == "preparing":
            return f"{self.stage or 'starting'}..."
        if self.status == "awaiting_confirmation":
            return "the input check warned: waiting for your answer"
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


def _warm_job_checks() -> None:
    """Load the job schema's validator now (jsonschema's first use takes about 0.1 s), not in a GUI tick."""
    try:
        make_job("warm-up.nrrd", "warm-up-output.nrrd")
    except MissingPackageError:  # a stock Slicer before its first install: the first job pays it once
        pass


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
        work_dir: where the private job folders go (default: ``DigitalContrast`` in a RAM-backed folder where
            there is one, ``common.paths.transfer_dir``; the volumes handed to workers pass there).
        launcher: how ``--task`` processes start (input check, registration, metrics, export);
            in Slicer the same ``worker_script_launcher(PythonSlicer)``; default: this Python.
    """

    def __init__(self, scene: Any, app_logic: Any | None = None, client_factory: ClientFactory | None = None,
                 *, work_dir: str | os.PathLike | None = None, launcher: Launcher | None = None) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self._client_factory = client_factory or default_client_factory
        self._client: WorkerClient | None = None
        self.work_dir = Path(work_dir) if work_dir else transfer_dir() / f"DigitalContrast-{getpass.getuser()}"
        self.monitor = BlockMonitor()
        self.tasks = TaskSettings(launcher, self.work_dir, self.monitor)
        self.job: SynthesisJob | None = None
        self._runner: StepRunner | None = None
        self._events: list[Event] = []
        self._held_end: Event | None = None
        _warm_job_checks()

    # ------------------------------------------------------------------ client
    @property
    def client(self) -> WorkerClient:
        """The worker client. Its job folders go beside this logic's (so delivery is a rename, not a copy),
        and it leaves the SHA-256 check to this logic, which hashes the output as it reads it, a slab per tick."""
        if self._client is None:
            self._client = self._client_factory()
            self._client.work_root = self.work_dir
            self._client.verify_outputs = False
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
    def check_input(self, nc_node: Any, timeout_s: float | None = None) -> GateReport:
        """The input gate's report on a node's voxels, from a worker process (blocking: scripts and tests)."""
        workspace = new_workspace(self.work_dir, "check")
        try:
            for _ in write_inputs([(nc_node, workspace / "input.nrrd", "writing the input")]):
                pass
            process = TaskProcess(["--task", "gate"], self._gate_arguments(nc_node, workspace),
                                  launcher=self.tasks.launcher)
            return GateReport.from_dict(process.wait(timeout_s))
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    @staticmethod
    def _gate_arguments(nc_node: Any, workspace: Path) -> dict[str, Any]:
        metadata: dict[str, Any] = {"source_path": f"Volume '{nc_node.GetName()}'"}
        meta = prov.json_attribute(nc_node, prov.DICOM_META)
        if isinstance(meta, dict):
            metadata.update(dicom=meta, format="dicom")
        return {"input": str(workspace / "input.nrrd"), "metadata": metadata}

    # ------------------------------------------------------------------ starting
    def start(self, nc_node: Any, *, model_id: str | None = None, device: str = "auto", overlap: float | None = None,
              uncertainty: bool = False, allow_warnings: bool = False,
              dicom_files: Sequence[str] = ()) -> SynthesisJob:
        """Start synthesizing ``nc_node`` in the background; returns the job at once (status ``preparing``).

        Args:
            nc_node: a scalar volume node holding a non-contrast CT in HU (not under a transform).
            model_id: a model on the search path (None: the default model).
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
            overlap: sliding-window overlap in ``[0, 1)``; None: the model card's.
            uncertainty: also compute the uncertainty map (about 4 times the inference time).
            allow_warnings: go on even though the input gate warns (e.g. the scan looks
                contrast-enhanced, or its slices are thick). Without it the job waits in status
                ``awaiting_confirmation`` for :meth:`accept_warnings` (the widget asks the user).
            dicom_files: the DICOM files of a node Slicer's DICOM module loaded (``DICOM.instanceUIDs``
                looked up in its database): their headers are read in a worker task first, so the input
                check and the export know the series (``DigitalContrast.DicomMeta``).

        Raises:
            InputError: the node has no voxels or sits under a transform (nothing is started).
            JobError: a job is already running.

        The gate's own errors end the job with status ``error`` (``job.error`` is the InputError).
        """
        with self.monitor.measure("start"):
            if self.running:
                raise JobError("a synthesis is already running; cancel it or wait.", code="job_running")
            voxels = node_voxels(nc_node)
            workspace = new_workspace(self.work_dir, "slicer")
            options = SynthesisOptions(model_id=model_id, device=device, overlap=overlap,
                                       uncertainty_output=str(workspace / "uncertainty.nrrd") if uncertainty else None)
            job = SynthesisJob(
                input_node_id=nc_node.GetID(), input_name=nc_node.GetName(), workspace=workspace,
                options={"model_id": model_id, "device": device, "overlap": overlap, "uncertainty": uncertainty},
                geometry={"spacing_mm": voxels.spacing_mm, "origin_mm": voxels.origin_mm,
                          "direction": voxels.direction, "shape_zyx": tuple(voxels.array.shape)},
                source_dicom_meta=prov.json_attribute(nc_node, prov.DICOM_META),
                warnings_accepted=allow_warnings)
            self.job, self._events, self._held_end = job, [], None
            self._runner = StepRunner(self._pipeline(job, nc_node, options, list(dicom_files)))
            self._advance(job)
            return job

    def _pipeline(self, job: SynthesisJob, nc_node: Any, options: SynthesisOptions,
                  dicom_files: list[str]) -> Generator[Any, None, None]:
        """The job from the GUI's side: DICOM facts, write, check, synthesize (following the worker), load."""
        if dicom_files and not nc_node.GetAttribute(prov.DICOM_META):
            try:
                job.source_dicom_meta = yield from dicom_meta_steps(nc_node, dicom_files, self.tasks)
            except Exception as error:  # noqa: BLE001 - without them an export makes a new study: say why
                job.log.append(f"The DICOM facts of '{job.input_name}' were not found ({error}); an export gets a "
                               "new study.")
        yield from write_inputs([(nc_node, job.workspace / "input.nrrd", "writing the input")])
        gate = TaskProcess(["--task", "gate"], self._gate_arguments(nc_node, job.workspace),
                           launcher=self.tasks.launcher)
        job.gate_report = GateReport.from_dict((yield from wait_for_process(gate, "checking the input")))
        if not job.gate_report.ok:
            first = job.gate_report.errors[0]
            raise InputError(first.message, code=first.code)
        if job.gate_report.warnings and not job.warnings_accepted:
            job.status = "awaiting_confirmation"
            while not job.warnings_accepted:
                yield WAIT
        job.status, job.stage = "running", None
        job.job_id = self.client.start(make_job(job.workspace / "input.nrrd", job.workspace / "synthetic.nrrd",
                                                options))
        while True:
            for event in self.client.poll():
                self._note(job, event)
                if event.type == "end":  # handed out once the result is in the scene: the job's last event
                    self._held_end = event
                    break
                self._events.append(event)
            else:
                yield WAIT
                continue
            break
        job.outcome = outcome = self.client.outcome
        if outcome is None or not outcome.ok:
            if outcome is not None and outcome.status == "cancelled":
                raise JobCancelled(f"job {job.job_id} was cancelled ({outcome.cancel_reason}).")
            job.error_message = str((outcome.error or {}).get("message") if outcome else "no outcome")
            job.status = "error"
            return
        yield from self._add_result_nodes(job, outcome)
        yield from remove_files(sorted(p for p in job.workspace.iterdir() if p.suffix == ".nrrd"))
        job.status = "ok"

    def accept_warnings(self) -> None:
        """The user chose to go on although the input gate warned: the job continues."""
        if self.job is not None and not self.job.finished:
            self.job.warnings_accepted = True

    # ------------------------------------------------------------------ following
    def poll(self) -> list[Event]:
        """The job's events since the last call (never blocks long). After the ``end`` event the job is
        finished and, when it succeeded, its nodes are in the scene (``job.result_node_id``)."""
        job = self.job
        if job is None or job.finished:
            return []
        with self.monitor.measure("poll"):
            self._advance(job)
            events, self._events = self._events, []
            return events

    def _advance(self, job: SynthesisJob) -> None:
        assert self._runner is not None
        try:
            if self._runner.advance() and not job.finished:
                job.status = "ok" if job.result_node_id else "error"
        except JobCancelled:
            job.status = "cancelled"
        except Exception as error:  # noqa: BLE001 - the job failed here (gate error, unreadable result): say why
            job.status, job.error = "error", error
            job.error_message = getattr(error, "message", None) or str(error)
        if job.finished:
            self._runner = None
            shutil.rmtree(job.workspace, ignore_errors=True)
            job.eta_s = None
            if self._held_end is not None:
                self._events.append(self._held_end)
                self._held_end = None

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

    def _add_result_nodes(self, job: SynthesisJob, outcome: JobOutcome) -> Generator[Any, None, None]:
        result = outcome.result or {}
        grid = job.geometry
        job.stage = "loading the result"
        sha256_of = {str(item.get("path")): item.get("sha256") for item in result.get("files") or []}
        read = yield from read_result(Path(result["output"]), "loading the result", result.get("sha256"))
        expected = CTVolume(read.array, grid["spacing_mm"], grid["origin_mm"], grid["direction"])
        if not read.volume().same_geometry(expected) or read.array.shape != tuple(grid["shape_zyx"]):
            raise InputError(f"The synthesis of '{job.input_name}' came back on another grid than its input; "
                             "this is a bug, report it with the log.", code="grid_changed")
        nc_node = self.scene.GetNodeByID(job.input_node_id)
        model = result.get("model") or {}
        attributes = {
            prov.SYNTHETIC: "1",
            prov.MODEL_ID: model.get("id") or "",
            prov.MODEL_VERSION: model.get("version") or "",
            prov.WEIGHTS_SHA256: model.get("weights_sha256") or "",
            prov.DEVICE: result.get("device") or "",
            prov.JOB_ID: job.job_id,
            prov.OUTPUT_SHA256: result.get("sha256") or "",
            prov.GATE_WARNINGS: prov.to_json([{"code": w.code, "message": w.message}
                                              for w in (job.gate_report.warnings if job.gate_report else [])]),
            prov.SOURCE_NODE_ID: job.input_node_id,
            prov.PROVENANCE: prov.to_json(result.get("provenance") or {}),
        }
        if job.source_dicom_meta:
            attributes[prov.SOURCE_DICOM_META] = prov.to_json(job.source_dicom_meta)
        # the input's grid, bit for bit (the file round trip keeps it; this makes it certain)
        node = array_to_node(self.scene, expected, job.input_name + SYNTHETIC_SUFFIX, attributes, CONTRAST_PRESET)
        node.SetDescription(
            f"SYNTHETIC contrast-enhanced CT computed from '{job.input_name}' by model {attributes[prov.MODEL_ID]} "
            f"{attributes[prov.MODEL_VERSION]}; not an acquired contrast study.")
        prov.place_beside(self.scene, node, nc_node)
        job.result_node_id = node.GetID()

        if result.get("uncertainty_output"):
            sd = yield from read_result(Path(result["uncertainty_output"]), "loading the uncertainty map",
                                        sha256_of.get(str(result["uncertainty_output"])))
            sd_node = array_to_node(
                self.scene, CTVolume(sd.array, grid["spacing_mm"], grid["origin_mm"], grid["direction"]),
                job.input_name + UNCERTAINTY_SUFFIX,
                {prov.SYNTHETIC: "1", prov.JOB_ID: job.job_id, OVERLAY_FOR_ATTRIBUTE: node.GetID(),
                 OVERLAY_KIND_ATTRIBUTE: "uncertainty"}, UNCERTAINTY_WINDOW)
            prov.place_beside(self.scene, sd_node, nc_node)
            node.SetNodeReferenceID(UNCERTAINTY_REFERENCE, sd_node.GetID())
            job.uncertainty_node_id = sd_node.GetID()

    def wait(self, timeout: float | None = None, on_event: Callable[[Event], None] | None = None) -> Any:
        """Block until the job ends; return the synthetic node, or raise the job's error.

        Raises:
            GateWarningError: the input gate warned and the warnings were not accepted (the job is cancelled).
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
            if job.status == "awaiting_confirmation":
                self.cancel("the input check warned and nobody accepted its warnings")
                raise GateWarningError(job.gate_report)
            if job.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the synthesis of '{job.input_name}' is still running after {timeout:g} s")
            time.sleep(0.02)
        if job.outcome is not None and not job.outcome.ok:
            job.outcome.raise_for_error()
        if job.error is not None:
            raise job.error
        if job.status == "cancelled":
            raise JobCancelled(f"the synthesis of '{job.input_name}' was cancelled.")
        if not job.ok:
            raise JobError(f"the synthesis of '{job.input_name}' failed: {job.error_message}", code="job_failed")
        return self.scene.GetNodeByID(job.result_node_id)

    def cancel(self, reason: str = "cancelled by the user") -> SynthesisJob | None:
        """Stop the running job without waiting: its worker's process tree is killed; nothing is added."""
        job = self.job
        if job is None or job.finished:
            return job
        with self.monitor.measure("cancel"):
            if self._runner is not None:
                self._runner.close()  # a running gate process is killed, partial files removed
            if self._client is not None and self._client.running:
                self._client.cancel(reason, wait=False)
                self._client.poll()  # the end event: the client's job folder is removed
            job.status = "cancelled"
            self._runner = None
            shutil.rmtree(job.workspace, ignore_errors=True)
            job.eta_s = None
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
        """Cancel a running job and stop the worker (waiting for its processes to end)."""
        if self.running:
            self.cancel("closed")
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ the rest of the workflow
    def register_real(self, nc_node: Any, real_node: Any, method: str = "rigid", *, wait: bool = True,
                      **options: Any) -> Any:
        """Register the real contrast scan onto the non-contrast grid (see :func:`.compare_logic.start_registration`).

        ``wait=True`` blocks and returns the :class:`~.compare_logic.RegisteredReal`; ``wait=False``
        returns the running :class:`~.gui_task.GuiTask` (poll it from a timer).
        """
        task = start_registration(self.scene, nc_node, real_node, method, self.tasks, **options)
        return task.wait() if wait else task

    def compute_metrics(self, nc_node: Any, synthetic_node: Any, real_node: Any, label_node: Any | None = None, *,
                        wait: bool = True) -> Any:
        """Metrics of the synthetic against the (registered) real scan (see :func:`.compare_logic.start_metrics`)."""
        task = start_metrics(self.scene, nc_node, synthetic_node, real_node, label_node, settings=self.tasks)
        return task.wait() if wait else task

    def export_dicom(self, synthetic_node: Any, out_dir: str | os.PathLike, *, wait: bool = True,
                     **options: Any) -> Any:
        """The synthetic node as a labelled DICOM series (see :func:`.compare_logic.start_export`): the files,
        or (``wait=False``) the running task."""
        task = start_export(synthetic_node, out_dir, settings=self.tasks, **options)
        return task.wait() if wait else task

    def read_dicom_meta(self, node: Any, files: list[str]) -> Any:
        """The running task that reads a DICOM-loaded node's headers (see :func:`.compare_logic.start_dicom_meta`)."""
        return start_dicom_meta(node, files, self.tasks)

    def start_probe(self) -> Any:
        """A running task asking a worker process which device it sees (torch is imported there, not here)."""
        process = TaskProcess(["--probe"], launcher=self.tasks.launcher)
        return GuiTask("probe", wait_for_process(process, "probe"), monitor=self.monitor).start()

    def start_server_check(self, url: str, token: str | None) -> Any:
        """A running task asking the synthesis service at ``url`` for its device and models (checks the token)."""
        process = TaskProcess(["--task", "server_check"], {"url": url, "token": token}, launcher=self.tasks.launcher)
        return GuiTask("probe", wait_for_process(process, "server check"), monitor=self.monitor).start()

    def show_review(self, nc_node: Any, synthetic_node: Any, real_node: Any | None = None, *,
                    overlay: str | Any | None = None, **options: Any) -> Any:
        """The review layout (``mrml.review_layout.show_review``) in this logic's scene.

        ``overlay``: None, ``"difference"``, ``"uncertainty"`` (the synthetic node's uncertainty map) or a node.

        Raises:
            JobError: ``"uncertainty"`` for a synthetic volume that has no uncertainty map.
        """

        if overlay == "uncertainty":
            overlay = synthetic_node.GetNodeReference(UNCERTAINTY_REFERENCE)
            if overlay is None:
                raise JobError("This synthetic volume has no uncertainty map: tick 'Uncertainty map' and Apply again.",
                               code="no_uncertainty_map")
        if self.app_logic is None:
            raise JobError("the review layout needs the application logic; pass app_logic to SynthesisLogic.",
                           code="no_app_logic")
        with self.monitor.measure("show_review"):
            return show_review(self.scene, self.app_logic, nc_node, synthetic_node, real_node, overlay=overlay,
                               **options)
