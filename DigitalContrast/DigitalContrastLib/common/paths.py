"""Where the extension's own files are, in a source checkout and in an installed Slicer extension alike.

``MODULE_DIR`` is the Slicer module folder that holds ``DigitalContrastLib`` (``DigitalContrast/`` in
the source tree; ``qt-scripted-modules/`` in an installed extension), so resources, the worker
script and the shipped models are found relative to it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The ``DigitalContrastLib`` package folder.
LIBRARY_DIR = Path(__file__).resolve().parents[1]
#: The folder that holds ``DigitalContrastLib`` (the Slicer module folder).
MODULE_DIR = LIBRARY_DIR.parent


#: Free space a RAM-backed folder must have to be used for handing volumes between processes.
TRANSFER_MIN_FREE_BYTES = 2 * 2**30


def transfer_dir() -> Path:
    """A folder for the files that carry volumes between the GUI process and its workers.

    ``/dev/shm`` (RAM-backed) where it exists, is writable and has 2 GiB free: writing a 150 MB
    volume there is a memory copy, never paused by the kernel's disk write-back, which could hold
    a GUI thread for a tenth of a second; else the system's temporary folder.
    """
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
        if shm.is_dir() and os.access(shm, os.W_OK) and stats.f_bavail * stats.f_frsize >= TRANSFER_MIN_FREE_BYTES:
            return shm
    except (OSError, AttributeError):  # no /dev/shm (macOS, Windows)
        pass
    return Path(tempfile.gettempdir())
