"""Synthesis API: the one contract the background worker, the CLI and the Slicer logic call.

* :func:`load_engine` resolves a model on the search path, verifies its weights (sha256 before
  anything is loaded), builds the network and picks the device; engines are cached per
  ``(model id, weights sha256, device)``.
* :meth:`SynthesisEngine.synthesize` turns a :class:`~DigitalContrastLib.ct.volume.CTVolume` into a
  synthetic CTA on exactly the same grid.
* :func:`synthesize_file` does a whole job: read -> input gate -> engine -> atomic write of the
  output and of its provenance JSON (``<output>.json``).

torch and MONAI are imported only when an engine is built, so this module imports anywhere.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib import __version__
from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import OutputError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.models.cards import ModelCard, resolve_model
from DigitalContrastLib.models.network import load_network
from DigitalContrastLib.models.weights import verify_weights_file
from DigitalContrastLib.synthesis import device as _devices
from DigitalContrastLib.synthesis import engine as _engine
from DigitalContrastLib.synthesis.settings import EngineSettings

from .gate import gate_report_or_raise
from .ood import WARNING_CODE as OOD_WARNING_CODE
from .options import SynthesisOptions

WarningCallback = Callable[[str, str], None]


@dataclass
class SynthesisResult:
    """One synthesis.

    Attributes:
        synthetic: int16 HU synthetic CTA on the input grid (metadata ``synthetic=True``).
        uncertainty: voxel-wise SD in HU (flip test-time augmentation) on the input grid, or None.
        device: the device that ran the network (``"cpu"``, ``"cuda:0"``...).
        timings_s: seconds per stage (``preprocess``, ``inference``, ``uncertainty``, ``postprocess``).
        notes: what the engine decided on the way (windows skipped, precision, memory fallbacks).
        peak_memory_mb: peak GPU memory allocated (CUDA) or this process's peak RSS (CPU), MiB.
        windows_run, windows_total: network windows run, and in the plan before empty ones were skipped.
        window_zyx: size of those windows in model-grid voxels ``(z, y, x)``.
        backend: the library that ran the network: ``"torch"`` or ``"openvino"``.
        precision: the precision it ran in (``fp32``, ``bf16``, ``autocast-bf16``...).
    """

    synthetic: CTVolume
    uncertainty: CTVolume | None
    device: str
    timings_s: dict[str, float]
    notes: list[str] = field(default_factory=list)
    peak_memory_mb: float = 0.0
    windows_run: int = 0
    windows_total: int = 0
    window_zyx: tuple[int, int, int] = (0, 0, 0)
    backend: str = "torch"
    precision: str = ""


class SynthesisEngine:
    """A loaded model on one device. Build it with :func:`load_engine`.

    Attributes:
        card: the model card.
        device: the device the engine was placed on (``"cpu"``, ``"cuda:0"``, ``"mps"``); a result's
            ``device`` says where a given synthesis actually ran (it can differ after an
            out-of-memory fallback).
        attempt_hook: test hook called with each sliding-window attempt before it runs (tests
            raise ``torch.OutOfMemoryError`` from it to exercise the fallback chain).
    """

    def __init__(self, card: ModelCard, device: str = "auto") -> None:
        # torch and MONAI: imported only when an engine is built, so this module imports anywhere

        self._engine = _engine
        self._devices = _devices
        self.card = card
        self.settings = EngineSettings.from_card(card.data)
        self._torch_device = _devices.select_device(device)
        self.device = str(self._torch_device)
        network = load_network(card, device="cpu")
        settings = self.settings
        self._runner = _devices.NetworkRunner(network, lambda d: _devices.choose_precision(d, settings))
        self._openvino: Any = None  # the OpenVINO runner, built on first use (its compiled models stay with it)
        self._openvino_failure: str | None = None  # why OpenVINO could not take this model, once found
        self.attempt_hook: Callable[[Any], None] | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """The precision policy on the engine's device (``fp32``, ``bf16``, ``autocast-bf16``...)."""
        return self._devices.choose_precision(self._torch_device, self.settings)

    def runner_for(self, backend: str = "auto") -> tuple[Any, list[str]]:
        """The runner of ``backend`` (``auto``, ``torch`` or ``openvino``, see :func:`.device.choose_backend`)
        on the engine's device, and notes on the choice.

        The OpenVINO runner is built (the network converted) on first use and kept, with every
        model it compiles. Where ``auto`` chose OpenVINO but it cannot take this model, torch runs
        it and a note says why.

        Raises:
            JobError: the backend is unknown, or OpenVINO was asked where it cannot run.
            ModelError: OpenVINO was asked by name and cannot convert this model.
        """
        chosen = self._devices.choose_backend(backend, self._torch_device)
        if chosen == "torch":
            return self._runner, []
        if self._openvino is None and self._openvino_failure is None:
            try:
                from DigitalContrastLib.synthesis.openvino_runner import OpenVinoRunner

                runner = OpenVinoRunner(self._runner.base, self._runner.precision_for)
                runner.converted()
                self._openvino = runner
            except Exception as error:  # noqa: BLE001 - any failure of an optional backend
                self._openvino_failure = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if self._openvino is not None:
            return self._openvino, self._openvino.take_notes()
        if (backend or "auto").strip().lower() == "openvino":
            from DigitalContrastLib.common.errors import ModelError

            raise ModelError(f"OpenVINO cannot run model {self.card.id} ({self._openvino_failure}); use --backend torch.",
                             code="backend_failed")
        return self._runner, [f"OpenVINO could not run this model ({self._openvino_failure}); torch ran it"]

    def synthesize(
        self,
        volume: CTVolume,
        progress: ProgressCallback | None = None,
        uncertainty: bool = False,
        overlap: float | None = None,
        backend: str = "auto",
    ) -> SynthesisResult:
        """Synthesize a CTA from ``volume`` (a non-contrast CT in HU).

        Args:
            volume: the input; any HU dtype, any LPS direction.
            progress: ``progress(stage, done, total)`` for stages ``preprocess``, ``inference``,
                ``uncertainty`` (if asked) and ``postprocess``; ``done`` never decreases within a stage.
            uncertainty: also return the flip-TTA SD map (4 network passes instead of 1).
            overlap: window overlap in ``[0, 1)``; None takes the card's.
            backend: ``auto``, ``torch`` or ``openvino`` (:meth:`runner_for`).
        Returns:
            :class:`SynthesisResult`; ``synthetic`` has the input's exact geometry, int16 HU.
        """
        with self._lock:  # one synthesis at a time per engine (the network copies are shared)
            runner, backend_notes = self.runner_for(backend)
            out = self._engine.synthesize_volume(
                volume, runner, self.settings, self._torch_device,
                progress=progress, uncertainty=uncertainty, overlap=overlap, attempt_hook=self.attempt_hook,
            )
            backend_notes += runner.take_notes() if hasattr(runner, "take_notes") else []
        notes = [f"precision {out.precision} on {out.device} ({runner.backend})", *backend_notes, *out.notes]
        return SynthesisResult(
            synthetic=out.synthetic,
            uncertainty=out.uncertainty,
            device=out.device,
            timings_s=out.timings_s,
            notes=notes,
            peak_memory_mb=self._devices.peak_memory_mb(out.device),
            windows_run=out.windows_run,
            windows_total=out.windows_total,
            window_zyx=out.window_zyx,
            backend=runner.backend,
            precision=out.precision,
        )


_ENGINES: dict[tuple[str, str, str], SynthesisEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_engine(model_id: str | None = None, device: str = "auto") -> SynthesisEngine:
    """Resolve ``model_id`` (default model when None; a model folder path also works), verify and load it.

    Cached by ``(model id, weights sha256, requested device)``; the weights' checksum is verified
    on every call before a cached engine is returned, so a file altered on disk is refused.

    Raises:
        ModelError: model missing, invalid card, weights refused.
        NoGPUError: ``device`` forces a GPU that is absent.
    """

    card = resolve_model(model_id)
    verify_weights_file(card.weights)
    key = (str(card.path), card.weights_sha256, device or "auto")
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = SynthesisEngine(card, device=device or "auto")
            _ENGINES[key] = engine
        return engine


# --------------------------------------------------------------------------- whole-file jobs


def sha256_input(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder (a DICOM series: sorted relative names and file contents)."""

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode())
        digest.update(bytes.fromhex(file_sha256(item)))
    return digest.hexdigest()


def software_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the software that shaped an output (``extra``: packages beyond the usual, e.g. the backend's)."""

    versions = {"digital-contrast": __version__, "python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "SimpleITK", "safetensors", *extra):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            continue
    return versions


def provenance_path(output_path: str | os.PathLike) -> Path:
    """Where the provenance JSON of ``output_path`` goes: ``<output>.json``."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.name + ".json")


def synthesize_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: SynthesisOptions = SynthesisOptions(),
    *,
    engine: SynthesisEngine | None = None,
    progress: ProgressCallback | None = None,
    on_warning: WarningCallback | None = None,
) -> dict[str, Any]:
    """Read -> gate -> synthesize -> write atomically, with provenance JSON beside the output.

    Args:
        input_path: NCCT file or DICOM folder (anything ``io.read_volume`` reads).
        output_path: synthetic CTA file (format from the extension); ``<output>.json`` is written too.
        options: the job's :class:`~DigitalContrastLib.synthesis.options.SynthesisOptions`; its model
            and device go to :func:`load_engine` unless ``engine`` is given.
        progress: ``progress(stage, done, total)`` through ``load``, ``gate``, ``model``,
            ``preprocess``, ``inference``, ``uncertainty``, ``postprocess``, ``write``.
        on_warning: ``on_warning(code, message)`` for each gate warning, and ``out_of_distribution`` when the
            input is unlike the model's training data.
    Returns:
        The provenance dict (also written to ``<output>.json``), including ``output_sha256`` and
        ``ood``: the input against the model's training-data signature
        (:func:`~DigitalContrastLib.synthesis.ood.assess`: ``judged``, ``warning``, ``distance``,
        ``threshold``, ``message``).
    Raises:
        InputError: unreadable input or the input gate found an error (its sentence).
        ModelError, NoGPUError, OutOfMemoryError, OutputError: as their names say.
    """

    progress = progress or no_progress
    timings: dict[str, float] = {}
    input_path, output_path = Path(input_path), Path(output_path)
    series_uid, overlap = options.series_uid, options.overlap
    uncertainty_path = Path(options.uncertainty_output) if options.uncertainty_output else None

    t0 = time.perf_counter()
    progress("load", 0, 1)
    volume = read_volume(input_path, series_uid=series_uid)
    progress("load", 1, 1)
    timings["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("gate", 0, 1)
    # the card (JSON only, no weights) gives the training-data signature the input is compared with
    card = engine.card if engine is not None else resolve_model(options.model_id)
    gate = gate_report_or_raise(volume, on_warning, card.data)
    gate_warnings = [{"code": w.code, "message": w.message} for w in gate.warnings]
    if gate.ood and gate.ood.get("warning") and on_warning is not None:
        on_warning(OOD_WARNING_CODE, gate.ood["message"])
    progress("gate", 1, 1)
    timings["gate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("model", 0, 1)
    engine = engine or load_engine(options.model_id, options.device)
    progress("model", 1, 1)
    timings["model"] = time.perf_counter() - t0

    result = engine.synthesize(volume, progress=progress, uncertainty=uncertainty_path is not None, overlap=overlap,
                               backend=options.backend)
    timings.update(result.timings_s)

    t0 = time.perf_counter()
    progress("write", 0, 1)
    written: list[Path] = []
    try:
        write_volume(result.synthetic, output_path)
        written.append(output_path)
        provenance: dict[str, Any] = {
            "synthetic": True,
            "description": "SYNTHETIC contrast-enhanced CT computed from a non-contrast CT; not an acquired contrast study.",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "input": {"path": str(input_path.resolve()), "sha256": sha256_input(input_path), "series_uid": series_uid},
            "output": {"path": str(output_path.resolve())},
            "output_sha256": file_sha256(output_path),
            "model": {
                "id": engine.card.id,
                "version": engine.card.version,
                "ifu": engine.card.ifu,
                "weights_sha256": engine.card.weights_sha256,
                "card": str(engine.card.path),
            },
            "device": result.device,
            "backend": result.backend,
            "precision": result.precision,
            "overlap": engine.settings.overlap if overlap is None else overlap,
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
            "peak_memory_mb": round(result.peak_memory_mb, 1),
            "notes": result.notes,
            "gate_warnings": gate_warnings,
            "ood": gate.ood,
            "geometry": result.synthetic.geometry(),
            "software": software_versions(("openvino",) if result.backend == "openvino" else ()),
        }
        provenance["output"]["sha256"] = provenance["output_sha256"]
        if uncertainty_path is not None and result.uncertainty is not None:
            write_volume(result.uncertainty, uncertainty_path)
            written.append(uncertainty_path)
            provenance["uncertainty"] = {
                "path": str(uncertainty_path.resolve()),
                "sha256": file_sha256(uncertainty_path),
                "kind": "voxel-wise SD in HU across flip test-time augmentation (identity, z, y, z+y flips)",
            }
        timings["write"] = time.perf_counter() - t0
        provenance["timings_s"]["write"] = round(timings["write"], 4)

        try:
            atomic_write_text(provenance_path(output_path), json.dumps(provenance, indent=2) + "\n")
        except OSError as error:
            raise OutputError(
                f"Cannot write {provenance_path(output_path)} ({error.strerror or error}); choose a writable folder with free space.",
                code="output_error",
            ) from None
    except BaseException:
        for path in written:  # no output without its provenance
            try:
                path.unlink()
            except OSError:
                pass
        raise
    progress("write", 1, 1)
    return provenance
