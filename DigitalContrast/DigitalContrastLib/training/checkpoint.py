"""Training checkpoints: model + AdamW state as safetensors (no pickle) and the history as JSON.

Both live in ``<out_dir>/training/`` (:func:`checkpoint_paths`); ``--resume`` continues from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.json_values import jsonable
from DigitalContrastLib.models.weights import (
    load_unverified,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    save_state_dict,
)

from .config import TrainConfig

CHECKPOINT_DIR = "training"
CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.json"


def checkpoint_paths(out_dir: Path) -> tuple[Path, Path]:
    """The checkpoint (safetensors) and history (JSON) files of a run writing to ``out_dir``."""
    folder = out_dir / CHECKPOINT_DIR
    return folder / CHECKPOINT_FILE, folder / HISTORY_FILE


def save_checkpoint(out_dir: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                    config: TrainConfig, history: list[dict[str, Any]], parent: dict[str, Any] | None = None) -> Path:
    """Model + optimizer state as safetensors (no pickle) and the history as JSON, atomically.

    ``parent`` (the model a fine-tuning started from, see :func:`.parent.initial_weights`) is kept in the
    checkpoint's metadata, so a resumed run still names it in its card.
    """
    path, history_path = checkpoint_paths(out_dir)
    tensors = {f"model.{k}": v for k, v in network.state_dict().items()}
    optim_tensors, optim_json = optimizer_state_to_tensors(optimizer.state_dict())
    tensors.update(optim_tensors)
    save_state_dict(tensors, path, metadata={
        "epoch": str(epoch), "step": str(step), "optimizer": optim_json, "config": json.dumps(config.to_json()),
        **({"initialised_from": json.dumps(parent)} if parent else {}),
    })
    # strict JSON: a region no validation case has (NaN) is written as null
    atomic_write_text(history_path, json.dumps(jsonable(history), indent=1, allow_nan=False) + "\n")
    return path


def load_checkpoint(out_dir: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, int, list]:
    """Restore a checkpoint; returns ``(epoch done, global step, history)``."""
    path, history_path = checkpoint_paths(out_dir)
    tensors, metadata = load_unverified(path)
    network.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(optimizer_state_from_tensors(tensors, metadata["optimizer"]))
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return int(metadata["epoch"]), int(metadata["step"]), history


def checkpoint_parent(out_dir: Path) -> dict[str, Any] | None:
    """The model the checkpointed run started from (``None``: random weights)."""
    path, _ = checkpoint_paths(out_dir)
    _, metadata = load_unverified(path)
    return json.loads(metadata["initialised_from"]) if "initialised_from" in metadata else None
