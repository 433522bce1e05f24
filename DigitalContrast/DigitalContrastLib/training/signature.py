"""A model's training-data signature made after the fact, checked, and stored in its card.

``train`` writes the signature of the cases it trained on. A model trained before signatures
existed (the shipped phantom model) gets one here: its training phantoms are generated again from
the seeds and grid its card records (the generator is deterministic), their image statistics
(:mod:`DigitalContrastLib.synthesis.ood`) make the signature, and two checks go with it:

* **held-out phantoms**: seeds never trained on (abdomen and chest fields of view); the share that
  warns must stay below 5 %;
* **real anatomy**: the pseudo non-contrast scan made from a real CT angiogram (aortic lumen replaced
  by unenhanced blood, as ``validate --realdata`` does) must warn for a phantom-trained model.

:func:`write_signature_to_card` stores both in the card's ``ood`` section; the weights are untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.synthesis.ood import assess, build_signature, distance, input_features

#: The largest share of held-out phantoms that may warn.
MAX_HELD_OUT_WARNING_RATE = 0.05


def phantom_features(seeds: Sequence[int], chest_seeds: Sequence[int], size_xyz: Sequence[int],
                     spacing_xyz_mm: Sequence[float], target_spacing_xyz_mm: Sequence[float],
                     progress: ProgressCallback | None = None, stage: str = "phantoms") -> list[dict[str, float]]:
    """Image statistics of the non-contrast scans of abdominal phantoms ``seeds`` and chest phantoms ``chest_seeds``."""
    from DigitalContrastLib.phantoms.generator import CHEST_CENTER_Z_MM, make_phantom

    progress = progress or no_progress
    jobs = [(int(s), 0.0) for s in seeds] + [(int(s), CHEST_CENTER_Z_MM) for s in chest_seeds]
    rows = []
    for k, (seed, center_z) in enumerate(jobs):
        progress(stage, k, len(jobs))
        case = make_phantom(seed, size_xyz=tuple(size_xyz), spacing_xyz_mm=tuple(spacing_xyz_mm), center_z_mm=center_z)
        rows.append(input_features(case.noncontrast, target_spacing_xyz_mm))
    progress(stage, len(jobs), len(jobs))
    return rows


def held_out_check(signature: dict[str, Any], rows: Sequence[dict[str, float]], seeds: Sequence[int],
                   chest_seeds: Sequence[int]) -> dict[str, Any]:
    """How many held-out phantoms warn against ``signature`` (the rate must stay below 5 %)."""
    distances = [distance(r, signature["features"]) for r in rows]
    warned = [d > signature["threshold"] for d in distances]
    labels = [f"abdomen {s}" for s in seeds] + [f"chest {s}" for s in chest_seeds]
    rate = float(np.mean(warned)) if warned else float("nan")
    return {
        "seeds": [int(s) for s in seeds], "chest_seeds": [int(s) for s in chest_seeds], "n": len(rows),
        "warned": [label for label, w in zip(labels, warned) if w], "rate": rate,
        "distance": {"median": float(np.median(distances)), "max": float(max(distances))} if distances else None,
        "passed": bool(rows) and rate < MAX_HELD_OUT_WARNING_RATE,
        "rule": f"fewer than {MAX_HELD_OUT_WARNING_RATE:.0%} of held-out phantoms warn",
    }


def realdata_check(signature: dict[str, Any], cta_path: str | Path, mask_path: str | Path,
                   target_spacing_xyz_mm: Sequence[float]) -> dict[str, Any]:
    """The pseudo non-contrast scan of a real CTA against ``signature``: it must warn (real anatomy)."""
    from DigitalContrastLib.ct.io import read_volume

    from .validation import pseudo_noncontrast

    cta = read_volume(cta_path)
    mask = np.asarray(read_volume(mask_path).array) > 0
    pseudo = cta.with_array(pseudo_noncontrast(cta.array, mask))
    record = assess(input_features(pseudo, target_spacing_xyz_mm), signature)
    return {"input": f"pseudo non-contrast of {Path(cta_path).name} (aortic lumen of {Path(mask_path).name} replaced "
                     "by unenhanced blood)", "distance": record["distance"], "threshold": record["threshold"],
            "warning": record["warning"], "message": record["message"], "unusual": record["unusual"],
            "passed": bool(record["warning"]), "rule": "a real anatomy's pseudo non-contrast scan warns"}


def make_signature(rows: Sequence[dict[str, float]], alpha: float, target_spacing_xyz_mm: Sequence[float],
                   source: str) -> dict[str, Any]:
    """:func:`~DigitalContrastLib.synthesis.ood.build_signature` (for the command: one import)."""
    return build_signature(rows, alpha=alpha, target_spacing_xyz_mm=target_spacing_xyz_mm, source=source)


def write_signature_to_card(card: Any, signature: dict[str, Any]) -> Path:
    """Store ``signature`` (with its checks and command) as the card's ``ood`` section, atomically."""
    from DigitalContrastLib.common.atomic import atomic_write_text
    from DigitalContrastLib.common.json_values import jsonable
    from DigitalContrastLib.models.cards import load_card, validate_card_data

    data = json.loads(card.path.read_text(encoding="utf-8"))
    data["ood"] = jsonable(signature)
    validate_card_data(data, str(card.path))
    atomic_write_text(card.path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return load_card(card.path).path
