"""Digital Contrast Reader: Slicer module (minimal; the full module arrives with its own issue).

All computation lives in `DigitalContrastReaderLib` (pure Python, tested outside Slicer).
"""

import slicer  # noqa: F401  (available inside the Slicer application)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class DigitalContrastReader(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Digital Contrast Reader"
        self.parent.categories = ["Deep Learning"]
        self.parent.dependencies = []
        self.parent.contributors = ["DigitalContrast developers"]
        self.parent.helpText = "Blinded, randomized reader studies of synthetic and real contrast CT that never lose an answer."
        self.parent.acknowledgementText = "Real CT test data: TotalSegmentator (Wasserthal et al., Radiology: AI 2023), CC BY 4.0."


class DigitalContrastReaderWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)


class DigitalContrastReaderLogic(ScriptedLoadableModuleLogic):
    pass


class DigitalContrastReaderTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_library_imports()

    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_library_imports(self):
        import DigitalContrastReaderLib  # noqa: F401
