"""``python -m DigitalContrastLib.worker``: run the background worker (see :mod:`.server`)."""

import sys

from DigitalContrastLib.worker.server import main

if __name__ == "__main__":
    sys.exit(main())
