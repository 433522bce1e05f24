"""One case of a cohort evaluation, start to finish, and how a finished case is recognised.

:func:`evaluate_case` runs, for one :class:`~DigitalContrastLib.cohort.table.CohortCase`:

1. the input gate on the non-contrast CT (``gate.json``); the real contrast CT and the labels
   are read too, so that a broken file stops the case before synthesis;
2. synthesis in the background worker (``synthetic.nrrd`` + its provenance ``synthetic.nrrd.json``,
   ``uncertainty.nrrd`` when asked), the energy of the job measured or estimated (``carbon.py``);
3. registration of the real contrast CT onto the non-contrast grid (``real_registered.nrrd``);
4. metrics: body MAE/PSNR/SSIM over the voxels where both the non-contrast and the registered
   real scan show the body; lumen and thrombus HU error and bias, lumen Dice and diameters when
   labels exist (``metrics.py``);
5. a side-by-side picture (``side_by_side.png``: non-contrast | synthetic | real | difference);
6. ``result.json``, written atomically and LAST: the row of ``metrics.csv``, the SHA-256 of
   every output, the inputs' fingerprints and the settings. A case folder without it is
   unfinished, whatever else it holds.

A problem with the case itself (gate error, unreadable file, registration impossible, out of
memory, a crashed worker, even a bug) makes the case ``failed`` with its reason; it never stops
the cohort. Problems that would fail every case (the model is missing, no GPU although one was
required, an option is wrong) raise :class:`~DigitalContrastLib.common.errors.UserError` instead.

Case folder: ``<out>/cases/<case_id>/``. Arrays ``[z, y, x]``, HU, LPS geometry throughout.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import InputError, JobError, ModelError, NoGPUError, UserError
from DigitalContrastLib.common.hardware import physical_cores
from DigitalContrastLib.common.json_values import jsonable
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.evaluation.metrics import LUMEN_THRESHOLD_HU, body_metrics, roi_metrics
from DigitalContrastLib.synthesis.gate import check_path
from DigitalContrastLib.synthesis.options import SynthesisOptions
from DigitalContrastLib.worker.client import run_synthesis_job
from DigitalContrastLib.worker.outcome import JobCancelled

from .carbon import EnergyAssumptions, EnergyMeter
from .table import METRIC_COLUMNS, STATUS_FAILED, STATUS_OK, CohortCase

RESULT_FILE = "result.json"
RESULT_SCHEMA = 1
#: Output files of a case (names inside its folder).
SYNTHETIC_FILE = "synthetic.nrrd"
UNCERTAINTY_FILE = "uncertainty.nrrd"
REGISTERED_FILE = "real_registered.nrrd"
PICTURE_FILE = "side_by_side.png"
GATE_FILE = "gate.json"
#: Label codes of the aortic sac (lumen, thrombus) that the picture centres on (the phantom's codes).
SAC_CODES = (10, 11)


@dataclass(frozen=True)
class EvaluationSettings:
    """What every case of a run shares. Picklable: it travels to pool and Dask workers.

    Attributes:
        model_id: the model (None: the default model).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a local pool may assign GPUs itself).
        register: ``rigid``, ``bspline`` or ``none`` (real contrast onto the non-contrast grid).
        uncertainty: also write the uncertainty map.
        dummy: run the worker's numpy-only fake synthesis (tests, demos without a model).
        dummy_seconds: how long each dummy synthesis lasts.
        threads: CPU threads for the worker and the registration (None: all physical cores).
        registration_seed: seed of the registration's metric sampling (fixed: reproducible).
        lumen_threshold_hu: enhanced-lumen threshold of the Dice and diameter metrics.
        energy: power figures of the energy estimate (used where no counter is readable).
        case_timeout_s: a synthesis running longer fails its case (None: no limit).
        server: a synthesis service URL (``digital-contrast serve``): the syntheses run there (the
            token from ``DIGITAL_CONTRAST_TOKEN``, which is never stored); None: local workers.
    """

    model_id: str | None = None
    device: str = "auto"
    register: str = "rigid"
    uncertainty: bool = False
    dummy: bool = False
    dummy_seconds: float = 0.0
    threads: int | None = None
    registration_seed: int = 0
    lumen_threshold_hu: float = LUMEN_THRESHOLD_HU
    energy: EnergyAssumptions = field(default_factory=EnergyAssumptions)
    case_timeout_s: float | None = None
    server: str | None = None

    def __post_init__(self) -> None:
        from DigitalContrastLib.evaluation.registration import METHODS

        if self.register not in METHODS:
            raise JobError(f"The registration method {self.register!r} is unknown: choose one of {', '.join(METHODS)}.")
        if self.threads is not None and int(self.threads) < 1:
            raise JobError(f"The thread count {self.threads} must be at least 1.")

    def result_key(self) -> dict[str, Any]:
        """The settings that change a case's results (a finished case with other ones is redone)."""
        return {"model_id": self.model_id, "register": self.register, "uncertainty": self.uncertainty,
                "dummy": self.dummy, "registration_seed": self.registration_seed,
                "lumen_threshold_hu": self.lumen_threshold_hu}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunError(Exception):
    """Wraps a UserError that would fail every case (model, GPU, options): the run stops."""

    def __init__(self, error: UserError) -> None:
        super().__init__(error.message)
        self.error = error


# ---------------------------------------------------------------------------- fingerprints
def input_fingerprint(path: Path | None) -> dict[str, Any] | None:
    """Cheap identity of an input (path, bytes, newest mtime; a folder: over its files).

    Used to notice that a finished case's input was replaced; the outputs are checked by SHA-256.
    """
    if path is None:
        return None
    p = Path(path)
    try:
        if p.is_dir():
            files = [f for f in sorted(p.rglob("*")) if f.is_file()]
            stats = [f.stat() for f in files]
            return {"path": str(p), "files": len(files), "bytes": sum(s.st_size for s in stats),
                    "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
        stat = p.stat()
        return {"path": str(p), "files": 1, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except OSError:
        return {"path": str(p), "missing": True}


def _inputs_of(case: CohortCase) -> dict[str, Any]:
    return {"noncontrast": input_fingerprint(case.noncontrast), "contrast": input_fingerprint(case.contrast),
            "labels": input_fingerprint(case.labels)}


def case_folder(out_dir: str | os.PathLike, case_id: str) -> Path:
    """``<out_dir>/cases/<case_id>``."""
    return Path(out_dir) / "cases" / case_id


def finished_result(case: CohortCase, out_dir: str | os.PathLike, settings: EvaluationSettings) -> dict[str, Any] | None:
    """The stored result of a case that needs no recomputation, else None.

    A case is finished when its ``result.json`` exists, says ``ok``, was made with the same
    result settings from the same inputs (fingerprints), and every output it lists still has the
    SHA-256 recorded there. Failed and incomplete cases return None (they are redone).
    """

    folder = case_folder(out_dir, case.case_id)
    try:
        result = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA or result.get("status") != STATUS_OK:
        return None
    if result.get("settings_key") != jsonable(settings.result_key()) or result.get("inputs") != _inputs_of(case):
        return None
    for name, sha256 in (result.get("files") or {}).items():
        try:
            if file_sha256(folder / name) != sha256:
                return None
        except OSError:
            return None
    return result


# ---------------------------------------------------------------------------- helpers
def _first_sentence(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0]


class _CaseFailure(Exception):
    """Stops one case with a reason (``stage: sentence``)."""

    def __init__(self, stage: str, message: str, code: str = "") -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.code = stage, code


def picture_focus(noncontrast: CTVolume, synthetic: CTVolume, labels: CTVolume | None) -> tuple[int, int, int]:
    """Indices ``(z, y, x)`` for the picture: the axial slice with the largest aortic sac (lumen and
    thrombus labels), else the one the synthesis enhanced most (synthetic − non-contrast > 100 HU),
    else the centre; y and x at that region's centroid in the slice."""
    shape = noncontrast.shape_zyx
    region = None
    if labels is not None and np.isin(labels.array, SAC_CODES).any():
        region = np.isin(labels.array, SAC_CODES)
    else:
        enhanced = (synthetic.array.astype(np.int32) - noncontrast.array.astype(np.int32)) > 100
        if enhanced.any():
            region = enhanced
    if region is None:
        return (shape[0] // 2, shape[1] // 2, shape[2] // 2)
    per_slice = region.reshape(shape[0], -1).sum(axis=1)
    z = int(np.argmax(per_slice))
    ys, xs = np.nonzero(region[z])
    return (z, int(round(ys.mean())), int(round(xs.mean())))


def scored_body_mask(noncontrast: CTVolume, real: CTVolume) -> np.ndarray:
    """``[z, y, x]`` bool: where the non-contrast and the registered real scan both show the body
    (``metrics.body_mask_from_ct`` of each, intersected)."""

    return body_mask_from_ct(noncontrast.array) & body_mask_from_ct(real.array)


def case_metrics(noncontrast: CTVolume, synthetic: CTVolume, real: CTVolume | None, labels: CTVolume | None,
                 lumen_threshold_hu: float = LUMEN_THRESHOLD_HU, body_mask: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of one case on the non-contrast grid (all ``[z, y, x]`` HU arrays, one grid).

    Body metrics (``body_mae_hu``, ``body_psnr_db``, ``body_ssim``; ``body_voxels``) use the voxels
    where the non-contrast scan and the registered real scan both show the body
    (``metrics.body_mask_from_ct`` of each, intersected: a real scan that does not cover the whole
    body is not scored where it has no data; :func:`scored_body_mask`, or ``body_mask`` when given).
    ROI metrics (``metrics.roi_metrics``) need labels. Without a real scan every metric is ``nan``.
    """

    out: dict[str, float] = {name: float("nan") for name in METRIC_COLUMNS}
    if real is None:
        return out
    mask = scored_body_mask(noncontrast, real) if body_mask is None else body_mask
    out.update(body_metrics(synthetic.array, real.array, mask))
    out["body_voxels"] = int(mask.sum())
    if labels is not None:
        out.update(roi_metrics(synthetic.array, real.array, labels.array, noncontrast.spacing_mm,
                               lumen_threshold_hu=lumen_threshold_hu))
    return out


# ---------------------------------------------------------------------------- the case
def evaluate_case(case: CohortCase, out_dir: str | os.PathLike, settings: EvaluationSettings, client: Any,
                  *, device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Evaluate one case (see the module docstring) and return its result (also in ``result.json``).

    Args:
        case: the case (absolute paths).
        out_dir: the run's output folder (the case writes only under ``cases/<case_id>/``).
        settings: the run's settings.
        client: a :class:`~DigitalContrastLib.worker.client.WorkerClient` (persistent: the model stays loaded).
        device: the device for this case's synthesis (default ``settings.device``).
        threads: CPU threads of the registration and the energy estimate (default
            ``settings.threads``, else all physical cores).

    Returns:
        ``{"schema", "case_id", "status" ("ok" | "failed"), "reason", "row" (metrics.csv values),
        "files" {name: sha256}, "inputs", "settings_key", "gate", "synthesis", "energy",
        "registration", "synthesis_calls", "created"}``.

    Raises:
        RunError: the model is missing or invalid, a GPU was required and none is usable, or a
            job option is wrong: every case would fail the same way.
    """

    started = time.perf_counter()
    device = device or settings.device
    threads = int(threads or settings.threads or physical_cores())
    folder = case_folder(out_dir, case.case_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULT_FILE).unlink(missing_ok=True)  # from here on the case is unfinished
    timings: dict[str, float] = {}
    result: dict[str, Any] = {"schema": RESULT_SCHEMA, "case_id": case.case_id, "status": STATUS_FAILED, "reason": "",
                              "inputs": _inputs_of(case), "settings_key": settings.result_key(), "files": {},
                              "synthesis_calls": 0, "node": {"host": socket.gethostname(), "pid": os.getpid()}}
    row: dict[str, Any] = {"case_id": case.case_id, **dict(case.extra)}
    try:
        noncontrast, real_moving, labels = _read_inputs(case, folder, result, timings)
        row["gate_warnings"] = ";".join(m["code"] for m in result["gate"]["warnings"])
        synthetic_path = folder / SYNTHETIC_FILE
        synthesis = _synthesize(case, synthetic_path, folder, settings, client, device, threads, result)
        timings["seconds_model_load"] = float(synthesis["timings"].get("model_load_s") or 0.0)
        timings["seconds_synthesis"] = float(synthesis["timings"].get("synthesis_s") or 0.0)
        timings["seconds_job"] = float(synthesis["timings"].get("job_s") or 0.0)
        synthetic = _read_synthetic(synthetic_path, noncontrast)
        real = None
        if real_moving is not None:
            real = _register(noncontrast, real_moving, folder, settings, threads, result, timings)
            registration = result["registration"]
            row.update(registration_method=registration["method"], registration_final_stage=registration["final_stage"],
                       registration_metric=registration["metric_value"])
        t = time.perf_counter()
        mask = scored_body_mask(noncontrast, real) if real is not None else None
        row.update(case_metrics(noncontrast, synthetic, real, labels, settings.lumen_threshold_hu, body_mask=mask))
        timings["seconds_metrics"] = time.perf_counter() - t
        _write_picture(folder, case, noncontrast, synthetic, real, labels, synthesis, mask)
        model = synthesis.get("model") or {}
        row.update(device=synthesis.get("device"), model_id=model.get("id"), model_version=model.get("version"),
                   model_weights_sha256=model.get("weights_sha256"), synthetic_sha256=synthesis.get("sha256"))
        result["status"] = STATUS_OK
    except _CaseFailure as failure:
        result["reason"] = str(failure)
    except (ModelError, NoGPUError, JobError) as error:
        raise RunError(error) from None
    except UserError as error:  # out of memory, output not writable, a crashed worker...
        result["reason"] = f"{getattr(error, 'code', 'error')}: {_first_sentence(error)}"
    except Exception as error:  # noqa: BLE001 - a bug in one case must not end a 1,000-case run
        result["reason"] = f"internal error ({type(error).__name__}: {_first_sentence(error)}); see error.txt"
        atomic_write_text(folder / "error.txt", traceback.format_exc())
    timings["seconds_on_case"] = time.perf_counter() - started
    row.update(timings)
    row.update(status=result["status"], reason=result["reason"])
    energy = result.get("energy") or {}
    row.update(energy_j=energy.get("energy_j"), energy_method=energy.get("energy_method"),
               energy_window_s=energy.get("energy_window_s"))
    for name in (SYNTHETIC_FILE, SYNTHETIC_FILE + ".json", UNCERTAINTY_FILE, REGISTERED_FILE, PICTURE_FILE, GATE_FILE):
        if (folder / name).is_file() and result["status"] == STATUS_OK:
            result["files"][name] = file_sha256(folder / name)
    result["row"] = row
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = jsonable(result)
    atomic_write_text(folder / RESULT_FILE, json.dumps(result, indent=1) + "\n")
    return result


def _read_inputs(case: CohortCase, folder: Path, result: dict, timings: dict) -> tuple[CTVolume, CTVolume | None, CTVolume | None]:
    from DigitalContrastLib.evaluation.registration import resample_to

    t = time.perf_counter()
    report, noncontrast = check_path(case.noncontrast)
    result["gate"] = report.to_dict()
    atomic_write_text(folder / GATE_FILE, json.dumps(jsonable(report.to_dict()), indent=1) + "\n")
    timings["seconds_gate"] = time.perf_counter() - t
    if not report.ok or noncontrast is None:
        first = report.errors[0] if report.errors else None
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise _CaseFailure("gate", (f"[{first.code}] {first.message}" if first else "the input was refused") + more)
    real = labels = None
    if case.contrast is not None:
        try:
            real = read_volume(case.contrast)
        except InputError as error:
            raise _CaseFailure("contrast", _first_sentence(error), error.code) from None
    if case.labels is not None:
        try:
            labels = read_volume(case.labels)
        except InputError as error:
            raise _CaseFailure("labels", _first_sentence(error), error.code) from None
        if not labels.same_geometry(noncontrast):
            labels = resample_to(labels, noncontrast, interpolator="nearest", default_hu=0)
    return noncontrast, real, labels


def _synthesize(case: CohortCase, output: Path, folder: Path, settings: EvaluationSettings, client: Any,
                device: str, threads: int, result: dict) -> dict[str, Any]:

    # on a service this machine's counters do not see the job: the stated estimate only
    meter = EnergyMeter(device, threads, settings.energy, counter_factory=lambda _device: None) if settings.server \
        else EnergyMeter(device, threads, settings.energy)
    meter.start()
    result["synthesis_calls"] += 1
    try:
        uncertainty = str(folder / UNCERTAINTY_FILE) if settings.uncertainty else None
        options = SynthesisOptions(model_id=settings.model_id, device=device, uncertainty_output=uncertainty)
        synthesis = run_synthesis_job(case.noncontrast, output, options, client=client, timeout_s=settings.case_timeout_s)
    except (ModelError, NoGPUError, JobError):
        raise  # every case would fail the same way: the run stops (RunError)
    except UserError as error:  # refused by the worker's gate, out of memory, a crash, output not writable
        raise _CaseFailure("synthesis", f"[{error.code}] {_first_sentence(error)}", error.code) from None
    except JobCancelled:
        raise _CaseFailure("synthesis", f"cancelled after {settings.case_timeout_s:g} s (the case time limit)") from None
    timings = synthesis.get("timings") or {}
    window_s = float(timings.get("job_s") or timings.get("synthesis_s") or 0.0)
    result["energy"] = meter.stop(window_s, str(synthesis.get("device") or device)).to_dict()
    result["synthesis"] = {k: synthesis.get(k) for k in ("sha256", "model", "device", "timings", "peak_memory")}
    return synthesis


def _read_synthetic(path: Path, noncontrast: CTVolume) -> CTVolume:

    synthetic = read_volume(path)
    if not synthetic.same_geometry(noncontrast):
        raise _CaseFailure("synthesis", f"the synthetic volume {path} is not on the non-contrast grid (a bug in the model or engine)")
    return synthetic


def _register(noncontrast: CTVolume, real: CTVolume, folder: Path, settings: EvaluationSettings, threads: int,
              result: dict, timings: dict) -> CTVolume:
    from DigitalContrastLib.evaluation.registration import register

    t = time.perf_counter()
    try:
        registration = register(noncontrast, real, method=settings.register, seed=settings.registration_seed,
                                threads=threads)
    except InputError as error:
        raise _CaseFailure("registration", _first_sentence(error), error.code) from None
    timings["seconds_registration"] = time.perf_counter() - t
    write_volume(registration.registered, folder / REGISTERED_FILE)
    result["registration"] = {"method": registration.method, "final_stage": registration.final_stage,
                              "metric_value": registration.metric_value, "iterations": registration.iterations,
                              "rigid_parameters": registration.rigid_parameters,
                              "stage_metric_values": registration.stage_metric_values}
    return registration.registered


def _write_picture(folder: Path, case: CohortCase, noncontrast: CTVolume, synthetic: CTVolume, real: CTVolume | None,
                   labels: CTVolume | None, synthesis: Mapping[str, Any], scored: np.ndarray | None) -> None:
    from DigitalContrastLib.ct.render import save_png, side_by_side

    model = (synthesis.get("model") or {}).get("id") or "default"
    footer = f"case {case.case_id}  model {model}  SYNTHETIC images are labelled as such"
    picture = side_by_side(noncontrast, synthetic, real, picture_focus(noncontrast, synthetic, labels), footer=footer,
                           difference_mask=scored)
    save_png(picture, folder / PICTURE_FILE)
