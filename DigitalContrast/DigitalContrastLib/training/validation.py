"""Validate a synthesis model on held-out phantoms and on real anatomy; the figures in model cards.

:func:`validate_model` generates phantoms from seeds that were never used in training, synthesizes
each one, and scores three predictions against the real contrast scan side by side:

* ``identity``: the non-contrast scan itself (what you get with no model);
* ``oracle``: the non-contrast scan with the TRUE aortic-lumen mask (from the labels) filled with
  350 HU, the mid-point of the arterial range: a label oracle no image model can beat on lumen HU,
  because the bolus level of a given scan cannot be known from a non-contrast CT;
* ``observer``: an intensity observer that is TOLD the aortic sac (lumen and thrombus labels) and
  the median non-contrast HU of lumen and thrombus, smooths the non-contrast scan inside the sac
  (Gaussian, :data:`OBSERVER_SIGMA_MM`) and fills the voxels closer to the lumen median with
  350 HU: how well the non-contrast intensities alone separate lumen from thrombus. It is a
  reference for the lumen and thrombus figures, not a bound: a model can add shape knowledge;
* ``model``: the synthetic CTA.

Beside the thrombus bias, each case with thrombus carries the bias that lumen *placement* alone
causes (``placement_thrombus_bias_hu``), for the model's lumen and for the shape observer's, which is
told the sac and the HU levels and knows that the lumen is one disk per slice
(:mod:`.shape_observer`, robust to the blur of calcified plaques): how much of a thrombus miss is where the lumen is drawn, and how well a
lumen can be placed at all from these non-contrast intensities.

:func:`realdata_check` builds a pseudo non-contrast input from a real CTA (the aortic lumen replaced
by unenhanced blood) and reports the synthetic lumen median. :func:`chest_check` does the same on
held-out phantoms whose field of view is the chest (kidneys to the aortic arch), from their
non-contrast scan and from such a pseudo non-contrast scan, where the true answer is known.

Acceptance criteria (:data:`ACCEPTANCE`) are evaluated on the summary. Each figure behind a
criterion also gets a 95 % percentile-bootstrap interval over the cases (seeded, as in the cohort
statistics): a verdict is *settled* when the whole interval lies on its side of the threshold, and
*open* when it crosses it (more seeds would be needed to tell). Nothing here imports torch at
module level.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.json_values import jsonable
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.io import read_volume
from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.evaluation.stats import bootstrap_ci
from DigitalContrastLib.phantoms.generator import CHEST_CENTER_Z_MM, make_phantom

ORACLE_LUMEN_HU = 350.0
#: Smoothing of the intensity observer, in mm (best of 1, 2 and 3 mm on seeds 10000-10007).
OBSERVER_SIGMA_MM = 3.0
#: The methods scored side by side, in table order.
METHODS = ("identity", "oracle", "observer", "model")
LUMEN_RANGE_HU = (250.0, 450.0)
UNENHANCED_BLOOD_HU = 40.0
DEFAULT_VALIDATION_SEEDS = tuple(range(10000, 10008))

#: name -> human-readable rule (evaluated by :func:`acceptance`).
ACCEPTANCE = {
    "lumen_dice": "mean lumen Dice at 150 HU inside the aortic sac >= 0.90",
    "thrombus_bias": "mean thrombus bias within +-15 HU (thrombus does not light up)",
    "lumen_median": "synthetic lumen median inside 250-450 HU on every case",
    "lumen_mae_vs_oracle": "mean lumen MAE no more than 10 HU above the label oracle's",
    "body_mae_vs_identity": "mean body MAE below the identity baseline's",
    "max_diameter": "median |max-diameter error| <= 2 mm",
}


def case_metrics(pred_hu: np.ndarray, ref_hu: np.ndarray, noncontrast_hu: np.ndarray, labels: np.ndarray | None,
                 spacing_xyz_mm: Sequence[float]) -> dict[str, float]:
    """Body metrics (mask from the non-contrast scan) and, with labels, the aortic ROI metrics."""
    from DigitalContrastLib.ct.masks import body_mask_from_ct
    from DigitalContrastLib.evaluation.metrics import body_metrics, roi_metrics

    body = body_mask_from_ct(noncontrast_hu)
    out = dict(body_metrics(pred_hu, ref_hu, body))
    if labels is not None:
        out.update(roi_metrics(pred_hu, ref_hu, labels, spacing_xyz_mm))
    return out


def oracle_prediction(noncontrast_hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The non-contrast scan with the true aortic lumen set to :data:`ORACLE_LUMEN_HU` (int16)."""

    oracle = np.array(noncontrast_hu, dtype=np.int16, copy=True)
    oracle[np.asarray(labels) == LABELS["aortic_lumen"]] = int(ORACLE_LUMEN_HU)
    return oracle


def observer_prediction(noncontrast_hu: np.ndarray, labels: np.ndarray, spacing_xyz_mm: Sequence[float],
                        sigma_mm: float = OBSERVER_SIGMA_MM) -> np.ndarray:
    """The intensity observer's prediction (int16 ``[z, y, x]`` HU, same grid as the input).

    Inside the true aortic sac (lumen or thrombus label) the non-contrast HU are smoothed with a
    Gaussian of ``sigma_mm`` (normalised inside the sac, so fat outside does not leak in); voxels
    above the midpoint of the lumen and thrombus medians are set to :data:`ORACLE_LUMEN_HU`. With no
    thrombus in the case, the whole lumen is filled (the oracle).
    """
    from scipy import ndimage


    labels = np.asarray(labels)
    lumen, thrombus = labels == LABELS["aortic_lumen"], labels == LABELS["thrombus"]
    if not thrombus.any():
        return oracle_prediction(noncontrast_hu, labels)
    nc = np.asarray(noncontrast_hu, dtype=np.float32)
    sac = lumen | thrombus
    sigma_zyx = tuple(sigma_mm / float(s) for s in reversed(tuple(spacing_xyz_mm)))
    weight = ndimage.gaussian_filter(sac.astype(np.float32), sigma_zyx)
    smooth = ndimage.gaussian_filter(np.where(sac, nc, 0.0).astype(np.float32), sigma_zyx) / np.maximum(weight, 1e-6)
    threshold = 0.5 * (float(np.median(nc[lumen])) + float(np.median(nc[thrombus])))
    prediction = np.array(noncontrast_hu, dtype=np.int16, copy=True)
    prediction[sac & (smooth > threshold)] = int(ORACLE_LUMEN_HU)
    return prediction


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _mean_or_nan(values: Sequence[float | None]) -> float:
    """Mean of the finite ``values``; NaN when there are none."""
    finite = _finite(values)
    return float(np.mean(finite)) if finite else float("nan")


def summarize(cases: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every metric per method, plus the median |max-diameter error| and the min Dice."""
    summary: dict[str, dict[str, float]] = {}
    for method in METHODS:
        rows = [c[method] for c in cases if method in c]
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
        table = {}
        for key in keys:
            table[key] = _mean_or_nan([r.get(key, float("nan")) for r in rows])
        diam = [abs(v) for v in _finite([r.get("max_diameter_error_mm") for r in rows])]  # None: stored NaN
        table["median_abs_max_diameter_error_mm"] = float(np.median(diam)) if diam else float("nan")
        dice = _finite([r.get("lumen_dice", float("nan")) for r in rows])
        table["min_lumen_dice"] = float(min(dice)) if dice else float("nan")
        medians = _finite([r.get("lumen_median_hu_pred", float("nan")) for r in rows])
        table["min_lumen_median_hu"] = float(min(medians)) if medians else float("nan")
        table["max_lumen_median_hu"] = float(max(medians)) if medians else float("nan")
        summary[method] = table
    return summary


#: name -> (the case-level figure its interval is computed from, the statistic, the test on one value
#: of that statistic); for the two "vs" criteria the figure is the per-case difference to the baseline.
_CRITERION_TESTS = {
    "lumen_dice": ("model lumen Dice", "mean", lambda v: v >= 0.90),
    "thrombus_bias": ("model thrombus bias, HU", "mean", lambda v: abs(v) <= 15.0),
    "lumen_mae_vs_oracle": ("model minus oracle lumen MAE, HU", "mean", lambda v: v <= 10.0),
    "body_mae_vs_identity": ("model minus identity body MAE, HU", "mean", lambda v: v < 0.0),
    "max_diameter": ("|model max-diameter error|, mm", "median", lambda v: v <= 2.0),
}


def _criterion_values(cases: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per criterion of :data:`_CRITERION_TESTS`, its figure on every case (NaN where undefined)."""
    def get(case: dict[str, Any], method: str, key: str) -> float:
        value = case.get(method, {}).get(key)
        return float(value) if value is not None else float("nan")

    return {
        "lumen_dice": [get(c, "model", "lumen_dice") for c in cases],
        "thrombus_bias": [get(c, "model", "thrombus_bias_hu") for c in cases],
        "lumen_mae_vs_oracle": [get(c, "model", "lumen_mae_hu") - get(c, "oracle", "lumen_mae_hu") for c in cases],
        "body_mae_vs_identity": [get(c, "model", "body_mae_hu") - get(c, "identity", "body_mae_hu") for c in cases],
        "max_diameter": [abs(get(c, "model", "max_diameter_error_mm")) for c in cases],
    }


def criterion_intervals(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """95 % bootstrap intervals of the figures behind the acceptance criteria.

    Returns ``{criterion: {"figure", "statistic", "n", "ci95": [low, high] or None}}``; the intervals
    come from :func:`~DigitalContrastLib.evaluation.stats.bootstrap_ci` (seeded, so reproducible).
    """

    out = {}
    for name, values in _criterion_values(cases).items():
        figure, statistic, _ = _CRITERION_TESTS[name]
        finite = _finite(values)
        ci = bootstrap_ci(finite, statistic)
        out[name] = {"figure": figure, "statistic": statistic, "n": len(finite), "ci95": list(ci) if ci else None}
    return out


def _settled(name: str, interval: Sequence[float], passed: bool) -> bool:
    """Whether every value inside ``interval`` gives the same verdict as ``passed``."""
    test = _CRITERION_TESTS[name][2]
    return all(bool(test(float(v))) == passed for v in np.linspace(interval[0], interval[1], 201))


def acceptance(summary: dict[str, dict[str, float]],
               intervals: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Each criterion of :data:`ACCEPTANCE`: ``{"rule", "value", "passed"}``, and with ``intervals``
    (from :func:`criterion_intervals`) also ``"ci95"`` and ``"settled"`` where an interval exists."""
    model, oracle, identity = summary["model"], summary["oracle"], summary["identity"]
    test = {name: spec[2] for name, spec in _CRITERION_TESTS.items()}
    checks = {
        "lumen_dice": (model["lumen_dice"], test["lumen_dice"](model["lumen_dice"])),
        "thrombus_bias": (model["thrombus_bias_hu"], test["thrombus_bias"](model["thrombus_bias_hu"])),
        "lumen_median": ([model["min_lumen_median_hu"], model["max_lumen_median_hu"]],
                         LUMEN_RANGE_HU[0] <= model["min_lumen_median_hu"] and model["max_lumen_median_hu"] <= LUMEN_RANGE_HU[1]),
        "lumen_mae_vs_oracle": ([model["lumen_mae_hu"], oracle["lumen_mae_hu"]],
                                test["lumen_mae_vs_oracle"](model["lumen_mae_hu"] - oracle["lumen_mae_hu"])),
        "body_mae_vs_identity": ([model["body_mae_hu"], identity["body_mae_hu"]],
                                 test["body_mae_vs_identity"](model["body_mae_hu"] - identity["body_mae_hu"])),
        "max_diameter": (model["median_abs_max_diameter_error_mm"],
                         test["max_diameter"](model["median_abs_max_diameter_error_mm"])),
    }
    out = {name: {"rule": ACCEPTANCE[name], "value": value, "passed": bool(passed)} for name, (value, passed) in checks.items()}
    for name, interval in (intervals or {}).items():
        if name in out and interval.get("ci95"):
            out[name]["ci95"] = {k: interval[k] for k in ("figure", "statistic", "n", "ci95")}
            out[name]["settled"] = _settled(name, interval["ci95"], out[name]["passed"])
    return out


#: edges of the thrombus-burden bands of :func:`thrombus_bias_by_burden` (the phantoms draw U(0.35, 0.9)).
THROMBUS_BURDEN_EDGES = (0.6, 0.75)


def thrombus_bias_by_burden(cases: list[dict[str, Any]],
                            edges: Sequence[float] = THROMBUS_BURDEN_EDGES) -> list[dict[str, Any]]:
    """Mean thrombus bias (HU) of the model and the observer, the model's mean signed max-diameter
    error (mm), and the mean thrombus bias from lumen placement alone of the model and the shape
    observer (:mod:`.shape_observer`; cases without that figure count as missing), per band of the
    phantoms' thrombus burden.

    The burden (``case["thrombus_burden"]``, 0...1) is the share of the way from the sac's inner wall
    to a normal-sized lumen that the thrombus fills (``phantom_aorta``): at 0.9 the lumen is not much
    wider than a normal aorta's inside a wide sac. Cases without thrombus (burden ``None`` or a NaN
    bias) are left out. Returns ``[{"burden": [low, high], "n", "seeds", "model_thrombus_bias_hu",
    "observer_thrombus_bias_hu", "model_max_diameter_error_mm", "model_placement_thrombus_bias_hu",
    "shape_observer_placement_thrombus_bias_hu"}]`` for each band holding a case,
    lowest first (a positive diameter error: the lumen drawn too wide); the outer bands run
    from 0 and to 1 (a burden on an edge falls in the band above it).
    """
    bounds = [0.0, *edges, 1.0]
    bands: dict[int, list[dict[str, Any]]] = {}
    for case in cases:
        bias = case.get("model", {}).get("thrombus_bias_hu")
        if case.get("thrombus_burden") is not None and bias is not None and math.isfinite(bias):
            bands.setdefault(bisect.bisect_right(edges, case["thrombus_burden"]), []).append(case)
    return [{"burden": [bounds[k], bounds[k + 1]], "n": len(inside), "seeds": [c["seed"] for c in inside],
             **{f"{m}_thrombus_bias_hu": _mean_or_nan([c[m]["thrombus_bias_hu"] for c in inside])
                for m in ("model", "observer")},
             "model_max_diameter_error_mm": _mean_or_nan([c["model"].get("max_diameter_error_mm") for c in inside]),
             **{f"{m}_placement_thrombus_bias_hu": _mean_or_nan([c.get("placement_thrombus_bias_hu", {}).get(m) for c in inside])
                for m in ("model", "shape_observer")}}
            for k, inside in sorted(bands.items())]


def validate_model(
    model_id: str | None = None,
    seeds: Sequence[int] = DEFAULT_VALIDATION_SEEDS,
    device: str = "auto",
    size_xyz: Sequence[int] = (256, 256, 160),
    spacing_xyz_mm: Sequence[float] = (1.4, 1.4, 2.5),
    engine: Any = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Score a model on phantoms of ``seeds`` (identity / oracle / observer / model side by side).

    Returns:
        ``{"model": {...}, "seeds", "grid", "cases": [{seed, identity, oracle, observer, model, seconds}],
        "summary": {method: {metric: mean}}, "acceptance": {...}, "training_seed_overlap": [...],
        "thrombus_by_burden": [...], "placement_thrombus_bias_hu": {"model", "shape_observer"}}``; the
        last is the mean over the cases with thrombus of each case's ``placement_thrombus_bias_hu``.
        ``training_seed_overlap`` lists seeds also named in the card's training seeds (should be empty).
    """
    from DigitalContrastLib.synthesis.api import load_engine

    progress = progress or no_progress
    engine = engine or load_engine(model_id, device)
    train_seeds = set(engine.card.data.get("training", {}).get("train_seeds", []))
    cases = []
    for k, seed in enumerate(seeds):
        progress("validate", k, len(seeds))
        case = make_phantom(int(seed), size_xyz=tuple(size_xyz), spacing_xyz_mm=tuple(spacing_xyz_mm))
        nc, ref, labels = case.noncontrast.array, case.contrast.array, case.labels.array
        spacing = case.noncontrast.spacing_mm
        t0 = time.perf_counter()
        result = engine.synthesize(case.noncontrast)
        seconds = time.perf_counter() - t0
        cases.append({
            "seed": int(seed),
            "aneurysm": bool(case.params.get("aneurysm", {}).get("present", False)) if isinstance(case.params.get("aneurysm"), dict) else None,
            "lumen_hu_true": case.params.get("hu_contrast", {}).get("aortic_lumen"),
            "thrombus_burden": _thrombus_burden(case.params),
            "identity": case_metrics(nc, ref, nc, labels, spacing),
            "oracle": case_metrics(oracle_prediction(nc, labels), ref, nc, labels, spacing),
            "observer": case_metrics(observer_prediction(nc, labels, spacing), ref, nc, labels, spacing),
            "model": case_metrics(result.synthetic.array, ref, nc, labels, spacing),
            "placement_thrombus_bias_hu": _placement(case, result.synthetic.array),
            "seconds_synthesis": round(seconds, 2),
        })
    progress("validate", len(seeds), len(seeds))
    summary = summarize(cases)
    return {
        "model": {"id": engine.card.id, "version": engine.card.version, "weights_sha256": engine.card.weights_sha256},
        "device": engine.device,
        "seeds": [int(s) for s in seeds],
        "grid": {"size_xyz": list(size_xyz), "spacing_xyz_mm": list(spacing_xyz_mm)},
        "training_seed_overlap": sorted(train_seeds & {int(s) for s in seeds}),
        "cases": cases,
        "summary": summary,
        "acceptance": acceptance(summary, criterion_intervals(cases)),
        "thrombus_by_burden": thrombus_bias_by_burden(cases),
        "placement_thrombus_bias_hu": {m: _mean_or_nan([c["placement_thrombus_bias_hu"][m] for c in cases])
                                       for m in ("model", "shape_observer")},
    }


def _placement(case: Any, synthetic_hu: np.ndarray) -> dict[str, float]:
    """Thrombus bias (HU) from where the model and the shape observer put the lumen (:mod:`.shape_observer`)."""
    from DigitalContrastLib.evaluation.shape_observer import placement_beside_shape_observer

    labels = case.labels.array
    figures = placement_beside_shape_observer(
        case.noncontrast.array, case.contrast.array, synthetic_hu, labels == LABELS["aortic_lumen"],
        labels == LABELS["thrombus"], case.params["hu_contrast"]["thrombus"], case.params["blur"]["sigma_voxels"])
    return {"model": figures["prediction"], "shape_observer": figures["shape_observer"]}


def _thrombus_burden(params: dict[str, Any]) -> float | None:
    """The phantom's drawn thrombus burden (0...1), ``None`` without an aneurysm."""
    aneurysm = params.get("aneurysm")
    if not isinstance(aneurysm, dict) or not aneurysm.get("present"):
        return None
    return float(aneurysm["thrombus_burden"])


def pseudo_noncontrast(cta_hu: np.ndarray, lumen_mask: np.ndarray, seed: int = 0,
                       blood_hu: float = UNENHANCED_BLOOD_HU, noise_sd_hu: float | None = None) -> np.ndarray:
    """A real CTA with its aortic lumen replaced by unenhanced blood (``blood_hu`` plus noise), int16.

    The noise SD defaults to the image's own noise, estimated as the robust SD (1.4826 * MAD) of the
    difference between neighbouring voxels inside the lumen divided by sqrt(2).
    """
    cta = np.asarray(cta_hu)
    mask = np.asarray(lumen_mask, dtype=bool)
    if noise_sd_hu is None:
        inner = mask[:, :, 1:] & mask[:, :, :-1]
        diff = (cta[:, :, 1:].astype(np.float32) - cta[:, :, :-1].astype(np.float32))[inner]
        noise_sd_hu = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2)) if diff.size else 15.0
    rng = np.random.default_rng(seed)
    out = cta.astype(np.int16, copy=True)
    out[mask] = np.clip(np.rint(blood_hu + rng.normal(0.0, noise_sd_hu, int(mask.sum()))), -1024, 3071).astype(np.int16)
    return out


LEVEL_NAMES = ("inferior", "middle", "superior")


def lumen_medians_by_level(volume: CTVolume, mask: np.ndarray, images: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Medians (HU) of each image inside ``mask``, in three craniocaudal thirds of the mask.

    The slices (first array axis) that hold mask voxels are ordered by their LPS z (from the
    volume's origin, spacing and direction: inferior first) and cut into three runs of equal slice
    count. Per third: its name, LPS z range of its slice centres (mm), mask voxels and, for each
    ``images`` entry (name -> zyx array on the volume's grid), ``<name>_median_hu``.
    """
    slices = np.nonzero(mask.any(axis=(1, 2)))[0]
    if slices.size == 0:
        return []
    z_lps = volume.index_to_lps(np.stack([np.zeros_like(slices), np.zeros_like(slices), slices], 1).astype(float))[:, 2]
    ordered = slices[np.argsort(z_lps, kind="stable")]
    levels = []
    for name, part in zip(LEVEL_NAMES, np.array_split(ordered, len(LEVEL_NAMES))):
        if part.size == 0:
            continue
        region = np.zeros(mask.shape, dtype=bool)
        region[part] = mask[part]
        z_part = z_lps[np.isin(slices, part)]
        row: dict[str, Any] = {"level": name, "z_lps_mm": [float(z_part.min()), float(z_part.max())],
                               "voxels": int(region.sum())}
        for key, image in images.items():
            row[f"{key}_median_hu"] = float(np.median(np.asarray(image)[region]))
        levels.append(row)
    return levels


def realdata_check(cta_path: str | Path, mask_path: str | Path, model_id: str | None = None, device: str = "auto",
                   engine: Any = None) -> dict[str, Any]:
    """Pseudo non-contrast from a real CTA -> synthesis -> lumen median (and the real one) inside the mask.

    ``by_level`` repeats the real and synthetic medians in three craniocaudal thirds of the mask
    (:func:`lumen_medians_by_level`): where along the aorta a miss lies, and how enhanced the real
    scan itself is there.
    """
    from DigitalContrastLib.synthesis.api import load_engine

    engine = engine or load_engine(model_id, device)
    cta = read_volume(cta_path)
    mask_volume = read_volume(mask_path)
    mask = np.asarray(mask_volume.array) > 0
    pseudo = cta.with_array(pseudo_noncontrast(cta.array, mask))
    result = engine.synthesize(pseudo)
    synthetic = result.synthetic.array
    median = float(np.median(synthetic[mask]))
    return {
        "input": str(cta_path),
        "mask": str(mask_path),
        "mask_voxels": int(mask.sum()),
        "real_lumen_median_hu": float(np.median(np.asarray(cta.array)[mask])),
        "pseudo_noncontrast_lumen_median_hu": float(np.median(pseudo.array[mask])),
        "synthetic_lumen_median_hu": median,
        "synthetic_lumen_mae_hu": float(np.mean(np.abs(synthetic[mask].astype(np.float32) - np.asarray(cta.array)[mask]))),
        "by_level": lumen_medians_by_level(cta, mask, {"real": cta.array, "synthetic": synthetic}),
        "passed": LUMEN_RANGE_HU[0] <= median <= LUMEN_RANGE_HU[1],
        "rule": "synthetic aortic lumen median inside 250-450 HU",
        "model": {"id": engine.card.id, "version": engine.card.version},
    }


def chest_check(seeds: Sequence[int], engine: Any, size_xyz: Sequence[int] = (256, 256, 160),
                spacing_xyz_mm: Sequence[float] = (1.4, 1.4, 2.5),
                progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Aortic lumen medians (HU) on chest-field phantoms of ``seeds`` (never used in training).

    Per case, inside the aortic lumen label above the right diaphragmatic dome (the thoracic aorta:
    descending, arch, ascending) and below it (abdominal aorta): the synthetic median from the
    phantom's non-contrast scan; the synthetic median from a pseudo non-contrast scan made like the
    real-anatomy check (the contrast scan with the lumen replaced by unenhanced blood, every other
    structure left enhanced); and the true contrast median. Passed when every case's thoracic
    median from the non-contrast scan lies inside 250-450 HU.
    """

    progress = progress or no_progress
    cases = []
    for k, seed in enumerate(seeds):
        progress("chest", k, len(seeds))
        case = make_phantom(int(seed), size_xyz=tuple(size_xyz), spacing_xyz_mm=tuple(spacing_xyz_mm),
                            center_z_mm=CHEST_CENTER_Z_MM)
        labels = np.asarray(case.labels.array)
        lumen = labels == LABELS["aortic_lumen"]
        z_mm = case.labels.origin_mm[2] + case.labels.spacing_mm[2] * np.arange(labels.shape[0])
        thoracic = lumen & (z_mm > case.params["chest"]["z_chest_mm"])[:, None, None]
        contrast = np.asarray(case.contrast.array)
        synthetic = np.asarray(engine.synthesize(case.noncontrast).synthetic.array)
        pseudo = case.contrast.with_array(pseudo_noncontrast(contrast, lumen, seed=int(seed)))
        from_pseudo = np.asarray(engine.synthesize(pseudo).synthetic.array)
        cases.append({
            "seed": int(seed),
            "thoracic_lumen_voxels": int(thoracic.sum()),
            "synthetic_thoracic_lumen_median_hu": float(np.median(synthetic[thoracic])),
            "synthetic_abdominal_lumen_median_hu": float(np.median(synthetic[lumen & ~thoracic])),
            "pseudo_noncontrast_thoracic_lumen_median_hu": float(np.median(from_pseudo[thoracic])),
            "true_thoracic_lumen_median_hu": float(np.median(contrast[thoracic])),
        })
    progress("chest", len(seeds), len(seeds))
    thoracic_medians = [c["synthetic_thoracic_lumen_median_hu"] for c in cases]
    return {
        "seeds": [int(s) for s in seeds],
        "center_z_mm": CHEST_CENTER_Z_MM,
        "cases": cases,
        "min_thoracic_lumen_median_hu": float(min(thoracic_medians)) if cases else float("nan"),
        "max_thoracic_lumen_median_hu": float(max(thoracic_medians)) if cases else float("nan"),
        "median_pseudo_noncontrast_thoracic_lumen_median_hu":
            float(np.median([c["pseudo_noncontrast_thoracic_lumen_median_hu"] for c in cases])) if cases else float("nan"),
        "passed": bool(cases) and all(LUMEN_RANGE_HU[0] <= m <= LUMEN_RANGE_HU[1] for m in thoracic_medians),
        "rule": "synthetic thoracic aortic lumen median inside 250-450 HU on every chest phantom",
    }


def write_validation_to_card(card: Any, report: dict[str, Any]) -> Path:
    """Store a validation report in the card's ``validation`` section (weights untouched), atomically."""
    import json

    from DigitalContrastLib.evaluation.metrics import LUMEN_THRESHOLD_HU
    from DigitalContrastLib.evaluation.shape_observer import EVIDENCE_CLIP_HU
    from DigitalContrastLib.models.cards import load_card, validate_card_data

    data = json.loads(card.path.read_text(encoding="utf-8"))
    during = data.get("validation", {}).get("during_training")
    data["validation"] = {
        "seeds": report["seeds"],
        "grid": report["grid"],
        "training_seed_overlap": report["training_seed_overlap"],
        "summary": report["summary"],
        "acceptance": report["acceptance"],
        "thrombus_by_burden": report.get("thrombus_by_burden", []),
        "placement_thrombus_bias_hu": report.get("placement_thrombus_bias_hu", {}),
        "cases": [{k: v for k, v in c.items()} for c in report["cases"]],
        "command": f"digital-contrast validate --model {card.id} --seed-start {min(report['seeds'])} "
                   f"--count {len(report['seeds'])}" + (" --realdata CTA MASK" if "realdata" in report else "")
                   + (f" --chest-seed-start {min(report['chest']['seeds'])} --chest-count {len(report['chest']['seeds'])}"
                      if report.get("chest", {}).get("seeds") else "")
                   + " --write-card",
        "methods": {
            "identity": "the non-contrast scan as the prediction",
            "oracle": f"the non-contrast scan with the true aortic lumen (labels) set to {ORACLE_LUMEN_HU:g} HU",
            "observer": (f"intensity observer: told the true aortic sac and the lumen and thrombus median NC HU, it smooths "
                         f"the NC inside the sac (Gaussian {OBSERVER_SIGMA_MM:g} mm) and sets voxels nearer the lumen "
                         f"median to {ORACLE_LUMEN_HU:g} HU (how far NC intensity alone separates lumen from thrombus)"),
            "model": "the synthetic CTA",
            "placement_thrombus_bias_hu": (
                "thrombus bias caused by where the lumen is put alone: the lumen (the model's: "
                f">= {LUMEN_THRESHOLD_HU:g} HU inside the true sac) drawn the way the phantom draws its arterial phase and added to the real contrast scan (0 HU for "
                "the true lumen); shape_observer: told the sac and the lumen and thrombus median NC HU, it fits the "
                f"lumen as the maximum-likelihood disk on each slice, each voxel's evidence clipped to "
                f"+-{EVIDENCE_CLIP_HU:g} HU"),
        },
    }
    if "realdata" in report:
        data["validation"]["realdata"] = report["realdata"]
    if "chest" in report:
        data["validation"]["chest"] = report["chest"]
    if during:
        data["validation"]["during_training"] = during
    data = jsonable(data)
    validate_card_data(data, str(card.path))
    atomic_write_text(card.path, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
    return load_card(card.path).path
