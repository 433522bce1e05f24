"""The model card a training writes: its template (network, input, inference) and the record of the run.

:func:`card_template` is filled before the first epoch (the engine settings of the validation come
from it); :func:`record_training` adds the training and validation record after the last one.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from DigitalContrastLib.common.hardware import available_cpu_cores
from DigitalContrastLib.models.network import count_parameters
from DigitalContrastLib.synthesis.settings import DEFAULT_MAX_WINDOW_VOXELS

from .cases import TrainingData, phantom_seeds
from .config import TrainConfig
from .datasheet import data_sheet, training_signature


def card_template(config: TrainConfig, network_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A model card for ``config`` (weights, training and validation filled in later)."""
    return {
        "schema_version": 1,
        "id": config.model_id,
        "version": config.version,
        "ifu": config.ifu,
        "title": config.title,
        "network": {"class": "UNet", "kwargs": network_kwargs},
        "input": {
            "clip_hu": list(config.clip_hu),
            "offset_hu": config.offset_hu,
            "scale_hu": config.scale_hu,
            "target_spacing_xyz_mm": list(config.target_spacing_xyz_mm),
            "body_threshold_hu": config.body_threshold_hu,
        },
        "output": {"kind": "residual_hu", "scale_hu": config.output_scale_hu},
        "inference": {
            "roi_size_zyx": list(config.inference_roi_zyx),
            "overlap": config.inference_overlap,
            "blend_mode": "gaussian",
            "sigma_scale": 0.125,
            "sw_batch_size": config.inference_sw_batch_size,
            "precision": {"cpu": "bf16-if-supported", "cuda": "autocast"},
            "skip_empty_windows": True,
            "max_window_voxels": DEFAULT_MAX_WINDOW_VOXELS,
            "prediction": config.inference_prediction,
            "uncertainty": "flip-tta",
        },
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64, "size_bytes": 1},
        "training": {"command": config.command or "(not recorded)", "data": dict(config.data_description)},
        "validation": {},
        "intended_use": (
            "Demonstrates the DigitalContrast pipeline: turns a non-contrast CT of the abdomen or chest into a "
            "synthetic arterial-phase CT angiogram of the aorta, for software testing, teaching and research on "
            "procedural phantoms. Not for clinical use: it was trained only on procedural phantoms, never on patient "
            "scans."
        ),
        "limitations": [
            "Trained on procedural phantoms only (the fields of view its training data held); real anatomy, "
            "pathology, implants and scanners differ.",
            "Predicts the average enhancement: the true bolus level (250-450 HU) of a given scan cannot be known from "
            "a non-contrast CT.",
            "Smooths image noise inside enhancing structures (L1 training against a target with independent noise).",
            "Not validated on patient data; must not be used for diagnosis or treatment decisions.",
        ],
        "licence": "Apache-2.0 (weights and card)",
        "energy": "",
    }


def network_kwargs_for(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of MONAI's ``UNet`` for ``config`` (as written to ``network.kwargs``)."""
    return {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 1,
        "channels": list(config.channels),
        "strides": list(config.strides),
        "num_res_units": config.num_res_units,
        "norm": config.norm,
    }


def record_training(card: dict[str, Any], config: TrainConfig, network: torch.nn.Module, data: TrainingData, steps: int,
                    precision: str, seconds: float, history: list[dict[str, Any]],
                    parent: dict[str, Any] | None) -> None:
    """Fill ``card`` (from :func:`card_template`) in place with the record of a finished run.

    Args:
        steps: optimiser steps done in all, resumed runs included.
        precision: the training precision used (``"bf16-autocast"`` or ``"fp32"``).
        seconds: wall time of the whole run, earlier (resumed) parts included.
        history: one entry per epoch; the last one's ``val_*`` figures become ``validation.during_training``.
        parent: identity of the model the run started from (``training.initialised_from``), or ``None``.
    """
    card["network"]["parameters"] = count_parameters(network)
    card["network"]["weights_stored_as"] = config.weights_dtype
    card["training"].update({
        "train_seeds": phantom_seeds(data.case_dirs),
        "validation_seeds": phantom_seeds(data.validation_dirs),
        "data": {**config.data_description, "train_cases": [p.name for p in data.case_dirs],
                 "validation_cases": [p.name for p in data.validation_dirs], "validation_note": data.validation_note},
        "config": config.to_json(),
        "epochs": config.epochs,
        "steps": steps,
        "patches_seen": steps * config.batch_size,
        "precision": precision,
        "seconds": round(seconds, 1),
        "hardware": f"{platform.processor() or platform.machine()}, {available_cpu_cores()} CPU cores, torch {torch.__version__}",
        "history": history,
    })
    if parent is not None:
        card["training"]["initialised_from"] = parent
    sheet = data_sheet(data.cases)
    if sheet is not None:
        card["training"]["data_sheet"] = sheet
        _site_intended_use(card, sheet, parent)
    signature = training_signature(data.cases, config.ood_alpha, config.target_spacing_xyz_mm,
                                   f"the {len(data.cases)} training cases of {config.data_dir}")
    if signature is not None:
        card["ood"] = signature
    last = history[-1] if history else {}
    card["validation"] = {
        "during_training": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        "note": "Scored on the validation cases after the last epoch; 'digital-contrast validate' gives the full table.",
    }
    cpu_hours = seconds * available_cpu_cores() / 3600
    card["energy"] = (
        f"Training took {cpu_hours:.2f} CPU-core-hours; at an assumed 15 W per busy core that is about "
        f"{cpu_hours * 15:.0f} Wh (estimate from wall time, no power meter). One CPU synthesis of a 512x512x300 CT takes "
        "a few seconds, well under 0.1 Wh."
    )


def _site_intended_use(card: dict[str, Any], sheet: dict[str, Any], parent: dict[str, Any] | None) -> None:
    """A model trained on a site's own pairs says so in its intended use and limitations."""
    start = f"fine-tuned from {parent['id']} {parent['version']} on" if parent else "trained on"
    card["intended_use"] = (
        f"Research use at the site whose data it was {start}: {sheet['patients']} patients ({sheet['cases']} paired "
        "non-contrast CT and CT angiogram cases, prepared by 'digital-contrast prepare'). Turns a non-contrast CT of the "
        "same protocol into a synthetic CT angiogram of the aorta. Not for clinical use until validated for it; "
        "inputs unlike these cases are flagged (out-of-distribution warning).")
    card["limitations"] = [
        f"Trained on {sheet['patients']} patients of one site; other scanners, protocols and populations differ.",
        "Its targets are registered contrast scans: residual misregistration, bolus timing and noise of those scans "
        "are in what it learned.",
        "Predicts the average enhancement of the training cases: the bolus level of a given scan cannot be known "
        "from a non-contrast CT.",
        "Must not be used for diagnosis or treatment decisions without a clinical validation.",
    ]
