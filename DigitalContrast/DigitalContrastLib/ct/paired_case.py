"""The paired-case folder: one case of training, validation or evaluation on disk, defined once.

A case folder holds ``noncontrast.nrrd`` and ``contrast.nrrd`` on one grid (int16 HU, LPS) and
optionally ``labels.nrrd`` (codes of :mod:`~DigitalContrastLib.ct.labels`). The phantom generator
writes such folders, with ``phantom.json`` (every sampled parameter) beside them; training,
validation and the cohort tools read them.

A case that ``prepare`` made from a site's pair also holds ``enhancement.nrrd`` (the enhancement
mask, :data:`~DigitalContrastLib.ct.labels.ENHANCEMENT_CODES`), ``registration.tfm`` (the contrast
scan's registration, fixed -> moving, LPS mm), ``qc.png`` and ``case.json`` (its facts without
patient identity: :func:`read_case_facts`).
"""

from __future__ import annotations

from pathlib import Path

#: The volumes of a case folder, by role.
CASE_FILES: dict[str, str] = {"noncontrast": "noncontrast.nrrd", "contrast": "contrast.nrrd", "labels": "labels.nrrd"}
#: A phantom case's parameters (JSON), written last: a folder that has it holds a complete, matching set.
PHANTOM_PARAMS_FILE = "phantom.json"
#: A prepared case's files besides the pair.
ENHANCEMENT_FILE = "enhancement.nrrd"
REGISTRATION_FILE = "registration.tfm"
QC_PICTURE_FILE = "qc.png"
CASE_FACTS_FILE = "case.json"


def has_pair(folder: Path) -> bool:
    """Whether ``folder`` holds both scans of a pair (labels are optional)."""
    return (folder / CASE_FILES["noncontrast"]).is_file() and (folder / CASE_FILES["contrast"]).is_file()


def read_case_facts(folder: Path) -> dict | None:
    """A prepared case's ``case.json`` (None for a case without one, e.g. a phantom, or an unreadable one)."""
    import json

    try:
        data = json.loads((Path(folder) / CASE_FACTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
