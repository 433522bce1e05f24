"""Cross-validation on a site's prepared cases: ``validate --cases CASES --folds K``.

The cases are split by patient (:mod:`.folds`). For each fold the model is either

* **retrained** with a finished model's recipe (its card's ``training.config``: the same network,
  options and starting model, ``--epochs``/``--steps-per-epoch`` may shorten it) on the other
  folds' cases, in ``WORK/fold-K/`` (a fold whose model is already there with the same recipe is
  kept: the run resumes); or
* **taken as given** (``--model``: a model that never saw these cases, e.g. the shipped one).

Each held-out case is synthesized by the fold's model and by the **starting model** (the one the
recipe fine-tunes from), and scored with the non-contrast scan itself (**identity**) beside them
against the registered contrast scan: body MAE, PSNR and SSIM (SynthRAD definitions, body of the
non-contrast scan), MAE and bias inside the enhancement mask, the lumen Dice at 150 HU in its vessel
region (:mod:`DigitalContrastLib.evaluation.mask_metrics`), and whether the input warns as unlike the
model's training data. Means carry 95 % bootstrap intervals over **patients** (a patient's cases
averaged first, 2000 resamples, seeded), and so do the paired differences of the model against
the starting model and against identity: the model beats the starting model on a figure when the
whole interval of the difference lies on the better side.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress

from .folds import assign_folds, patient_of

#: Figures summarised, with the better direction (-1: lower is better).
FIGURES = {"body_mae_hu": -1, "body_psnr_db": 1, "body_ssim": 1, "mask_mae_hu": -1, "mask_bias_hu": 0,
           "vessel_mae_hu": -1, "lumen_dice": 1}
METHODS = ("identity", "starting", "model")


def _engine(model: str, device: str):
    from DigitalContrastLib.synthesis.api import load_engine

    return load_engine(model, device)


def fold_config(recipe: dict[str, Any], cases_dir: Path, train_names: Sequence[str], out_dir: Path,
                epochs: int | None, steps_per_epoch: int | None, command: str):
    """The TrainConfig of one fold: the recipe's, on the fold's training cases, written to ``out_dir``."""
    from .config import TrainConfig

    config = TrainConfig.from_json(recipe)
    return replace(config, data_dir=str(cases_dir), out_dir=str(out_dir), val_dir=None, case_names=tuple(train_names),
                   epochs=int(epochs or config.epochs), steps_per_epoch=int(steps_per_epoch or config.steps_per_epoch),
                   model_id=f"{config.model_id}-cv", command=command)


def _fold_model(config, log: Callable[[str], None]) -> Path:
    """Train one fold (or keep its finished model when the recipe and cases match); returns the model folder."""
    from DigitalContrastLib.models.cards import load_card
    from DigitalContrastLib.common.errors import ModelError

    from .loop import train

    out = Path(config.out_dir)
    try:
        done = load_card(out).data["training"]["config"]
    except (ModelError, KeyError):
        done = None
    if done is not None:
        if {k: v for k, v in done.items() if k != "command"} == {k: v for k, v in config.to_json().items() if k != "command"}:
            log(f"{out.name}: kept (trained earlier with the same recipe and cases)")
            return out
        shutil.rmtree(out)  # another recipe or other cases: its checkpoint must not be resumed
    train(config, resume=True, log=log)
    return out


def _score_case(folder: Path, engines: dict[str, Any]) -> dict[str, Any]:
    """Every method's figures on one held-out case, and the OOD record of each model."""
    from DigitalContrastLib.ct.io import read_volume
    from DigitalContrastLib.ct.masks import body_mask_from_ct
    from DigitalContrastLib.ct.paired_case import CASE_FILES, ENHANCEMENT_FILE
    from DigitalContrastLib.evaluation.mask_metrics import mask_metrics
    from DigitalContrastLib.evaluation.metrics import body_metrics
    from DigitalContrastLib.synthesis.ood import assess_volume

    nc = read_volume(folder / CASE_FILES["noncontrast"])
    real = read_volume(folder / CASE_FILES["contrast"])
    mask = read_volume(folder / ENHANCEMENT_FILE).array
    body = body_mask_from_ct(nc.array)
    predictions = {"identity": nc.array}
    ood = {}
    for name, engine in engines.items():
        predictions[name] = engine.synthesize(nc).synthetic.array
        ood[name] = assess_volume(nc, engine.card.data)
    scores = {name: {**body_metrics(pred, real.array, body), **mask_metrics(pred, real.array, nc.array, mask)}
              for name, pred in predictions.items()}
    return {"case_id": folder.name, "patient_key": patient_of(folder), "scores": scores,
            "ood": {k: {f: v.get(f) for f in ("judged", "warning", "distance", "threshold")} for k, v in ood.items()}}


def _by_patient(cases: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> list[float]:
    """Per patient, the mean of ``value`` over its cases (finite values only)."""
    groups: dict[str, list[float]] = {}
    for case in cases:
        v = value(case)
        if v is not None and np.isfinite(v):
            groups.setdefault(case["patient_key"], []).append(float(v))
    return [float(np.mean(v)) for v in groups.values()]


def summarize(cases: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Means with patient-bootstrap CIs per method, and the paired differences of ``model``."""
    from DigitalContrastLib.evaluation.stats import bootstrap_ci

    def stat(values: list[float]) -> dict[str, Any]:
        ci = bootstrap_ci(values, "mean")
        return {"n_patients": len(values), "mean": float(np.mean(values)) if values else None,
                "ci95": list(ci) if ci else None}

    out: dict[str, Any] = {"methods": {}, "differences": {}}
    for method in methods:
        out["methods"][method] = {f: stat(_by_patient(cases, lambda c, f=f, m=method: c["scores"][m].get(f)))
                                  for f in FIGURES}
    for base in (m for m in methods if m != "model"):
        table = {}
        for figure, better in FIGURES.items():
            if better == 0:
                continue
            d = stat(_by_patient(cases, lambda c, f=figure, b=base: c["scores"]["model"].get(f) - c["scores"][b].get(f)))
            ci = d["ci95"]
            d["better"] = bool(ci and (ci[1] < 0 if better < 0 else ci[0] > 0))
            d["worse"] = bool(ci and (ci[0] > 0 if better < 0 else ci[1] < 0))
            table[figure] = d
        out["differences"][f"model_minus_{base}"] = table
    warned = [c["case_id"] for c in cases if (c["ood"].get("model") or {}).get("warning")]
    out["ood_held_out"] = {"cases": len(cases), "warned": warned,
                           "rule": "held-out cases against their fold model's training-data signature"}
    return out


def cross_validate(cases_dir: str | Path, folds: int, *, recipe_model: str | None = None, model: str | None = None,
                   work_dir: str | Path | None = None, epochs: int | None = None, steps_per_epoch: int | None = None,
                   fold_seed: int = 0, device: str = "auto", command: str = "",
                   progress: ProgressCallback | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the cross-validation (see the module docstring); returns the report (JSON-able).

    Exactly one of ``recipe_model`` (retrain its recipe per fold) and ``model`` (score it) is given.

    Raises:
        JobError: both or neither model, a recipe without a training config, too few patients.
        InputError: no prepared cases in ``cases_dir``.
        ModelError: a model that is not installed.
    """
    from DigitalContrastLib.common.errors import InputError
    from DigitalContrastLib.ct.paired_case import ENHANCEMENT_FILE
    from DigitalContrastLib.models.cards import resolve_model

    from .cases import find_cases

    progress = progress or no_progress
    log = log or (lambda line: None)
    if (recipe_model is None) == (model is None):
        raise JobError("give --recipe MODEL (retrain that model's recipe on each fold) or --model MODEL (score it on "
                       "each fold), not both and not neither.")
    cases_dir = Path(cases_dir)
    case_dirs = [p for p in find_cases(cases_dir) if (p / ENHANCEMENT_FILE).is_file()]
    if not case_dirs:
        raise InputError(f"{cases_dir} holds no prepared cases (folders with enhancement.nrrd); run "
                         "'digital-contrast prepare' first.", code="no_data")
    split = assign_folds(case_dirs, folds, fold_seed)
    card = resolve_model(recipe_model or model)
    recipe = card.data.get("training", {}).get("config") if recipe_model else None
    if recipe_model and not recipe:
        raise JobError(f"{card.id} {card.version} records no training config in its card; give a model trained by "
                       "'digital-contrast train' as --recipe.")
    starting_id = (recipe or {}).get("init_from") or None
    engines = {"starting": _engine(starting_id, device)} if starting_id else {}
    work = Path(work_dir) if work_dir else cases_dir / "cross-validation"
    started = time.perf_counter()
    scored: list[dict[str, Any]] = []
    fold_models = []
    for k, held_out in enumerate(split):
        progress("folds", k, len(split))
        train_names = [p.name for p in case_dirs if p.name not in held_out]
        if recipe is not None:
            config = fold_config(recipe, cases_dir, train_names, work / f"fold-{k + 1}", epochs, steps_per_epoch, command)
            folder = _fold_model(config, log)
            fold_engine = _engine(str(folder), device)
        else:
            fold_engine = _engine(model, device)
        fold_models.append({"fold": k + 1, "model": fold_engine.card.id, "weights_sha256": fold_engine.card.weights_sha256,
                            "train_cases": len(train_names), "held_out": held_out})
        for name in held_out:
            case = _score_case(cases_dir / name, {**engines, "model": fold_engine})
            case["fold"] = k + 1
            scored.append(case)
            log(f"fold {k + 1}: {name} mask MAE identity {case['scores']['identity']['mask_mae_hu']:.1f}"
                + (f", starting {case['scores']['starting']['mask_mae_hu']:.1f}" if "starting" in case["scores"] else "")
                + f", model {case['scores']['model']['mask_mae_hu']:.1f} HU")
    progress("folds", len(split), len(split))
    methods = [m for m in METHODS if m in scored[0]["scores"]]
    trained_on = set(card.data.get("training", {}).get("data", {}).get("train_cases", [])) if model else set()
    return {
        "cases_dir": str(cases_dir),
        "folds": len(split),
        "fold_seed": fold_seed,
        "split": {f"fold-{k + 1}": names for k, names in enumerate(split)},
        "patients": len({c["patient_key"] for c in scored}),
        "mode": "retrained per fold with the recipe of " + f"{card.id} {card.version}" if recipe else
                f"{card.id} {card.version} scored as given",
        "recipe_model": {"id": card.id, "version": card.version, "weights_sha256": card.weights_sha256} if recipe else None,
        "starting_model": ({"id": engines["starting"].card.id, "version": engines["starting"].card.version,
                            "weights_sha256": engines["starting"].card.weights_sha256} if engines else None),
        "training_case_overlap": sorted(trained_on & {c["case_id"] for c in scored}),
        "epochs_override": epochs, "steps_per_epoch_override": steps_per_epoch,
        "fold_models": fold_models,
        "cases": scored,
        "summary": summarize(scored, methods),
        "statistics": "means over patients (a patient's cases averaged first); 95% percentile bootstrap over "
                      "patients (2000 resamples, seeded)",
        "seconds": round(time.perf_counter() - started, 1),
        "command": command,
    }


def write_cross_validation_to_card(card: Any, report: dict[str, Any]) -> Path:
    """Store the cross-validation in the card (``validation.cross_validation``, and the fold split in the
    data sheet), atomically; the weights are untouched."""
    from DigitalContrastLib.common.atomic import atomic_write_text
    from DigitalContrastLib.common.json_values import jsonable
    from DigitalContrastLib.models.cards import load_card, validate_card_data

    data = json.loads(card.path.read_text(encoding="utf-8"))
    data.setdefault("validation", {})["cross_validation"] = {k: v for k, v in report.items() if k != "cases"} | {
        "cases": [{k: c[k] for k in ("case_id", "fold", "scores", "ood")} for c in report["cases"]]}
    sheet = data.get("training", {}).get("data_sheet")
    if isinstance(sheet, dict):
        sheet["folds"] = report["split"]
    data = jsonable(data)
    validate_card_data(data, str(card.path))
    atomic_write_text(card.path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return load_card(card.path).path
