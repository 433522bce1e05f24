"""Where the extension's own files are, in a source checkout and in an installed Slicer extension alike.

``MODULE_DIR`` is the Slicer module folder that holds ``DigitalContrastLib`` (``DigitalContrast/`` in
the source tree; ``qt-scripted-modules/`` in an installed extension), so resources, the worker
script and the shipped models are found relative to it.
"""

from __future__ import annotations

from pathlib import Path

#: The ``DigitalContrastLib`` package folder.
LIBRARY_DIR = Path(__file__).resolve().parents[1]
#: The folder that holds ``DigitalContrastLib`` (the Slicer module folder).
MODULE_DIR = LIBRARY_DIR.parent
