"""Values made ready for strict JSON: numpy scalars to Python, NaN to null, infinities to text.

Shared by every module that writes results as JSON (cohort results, reader-study analyses), so
that a missing value is always ``null`` and an infinite one always ``"inf"`` / ``"-inf"``.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, tuples, scalars) that ``json.dumps(..., allow_nan=False)``
    accepts: numpy integers, floats and booleans become Python ones, NaN becomes None,
    ±infinity becomes ``"inf"`` / ``"-inf"``, paths become text; dict keys become text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, PurePath):
        return str(value)
    return value
