"""Is an input unlike the model's training data? Image statistics, their signature and a distance.

The **features** (:func:`input_features`) are measured on the input as the network sees it: in
canonical orientation, resampled to the card's spacing (:mod:`.model_grid`, numpy only), inside the
body (``ct.masks.body_mask_from_ct``):

* what the body holds: the 5th, 25th, 50th, 75th and 95th HU percentiles, the share of lung
  (below -600 HU) and of bright tissue (150 to 600 HU: enhanced blood, bone marrow, partial-volumed
  bone), which tell the field of view and any contrast agent;
* the scanner's calibration: the soft-tissue and fat peaks of the HU histogram;
* the noise and its texture, in homogeneous soft tissue (-50 to 120 HU, eroded twice): the noise SD
  from neighbouring voxels along x, the ratio of the spread of 1-voxel to 3-voxel differences (the
  reconstruction kernel: a sharp kernel's noise is fine-grained) and of z to x differences (slice
  thickness and z correlation).

Why these and not the network's bottleneck features: they are numpy only (the input check computes
them in a process without torch, before the network runs, and the dummy worker too), cost well
under a second, hold for any model of the same input grid, and each has a name and a unit, so the
warning can say what is unusual ("its noise texture ... where the training data had ...").
Known limit: a scan whose statistics match the training data while its anatomy does not (another
body region of the same make-up) is not caught.

The **signature** (:func:`build_signature`, stored in the card's ``ood`` section) is each feature's
mean, SD and range over the training cases. The **distance** of an input is the largest
standardised deviation ``|f - mean| / max(SD, floor)`` over the features; the floors
(:data:`FEATURES`) keep a feature that barely varied in training (the noise of one scanner, the
calibration of one site) from warning on differences too small to matter. The **threshold** is
calibrated on the training cases themselves, split-conformal style: each case's leave-one-out
distance (to the signature of the others) is computed and the threshold is the
``ceil((1 - alpha)(n + 1))``-th smallest of them (the largest when that index passes n), so that a new
case from the training distribution warns with probability at most about ``alpha``.

:func:`assess` gives the record that travels in the provenance (``ood``) and on a Slicer node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.ct.volume import CTVolume

from .model_grid import canonical_orientation, model_grid_shape, to_model_grid_np

SIGNATURE_VERSION = 1
#: The card's ``ood.method``: one line saying what the numbers are.
METHOD = ("image statistics of the input on the model grid inside the body (HU percentiles, lung and bright "
          "shares, soft-tissue and fat peaks, noise SD and texture); distance = largest |feature - mean| / "
          "max(SD, floor) over the features; threshold = split-conformal quantile of the training cases' "
          "leave-one-out distances")
DEFAULT_ALPHA = 0.02
WARNING_CODE = "out_of_distribution"
SOFT_TISSUE_HU = (-50.0, 120.0)
BRIGHT_HU = (150.0, 600.0)
LUNG_HU = -600.0


@dataclass(frozen=True)
class Feature:
    """One image statistic: its key, what a user reads, its unit and the SD floor of the distance."""

    key: str
    label: str
    unit: str
    floor: float
    digits: int = 0


#: The features, in the order they are reported. Floors: a few HU for HU levels (calibration and
#: protocol differences that do not change a synthesis), 0.02 for shares of the body, 1.5 HU of noise.
FEATURES: tuple[Feature, ...] = (
    Feature("body_hu_p05", "5th HU percentile inside the body", "HU", 15.0),
    Feature("body_hu_p25", "25th HU percentile inside the body", "HU", 10.0),
    Feature("body_hu_p50", "median HU inside the body", "HU", 10.0),
    Feature("body_hu_p75", "75th HU percentile inside the body", "HU", 10.0),
    Feature("body_hu_p95", "95th HU percentile inside the body", "HU", 15.0),
    Feature("lung_share", "share of the body below -600 HU (lung, gas)", "", 0.02, 3),
    Feature("bright_share", "share of the body at 150-600 HU (enhanced blood, marrow)", "", 0.01, 3),
    Feature("soft_tissue_peak_hu", "soft-tissue peak of the HU histogram", "HU", 5.0),
    Feature("fat_peak_hu", "fat peak of the HU histogram", "HU", 5.0),
    Feature("noise_sd_hu", "image noise (SD in homogeneous soft tissue)", "HU", 1.5, 1),
    Feature("noise_grain_ratio", "noise texture (1- to 3-voxel difference ratio: the reconstruction kernel)", "",
            0.03, 2),
    Feature("noise_z_ratio", "noise along z against in-plane (slice thickness)", "", 0.05, 2),
)
FEATURE_KEYS = tuple(f.key for f in FEATURES)


def _robust_sd(values: np.ndarray) -> float:
    """SD of ``values`` winsorised at 3 interquartile SDs around the median (edges of organs left in
    the homogeneous mask do not dominate); NaN for fewer than 50 values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 50:
        return float("nan")
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    k = 3.0 * max((q75 - q25) / 1.349, 1e-6)
    return float(np.sqrt(np.mean(np.clip(values - med, -k, k) ** 2)))


def _histogram_peak(values: np.ndarray, low: float, high: float) -> float:
    """The mode (HU) of ``values`` inside ``[low, high)``: a 2 HU histogram smoothed by 4 HU."""
    edges = np.arange(low - 20.0, high + 20.0 + 1e-6, 2.0)
    counts, _ = np.histogram(values, bins=edges)
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    inside = (centres >= low) & (centres < high)
    if not smooth[inside].any():
        return float("nan")
    return float(centres[inside][int(np.argmax(smooth[inside]))])


def model_grid_hu(volume: CTVolume, target_spacing_xyz_mm: Sequence[float] | None) -> tuple[np.ndarray, tuple]:
    """The volume in canonical orientation on the model grid (float32 HU ``[z, y, x]``) and its spacing ``(z, y, x)`` mm."""
    orientation = canonical_orientation(volume.direction)
    canonical = orientation.to_canonical(np.asarray(volume.array))
    spacing_zyx = orientation.spacing_zyx(volume.spacing_mm)
    if target_spacing_xyz_mm is None:
        return np.asarray(canonical, dtype=np.float32), spacing_zyx
    target_zyx = (float(target_spacing_xyz_mm[2]), float(target_spacing_xyz_mm[1]), float(target_spacing_xyz_mm[0]))
    grid = model_grid_shape(canonical.shape, spacing_zyx, target_zyx)
    return to_model_grid_np(canonical, grid), target_zyx


def grid_features(hu: np.ndarray) -> dict[str, float]:
    """The features of :data:`FEATURES` of a canonical ``[z, y, x]`` HU array already on the model grid.

    Returns ``{key: value}``; a value is NaN where it cannot be measured (no body, no soft tissue).
    """
    hu = np.asarray(hu, dtype=np.float32)
    out = {key: float("nan") for key in FEATURE_KEYS}
    body = body_mask_from_ct(hu)
    values = hu[body]
    if values.size < 100:
        return out
    for key, q in zip(("body_hu_p05", "body_hu_p25", "body_hu_p50", "body_hu_p75", "body_hu_p95"),
                      np.percentile(values, [5, 25, 50, 75, 95])):
        out[key] = float(q)
    out["lung_share"] = float(np.mean(values < LUNG_HU))
    out["bright_share"] = float(np.mean((values >= BRIGHT_HU[0]) & (values < BRIGHT_HU[1])))
    out["soft_tissue_peak_hu"] = _histogram_peak(values, -20.0, 100.0)
    out["fat_peak_hu"] = _histogram_peak(values, -160.0, -40.0)
    soft = body & (hu > SOFT_TISSUE_HU[0]) & (hu < SOFT_TISSUE_HU[1])
    homogeneous = ndimage.binary_erosion(soft, iterations=2)
    both_x1 = homogeneous[:, :, 1:] & homogeneous[:, :, :-1]
    both_x3 = homogeneous[:, :, 3:] & homogeneous[:, :, :-3]
    both_z1 = homogeneous[1:] & homogeneous[:-1]
    sd_x1 = _robust_sd((hu[:, :, 1:] - hu[:, :, :-1])[both_x1])
    sd_x3 = _robust_sd((hu[:, :, 3:] - hu[:, :, :-3])[both_x3])
    sd_z1 = _robust_sd((hu[1:] - hu[:-1])[both_z1])
    out["noise_sd_hu"] = sd_x1 / math.sqrt(2.0)
    out["noise_grain_ratio"] = sd_x1 / sd_x3 if sd_x3 > 0 else float("nan")
    out["noise_z_ratio"] = sd_z1 / sd_x1 if sd_x1 > 0 else float("nan")
    return out


def input_features(volume: CTVolume, target_spacing_xyz_mm: Sequence[float] | None) -> dict[str, float]:
    """The features of an input volume (any HU dtype, any LPS direction), on the model grid of the card."""
    hu, _ = model_grid_hu(volume, target_spacing_xyz_mm)
    return grid_features(hu)


# ---------------------------------------------------------------------------- the signature
def _stats(rows: Sequence[Mapping[str, float]], key: str) -> tuple[float, float, float, float]:
    values = np.array([float(r[key]) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))])
    if values.size == 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), sd, float(values.min()), float(values.max())


def _signature_features(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for feature in FEATURES:
        mean, sd, low, high = _stats(rows, feature.key)
        out[feature.key] = {"mean": mean, "sd": sd, "floor": feature.floor, "min": low, "max": high,
                            "unit": feature.unit, "label": feature.label}
    return out


def _deviations(features: Mapping[str, float], signature_features: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``{key: (value - mean) / max(sd, floor)}`` for the features measured and in the signature."""
    out = {}
    for key, stats in signature_features.items():
        value = features.get(key)
        mean = stats.get("mean")
        if value is None or mean is None or not math.isfinite(float(value)) or not math.isfinite(float(mean)):
            continue
        scale = max(float(stats.get("sd") or 0.0), float(stats.get("floor") or 0.0), 1e-9)
        out[key] = (float(value) - float(mean)) / scale
    return out


def distance(features: Mapping[str, float], signature_features: Mapping[str, Mapping[str, Any]]) -> float:
    """The largest standardised deviation of ``features`` from the signature (NaN when none is measured)."""
    deviations = _deviations(features, signature_features)
    return max((abs(v) for v in deviations.values()), default=float("nan"))


def conformal_threshold(scores: Sequence[float], alpha: float) -> float:
    """The ``ceil((1 - alpha)(n + 1))``-th smallest of ``scores`` (the largest when that passes n)."""
    finite = sorted(float(s) for s in scores if math.isfinite(float(s)))
    if not finite:
        return float("nan")
    k = math.ceil((1.0 - float(alpha)) * (len(finite) + 1))
    return finite[min(k, len(finite)) - 1]


def build_signature(rows: Sequence[Mapping[str, float]], *, alpha: float = DEFAULT_ALPHA,
                    target_spacing_xyz_mm: Sequence[float] | None = None,
                    source: str = "") -> dict[str, Any]:
    """The card's ``ood`` section from the features of the training cases (``rows``, one per case).

    The leave-one-out distances of the cases set the threshold (see the module docstring). Needs
    at least 3 cases.

    Raises:
        ValueError: fewer than 3 cases (a programming error: training checks its data first).
    """
    if len(rows) < 3:
        raise ValueError(f"a training-data signature needs at least 3 cases, got {len(rows)}")
    loo = []
    for k in range(len(rows)):
        others = [r for j, r in enumerate(rows) if j != k]
        loo.append(distance(rows[k], _signature_features(others)))
    threshold = conformal_threshold(loo, alpha)
    finite = [v for v in loo if math.isfinite(v)]
    return {
        "signature_version": SIGNATURE_VERSION,
        "method": METHOD,
        "source": source,
        "model_grid_spacing_xyz_mm": list(target_spacing_xyz_mm) if target_spacing_xyz_mm is not None else None,
        "cases": len(rows),
        "features": _signature_features(rows),
        "threshold": threshold,
        "calibration": {
            "alpha": float(alpha),
            "rule": "split-conformal: the ceil((1 - alpha)(n + 1))-th smallest leave-one-out distance of the "
                    "training cases (the largest when n is too small); a new case like the training data warns "
                    "with probability at most about alpha",
            "leave_one_out_distance": {"n": len(finite), "median": float(np.median(finite)) if finite else None,
                                       "max": max(finite) if finite else None},
        },
    }


# ---------------------------------------------------------------------------- the decision
def _describe(key: str, value: float, stats: Mapping[str, Any]) -> str:
    feature = next((f for f in FEATURES if f.key == key), Feature(key, key, "", 0.0))
    unit = f" {feature.unit}" if feature.unit else ""
    fmt = f"{{:.{feature.digits}f}}"
    return (f"{feature.label} is {fmt.format(value)}{unit} where the training data had "
            f"{fmt.format(float(stats['min']))} to {fmt.format(float(stats['max']))}{unit}")


def assess(features: Mapping[str, float], signature: Mapping[str, Any] | None) -> dict[str, Any]:
    """The out-of-distribution record of one input against a card's signature (its ``ood`` section).

    Returns ``{"judged", "warning", "distance", "threshold", "message", "unusual": [{key, value,
    deviation_sd, label}], "features"}``; ``judged`` is False (and no warning) when the card has no
    signature or no feature could be measured. ``message`` is one sentence for the user when
    ``warning`` is True, else a short statement.
    """
    record: dict[str, Any] = {"judged": False, "warning": False, "distance": None, "threshold": None,
                              "features": {k: (float(v) if v is not None else None) for k, v in features.items()},
                              "unusual": []}
    if not signature or not signature.get("features"):
        record["message"] = "not judged: the model card holds no training-data signature"
        return record
    stats = signature["features"]
    deviations = _deviations(features, stats)
    if not deviations:
        record["message"] = "not judged: no image statistic could be measured (no body found)"
        return record
    threshold = float(signature["threshold"])
    value = max(abs(v) for v in deviations.values())
    ranked = sorted(deviations.items(), key=lambda kv: -abs(kv[1]))
    record.update(judged=True, distance=round(value, 3), threshold=round(threshold, 3), warning=bool(value > threshold))
    record["unusual"] = [{"key": k, "value": float(features[k]), "deviation_sd": round(d, 2),
                          "label": stats[k].get("label", k)} for k, d in ranked if abs(d) > threshold][:3]
    if record["warning"]:
        reasons = "; ".join(_describe(item["key"], item["value"], stats[item["key"]]) for item in record["unusual"][:2])
        record["message"] = (f"This scan is unlike the model's training data: its {reasons} (distance "
                             f"{value:.1f} SD, threshold {threshold:.1f}); check the synthetic image against the "
                             "uncertainty map and do not rely on it where they disagree.")
    else:
        record["message"] = f"like the model's training data (distance {value:.1f} SD, threshold {threshold:.1f})"
    return record


def assess_volume(volume: CTVolume, card_data: Mapping[str, Any] | None) -> dict[str, Any]:
    """:func:`assess` of a volume against a card's content (``card.data``; None or no ``ood``: not judged)."""
    signature = (card_data or {}).get("ood")
    if not signature:
        return assess({}, None)
    spacing = signature.get("model_grid_spacing_xyz_mm") or (card_data or {}).get("input", {}).get("target_spacing_xyz_mm")
    return assess(input_features(volume, spacing), signature)
