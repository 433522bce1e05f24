"""Installed models: model cards, their JSON schema, and the model search path.

A model is a folder holding ``model_card.json`` (validated against ``model_card.schema.json``,
shipped beside this module) and one ``.safetensors`` weights file named by the card.

Search path, in order (an earlier entry wins when two folders hold the same model id; the
duplicate is reported, never silently used):

1. the shipped ``model_weights/`` folder: ``<repo>/model_weights`` in a source checkout, or
   ``<scripted modules dir>/model_weights`` in an installed Slicer extension;
2. the per-user folder: ``$XDG_DATA_HOME/DigitalContrast/models`` (default
   ``~/.local/share/DigitalContrast/models``) on Linux, ``%LOCALAPPDATA%\\DigitalContrast\\models``
   on Windows, ``~/Library/Application Support/DigitalContrast/models`` on macOS;
3. every folder in ``$DIGITALCONTRAST_MODEL_PATH`` (``os.pathsep``-separated), in order.

Each search folder holds one sub-folder per model (``<folder>/<model-id>/model_card.json``); a
folder that itself holds a ``model_card.json`` is accepted too.

Nothing here imports torch: listing and verifying models works in the Slicer GUI process.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import ModelError, require_package
from DigitalContrastLib.common.paths import MODULE_DIR

from .weights import WeightsFile, save_state_dict, verify_weights_file

DEFAULT_MODEL_ID = "aorta-phantom-v1"
CARD_FILE = "model_card.json"
SCHEMA_FILE = Path(__file__).with_name("model_card.schema.json")
MODEL_PATH_ENV = "DIGITALCONTRAST_MODEL_PATH"


# --------------------------------------------------------------------------- the card
@dataclass
class ModelCard:
    """A validated model card and where it was found.

    Attributes:
        path: the ``model_card.json`` file.
        data: the card's content (validated against the schema).
        source: which search-path entry it came from (``"shipped"``, ``"user"``, ``"env"``,
            or ``"explicit"`` for a folder given directly).
    """

    path: Path
    data: dict[str, Any]
    source: str = "explicit"

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def ifu(self) -> str:
        return self.data["ifu"]

    @property
    def weights_path(self) -> Path:
        return self.folder / self.data["weights"]["file"]

    @property
    def weights_sha256(self) -> str:
        return self.data["weights"]["sha256"]

    @property
    def weights(self) -> WeightsFile:
        """The weights file with the checksum and size this card expects."""
        return WeightsFile(self.weights_path, self.weights_sha256, int(self.data["weights"]["size_bytes"]), str(self.path))

    @property
    def intended_use_summary(self) -> str:
        """The first sentence of the intended use (a one-liner for listings)."""
        text = " ".join(self.data["intended_use"].split())
        end = text.find(". ")
        return text if end < 0 else text[: end + 1]

    def summary(self, verify: bool = True) -> dict[str, Any]:
        """Id, version, IFU, folder, source, checksum state and the intended-use one-liner."""
        out: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "ifu": self.ifu,
            "title": self.data["title"],
            "folder": str(self.folder),
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "intended_use": self.intended_use_summary,
        }
        if verify:
            try:
                verify_weights_file(self.weights)
                out["verified"] = True
            except ModelError as error:
                out["verified"] = False
                out["problem"] = error.message
        return out


@functools.lru_cache(maxsize=1)
def card_schema() -> dict[str, Any]:
    """The model card JSON schema shipped with the package."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate_card_data(data: Any, where: str) -> None:
    """Raise :class:`ModelError` (one sentence naming ``where`` and the field) if ``data`` is invalid.

    Raises :class:`~DigitalContrastLib.common.errors.MissingPackageError` where jsonschema is not
    installed yet (a stock 3D Slicer before the module's first install).
    """
    jsonschema = require_package("jsonschema", "jsonschema", "Checking model cards")

    validator = jsonschema.Draft202012Validator(card_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    field_path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        # "'weights' is a required property": name the missing field itself
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        field_path = "/".join(p for p in (field_path, missing) if p)
    field_name = field_path or "(top level)"
    raise ModelError(
        f"Model card {where} is invalid at field '{field_name}': {error.message}; "
        "fix the card or reinstall the model.",
        code="invalid_card",
    )


def load_card(path: str | os.PathLike, source: str = "explicit") -> ModelCard:
    """Read and validate a model card (``model_card.json`` or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise ModelError(f"Model card {path} does not exist; check the model folder.", code="model_missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(
            f"Model card {path} is not readable JSON ({error}); fix the card or reinstall the model.",
            code="invalid_card",
        ) from None
    validate_card_data(data, str(path))
    return ModelCard(path=path.resolve(), data=data, source=source)


# --------------------------------------------------------------------------- search path
def shipped_model_dirs() -> list[Path]:
    """The shipped ``model_weights`` folder: source checkout first, then installed extension."""
    candidates = [MODULE_DIR.parent / "model_weights", MODULE_DIR / "model_weights"]
    return [p for p in dict.fromkeys(candidates) if p.is_dir()]


def user_model_dir() -> Path:
    """The per-user model folder for this platform (may not exist yet)."""
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "DigitalContrast" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "DigitalContrast" / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "DigitalContrast" / "models"


def search_path() -> list[tuple[str, Path]]:
    """``(source, folder)`` pairs in priority order (earlier wins)."""
    entries: list[tuple[str, Path]] = [("shipped", p) for p in shipped_model_dirs()]
    entries.append(("user", user_model_dir()))
    for item in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep):
        if item.strip():
            entries.append(("env", Path(item.strip()).expanduser()))
    return entries


@dataclass
class ModelInventory:
    """What the search path holds.

    Attributes:
        models: the winning card per id, in search order.
        duplicates: ``{id: [shadowed card files]}`` for ids found more than once.
        invalid: ``[{"path": ..., "problem": ...}]`` for folders whose card failed to load.
        searched: the folders searched, in order.
    """

    models: dict[str, ModelCard] = field(default_factory=dict)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    invalid: list[dict[str, str]] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)


def _card_files(folder: Path) -> list[Path]:
    if (folder / CARD_FILE).is_file():
        return [folder / CARD_FILE]
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p / CARD_FILE for p in children if (p / CARD_FILE).is_file()]


def discover_models() -> ModelInventory:
    """Scan the search path; earlier folders win, duplicates and broken cards are reported."""
    inventory = ModelInventory()
    for source, folder in search_path():
        inventory.searched.append(str(folder))
        if not folder.is_dir():
            continue
        for card_file in _card_files(folder):
            try:
                card = load_card(card_file, source=source)
            except ModelError as error:
                inventory.invalid.append({"path": str(card_file), "problem": error.message})
                continue
            if card.id in inventory.models:
                if inventory.models[card.id].path != card.path:
                    inventory.duplicates.setdefault(card.id, []).append(str(card.path))
                continue
            inventory.models[card.id] = card
    return inventory


def resolve_model(model_id: str | None = None) -> ModelCard:
    """The card of ``model_id`` (default :data:`DEFAULT_MODEL_ID`), or a folder path to a model.

    Raises:
        ModelError: no such model on the search path (the message lists where it looked).
    """
    model_id = model_id or DEFAULT_MODEL_ID
    as_path = Path(model_id).expanduser()
    if (as_path / CARD_FILE).is_file() or (as_path.name == CARD_FILE and as_path.is_file()):
        return load_card(as_path)
    inventory = discover_models()
    if model_id in inventory.models:
        return inventory.models[model_id]
    for bad in inventory.invalid:
        if Path(bad["path"]).parent.name == model_id:
            raise ModelError(bad["problem"], code="invalid_card")
    raise ModelError(
        f"Model '{model_id}' is not installed (searched {', '.join(inventory.searched)}); "
        f"run 'digital-contrast models' to list installed models or add its folder to {MODEL_PATH_ENV}.",
        code="model_missing",
    )


def write_model_folder(folder: str | os.PathLike, card_data: dict[str, Any], state: dict[str, Any],
                       weights_file: str = "model.safetensors") -> ModelCard:
    """Write ``state`` (tensors) as safetensors and the card (weights section filled in) into ``folder``.

    The card is validated before anything is written; both files are written atomically.
    Returns the loaded card.
    """

    folder = Path(folder)
    data = json.loads(json.dumps(card_data))  # a deep, JSON-only copy
    data["weights"] = {"file": weights_file, "format": "safetensors", "sha256": "0" * 64, "size_bytes": 1}
    validate_card_data(data, str(folder / CARD_FILE))
    folder.mkdir(parents=True, exist_ok=True)
    data["weights"] = save_state_dict(state, folder / weights_file, metadata={"model_id": data["id"], "version": data["version"]})
    atomic_write_text(folder / CARD_FILE, json.dumps(data, indent=2) + "\n")
    return load_card(folder / CARD_FILE)
