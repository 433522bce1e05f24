"""Stand-in for PythonQt's ``qt`` module: only what the module files touch outside their widgets.

The stock-Slicer stand-in (Testing/test_stock_slicer.py) has no Qt application: the widgets are
not built there, only imported. Anything a test would need beyond this is the Slicer application
itself, which cannot run here.
"""


class Qt:
    ToolTipRole = 3


class QTimer:
    def __init__(self, *args):
        self.interval = 0

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, *args):
        pass

    def start(self, *args):
        pass

    def stop(self):
        pass


class QSettings:
    _values: dict = {}

    def value(self, key, default=None):
        return self._values.get(key, default)

    def setValue(self, key, value):
        self._values[key] = value
