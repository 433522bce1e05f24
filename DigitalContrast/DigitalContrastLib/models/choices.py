"""What the module panel offers: the installed models with their cards, and the devices found.

Both are computed without torch in this process: models from the model search path
(``models.cards``: cards are JSON), devices from the worker's ``--probe`` answer (its ``hello``
message), so the Slicer GUI never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from DigitalContrastLib.common.errors import MissingPackageError

from .cards import DEFAULT_MODEL_ID, discover_models


@dataclass(frozen=True)
class ModelChoice:
    """One installed model as the panel lists it.

    Attributes:
        model_id: what the job names (``"aorta-phantom-v1"``).
        label: the combo box text (``"aorta-phantom-v1 1.0.0 (aorta)"``).
        card_text: the card for a tooltip / info box: title, version, IFU, intended use,
            limitations, licence, where it was found.
        problem: why it cannot be used (weights missing or checksum wrong), else None.
    """

    model_id: str
    label: str
    card_text: str
    problem: str | None = None


def card_text(data: Mapping[str, Any], folder: str = "") -> str:
    """A model card as plain text for a tooltip or an information box."""
    lines = [f"{data.get('title', data.get('id', 'model'))}",
             f"Model {data.get('id', '?')} version {data.get('version', '?')}, intended use: {data.get('ifu', '?')}"]
    if data.get("intended_use"):
        lines += ["", "Intended use: " + " ".join(str(data["intended_use"]).split())]
    limitations = data.get("limitations") or []
    if limitations:
        lines += ["", "Limitations:"] + [f"  - {item}" for item in limitations]
    if data.get("licence"):
        licence = data["licence"]
        lines += ["", "Licence: " + (licence if isinstance(licence, str) else str(licence.get("name", licence)))]
    if folder:
        lines += ["", f"Folder: {folder}"]
    return "\n".join(lines)


def default_model_id() -> str:
    """The id the worker runs when no model is named."""
    return DEFAULT_MODEL_ID


def available_models(verify: bool = False) -> tuple[list[ModelChoice], str | None]:
    """The models on the search path (``models.discover_models``), and a note when there are none.

    ``verify`` also checks each model's weights checksum (reads the weights: slower).
    Returns ``([], note)`` when the cards cannot be checked yet (a package to install first: the note says which).
    """
    try:
        inventory = discover_models()
    except MissingPackageError as error:  # a stock Slicer before the first install: say so, list again after
        return [], error.message
    choices = []
    for model_id, card in inventory.models.items():
        problem = None
        if verify:
            summary = card.summary(verify=True)
            problem = None if summary.get("verified") else summary.get("problem")
        label = f"{model_id} {card.version} ({card.ifu})"
        choices.append(ModelChoice(model_id, label, card_text(card.data, str(card.folder)), problem))
    note = None
    if not choices:
        note = "No model found; searched " + ", ".join(inventory.searched) + "."
    if inventory.invalid:
        note = ((note + " ") if note else "") + "Unusable model folders: " + "; ".join(
            f"{bad['path']}: {bad['problem']}" for bad in inventory.invalid)
    return choices, note


def device_text(hello: Mapping[str, Any] | None) -> str:
    """What the worker's probe found, in one line (``hello`` from ``worker.process.probe_worker``)."""
    if not hello:
        return "not probed yet"
    torch_info = hello.get("torch") or {}
    device = hello.get("device") or {}
    if not torch_info.get("installed"):
        return "PyTorch is not installed yet (it is installed on first Apply); CPU: " + str(device.get("name", "?"))
    if not torch_info.get("imported"):
        return f"PyTorch {torch_info.get('installed')} does not load ({torch_info.get('error', 'unknown error')})"
    version = torch_info.get("version", "?")
    if device.get("kind") == "cuda":
        free_gb = float(device.get("free_memory_mb") or 0) / 1024
        total_gb = float(device.get("total_memory_mb") or 0) / 1024
        return f"GPU: {device.get('name', '?')} ({free_gb:.1f} of {total_gb:.1f} GB free), PyTorch {version}"
    cuda = " (a CUDA build, but no usable GPU)" if torch_info.get("cuda") else " (CPU build)"
    return f"CPU only: {device.get('name', '?')}, PyTorch {version}{cuda}"
