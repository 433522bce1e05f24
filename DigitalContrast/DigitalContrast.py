"""Digital Contrast: synthetic contrast-enhanced CT from a non-contrast CT, reviewed beside the real one.

This file is the Slicer face of ``DigitalContrastLib`` and stays thin:

* ``DigitalContrastParameterNode``: the GUI state, bound to the ``.ui`` widgets that carry a
  ``SlicerParameterName``;
* ``DigitalContrastWidget``: loads ``Resources/UI/DigitalContrast.ui``; Apply turns into Cancel
  while the background worker synthesizes; a timer polls the job and the background tasks
  (registration, metrics, export, device probe: each a worker process) every 150 ms; dialogs
  (installing packages on first use, input gate warnings, errors);
* ``DigitalContrastLogic``: parameter-node access around ``mrml.synthesis_logic.SynthesisLogic``,
  usable from the Python console without the widget;
* ``DigitalContrastTest``: the whole flow with the dummy worker, in Slicer.

Synthesis, the input check, registration, metrics, DICOM export and the device probe run in
worker processes (``Scripts/DigitalContrastWorker.py`` under ``PythonSlicer``): torch is never
imported in the Slicer process, a crash or an out-of-memory never takes Slicer down, Cancel kills
the process tree, and the GUI thread only moves files in small slabs (PythonQt holds the GIL there,
so a Python thread would barely run). Every decision is made in the library, where it is tested
outside Slicer; the packages Slicer does not ship are installed on first use, after asking.
"""

import enum
import pathlib
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: Parameter-node fields that are deliberately not bound to a widget (the static UI test reads this):
#: the model list is filled at run time; the metrics table is shown in a table view.
UNBOUND_PARAMETERS = {"modelId", "metricsTable"}
#: Where the "Remote server..." device's URL and token are kept (Slicer's settings, per user; not the scene).
REMOTE_URL_SETTING, REMOTE_TOKEN_SETTING = "DigitalContrast/RemoteServer/URL", "DigitalContrast/RemoteServer/Token"
#: How often the widget drains the worker's events and the background tasks (ms).
POLL_INTERVAL_MS = 150


#
# DigitalContrast
#


class DigitalContrast(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Digital Contrast")
        self.parent.categories = ["Deep Learning"]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalContrast developers"]
        self.parent.helpText = _(
            "Turns a non-contrast CT into a SYNTHETIC contrast-enhanced CT angiogram in a background process, "
            "and shows it beside the non-contrast and the real contrast scan in linked views. Choose the "
            "non-contrast volume and press Apply; the result is labelled synthetic everywhere it goes. "
            "The shipped model is trained on procedural phantoms and is not for clinical use."
        )
        self.parent.acknowledgementText = _(
            "Real CT test data: TotalSegmentator (Wasserthal et al., Radiology: AI 2023), CC BY 4.0."
        )


#
# DigitalContrastParameterNode
#


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    GPU = "cuda"
    REMOTE = "remote"  # the department's synthesis service (URL and token in Slicer's settings, not the scene)

    def label(self):
        return {"auto": _("Auto (GPU if usable)"), "cpu": _("CPU"), "cuda": _("GPU (CUDA)"),
                "remote": _("Remote server...")}[self.value]


class Overlay(enum.Enum):
    NONE = "none"
    DIFFERENCE = "difference"
    UNCERTAINTY = "uncertainty"

    def label(self):
        return {"none": _("None"), "difference": _("Difference (synthetic - non-contrast)"),
                "uncertainty": _("Uncertainty map")}[self.value]


class RegistrationMethod(enum.Enum):
    RIGID = "rigid"
    BSPLINE = "bspline"

    def label(self):
        return {"rigid": _("Rigid"), "bspline": _("Rigid + B-spline (experimental)")}[self.value]


@parameterNodeWrapper
class DigitalContrastParameterNode:
    """The module's GUI state.

    inputVolume - the non-contrast CT to synthesize from.
    realVolume - the real contrast scan of the same patient (optional, for comparison).
    labelVolume - a label map of the aorta (phantom codes, or 1 = lumen) for lumen metrics (optional).
    modelId - the model to run ("" = the default model; filled from the model search path).
    device - where the worker runs the network.
    customOverlap, overlap - sliding-window overlap (else the model card's).
    uncertaintyMap - also compute the uncertainty map (about 4 times slower).
    keepModelLoaded - keep the worker (and its loaded model) between runs.
    syntheticVolume - the synthetic volume to review, compare and export.
    windowPreset - window/level shared by the synthetic and the real scan.
    coronalRow, mipThicknessMm, overlay - review layout options.
    registrationMethod - how the real scan is aligned to the non-contrast grid.
    registeredVolume - the real scan on the non-contrast grid (metrics use it).
    metricsTable - the latest metrics table (shown in the panel).
    exportFolder - where the labelled synthetic DICOM series goes.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    realVolume: slicer.vtkMRMLScalarVolumeNode
    labelVolume: slicer.vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: Device = Device.AUTO
    customOverlap: bool = False
    overlap: Annotated[float, WithinRange(0.0, 0.9)] = 0.5
    uncertaintyMap: bool = False
    keepModelLoaded: bool = True
    syntheticVolume: slicer.vtkMRMLScalarVolumeNode
    windowPreset: Annotated[str, Choice(["cta", "aorta-lumen", "calcium"])] = "cta"
    coronalRow: bool = False
    mipThicknessMm: Annotated[float, WithinRange(0.0, 40.0)] = 0.0
    overlay: Overlay = Overlay.NONE
    registrationMethod: RegistrationMethod = RegistrationMethod.RIGID
    registeredVolume: slicer.vtkMRMLScalarVolumeNode
    metricsTable: slicer.vtkMRMLTableNode
    exportFolder: pathlib.Path


#
# DigitalContrastWidget
#


class DigitalContrastWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._guiConnectedTo = None  # Slicer 5.8's connectGui returns None: never connect one node twice
        self._tasks = {}  # name -> GuiTask (probe, registration, metrics, export)
        self._models = []
        self._installing = False
        self._askedAboutWarnings = False
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DigitalContrast.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DigitalContrastLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.probeButton.connect("clicked(bool)", self.onProbe)
        settings = qt.QSettings()
        self.ui.remoteUrlLineEdit.text = settings.value(REMOTE_URL_SETTING, "")
        self.ui.remoteTokenLineEdit.text = settings.value(REMOTE_TOKEN_SETTING, "")
        for lineEdit in (self.ui.remoteUrlLineEdit, self.ui.remoteTokenLineEdit):
            lineEdit.connect("editingFinished()", self.onRemoteServerEdited)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChosen)
        self.ui.modelInfoButton.connect("clicked(bool)", self.onModelInfo)
        self.ui.showReviewButton.connect("clicked(bool)", self.onShowReview)
        self.ui.registerButton.connect("clicked(bool)", self.onRegister)
        self.ui.metricsButton.connect("clicked(bool)", self.onMetrics)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self._timer.connect("timeout()", self.onTimer)

        self._fillModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._timer.stop()
        for task in self._tasks.values():
            task.discard()
        self._tasks = {}
        if self.logic is not None:
            self.logic.close()  # cancels a running job, stops the worker
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if "probe" not in self._tasks and self.ui.deviceInfoLabel.text in ("", _("not probed yet")):
            self.onProbe()

    def exit(self) -> None:
        # the timer keeps running: a job goes on while another module is shown
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self.logic is not None and self.logic.synthesis.running:
            self.logic.synthesis.cancel("the scene was closed")
            self._appendLog(_("Cancelled: the scene was closed."))
        for name in [n for n in self._tasks if n != "probe"]:
            self._tasks.pop(name).discard()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
        self._updateButtons()

    def initializeParameterNode(self) -> None:
        from DigitalContrastLib.mrml.volume_nodes import default_input_node

        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = default_input_node(slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode is not None and inputParameterNode is not None and \
                inputParameterNode.parameterNode is self._parameterNode.parameterNode and self._guiConnectedTo:
            return  # already shown and bound
        if self._parameterNode is not None and self._guiConnectedTo:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._guiConnectedTo = None
        self._parameterNode = inputParameterNode
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._guiConnectedTo = self._parameterNode.parameterNode
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._selectModel(self._parameterNode.modelId)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        from DigitalContrastLib.mrml.panel_text import panel_state

        running = self.logic is not None and self.logic.synthesis.running
        state = panel_state(self._parameterNode, running, set(self._tasks), self._installing)
        self.ui.applyButton.text, self.ui.applyButton.toolTip = _(state.apply_text), _(state.apply_tooltip)
        self.ui.applyButton.enabled = state.apply_enabled
        for widget in (self.ui.inputVolumeSelector, self.ui.modelComboBox, self.ui.deviceComboBox,
                       self.ui.advancedCollapsibleButton):
            widget.enabled = state.inputs_enabled
        self.ui.overlapSliderWidget.enabled = state.overlap_enabled
        self.ui.remoteServerWidget.visible = state.remote_visible
        self.ui.remoteServerWidget.enabled = state.inputs_enabled
        self.ui.showReviewButton.enabled = state.review_enabled
        self.ui.registerButton.text, self.ui.registerButton.enabled = _(state.register_text), state.register_enabled
        self.ui.metricsButton.enabled = state.metrics_enabled
        self.ui.exportButton.enabled = state.export_enabled

    # -- models and devices ----------------------------------------------------------------
    def _fillModels(self) -> None:
        self._models, note = self.logic.availableModels()
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        defaultId = self.logic.defaultModelId()
        combo.addItem(_("Default model ({model})").format(model=defaultId), "")
        for choice in self._models:
            combo.addItem(choice.label, choice.model_id)
            combo.setItemData(combo.count - 1, choice.card_text, qt.Qt.ToolTipRole)
        combo.blockSignals(False)
        self.ui.modelInfoLabel.text = note or ""

    def _selectModel(self, modelId) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.currentIndex = max(0, combo.findData(modelId or ""))
        combo.blockSignals(False)
        self._showModelCard()

    def onModelChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.modelId = self.ui.modelComboBox.itemData(index) or ""
        self._showModelCard()

    def _chosenModel(self):
        modelId = self.ui.modelComboBox.currentData or self.logic.defaultModelId()
        return next((m for m in self._models if m.model_id == modelId), None)

    def _showModelCard(self) -> None:
        choice = self._chosenModel()
        self.ui.modelComboBox.toolTip = choice.card_text if choice else _("The default model of the search path.")
        self.ui.modelInfoButton.enabled = choice is not None

    def onModelInfo(self) -> None:
        if self._chosenModel() is not None:
            slicer.util.infoDisplay(self._chosenModel().card_text, windowTitle=_("Model card"))

    def onProbe(self) -> None:
        if "probe" in self._tasks:
            return
        remote = self._parameterNode is not None and self._parameterNode.device == Device.REMOTE
        self.ui.deviceInfoLabel.text = _("asking the server...") if remote else _("probing the worker...")
        self._startTask("probe", lambda: self.logic.startDeviceProbe(remote))

    def onRemoteServerEdited(self) -> None:
        """The server's URL and token live in Slicer's settings (never in the scene); used from the next job on."""
        settings = qt.QSettings()
        settings.setValue(REMOTE_URL_SETTING, self.ui.remoteUrlLineEdit.text.strip())
        settings.setValue(REMOTE_TOKEN_SETTING, self.ui.remoteTokenLineEdit.text.strip())
        self.ui.deviceInfoLabel.text = _("not probed yet")

    # -- synthesis ---------------------------------------------------------------------------
    def onApply(self) -> None:
        if self.logic.synthesis.running:
            self.logic.synthesis.cancel()
            self._appendLog(_("Cancelled by the user."))
            self._afterJob()
            return
        if not self._ensureDependencies():
            return
        self.logic.setKeepModelLoaded(self._parameterNode.keepModelLoaded)
        try:
            with slicer.util.tryWithErrorDisplay(_("The synthesis could not start.")):
                job = self.logic.startSynthesis(self._parameterNode)
        except Exception:
            self._updateButtons()
            return  # shown to the user (one sentence)
        self._askedAboutWarnings = False
        self.ui.logTextEdit.clear()
        self._appendLog(_("Started on '{name}': writing and checking the input.").format(name=job.input_name))
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = job.status_text()
        self._timer.start()
        self._updateButtons()

    def _ensureDependencies(self) -> bool:
        """Install what is missing, after asking once (torch through the PyTorch extension); no restart."""
        from DigitalContrastLib.common.slicer_install import ensure_dependencies

        self._installing = True
        self._updateButtons()
        try:
            remote = self._parameterNode is not None and self._parameterNode.device == Device.REMOTE
            problem = ensure_dependencies(lambda: self.logic.dependencyPlan(remote), slicer)
        finally:
            self._installing = False
            self._fillModels()  # model cards can be read once the packages are there
            self._updateButtons()
        if problem:
            slicer.util.errorDisplay(problem)
            self._appendLog(_("Not started: {problem}").format(problem=problem))
        return problem is None

    def onTimer(self) -> None:
        if self.logic is None:
            return
        synthesis = self.logic.synthesis
        job = synthesis.job
        if job is not None and not job.finished:
            for event in synthesis.poll():
                self._showEvent(event)
            if job.status == "awaiting_confirmation" and not self._askedAboutWarnings:
                self._askAboutWarnings(job)
            self.ui.progressBar.value = int(round(100 * job.overall_fraction))
            self.ui.statusLabel.text = job.status_text()
            if job.finished:
                self._afterJob()
        for name, task in list(self._tasks.items()):
            for event in task.poll():
                self._taskEvent(name, event)
            if task.finished:
                self._tasks.pop(name, None)
                self._updateButtons()
        if not synthesis.running and not self._tasks:
            self._timer.stop()

    def _askAboutWarnings(self, job) -> None:
        self._askedAboutWarnings = True
        warnings = job.gate_report.warnings
        if slicer.util.confirmOkCancelDisplay(
                _("The input check warns:") + "\n\n" + "\n\n".join(w.message for w in warnings) + "\n\n"
                + _("Continue anyway?"), windowTitle=_("Input check")):
            self.logic.synthesis.accept_warnings()
            for warning in warnings:
                self._appendLog(_("Accepted warning: {message}").format(message=warning.message))
        else:
            self.logic.synthesis.cancel(_("the input check warned"))
            self._appendLog(_("Not started: the input check warned ({codes}).").format(
                codes=", ".join(job.gate_report.warning_codes())))

    def _showEvent(self, event) -> None:
        from DigitalContrastLib.mrml.panel_text import event_line

        line = event_line(event)
        if line is not None:
            self._appendLog(line)

    def _afterJob(self) -> None:
        job = self.logic.synthesis.job
        self.ui.statusLabel.text = job.status_text() if job else ""
        if job is not None and job.ok:
            self.ui.progressBar.value = 100
            node = slicer.mrmlScene.GetNodeByID(job.result_node_id)
            self._parameterNode.syntheticVolume = node
            self._appendLog(_("Added '{name}' (model {model}, {device}).").format(
                name=node.GetName(), model=node.GetAttribute("DigitalContrast.ModelId"),
                device=node.GetAttribute("DigitalContrast.Device")))
            self.onShowReview()
        elif job is not None and job.status == "error":
            for line in (job.outcome.log_tail[-12:] if job.outcome else []):
                self._appendLog("  " + line)
            slicer.util.errorDisplay(_("The synthesis failed: {message}").format(message=job.error_message),
                                     detailedText="\n".join(job.log[-40:]))
        self._updateButtons()

    def _appendLog(self, text) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    # -- review, registration, metrics, export ----------------------------------------------
    def onShowReview(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The review layout could not be shown."), waitCursor=True):
            self.logic.showReview(self._parameterNode)

    def onRegister(self) -> None:
        if "registration" in self._tasks:
            self._tasks.pop("registration").discard()
            self.ui.registrationStatusLabel.text = _("Registration cancelled.")
            self._updateButtons()
            return
        self.ui.registrationStatusLabel.text = _("Registering...")
        self._startTask("registration", lambda: self.logic.startRegistration(self._parameterNode))

    def onMetrics(self) -> None:
        self.ui.metricsNoteLabel.text = _("Computing metrics...")
        self._startTask("metrics", lambda: self.logic.startMetrics(self._parameterNode))

    def onExport(self) -> None:
        self.ui.exportStatusLabel.text = _("Writing the labelled series...")
        self._startTask("export", lambda: self.logic.startExport(self._parameterNode))

    def _startTask(self, name, start) -> None:
        with slicer.util.tryWithErrorDisplay(_("The {name} could not start.").format(name=name)):
            self._tasks[name] = start()
            self._timer.start()
        self._updateButtons()

    def _taskEvent(self, name, event) -> None:
        labels = {"registration": self.ui.registrationStatusLabel, "metrics": self.ui.metricsNoteLabel,
                  "export": self.ui.exportStatusLabel, "probe": self.ui.deviceInfoLabel}
        label = labels[name]
        from DigitalContrastLib.mrml.panel_text import task_event_text

        if event.type in ("progress", "error"):
            label.text = task_event_text(name, event)
            if event.type == "error" and name != "probe":
                slicer.util.errorDisplay(_("{name} failed: {error}").format(name=name.capitalize(), error=label.text))
        elif event.type == "done":
            label.text = self.logic.describeTaskResult(name, event.result, self._parameterNode)
            if name == "metrics":
                self.ui.metricsTableView.setMRMLTableNode(event.result.table_node)
            elif name == "registration":
                self.onShowReview()


#
# DigitalContrastLogic
#


class DigitalContrastLogic(ScriptedLoadableModuleLogic):
    """Parameter-node access around the library's logic; usable from the Python console::

        logic = slicer.util.getModuleLogic("DigitalContrast")
        synthetic = logic.process(slicer.util.getNode("CT"))   # blocks; the worker does the work
    """

    def __init__(self, dummy=False) -> None:
        """``dummy``: run the worker's numpy-only fake synthesis (self-tests; no torch needed)."""
        ScriptedLoadableModuleLogic.__init__(self)
        from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

        self.dummy = dummy
        self._keepModelLoaded = True
        self._remote = None  # (url, token) while the "Remote server..." device is chosen
        self.synthesis = SynthesisLogic(slicer.mrmlScene, slicer.app.applicationLogic(), self._makeClient,
                                        launcher=self.workerLauncher())

    def getParameterNode(self):
        return DigitalContrastParameterNode(super().getParameterNode())

    # -- worker ----------------------------------------------------------------------------
    @staticmethod
    def workerLauncher():
        """Worker processes run under Slicer's own Python launcher (PythonSlicer), never in this process."""
        from DigitalContrastLib.worker.process import python_slicer_path, worker_script_launcher

        pythonSlicer = python_slicer_path(getattr(slicer.app, "slicerHome", None))
        if pythonSlicer is None:
            raise RuntimeError(_("PythonSlicer was not found beside this Slicer; reinstall Slicer."))
        return worker_script_launcher(pythonSlicer)

    def _makeClient(self):
        from DigitalContrastLib.worker.client import WorkerClient
        from DigitalContrastLib.worker.relay import RelayWorkerClient

        if self._remote is not None:  # a worker process relays the job: no HTTP on the GUI thread
            return RelayWorkerClient(*self._remote, self.workerLauncher())
        return WorkerClient(self.workerLauncher(), persistent=self._keepModelLoaded, dummy=self.dummy)

    @staticmethod
    def remoteServer():
        """``(url, token)`` of the "Remote server..." device, from Slicer's settings."""
        settings = qt.QSettings()
        url = str(settings.value(REMOTE_URL_SETTING, "") or "").strip()
        if not url:
            raise ValueError(_("Set the remote server's URL (and your token) under Device first."))
        return url, str(settings.value(REMOTE_TOKEN_SETTING, "") or "").strip()

    def useRemoteServer(self, server) -> None:
        """Run the next jobs on ``server`` (``(url, token)``), or locally (None)."""
        if server != self._remote and not self.synthesis.running:
            self._remote = server
            self.synthesis.set_client_factory(self._makeClient)

    def setKeepModelLoaded(self, keep) -> None:
        """Keep one worker (and its loaded model) between jobs, or start one per job."""
        if bool(keep) != self._keepModelLoaded and not self.synthesis.running:
            self._keepModelLoaded = bool(keep)
            self.synthesis.set_client_factory(self._makeClient)

    def close(self) -> None:
        self.synthesis.close()

    def availableModels(self):
        """``([ModelChoice], note)`` from the model search path (no torch needed; a note before the first install)."""
        from DigitalContrastLib.models.choices import available_models

        return available_models()

    def defaultModelId(self):
        from DigitalContrastLib.models.choices import default_model_id

        return default_model_id()

    def startDeviceProbe(self, remote=False):
        """Ask a worker process which device it sees (torch is imported there, not here), or the remote
        server which device and models it has (checking the token); a running task."""
        return self.synthesis.start_server_check(*self.remoteServer()) if remote else self.synthesis.start_probe()

    # -- dependencies ------------------------------------------------------------------------
    def dependencyPlan(self, remote=False):
        """What this module still needs (the dummy worker and a remote server need only the panel's packages)."""
        from DigitalContrastLib.common.dependencies import plan_dependencies, read_requirements

        local = not (self.dummy or remote)
        requirements = read_requirements(self.resourcePath("DigitalContrast-requirements.txt"))
        return plan_dependencies(requirements, features=["panel", "worker"] if local else ["panel"], need_torch=local)

    @staticmethod
    def installPackages(plan, ask=True) -> None:
        """Install ``plan.to_install`` into Slicer's Python (asking first), never changing what Slicer ships."""
        from DigitalContrastLib.common.slicer_install import install_packages

        install_packages(plan, slicer, ask)

    # -- synthesis ---------------------------------------------------------------------------
    @staticmethod
    def slicerDicomFiles(node):
        """The files of a volume Slicer's DICOM module loaded (``DICOM.instanceUIDs``), else []."""
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None:
            return []
        return [database.fileForInstance(uid) for uid in uids]

    def startSynthesis(self, parameterNode, allowWarnings=False):
        """Start the job for the parameter node's settings; returns the job (it goes on through poll())."""
        node = parameterNode.inputVolume
        if node is None:
            raise ValueError(_("Choose the non-contrast volume first."))
        remote = parameterNode.device == Device.REMOTE
        self.useRemoteServer(self.remoteServer() if remote else None)
        return self.synthesis.start(
            node, model_id=parameterNode.modelId or None, device="auto" if remote else parameterNode.device.value,
            overlap=parameterNode.overlap if parameterNode.customOverlap else None,
            uncertainty=parameterNode.uncertaintyMap, allow_warnings=allowWarnings,
            dicom_files=self.slicerDicomFiles(node))

    def process(self, inputVolume, modelId=None, device="auto", allowWarnings=False, waitForCompletion=True):
        """Synthesize ``inputVolume`` (blocking by default); returns the synthetic node (or the job)."""
        job = self.synthesis.start(inputVolume, model_id=modelId, device=device, allow_warnings=allowWarnings,
                                   dicom_files=self.slicerDicomFiles(inputVolume))
        return self.synthesis.wait() if waitForCompletion else job

    # -- review, registration, metrics, export ----------------------------------------------
    def realForComparison(self, parameterNode):
        """The registered real scan when there is one, else the real scan itself."""
        return parameterNode.registeredVolume or parameterNode.realVolume

    def showReview(self, parameterNode):
        views = self.synthesis.show_review(
            parameterNode.inputVolume, parameterNode.syntheticVolume, self.realForComparison(parameterNode),
            preset=parameterNode.windowPreset, coronal_row=parameterNode.coronalRow,
            mip_mm=parameterNode.mipThicknessMm or None,
            overlay=None if parameterNode.overlay == Overlay.NONE else parameterNode.overlay.value)
        return views.view_names

    def startRegistration(self, parameterNode):
        return self.synthesis.register_real(parameterNode.inputVolume, parameterNode.realVolume,
                                            parameterNode.registrationMethod.value, wait=False)

    def startMetrics(self, parameterNode):
        return self.synthesis.compute_metrics(parameterNode.inputVolume, parameterNode.syntheticVolume,
                                              self.realForComparison(parameterNode), parameterNode.labelVolume,
                                              wait=False)

    def startExport(self, parameterNode):
        from DigitalContrastLib.mrml.compare_logic import series_folder

        synthetic = parameterNode.syntheticVolume
        return self.synthesis.export_dicom(synthetic, series_folder(parameterNode.exportFolder, synthetic),
                                           source_node=parameterNode.inputVolume, wait=False)

    def describeTaskResult(self, name, result, parameterNode) -> str:
        """One line for the panel about a finished background task (and the parameter node updated)."""
        from DigitalContrastLib.mrml.panel_text import describe_task_result

        if name == "registration":
            parameterNode.registeredVolume = result.node
        elif name == "metrics":
            parameterNode.metricsTable = result.table_node
        return describe_task_result(name, result)

    def resourcePath(self, filename):
        """A file of this module's ``Resources`` folder (the logic has no widget to ask)."""
        return str(pathlib.Path(__file__).resolve().parent / "Resources" / filename)


#
# DigitalContrastTest
#


class DigitalContrastTest(ScriptedLoadableModuleTest):
    """The whole flow in Slicer with the numpy-only dummy worker: phantom -> synthesis -> registration
    of the real scan -> review layout -> metrics -> labelled DICOM export (the headless suite checks
    each step's figures; this checks that they run in Slicer). It installs what the dummy flow needs
    (the panel's packages) if Slicer does not have them yet."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_library_imports()
        self.setUp()
        self.test_whole_flow_with_the_dummy_worker()

    def test_library_imports(self):
        torchBefore = "torch" in sys.modules  # the PyTorch extension may have imported it: not ours to judge
        import DigitalContrastLib.mrml.compare_logic  # noqa: F401
        import DigitalContrastLib.mrml.synthesis_logic  # noqa: F401

        self.assertEqual("torch" in sys.modules, torchBefore, "the module's library never imports torch")

    def test_whole_flow_with_the_dummy_worker(self):
        from DigitalContrastLib.mrml.self_test import whole_flow

        logic = DigitalContrastLogic(dummy=True)
        plan = logic.dependencyPlan()  # the dummy worker needs the panel's packages only (no torch)
        if not plan.satisfied:
            logic.installPackages(plan, ask=False)
        self.assertTrue(logic.dependencyPlan().satisfied, logic.dependencyPlan().message())
        node = logic.getParameterNode()
        node.device = Device.CPU
        try:
            whole_flow(logic, node, slicer.mrmlScene, self.delayDisplay, slicer.app.processEvents,
                       temporary_dir=slicer.app.temporaryPath)
        finally:
            logic.close()
        self.delayDisplay("Test passed: synthesis, registration, review, metrics and export")
