"""Launch the DigitalContrast background worker (``DigitalContrastLib.worker``) as a script.

Slicer runs it with its own Python, ``PythonSlicer DigitalContrastWorker.py [worker options]``,
where ``python -m DigitalContrastLib.worker`` would not find the package. It puts the module
folder (the one holding ``DigitalContrastLib``, in the source tree and in the installed
extension alike) first on ``sys.path`` and hands over to ``worker.main``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from DigitalContrastLib.worker import server as worker  # noqa: E402

if __name__ == "__main__":
    sys.exit(worker.main())
