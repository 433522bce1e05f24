"""The paired-case folder: one case of training, validation or evaluation on disk, defined once.

A case folder holds ``noncontrast.nrrd`` and ``contrast.nrrd`` on one grid (int16 HU, LPS) and
optionally ``labels.nrrd`` (codes of :mod:`~DigitalContrastLib.ct.labels`). The phantom generator
writes such folders, with ``phantom.json`` (every sampled parameter) beside them; training,
validation and the cohort tools read them.
"""

from __future__ import annotations

from pathlib import Path

#: The volumes of a case folder, by role.
CASE_FILES: dict[str, str] = {"noncontrast": "noncontrast.nrrd", "contrast": "contrast.nrrd", "labels": "labels.nrrd"}
#: A phantom case's parameters (JSON), written last: a folder that has it holds a complete, matching set.
PHANTOM_PARAMS_FILE = "phantom.json"


def has_pair(folder: Path) -> bool:
    """Whether ``folder`` holds both scans of a pair (labels are optional)."""
    return (folder / CASE_FILES["noncontrast"]).is_file() and (folder / CASE_FILES["contrast"]).is_file()
