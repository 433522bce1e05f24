"""Model weights as ``.safetensors`` only: checksum first, never pickle, no code executed.

Loading order (each step refuses with one sentence naming the file):

1. the file exists;
2. its name does not end in a pickle-bearing suffix (``.pt``, ``.pth``, ``.ckpt``, ``.bin``,
   ``.pkl``, ``.pickle``) and its first bytes are not pickle or zip magic (``torch.save`` writes
   either): such files are refused unread, because unpickling runs arbitrary code;
3. its header is a safetensors header (8-byte little-endian length, then a JSON object);
4. its size and sha256 equal the card's;
5. only then ``safetensors.torch.load_file`` reads it (a format without code).

torch is imported lazily so that :func:`verify_weights_file` also runs in the GUI process.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from DigitalContrastLib.common.atomic import atomic_write_bytes
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar"}
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _looks_like_pickle(head: bytes) -> bool:
    # protocol 2+ pickles start with PROTO (0x80) and the protocol number; torch.save writes a zip
    return head.startswith(_ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def check_safetensors_file(path: str | os.PathLike) -> Path:
    """Refuse missing, pickle and non-safetensors files without unpickling anything.

    Returns:
        The path, once it is known to hold a safetensors header.
    Raises:
        ModelError: missing file, pickle/zip file, or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Weights file {path} does not exist; reinstall the model folder.", code="weights_missing")
    refuse = (
        f"Weights file {path} is a pickle/PyTorch checkpoint, which can run arbitrary code when loaded, "
        "so it was refused unread; convert it to .safetensors (safetensors.torch.save_file) on a trusted machine."
    )
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(refuse, code="pickle_refused")
    with open(path, "rb") as handle:
        head = handle.read(9)
    if _looks_like_pickle(head):
        raise ModelError(refuse, code="pickle_refused")
    size = path.stat().st_size
    if len(head) < 9:
        raise ModelError(f"Weights file {path} is too short to be a .safetensors file; reinstall the model.", code="bad_weights")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > min(size - 8, _MAX_HEADER_BYTES) or head[8:9] != b"{":
        raise ModelError(f"Weights file {path} is not a .safetensors file; reinstall the model.", code="bad_weights")
    return path


@dataclass(frozen=True)
class WeightsFile:
    """A weights file and what it must be: ``sha256`` (hex) and ``size_bytes``, as a model card names them.

    ``named_by`` is the file that names them (a card's path), for messages.
    """

    path: Path
    sha256: str
    size_bytes: int
    named_by: str = "the model card"


def verify_weights_file(weights: WeightsFile) -> Path:
    """Check a weights file (format, size, sha256) without loading it; returns its path.

    Raises:
        ModelError: missing, pickle, wrong format, wrong size or checksum mismatch.
    """
    path = check_safetensors_file(weights.path)
    actual_size = path.stat().st_size
    actual_sha = file_sha256(path)
    if actual_sha != weights.sha256 or actual_size != weights.size_bytes:
        raise ModelError(
            f"Weights file {path} fails its checksum (sha256 {actual_sha[:12]}…, {actual_size} bytes; the card "
            f"{weights.named_by} expects {weights.sha256[:12]}…, {weights.size_bytes} bytes): it is corrupt or was "
            "altered, so it was refused; reinstall the model.",
            code="checksum_mismatch",
        )
    return path


def load_state_dict(weights: WeightsFile) -> dict[str, "torch.Tensor"]:
    """Verify, then load a weights file as a ``{name: tensor}`` dict on the CPU."""
    path = verify_weights_file(weights)
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def save_state_dict(state: dict[str, "torch.Tensor"], path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Write tensors to ``path`` (.safetensors) atomically; returns ``{file, format, sha256, size_bytes}``."""
    from safetensors.torch import save as save_bytes


    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights must be written as .safetensors, not {path.name}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path, save_bytes(tensors, metadata=metadata))
    return {"file": path.name, "format": "safetensors", "sha256": file_sha256(path), "size_bytes": path.stat().st_size}


def load_unverified(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
    """Load a safetensors file we wrote ourselves (training checkpoints): format checked, no checksum.

    Returns:
        ``(tensors, metadata)``; metadata is the safetensors header's string map.
    """
    path = check_safetensors_file(path)
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
    return tensors, metadata


def optimizer_state_to_tensors(state: dict[str, Any]) -> tuple[dict[str, "torch.Tensor"], str]:
    """Flatten ``optimizer.state_dict()`` into tensors + JSON (no pickle): ``(tensors, json_text)``."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        plain: dict[str, Any] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{name}"] = value
            else:
                plain[name] = value
        plain_state[str(param_id)] = plain
    return tensors, json.dumps({"param_groups": state["param_groups"], "plain": plain_state})


def optimizer_state_from_tensors(tensors: dict[str, "torch.Tensor"], json_text: str) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_tensors`."""
    meta = json.loads(json_text)
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["plain"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
