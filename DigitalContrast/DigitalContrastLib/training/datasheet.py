"""The data sheet of a model trained on a site's prepared cases, and its training-data signature.

:func:`data_sheet` summarises the cases' ``case.json`` (made by ``prepare``, no patient identity):
patients (pseudonymous keys counted, never listed) and cases, scanners, kVp, reconstruction kernels,
slice thickness and pixel size, the study months, the contrast timing and the registration quality.
:func:`training_signature` is the card's ``ood`` section from the cases' image statistics
(:mod:`DigitalContrastLib.synthesis.ood`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from DigitalContrastLib.synthesis.ood import build_signature

from .cases import TrainingCase


def _range(values: Sequence[Any]) -> list[float] | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(float(v))]
    return [min(numbers), max(numbers)] if numbers else None


def _scan_summary(facts: Sequence[dict[str, Any]], role: str) -> dict[str, Any]:
    scans = [f.get(role) or {} for f in facts]
    dicom = [s.get("dicom") or {} for s in scans]
    scanner = Counter(" ".join(str(d.get(k)) for k in ("Manufacturer", "ManufacturerModelName") if d.get(k)) or "unknown"
                      for d in dicom)
    kvp = Counter(str(d.get("KVP")) for d in dicom if d.get("KVP") not in (None, ""))
    kernel = Counter(str(d.get("ConvolutionKernel")) for d in dicom if d.get("ConvolutionKernel"))
    return {
        "scanners": dict(scanner),
        "kvp": dict(kvp),
        "kernels": dict(kernel),
        "slice_thickness_mm": _range([d.get("SliceThickness") for d in dicom] or [s.get("spacing_xyz_mm", [0, 0, None])[2]
                                                                                  for s in scans]),
        "pixel_spacing_mm": _range([s.get("spacing_xyz_mm", [None])[0] for s in scans]),
        "formats": dict(Counter(str(s.get("format")) for s in scans)),
        "seconds_after_contrast_start": _range([s.get("seconds_after_contrast_start") for s in scans]),
    }


def data_sheet(cases: Sequence[TrainingCase]) -> dict[str, Any] | None:
    """The data sheet of the prepared cases among ``cases`` (None when none was prepared by ``prepare``)."""
    facts = [c.facts for c in cases if c.facts]
    if not facts:
        return None
    months = sorted(m for f in facts for m in [(f.get("noncontrast") or {}).get("study_month")] if m)
    quality = [f.get("quality") or {} for f in facts]
    return {
        "patients": len({f.get("patient_key") for f in facts}),
        "cases": len(facts),
        "case_ids": [c.name for c in cases if c.facts],
        "noncontrast": _scan_summary(facts, "noncontrast"),
        "contrast": _scan_summary(facts, "contrast"),
        "study_months": [months[0], months[-1]] if months else None,
        "seconds_between_scans": _range([f.get("seconds_between_scans") for f in facts]),
        "registration": {"methods": dict(Counter(str((f.get("registration") or {}).get("method")) for f in facts)),
                         "ncc_after": _range([q.get("ncc_after") for q in quality]),
                         "bone_dice_after": _range([q.get("bone_dice_after") for q in quality])},
        "labels": "hand labels from the cohort CSV" if any(f.get("labels") for f in facts)
                  else "enhancement masks from the registered pairs (no hand labels)",
        "identity": ("none: patients are counted by pseudonymous keys (HMAC with a key kept only in the prepared "
                     "folder); study dates are kept to the month; no names, IDs, birth dates, institutions or UIDs"),
    }


def training_signature(cases: Sequence[TrainingCase], alpha: float, target_spacing_xyz_mm: Sequence[float],
                       source: str) -> dict[str, Any] | None:
    """The card's ``ood`` section from the cases' image statistics (None with fewer than 3 cases)."""
    rows = [c.ood_features for c in cases if c.ood_features]
    if len(rows) < 3:
        return None
    return build_signature(rows, alpha=alpha, target_spacing_xyz_mm=target_spacing_xyz_mm, source=source)
