"""Digital Contrast Reader: blinded, randomized reading sessions that never lose an answer.

The Slicer face of ``DigitalContrastReaderLib``, thin: the parameter node (GUI state); the widget
(renders the question form of :mod:`DigitalContrastReaderLib.reading.form`, forwards clicks and
keys, hides what could reveal an image's source: view controllers, corner annotations, the data
probe, the window title); the logic (parameter-node access around the reading session of
:mod:`DigitalContrastReaderLib.reading.session`, shown by :mod:`DigitalContrastReaderLib.mrml.reader_display`,
and :mod:`~DigitalContrastReaderLib.admin`); the self-test (a short study end to end in Slicer).
Every decision (what is shown, valid, stored, when) is made in the library, tested outside Slicer.
"""

import logging
import os
import pathlib
from typing import Annotated

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: The main window's title while a reader is logged in (the scene or study name could reveal
#: something; this says nothing).
NEUTRAL_WINDOW_TITLE = "Reader study"
#: Slicer setting that remembers the study the admin chose on this computer.
STUDY_PATH_SETTING = "DigitalContrastReader/StudyPath"
#: Parameter-node fields that are deliberately not bound to a widget (the static UI test reads this).
UNBOUND_PARAMETERS = {"currentItemId"}


#
# DigitalContrastReader
#


class DigitalContrastReader(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Digital Contrast Reader")
        self.parent.categories = ["Deep Learning"]
        self.parent.dependencies = ["DigitalContrast"]  # its library (DigitalContrastLib) is used here
        self.parent.contributors = ["DigitalContrast developers"]
        self.parent.helpText = _(
            "Blinded, randomized reader studies of synthetic and real contrast CT that never lose an answer. "
            "Choose the study, enter your reader code and token and press Start reading; keys 1-5 answer the highlighted "
            "question, Ctrl+N submits and shows the next item."
        )
        self.parent.acknowledgementText = _(
            "Real CT test data: TotalSegmentator (Wasserthal et al., Radiology: AI 2023), CC BY 4.0."
        )


#
# DigitalContrastReaderParameterNode
#


@parameterNodeWrapper
class DigitalContrastReaderParameterNode:
    """The module's GUI state.

    studyPath - the study's answer store (.sqlite), study file or folder.
    readerCode - the reader logged in (or about to).
    idleTimeoutSeconds - reading time stops counting after this long without interaction.
    exportFolder - where the admin's exports and report go.
    adminName - who makes admin corrections (stored with each correction).
    currentItemId - the neutral id of the item on screen (not bound to a widget).
    """

    studyPath: pathlib.Path
    readerCode: str
    idleTimeoutSeconds: Annotated[int, WithinRange(10, 900)] = 60
    exportFolder: pathlib.Path
    adminName: str
    currentItemId: str


#
# DigitalContrastReaderWidget
#


class DigitalContrastReaderWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.session = None
        self.form = None
        self._formWidgets = {}
        self._shortcuts = []
        self._savedWindowTitle = None
        self._savedAnnotations = None
        self._timer = qt.QTimer()
        self._timer.setInterval(1000)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DigitalContrastReader.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DigitalContrastReaderLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.refreshProgressButton.connect("clicked(bool)", self.onRefreshProgress)
        self.ui.integrityCheckButton.connect("clicked(bool)", self.onIntegrityCheck)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.reportButton.connect("clicked(bool)", self.onReport)
        self.ui.correctButton.connect("clicked(bool)", self.onCorrect)
        self._timer.connect("timeout()", self.onTimer)
        slicer.app.connect("applicationStateChanged(Qt::ApplicationState)", self.onApplicationStateChanged)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onStop()
        self._timer.stop()
        slicer.app.disconnect("applicationStateChanged(Qt::ApplicationState)", self.onApplicationStateChanged)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._makeShortcuts()

    def exit(self) -> None:
        self._removeShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.onStop()  # answers are on disk; the items live in the scene that is closing
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if str(self._parameterNode.studyPath) in ("", "."):
            remembered = qt.QSettings().value(STUDY_PATH_SETTING)
            if remembered:
                self._parameterNode.studyPath = pathlib.Path(remembered)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        reading = self.session is not None
        self.ui.startButton.enabled = not reading and bool(self._parameterNode and self._parameterNode.readerCode.strip())
        self.ui.stopButton.enabled = reading
        self.ui.studyPathLineEdit.enabled = not reading
        self.ui.readerCodeLineEdit.enabled = not reading
        self.ui.readerTokenLineEdit.enabled = not reading
        self.ui.readingCollapsibleButton.enabled = reading
        # the admin panel exports sources and case ids: never while a reader is logged in
        self.ui.adminCollapsibleButton.enabled = not reading
        if reading:
            self.ui.adminCollapsibleButton.collapsed = True

    # -- reading ---------------------------------------------------------------------------
    def _ensureDependencies(self, features) -> bool:
        """Install what reading (or the admin's exports) still needs, after asking once; no restart."""
        from DigitalContrastLib.common.slicer_install import ensure_dependencies

        problem = ensure_dependencies(lambda: self.logic.dependencyPlan(features), slicer)
        if problem:
            slicer.util.errorDisplay(problem)
        return problem is None

    def onStart(self) -> None:
        if self.session is not None or not self._ensureDependencies(("reading",)):
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not start the reading session."), waitCursor=True):
                self.session = self.logic.startSession(self._parameterNode, token=self.ui.readerTokenLineEdit.text)
        except Exception:
            self._updateButtons()
            return  # shown to the reader (one sentence: unknown code, no study there...)
        self.session.on_interaction = self._refreshClock
        qt.QSettings().setValue(STUDY_PATH_SETTING, str(self._parameterNode.studyPath))
        self.ui.adminLogTextEdit.clear()
        self._blindViews(True)
        self._showState()
        self._timer.start()
        self._updateButtons()

    def onStop(self) -> None:
        self._timer.stop()
        if self.session is not None:
            self.logic.endSession(self.session, self._parameterNode)
            self.session = None
            self.ui.readerTokenLineEdit.text = ""  # the next reader types their own
            self._blindViews(False)
        self.form = None
        self._clearForm()
        self.ui.progressLabel.text = ""
        self.ui.sessionStatusLabel.text = _("Logged out. Every submitted answer is saved.")
        self._updateButtons()

    def onSubmit(self) -> None:
        if self.session is None or self.form is None or not self.form.can_submit:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("The answers were NOT saved."), waitCursor=True):
                self.session.submit(self.form.answers())
        except Exception:
            return  # shown to the reader; the item stays on screen with its answers
        try:
            with slicer.util.tryWithErrorDisplay(_("Your answers are saved, but the next item could not be shown."),
                                                 waitCursor=True):
                self.logic.nextItem(self.session, self._parameterNode)
        finally:
            self._showState()

    def _showState(self) -> None:
        """Show the session's state: the item with its question form, a washout, or the end."""
        from DigitalContrastReaderLib.reading.form import QuestionForm

        session = self.session
        progress = session.progress()
        self.ui.progressLabel.text = progress.text()
        self.ui.progressBar.maximum = max(progress.items_total, 1)
        self.ui.progressBar.value = progress.items_done
        self.ui.sessionStatusLabel.text = _("Logged in as {reader}.").format(reader=session.reader_id)
        item = session.reading_item
        self.ui.trainingLabel.visible = bool(item and item.training)
        self.ui.instructionsLabel.text = item.instructions if item else progress.text()
        self._clearForm()
        self.form = QuestionForm(item.questions, item.answers, editable=item.editable) if item else None
        if self.form is not None:
            self._buildForm()
            self._blindViews(True)  # the layout changed: new views have controllers again
        self._refreshForm()
        self._refreshClock()

    # -- the question form -----------------------------------------------------------------
    def _clearForm(self) -> None:
        layout = self.ui.questionsWidget.layout()
        while layout.count():
            child = layout.takeAt(0)
            if child.widget():
                child.widget().deleteLater()
        self._formWidgets = {}

    def _buildForm(self) -> None:
        """One group box per question, from the form's field specs."""
        layout = self.ui.questionsWidget.layout()
        for spec in self.form.fields:
            box = qt.QGroupBox(spec.title)
            box.toolTip = spec.help
            boxLayout = qt.QVBoxLayout(box)
            widgets = []
            if spec.widget in ("radio", "yes_no"):
                group = qt.QButtonGroup(box)
                for choice in spec.choices:
                    button = qt.QRadioButton(choice.text)
                    button.checked = self.form.value(spec.key) == choice.value and self.form.value(spec.key) is not None
                    button.connect("clicked(bool)",
                                   lambda checked, k=spec.key, v=choice.value: self._edit(self.form.choose, k, v))
                    group.addButton(button)
                    boxLayout.addWidget(button)
                    widgets.append((choice.value, button))
            elif spec.widget == "checkboxes":
                for choice in spec.choices:
                    box_ = qt.QCheckBox(choice.text)
                    box_.checked = choice.value in (self.form.value(spec.key) or [])
                    box_.connect("toggled(bool)",
                                 lambda checked, k=spec.key, v=choice.value: self._edit(self.form.set_checked, k, v, checked))
                    boxLayout.addWidget(box_)
                    widgets.append((choice.value, box_))
            elif spec.widget == "number":
                edit = qt.QLineEdit(self.form.text(spec.key))
                bounds = [f"{v:g}" for v in (spec.minimum, spec.maximum) if v is not None]
                edit.placeholderText = (" to ".join(bounds) + f" {spec.unit}").strip()
                edit.connect("textEdited(QString)", lambda text, k=spec.key: self._edit(self.form.set_text, k, text))
                boxLayout.addWidget(edit)
                widgets.append((None, edit))
            else:
                edit = qt.QPlainTextEdit(self.form.text(spec.key))
                edit.setMaximumHeight(70)
                edit.connect("textChanged()", lambda k=spec.key, e=edit: self._edit(self.form.set_text, k, e.toPlainText()))
                boxLayout.addWidget(edit)
                widgets.append((None, edit))
            box.enabled = self.form.editable
            layout.addWidget(box)
            self._formWidgets[spec.key] = (box, widgets)
        layout.addStretch(1)

    def _edit(self, change, *args) -> None:
        """Apply the reader's edit to the form (``change(*args)``), then :meth:`_afterEdit`."""
        change(*args)
        self._afterEdit()

    def _afterEdit(self) -> None:
        if self.session is not None:
            self.session.note_interaction()
        self._refreshForm()

    def _refreshForm(self) -> None:
        """Submit enabled only when complete; the current keyboard question highlighted."""
        form = self.form
        self.ui.submitButton.enabled = bool(form and form.can_submit)
        self.ui.formStatusLabel.text = form.status_text() if form else ""
        for key, (box, widgets) in self._formWidgets.items():
            box.setStyleSheet("QGroupBox { font-weight: bold; }" if form and key == form.current_key else "")
            for value, widget in widgets:
                if isinstance(widget, qt.QRadioButton):
                    widget.checked = form.value(key) is not None and form.value(key) == value

    def _refreshClock(self) -> None:
        if self.session is None or self.session.state != "reading":
            self.ui.activeTimeLabel.text = ""
            return
        seconds = int(self.session.active_time.tick())
        self.ui.activeTimeLabel.text = _("Time on item {m}:{s:02d}").format(m=seconds // 60, s=seconds % 60)

    def onTimer(self) -> None:
        if self.session is not None and self.session.state == "washout" and self.session.washout_is_over():
            self.logic.nextItem(self.session, self._parameterNode)
            self._showState()
            return
        self._refreshClock()

    def onApplicationStateChanged(self, state) -> None:
        if self.session is not None:
            self.session.set_window_active(state == qt.Qt.ApplicationActive)

    # -- keyboard --------------------------------------------------------------------------
    def _makeShortcuts(self) -> None:
        from DigitalContrastReaderLib.reading.form import DIGIT_KEYS, SUBMIT_SHORTCUT

        self._removeShortcuts()
        window = slicer.util.mainWindow()
        if window is None:
            return
        for key in (*DIGIT_KEYS, SUBMIT_SHORTCUT):
            shortcut = qt.QShortcut(qt.QKeySequence(key), window)
            shortcut.connect("activated()", lambda k=key: self._onKey(k))
            self._shortcuts.append(shortcut)

    def _removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.deleteLater()
        self._shortcuts = []

    def _onKey(self, key) -> None:
        if self.form is None or self.session is None:
            return
        focus = slicer.app.focusWidget()
        typing = isinstance(focus, (qt.QLineEdit, qt.QAbstractSpinBox, qt.QPlainTextEdit, qt.QTextEdit))
        ctrl = key.startswith("Ctrl+")
        action = self.form.press_key(key.split("+")[-1], ctrl=ctrl, in_text_entry=typing)
        if action.kind == "submit":
            self.onSubmit()
        elif action.kind == "blocked":
            self.ui.formStatusLabel.text = action.message
        elif action.kind == "chosen":
            self._afterEdit()

    # -- blinding of the views -------------------------------------------------------------
    def _blindViews(self, blind: bool) -> None:
        """Hide (or restore) what could name an image: view controllers, corner annotations,
        the data probe; a neutral window title."""
        window = slicer.util.mainWindow()
        if window is None:
            return
        slicer.util.setViewControllersVisible(not blind)
        slicer.util.setDataProbeVisible(not blind)
        annotations = self._sliceAnnotations()
        if blind:
            if self._savedWindowTitle is None:
                self._savedWindowTitle = window.windowTitle
            window.windowTitle = NEUTRAL_WINDOW_TITLE
            if annotations is not None:
                if self._savedAnnotations is None:
                    self._savedAnnotations = annotations.sliceViewAnnotationsEnabled
                annotations.sliceViewAnnotationsEnabled = False
                annotations.updateSliceViewFromGUI()
        else:
            if self._savedWindowTitle is not None:
                window.windowTitle = self._savedWindowTitle
                self._savedWindowTitle = None
            if annotations is not None and self._savedAnnotations is not None:
                annotations.sliceViewAnnotationsEnabled = self._savedAnnotations
                annotations.updateSliceViewFromGUI()
                self._savedAnnotations = None

    @staticmethod
    def _sliceAnnotations():
        """The Data Probe's slice-view annotations (corner texts), if that module is loaded."""
        probe = getattr(slicer.modules, "DataProbeInstance", None)
        info = getattr(probe, "infoWidget", None)
        annotations = getattr(info, "sliceAnnotations", None)
        if annotations is None:
            logging.warning("Slice view annotations could not be found; switch them off in the Data Probe settings.")
        return annotations

    # -- study admin -----------------------------------------------------------------------
    def _withAdminStore(self, action):
        """``action(admin, store)`` on the study's store, closed afterwards (a backup is made)."""
        if not self._ensureDependencies(("reading", "analysis")):
            raise RuntimeError(_("the packages for the study admin are not installed"))
        from DigitalContrastReaderLib import admin  # needs pandas (the analysis packages): imported on use

        with self.logic.openStore(self._parameterNode.studyPath) as store:
            return action(admin, store)

    def _log(self, text) -> None:
        self.ui.adminLogTextEdit.appendPlainText(text)

    def onRefreshProgress(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not read the progress."), waitCursor=True):
            headers, rows = self._withAdminStore(lambda admin, store: (admin.PROGRESS_HEADERS, admin.progress_rows(store)))
            table = self.ui.progressTable
            table.clear()
            table.setColumnCount(len(headers))
            table.setHorizontalHeaderLabels(list(headers))
            table.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, value in enumerate(row.cells()):
                    table.setItem(r, c, qt.QTableWidgetItem(value))
            table.resizeColumnsToContents()

    def onIntegrityCheck(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The integrity check could not run."), waitCursor=True):
            ok, text = self._withAdminStore(lambda admin, store: admin.integrity_text(store))
            self._log(text)
            if not ok:
                slicer.util.warningDisplay(_("The integrity check FAILED; see the admin log."))

    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The export failed."), waitCursor=True):
            result = self._withAdminStore(lambda admin, store: admin.export_study(store, self._parameterNode.exportFolder))
            self._log(_("Exported {n} files to {folder}").format(n=len(result.files), folder=self._parameterNode.exportFolder))
            for note in result.notes:
                self._log(f"  note: {note}")

    def onReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The HTML report could not be written."), waitCursor=True):
            path = self._withAdminStore(
                lambda admin, store: admin.write_study_report(store, self._parameterNode.exportFolder))
            self._log(_("Report: {path}").format(path=path))
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(path)))

    def onCorrect(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The correction was NOT saved."), waitCursor=True):
            line = self._withAdminStore(lambda admin, store: admin.correct_answer(
                store, self.ui.correctionItemLineEdit.text, self.ui.correctionQuestionLineEdit.text,
                self.ui.correctionValueLineEdit.text, reason=self.ui.correctionReasonLineEdit.text,
                corrected_by=self._parameterNode.adminName,
            ))
            self._log(_("Corrected: {line}").format(line=line))
            self.ui.correctionValueLineEdit.text = ""
            self.ui.correctionReasonLineEdit.text = ""


#
# DigitalContrastReaderLogic
#


class DigitalContrastReaderLogic(ScriptedLoadableModuleLogic):
    """Parameter-node access around the library's session and admin logic; usable from the
    Python console without the widget::

        logic = slicer.util.getModuleLogic("DigitalContrastReader")
        session = logic.startSession(logic.getParameterNode())
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return DigitalContrastReaderParameterNode(super().getParameterNode())

    def dependencyPlan(self, features=("reading",)):
        """What this module still needs for ``features`` (``reading``; the admin adds ``analysis``): no PyTorch."""
        from DigitalContrastLib.common.dependencies import plan_dependencies, read_requirements

        requirements = read_requirements(pathlib.Path(__file__).resolve().parent / "Resources"
                                         / "DigitalContrastReader-requirements.txt")
        return plan_dependencies(requirements, features=list(features), need_torch=False,
                                 requester="Digital Contrast Reader")

    def openStore(self, studyPath):
        """The study's answer store (``studyPath``: .sqlite, postgresql:// URL, study file or folder)."""
        from DigitalContrastReaderLib.store.locate import open_study_store

        return open_study_store(studyPath)

    def startSession(self, parameterNode, token=None):
        """Open the store as a reading station, sign the reader in with their token (default
        ``$DIGITAL_CONTRAST_READER_TOKEN``; never kept in the scene) and show their next item;
        returns the session."""
        from DigitalContrastReaderLib.mrml.reader_display import mrml_reading_session
        from DigitalContrastReaderLib.store.locate import open_reading_study_store

        token = (token or os.environ.get("DIGITAL_CONTRAST_READER_TOKEN") or "").strip()
        store = open_reading_study_store(parameterNode.studyPath)
        session = mrml_reading_session(slicer.mrmlScene, slicer.app.applicationLogic(), store, parameterNode.readerCode,
                                       token=token, idle_after_seconds=parameterNode.idleTimeoutSeconds)
        try:
            session.start()
        except Exception:
            session.close()
            store.close()
            raise
        self._recordItem(session, parameterNode)
        return session

    def submitAndNext(self, session, answers, parameterNode):
        """Commit the answers (on disk when this returns), then show the next item."""
        receipt = session.submit(answers)
        self.nextItem(session, parameterNode)
        return receipt

    def nextItem(self, session, parameterNode):
        """Show the next item (after a washout)."""
        session.next()
        self._recordItem(session, parameterNode)

    def endSession(self, session, parameterNode):
        """Log out: take the item off the screen and close the store (a backup is made)."""
        session.close()
        session.store.close()
        if parameterNode is not None:
            parameterNode.currentItemId = ""

    @staticmethod
    def _recordItem(session, parameterNode):
        parameterNode.currentItemId = session.reading_item.item_id if session.reading_item else ""


#
# DigitalContrastReaderTest
#


class DigitalContrastReaderTest(ScriptedLoadableModuleTest):
    """Runs a short example study end to end in Slicer: a reader logs in, every item is shown
    blinded and answered, and the store holds exactly those answers."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_library_imports()
        self.setUp()
        self.test_reading_session_end_to_end()

    def test_library_imports(self):
        """What reading needs imports with the reading packages alone (the admin's exports need more)."""
        import DigitalContrastReaderLib.mrml.reader_display  # noqa: F401
        import DigitalContrastReaderLib.mrml.scene_audit  # noqa: F401
        import DigitalContrastReaderLib.reading.form  # noqa: F401
        import DigitalContrastReaderLib.store.locate  # noqa: F401

    def test_reading_session_end_to_end(self):
        import random
        import tempfile

        from DigitalContrastReaderLib.mrml.scene_audit import audit_scene, forbidden_tokens
        from DigitalContrastReaderLib.reading.simulate import random_form_answers
        from DigitalContrastReaderLib.store.sqlite import create_store
        from DigitalContrastReaderLib.study.config import load_study
        from DigitalContrastReaderLib.study.example import write_example_study

        logic = DigitalContrastReaderLogic()
        plan = logic.dependencyPlan()
        if not plan.satisfied:  # a fresh Slicer: install what reading needs, as the module does on first use
            from DigitalContrastLib.common.slicer_install import install_packages

            install_packages(plan, slicer, ask=False)
        self.delayDisplay("Creating an example study")
        folder = pathlib.Path(tempfile.mkdtemp(prefix="reader-selftest-", dir=slicer.app.temporaryPath))
        study = load_study(write_example_study(folder / "example", cases=3, training_cases=1, readers=1,
                                               tasks=("grading", "preference"), washout_days=0))
        with create_store(folder / "example" / "study.sqlite", study) as store:
            token = store.enrol("r01").token

        parameterNode = logic.getParameterNode()
        parameterNode.studyPath = folder / "example" / "study.yaml"
        parameterNode.readerCode = "r01"
        session = logic.startSession(parameterNode, token=token)
        rng = random.Random(0)
        given = {}
        while session.state == "reading":
            item = session.current_item
            self.assertEqual(parameterNode.currentItemId, item.item_id)
            leaks = audit_scene(slicer.mrmlScene, forbidden_tokens(study, [item]))
            self.assertEqual(leaks, [], "\n".join(map(str, leaks)))
            self.assertEqual(sorted(session.display.shown.nodes),
                             ["Image"] if item.layout == "single" else ["Image A", "Image B"])
            given[item.item_id] = random_form_answers(item.questions, rng)
            logic.submitAndNext(session, given[item.item_id], parameterNode)
        self.assertEqual(session.state, "finished")
        stored = {}
        for response in session.store.responses():
            stored.setdefault(response.item_id, {})[response.question_key] = response.value
        self.assertEqual(stored, given)
        self.assertTrue(session.store.integrity_check().ok)
        logic.endSession(session, parameterNode)
        self.delayDisplay(f"Test passed: {len(given)} items read, answered and stored")
