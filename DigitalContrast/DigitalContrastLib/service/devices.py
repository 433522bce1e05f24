"""Which devices the service's workers run on: at most one worker per GPU, or workers on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.worker.process import probe_worker


@dataclass(frozen=True)
class DevicePlan:
    """``devices``: one per worker (``cuda:N``, ``cpu`` or ``auto``); ``hello``: the probe's answer."""

    devices: tuple[str, ...]
    hello: dict[str, Any]
    policy: str


def plan_devices(device: str = "auto", workers: int | None = None, dummy: bool = False,
                 hello: dict[str, Any] | None = None) -> DevicePlan:
    """Probe the machine (a worker ``--probe`` process: torch's view of the GPUs) and lay out the workers.

    ``hello`` is the probe's answer when already known (tests give one that describes GPUs).

    Raises:
        JobError: ``workers`` below 1, or more workers than GPUs on a GPU device.
    """
    if workers is not None and workers < 1:
        raise JobError(f"--workers {workers} must be at least 1.", code="bad_workers")
    if dummy:
        hello = {"mode": "dummy", "device": {"kind": "cpu", "name": "numpy-only dummy synthesis"}, "torch": {}}
        count = workers or 1
        return DevicePlan(("cpu",) * count, hello, f"{count} dummy worker(s) on the CPU")
    hello = hello if hello is not None else probe_worker()
    gpus = int((hello.get("torch") or {}).get("device_count") or 0) if device != "cpu" else 0
    if device.startswith("cuda:"):
        if (workers or 1) > 1:
            raise JobError(f"--device {device} is one GPU: it takes one worker, not {workers}.", code="bad_workers")
        return DevicePlan((device,), hello, f"1 worker on {device}")
    if gpus > 0:
        count = workers or gpus
        if count > gpus:
            raise JobError(f"--workers {count} is more than the {gpus} GPU(s) here: the service runs at most one "
                           "worker per GPU.", code="bad_workers")
        return DevicePlan(tuple(f"cuda:{k}" for k in range(count)), hello, f"{count} worker(s), one per GPU")
    if device == "cuda":
        raise JobError("--device cuda was asked for but torch sees no GPU here; use --device auto or cpu.",
                       code="no_gpu")
    count = workers or 1
    return DevicePlan(("cpu",) * count, hello, f"{count} worker(s) on the CPU")
