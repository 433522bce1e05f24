"""DigitalContrast core library: CT volumes, input gate, phantoms, metrics, synthesis engine.

Pure Python: nothing here imports ``slicer``, ``qt`` or ``ctk`` at module level, and torch/MONAI
are imported only by the modules that run a model (``engine``, ``train``), so this package loads
in a plain venv, in the background worker, in the CLI and inside Slicer alike.

Conventions (DESIGN.md "Data and coordinates"):
  * arrays are indexed ``[z, y, x]`` (as SimpleITK's ``GetArrayFromImage`` and Slicer's
    ``arrayFromVolume``);
  * geometry (origin, direction) is in LPS millimetres, as in DICOM and ITK;
  * spacing is given ``(x, y, z)`` in millimetres;
  * Hounsfield units are int16 on disk.
"""

__version__ = "0.1.0"
