"""The OpenVINO backend: the same network run by OpenVINO's CPU runtime (the ``cpu-fast`` extra).

:class:`OpenVinoRunner` is called like :class:`.device.NetworkRunner` (``runner(batch, device)``):

* OpenVINO sends usage telemetry: ``import openvino`` alone writes a client id under the user's
  home folder (``~/intel``) and sends an "import" event, and ``openvino.convert_model`` sends
  more, unless a CI variable is set. A hospital's machine must not do that, so this module
  imports OpenVINO as if its optional ``openvino-telemetry`` package were absent (OpenVINO then
  uses its own no-op stand-in) and converts through the PyTorch front end, not ``convert_model``;
* the network is converted once per runner from the module torch would run on the CPU
  (:func:`.device.prepare_for_cpu`: batch norm folded, the sub-pixel last layer, fp32);
* OpenVINO is fastest on a static shape, so a model is compiled per window shape
  (``[B, 1, z, y, x]``; about 0.15 s each) and kept with its inference request for the life of
  the runner, i.e. of the engine, which the persistent worker keeps loaded;
* compiled for latency (``PERFORMANCE_HINT LATENCY``, one request at a time), with as many
  threads as the machine has physical cores (hyper-threads only add contention here), in the
  precision :func:`.device.choose_precision` picks: bf16 where the CPU has it natively, else f32.

Out-of-memory errors surface as ``RuntimeError`` and walk the engine's fallback chain like torch's.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

if "openvino" not in sys.modules:
    # None in sys.modules makes ``import openvino_telemetry`` fail: OpenVINO falls back to its stub
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
import openvino as ov  # noqa: E402 - after the telemetry block above
from openvino.frontend import FrontEndManager  # noqa: E402
from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder  # noqa: E402

from DigitalContrastLib.common.hardware import available_cpu_cores, physical_cores
from DigitalContrastLib.synthesis.device import prepare_for_cpu

#: OpenVINO's name of each engine precision.
_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_threads() -> int:
    """Inference threads: the machine's physical cores, never more than this process may use."""
    return max(1, min(physical_cores(), available_cpu_cores()))


def openvino_version() -> str:
    """The OpenVINO runtime's version (e.g. ``2026.4.1-22982-...``)."""
    return str(ov.get_version())


class OpenVinoRunner:
    """The network run by OpenVINO on the CPU, one compiled model per window shape.

    Args:
        network: the torch network (any device; it is copied, prepared and converted on first use).
        precision_for: the engine's precision policy (``"bf16"`` or ``"fp32"`` on the CPU).
        threads: inference threads (default :func:`openvino_threads`).

    Attributes:
        notes: what the runner did that a result should say (conversion and compilation times),
            taken and cleared by :meth:`take_notes`.
    """

    backend = "openvino"

    def __init__(self, network: torch.nn.Module, precision_for: Callable[[torch.device], str],
                 threads: int | None = None) -> None:
        self.base = network
        self.precision_for = precision_for
        self.threads = int(threads or openvino_threads())
        self.core = ov.Core()
        self._model: ov.Model | None = None
        self._requests: dict[tuple[int, ...], ov.InferRequest] = {}
        self.notes: list[str] = []

    def precision(self, device: torch.device) -> str:
        """``"bf16"`` where the engine's policy asks for it on the CPU, else ``"fp32"``."""
        return "bf16" if self.precision_for(torch.device("cpu")) == "bf16" else "fp32"

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The window-batch shapes compiled so far (``[B, 1, z, y, x]``), first compiled first."""
        return list(self._requests)

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def converted(self) -> ov.Model:
        """The network as an OpenVINO model with a dynamic input shape (converted on first use)."""
        if self._model is None:
            started = time.perf_counter()
            module = prepare_for_cpu(self.base).cpu()
            example = torch.zeros((1, 1, 16, 16, 16))  # any size on the network's stride lattice
            with torch.no_grad(), warnings.catch_warnings():
                # the front end traces with torch.jit, which torch 2.13 marks deprecated; torch.export
                # (its successor) took 10 s here instead of 1.5 s. Should a later torch drop jit,
                # the conversion fails and ``--backend auto`` runs torch, saying so in the notes.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=DeprecationWarning)
                decoder = TorchScriptPythonDecoder(module, example_input=(example,))
            frontend = FrontEndManager().load_by_framework("pytorch")
            self._model = frontend.convert(frontend.load(decoder))
            self.notes.append(f"OpenVINO {ov.get_version().split('-')[0]}: network converted in "
                              f"{time.perf_counter() - started:.1f} s")
        return self._model

    def request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        """The inference request of the model compiled for input ``shape`` (compiled on first use)."""
        shape = tuple(int(v) for v in shape)
        if shape not in self._requests:
            started = time.perf_counter()
            model = self.converted().clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            compiled = self.core.compile_model(model, "CPU", {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[self.precision(torch.device("cpu"))],
            })
            self._requests[shape] = compiled.create_infer_request()
            self.notes.append(f"OpenVINO compiled for {'x'.join(map(str, shape))} in "
                              f"{time.perf_counter() - started:.2f} s ({self.threads} threads)")
        return self._requests[shape]

    def __call__(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Run ``[B, 1, z, y, x]`` float32 windows on the CPU; returns float32 ``[B, 1, z, y, x]``."""
        if device.type != "cpu":
            raise ValueError(f"the OpenVINO backend runs on the CPU, not on {device}")
        request = self.request(tuple(batch.shape))
        inputs = np.ascontiguousarray(batch.detach().float().numpy())
        request.infer({0: inputs})
        # the request reuses its output buffer on the next call: copy it out
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

