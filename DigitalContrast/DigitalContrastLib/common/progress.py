"""Progress reporting shared by the engine, the worker, the client and the CLI.

A long task reports through a callback ``progress(stage, done, total)``:

* ``stage``: one of :data:`STAGES` (the client maps stages to one overall fraction);
* ``done`` / ``total``: work units finished within that stage (windows, slices, cases),
  ``0 <= done <= total``; ``total >= 1``.

Callbacks must be cheap: the caller may call them for every unit; throttling is the
receiver's job (the worker sends a few messages per second at most).
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]

#: Stages of one synthesis job, in order, with the share of the overall time each typically
#: takes (used to turn stage progress into one overall fraction; the shares sum to 1).
STAGES: dict[str, float] = {
    "load": 0.05,         # read the input volume
    "gate": 0.02,         # input checks
    "model": 0.05,        # load and verify the model weights
    "preprocess": 0.03,   # clip, normalise, resample to the model spacing
    "inference": 0.78,    # sliding-window network
    "uncertainty": 0.0,   # optional extra passes (weight set by the engine when requested)
    "postprocess": 0.04,  # back to the input grid, outside-body restore, int16
    "write": 0.03,        # atomic write + provenance
}


def no_progress(stage: str, done: int, total: int) -> None:
    """A callback that ignores everything (the default)."""


def overall_fraction(stage: str, done: int, total: int, weights: dict[str, float] | None = None) -> float:
    """Map progress within ``stage`` to a fraction of the whole job in ``[0, 1]``.

    Stages before ``stage`` count as finished; unknown stages count as the start of the job.
    """
    weights = dict(weights or STAGES)
    names = list(weights)
    if stage not in weights:
        return 0.0
    scale = sum(weights.values()) or 1.0
    before = sum(weights[n] for n in names[: names.index(stage)])
    within = weights[stage] * (min(max(done, 0), total) / total if total > 0 else 0.0)
    return min(1.0, (before + within) / scale)
