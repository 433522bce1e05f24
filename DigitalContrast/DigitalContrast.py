"""Digital Contrast: Slicer module (minimal; the full module arrives with its own issue).

All computation lives in `DigitalContrastLib` (pure Python, tested outside Slicer).
"""

import slicer  # noqa: F401  (available inside the Slicer application)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class DigitalContrast(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Digital Contrast"
        self.parent.categories = ["Deep Learning"]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalContrast developers"]
        self.parent.helpText = "Turns a non-contrast CT into a synthetic contrast-enhanced CT angiogram in a background process, and shows it beside the non-contrast and real contrast scans in linked views."
        self.parent.acknowledgementText = "Real CT test data: TotalSegmentator (Wasserthal et al., Radiology: AI 2023), CC BY 4.0."


class DigitalContrastWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)


class DigitalContrastLogic(ScriptedLoadableModuleLogic):
    pass


class DigitalContrastTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_library_imports()

    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_library_imports(self):
        import DigitalContrastLib  # noqa: F401
