"""Canonical JSON: the one text of a value that is hashed and stored (study configs, questions,
schedules, answers, events), so that equal values always hash alike."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): what is hashed and stored."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(data: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``data``."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
