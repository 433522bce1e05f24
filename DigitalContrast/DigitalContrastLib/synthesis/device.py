"""Where and how the network runs: device, precision, CPU threads, memory.

* :func:`select_device`: ``auto`` takes CUDA, then MPS, then the CPU;
* :func:`choose_precision`: autocast on CUDA (bf16 where supported, else fp16), the network cast to
  bf16 with ``channels_last_3d`` input on a CPU with native bf16 (AVX-512 BF16 / AMX), else fp32;
* :class:`NetworkRunner`: the network placed on a device with that precision, cached per device
  (torch eager; :mod:`.openvino_runner` is the other backend, :func:`choose_backend` picks one);
* :func:`is_out_of_memory` / :func:`release_cached_memory`: what the sliding window's fallback chain
  catches and frees; :func:`peak_memory_mb` for the result's report.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from typing import Protocol

import torch

from DigitalContrastLib.common.errors import JobError, NoGPUError
from DigitalContrastLib.common.hardware import available_cpu_cores
from DigitalContrastLib.models.network import fold_batch_norm, use_subpixel_for_narrow_transposed_convs
from DigitalContrastLib.synthesis.options import BACKENDS
from DigitalContrastLib.synthesis.settings import EngineSettings


def use_all_cpu_cores() -> int:
    """Give torch's intra-op pool every core this process may use; returns the count."""
    cores = available_cpu_cores()
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA, then MPS, then CPU; ``cuda[:N]``/``mps``/``cpu`` forced.

    Raises:
        NoGPUError: a GPU was forced but is not usable.
        JobError: not a device name.
    """
    name = (requested or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NoGPUError(
                "A CUDA GPU was requested (--device cuda) but torch sees none (a CPU-only torch build or no driver); "
                "use --device auto or cpu, or install a CUDA build of torch.",
                code="no_gpu",
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NoGPUError(f"GPU {name} does not exist ({torch.cuda.device_count()} present); pick another.", code="no_gpu")
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if name == "mps":
        if not mps_ok:
            raise NoGPUError("An Apple GPU was requested (--device mps) but none is usable; use --device auto or cpu.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise JobError(f"Device '{requested}' is not one of auto, cpu, cuda, cuda:N, mps; pick one of those.", code="bad_device")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 is fast.

    On CPUs without it torch emulates bf16, which is slower than fp32, so fp32 is kept there.
    """
    forced = os.environ.get("DIGITALCONTRAST_CPU_BF16")
    if forced is not None:
        return forced.strip() not in {"0", "false", "no", ""}
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older torch
        capability = ""
    if "AVX512" not in str(capability).upper():
        return False
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    if flags:
        return " avx512_bf16" in flags or " amx_bf16" in flags
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker and checker())


def choose_precision(device: torch.device, settings: EngineSettings) -> str:
    """``"fp32"``, ``"bf16"`` (network cast to bf16, CPU) or ``"autocast-bf16"``/``"autocast-fp16"`` (CUDA)."""
    if device.type == "cuda" and settings.cuda_precision == "autocast":
        return "autocast-bf16" if torch.cuda.is_bf16_supported() else "autocast-fp16"
    if device.type == "cpu" and settings.cpu_precision == "bf16-if-supported" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def openvino_installed() -> bool:
    """Whether the ``openvino`` package (the ``cpu-fast`` extra) can be imported (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def choose_backend(requested: str, device: torch.device) -> str:
    """``"torch"`` or ``"openvino"`` for a network on ``device``.

    ``auto`` takes OpenVINO on an x86-64 CPU where it is installed: on a 2-core AMD EPYC it ran the
    shipped UNet 1.4x faster than torch eager in fp32 and about as fast in native bf16 (1.05x) on a
    quiet machine, 1.4-1.6x faster with one core busy (docs/performance.md); on GPUs, on other
    CPUs (not measured) and without the package, torch.

    Raises:
        JobError: an unknown name, OpenVINO asked for a GPU, or asked where it is not installed.
    """
    name = (requested or "auto").strip().lower()
    if name not in BACKENDS:
        raise JobError(f"Backend '{requested}' is not one of {', '.join(BACKENDS)}; pick one of those.", code="bad_backend")
    if name == "torch":
        return "torch"
    if name == "openvino":
        if device.type != "cpu":
            raise JobError(f"The OpenVINO backend runs on the CPU only, not on {device}; use --device cpu, or "
                           "--backend torch (or auto) on a GPU.", code="bad_backend")
        if not openvino_installed():
            raise JobError("The OpenVINO backend needs the Python package openvino, which is not installed; run "
                           "pip install 'digital-contrast[cpu-fast]' or use --backend auto.", code="backend_missing")
        return "openvino"
    x86 = platform.machine().lower() in {"x86_64", "amd64", "x64"}
    return "openvino" if device.type == "cpu" and x86 and openvino_installed() else "torch"


def prepare_for_cpu(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` for CPU inference in fp32: eval mode, batch norm folded into the
    convolutions, the narrow transposed last layer as a sub-pixel convolution (about 2x faster
    there, the same function). Both backends start from it."""
    module = copy.deepcopy(network).eval()
    fold_batch_norm(module)  # fp32 fold before any cast: one memory pass less per layer
    use_subpixel_for_narrow_transposed_convs(module)
    return module


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        phrase in text for phrase in ("out of memory", "can't allocate memory", "bad_alloc", "failed to allocate"))


class WindowRunner(Protocol):
    """What the sliding window calls to run the network: :class:`NetworkRunner` (torch) or
    :class:`.openvino_runner.OpenVinoRunner`."""

    backend: str

    def precision(self, device: torch.device) -> str: ...

    def __call__(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor: ...


class NetworkRunner:
    """The network placed on one device with one precision policy, cached per device (torch eager)."""

    backend = "torch"

    def __init__(self, network: torch.nn.Module, precision_for: Callable[[torch.device], str]) -> None:
        self.base = network.eval()
        self.precision_for = precision_for
        self._placed: dict[str, tuple[torch.nn.Module, str]] = {}

    def placed(self, device: torch.device) -> tuple[torch.nn.Module, str]:
        key = str(device)
        if key not in self._placed:
            precision = self.precision_for(device)
            if device.type == "cpu":
                module = prepare_for_cpu(self.base)
            else:
                module = copy.deepcopy(self.base).eval()
                fold_batch_norm(module)
            module = module.to(device)
            if precision == "bf16":
                module = module.to(torch.bfloat16)
            if device.type == "cpu":
                module = module.to(memory_format=torch.channels_last_3d)
            self._placed[key] = (module.eval(), precision)
        return self._placed[key]

    def precision(self, device: torch.device) -> str:
        """The precision the network runs in on ``device`` (``fp32``, ``bf16``, ``autocast-bf16``...)."""
        return self.placed(device)[1]

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Run ``[B, 1, z, y, x]`` float32 windows; returns float32 ``[B, 1, z, y, x]`` on ``device``."""
        module, precision = self.placed(device)
        batch = batch.to(device, non_blocking=True)
        if device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last_3d)
        if precision == "bf16":
            return module(batch.to(torch.bfloat16)).float()
        if precision.startswith("autocast"):
            dtype = torch.bfloat16 if precision == "autocast-bf16" else torch.float16
            with torch.autocast(device_type=device.type, dtype=dtype):
                return module(batch).float()
        return module(batch).float()


def release_cached_memory(compute_device: str) -> None:
    """Hand the CUDA caching allocator's free blocks back after an out-of-memory error on ``compute_device``."""
    if compute_device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated on ``device`` (CUDA), else this process's peak RSS, in MiB."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    try:
        import resource  # Unix only

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20  # type: ignore[attr-defined]
