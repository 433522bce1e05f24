"""What a synthesis job asks for besides its input and output: defined once for every path a job takes.

The CLI, the Slicer logic, the cohort evaluation, the worker's protocol and both synthesis
functions (the engine's and the numpy-only dummy) take one :class:`SynthesisOptions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

#: Which library runs the network (``--backend``): ``auto`` takes OpenVINO on an x86-64 CPU where the
#: ``openvino`` package is installed (the ``cpu-fast`` extra), torch everywhere else (GPUs included).
BACKENDS = ("auto", "torch", "openvino")


@dataclass(frozen=True)
class SynthesisOptions:
    """A job's options.

    Attributes:
        model_id: the model to run (its id, or a model folder); None for the default model.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        uncertainty_output: where to write the voxel-wise standard deviation of the flip passes
            (int16 HU, same grid as the input), or None to skip it.
        overlap: window overlap in ``[0, 1)``; None takes the model card's.
        series_uid: which DICOM series, when the input folder holds several.
        backend: ``auto``, ``torch`` or ``openvino`` (:data:`BACKENDS`); the provenance records the one used.
    """

    model_id: str | None = None
    device: str = "auto"
    uncertainty_output: str | None = None
    overlap: float | None = None
    series_uid: str | None = None
    backend: str = "auto"

    def with_absolute_paths(self) -> "SynthesisOptions":
        """The same options with ``uncertainty_output`` made absolute."""
        if not self.uncertainty_output:
            return self
        return replace(self, uncertainty_output=os.path.abspath(os.fspath(self.uncertainty_output)))

    def job_fields(self) -> dict[str, Any]:
        """The options as the worker protocol's job carries them (``model_id``, ``device``, ``options``)."""
        return {
            "model_id": self.model_id,
            "device": self.device,
            "options": {"uncertainty_output": self.uncertainty_output, "overlap": self.overlap,
                        "series_uid": self.series_uid, "backend": self.backend},
        }

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> "SynthesisOptions":
        """The options of a validated job (see ``worker.protocol.validate_job``)."""
        options = job.get("options") or {}
        return cls(model_id=job.get("model_id"), device=job.get("device") or "auto",
                   uncertainty_output=options.get("uncertainty_output"), overlap=options.get("overlap"),
                   series_uid=options.get("series_uid"), backend=options.get("backend") or "auto")
