"""Evaluate a cohort: every case of a cohort CSV through synthesis, registration and metrics, on
this machine or on a Dask cluster, resumable, ending in ``metrics.csv``, ``summary.json`` and
``report.html``.

Outputs in ``DIR``::

    cases/<case_id>/synthetic.nrrd (+ .json provenance, uncertainty.nrrd when asked)
    cases/<case_id>/real_registered.nrrd, side_by_side.png, gate.json, result.json (last)
    metrics.csv      one row per case in CSV order (failed cases with status and reason)
    summary.json     counts, per-metric n/mean/median/SD and seeded bootstrap CIs, Bland–Altman,
                     timings, the energy and carbon ledger, model, settings
    report.html      the table, distributions, Bland–Altman plots and every case's picture
    run.log          one JSON line per event (run started, case skipped / finished, run finished)

**Resuming.** Before anything runs, each case whose ``result.json`` says ``ok`` with the same
result settings, unchanged inputs and outputs that still match their recorded SHA-256 is
skipped (:func:`~DigitalContrastLib.cohort.case.finished_result`); failed and unfinished cases
are redone. ``run.log`` counts the synthesis calls of each run.

**Where cases run** (:func:`plan_local_pool`): on this machine, one worker process per GPU
(each with its own device and a persistent background worker, so the model stays loaded), or,
without a GPU, ONE process using every physical core (the network and the registration are
multi-threaded already; two processes would only share the same cores). ``workers=N`` overrides
the count (CPU threads are then split between them). With ``scheduler=ADDRESS`` the cases are
submitted to an existing Dask distributed cluster instead: each task runs the same per-case
function, with a persistent background worker per Dask worker process. ``DIR`` and the inputs
must then be reachable under the same paths from every Dask worker (a shared file system).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib import __version__
from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import EXIT_MODEL, EXIT_NO_GPU, JobError, ModelError, NoGPUError, OutputError
from DigitalContrastLib.common.hardware import physical_cores
from DigitalContrastLib.common.json_values import jsonable
from DigitalContrastLib.evaluation.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, bland_altman, describe
from DigitalContrastLib.worker.client import WorkerClient

from .carbon import GridIntensity, co2e_g, gpu_count, grid_intensity, ledger_summary
from .case import PICTURE_FILE, EvaluationSettings, RunError, case_folder, evaluate_case, finished_result
from .report import write_cohort_report
from .table import STATUS_FAILED, STATUS_OK, CohortCase, read_cohort_csv, write_metrics_csv

METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
RUN_LOG = "run.log"

#: Metrics summarised in ``summary.json`` and plotted in the report (column, label, unit).
SUMMARY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("body_mae_hu", "Body MAE", "HU"),
    ("body_psnr_db", "Body PSNR", "dB"),
    ("body_ssim", "Body SSIM", ""),
    ("lumen_mae_hu", "Lumen MAE", "HU"),
    ("lumen_bias_hu", "Lumen bias (synthetic - real)", "HU"),
    ("thrombus_mae_hu", "Thrombus MAE", "HU"),
    ("thrombus_bias_hu", "Thrombus bias (synthetic - real)", "HU"),
    ("lumen_dice", "Enhanced-lumen Dice", ""),
    ("max_diameter_error_mm", "Max lumen diameter error", "mm"),
    ("diameter_mae_mm", "Per-slice lumen diameter MAE", "mm"),
)
#: Timing columns summarised.
SUMMARY_TIMINGS = ("seconds_gate", "seconds_synthesis", "seconds_job", "seconds_registration", "seconds_metrics",
                   "seconds_on_case")
#: Paired measurements of the Bland–Altman analyses: name -> (synthetic column, real column, label, unit).
BLAND_ALTMAN_PAIRS: dict[str, tuple[str, str, str, str]] = {
    "lumen_median_hu": ("lumen_median_hu_pred", "lumen_median_hu_ref", "Median lumen HU", "HU"),
    "max_diameter_mm": ("max_diameter_mm_pred", "max_diameter_mm_ref", "Max enhanced-lumen diameter", "mm"),
}


# ---------------------------------------------------------------------------- where cases run
@dataclass(frozen=True)
class PoolPlan:
    """How a local run is laid out.

    Attributes:
        devices: one device per worker process (``cuda:N``, or the requested CPU/auto device).
        threads_per_worker: CPU threads of each worker (network and registration).
        policy: one sentence saying why.
    """

    devices: tuple[str, ...]
    threads_per_worker: int
    policy: str

    @property
    def workers(self) -> int:
        return len(self.devices)


def plan_local_pool(workers: int | None = None, device: str = "auto", threads: int | None = None,
                    gpus: int | None = None) -> PoolPlan:
    """The local pool (see the module docstring): 1 process per GPU, else 1 with every core.

    Args:
        workers: the process count asked for (None: the policy decides).
        device: the requested device; ``cpu`` ignores GPUs, ``cuda:N`` pins every worker to it.
        threads: CPU threads per worker (None: the physical cores divided among the workers).
        gpus: the GPU count (None: as NVML sees it; 0 without pynvml or a driver).

    Raises:
        JobError: ``workers`` or ``threads`` below 1.
    """
    if workers is not None and int(workers) < 1:
        raise JobError(f"--workers {workers} must be at least 1.")
    if threads is not None and int(threads) < 1:
        raise JobError(f"--threads {threads} must be at least 1.")
    cores = physical_cores()
    n_gpus = 0 if device == "cpu" else (gpu_count() if gpus is None else int(gpus))
    if device.startswith("cuda:"):
        count = int(workers or 1)
        devices = (device,) * count
        why = f"{count} worker(s) on {device} as requested"
    elif n_gpus > 0:
        count = int(workers or n_gpus)
        devices = tuple(f"cuda:{k % n_gpus}" for k in range(count))
        why = f"{count} worker process(es) over {n_gpus} GPU(s) (default: one per GPU)"
    else:
        count = int(workers or 1)
        devices = (device,) * count
        why = (f"{count} worker process(es) on the CPU" +
               (" (default without a GPU: one process, the network and registration use every core)" if workers is None else ""))
    per_worker = int(threads or max(1, cores // count))
    return PoolPlan(devices, per_worker, f"{why}; {per_worker} CPU thread(s) each ({cores} physical cores here)")


# ---------------------------------------------------------------------------- per node
_NODE_CLIENTS: dict[tuple, Any] = {}
_POOL_SLOT: dict[str, Any] = {}


def node_client(settings: EvaluationSettings, threads: int | None) -> Any:
    """This process's persistent :class:`~DigitalContrastLib.worker.client.WorkerClient` for ``settings``
    (created on first use; the model stays loaded between the cases this process runs), or, with
    ``settings.server``, a :class:`~DigitalContrastLib.worker.remote_client.RemoteWorkerClient`."""

    key = (settings.dummy, settings.dummy_seconds, threads, settings.server)
    client = _NODE_CLIENTS.get(key)
    if client is None and settings.server:
        from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

        client = RemoteWorkerClient(settings.server)
        _NODE_CLIENTS[key] = client
    if client is None:
        client = WorkerClient(persistent=True, dummy=settings.dummy, dummy_seconds=settings.dummy_seconds,
                              threads=threads)
        _NODE_CLIENTS[key] = client
    return client


def close_node_clients() -> int:
    """Stop this process's background workers; returns how many were stopped."""
    count = 0
    while _NODE_CLIENTS:
        _, client = _NODE_CLIENTS.popitem()
        client.close()
        count += 1
    return count


def evaluate_case_on_node(case: CohortCase, out_dir: str, settings: EvaluationSettings,
                          device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """The per-case task of every executor (in-process, pool process, Dask worker).

    Uses this process's persistent worker client. A run-level error (model, GPU, option) comes
    back as ``{"run_error": {...}}`` rather than an exception, so that it crosses process
    boundaries intact.
    """
    device = device or _POOL_SLOT.get("device") or settings.device
    threads = threads or _POOL_SLOT.get("threads") or settings.threads
    try:
        return evaluate_case(case, out_dir, settings, node_client(settings, threads), device=device, threads=threads)
    except RunError as run_error:
        return {"case_id": case.case_id, "run_error": {**run_error.error.to_dict(), "class": type(run_error.error).__name__}}


def _pool_init(slots) -> None:
    device, threads = slots.get()
    _POOL_SLOT.update(device=device, threads=threads)


def _raise_run_error(info: dict[str, Any]) -> None:
    classes = {"ModelError": ModelError, "NoGPUError": NoGPUError, "JobError": JobError}
    cls = classes.get(str(info.get("class")))
    if cls is None:
        cls = {EXIT_MODEL: ModelError, EXIT_NO_GPU: NoGPUError}.get(int(info.get("exit_code", 0)), JobError)
    raise cls(str(info.get("message")), code=str(info.get("code") or cls.default_code))


# ---------------------------------------------------------------------------- run log
class RunLog:
    """``run.log``: one JSON object per line, appended and flushed to disk as events happen."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id

    def write(self, event: str, **fields: Any) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": self.run_id, "event": event, **fields}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_run_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of a ``run.log`` (a torn last line, from a killed run, is skipped)."""
    events = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


# ---------------------------------------------------------------------------- the run
@dataclass
class CohortRun:
    """What :func:`evaluate_cohort` did.

    Attributes:
        out_dir: the output folder.
        rows: ``metrics.csv`` rows in CSV order.
        summary: the content of ``summary.json``.
        computed: case ids evaluated in this run; skipped: case ids found finished and kept.
        synthesis_calls: syntheses started in this run.
        seconds: wall-clock time of the run.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    synthesis_calls: int = 0
    seconds: float = 0.0

    @property
    def metrics_csv(self) -> Path:
        return self.out_dir / METRICS_CSV

    @property
    def summary_json(self) -> Path:
        return self.out_dir / SUMMARY_JSON

    @property
    def report_html(self) -> Path:
        return self.out_dir / REPORT_HTML

    def picture(self, case_id: str) -> Path:
        """The side-by-side PNG of a case."""

        return case_folder(self.out_dir, case_id) / PICTURE_FILE


CaseCallback = Callable[[dict[str, Any], bool], None]


def evaluate_cohort(
    csv_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: EvaluationSettings | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    grid: GridIntensity | None = None,
    progress_bar: bool | None = None,
    on_case: CaseCallback | None = None,
    on_plan: Callable[[str], None] | None = None,
) -> CohortRun:
    """Evaluate every case of ``csv_path`` into ``out_dir`` (see the module docstring).

    Args:
        csv_path: the cohort CSV (``cohort_table.read_cohort_csv``).
        out_dir: the output folder (created; a previous run's finished cases are kept).
        settings: model, device, registration, options (default :class:`EvaluationSettings`).
        workers: local worker processes (None: :func:`plan_local_pool`'s policy).
        scheduler: a Dask scheduler address (``tcp://host:8786``) to run the cases on.
        grid: the grid intensity of the carbon ledger (default: ``carbon.grid_intensity()``).
        progress_bar: a tqdm bar on stderr (None: when stderr is a terminal).
        on_case: ``on_case(result, skipped)`` after each case (in completion order).
        on_plan: receives one sentence saying where the cases run.

    Returns:
        A :class:`CohortRun`.

    Raises:
        InputError: the cohort CSV is bad (nothing is written then).
        OutputError: ``out_dir`` cannot be written.
        ModelError, NoGPUError, JobError: a problem every case would have (finished cases stay),
            or both ``workers`` and ``scheduler`` given.
    """
    started = time.perf_counter()
    settings = settings or EvaluationSettings()
    if scheduler and workers is not None:
        raise JobError("--workers sizes the local pool and --scheduler sends the cases to a Dask cluster: give one of them.")
    cases = read_cohort_csv(csv_path)
    grid = grid or grid_intensity()
    out = Path(out_dir).expanduser().resolve()
    try:
        (out / "cases").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out} cannot be created ({error.strerror}); choose a folder you can write to.") from None
    log = RunLog(out / RUN_LOG, uuid.uuid4().hex[:12])

    results: dict[str, dict[str, Any]] = {}
    todo: list[CohortCase] = []
    for case in cases:
        done = finished_result(case, out, settings)
        if done is None:
            todo.append(case)
        else:
            results[case.case_id] = done
    if scheduler:
        where = f"Dask cluster at {scheduler}"
        plan = None
    elif settings.server:
        plan = plan_local_pool(workers or 1, "cpu", settings.threads, gpus=0)
        where = f"syntheses on the service {settings.server}; registration and metrics here ({plan.policy})"
    else:
        plan = plan_local_pool(workers, settings.device, settings.threads)
        where = plan.policy
    if on_plan:
        on_plan(where)
    log.write("run_started", cases=len(cases), to_do=len(todo), skipped=[c.case_id for c in cases if c.case_id in results],
              where=where, settings=settings.to_dict(), cohort=str(Path(csv_path).resolve()), version=__version__)
    for case_id in results:
        log.write("case_skipped", case_id=case_id, reason="finished earlier; outputs match their SHA-256")

    calls = 0
    computed: list[str] = []
    bar = _progress_bar(len(cases), len(results), progress_bar)
    try:
        for case_id, result in list(results.items()):
            if on_case:
                on_case(result, True)
        for result in _run_cases(todo, out, settings, plan, scheduler):
            if "run_error" in result:
                log.write("run_stopped", case_id=result["case_id"], error=result["run_error"])
                _raise_run_error(result["run_error"])
            results[result["case_id"]] = result
            computed.append(result["case_id"])
            calls += int(result.get("synthesis_calls", 0))
            row = result.get("row", {})
            log.write("case_finished", case_id=result["case_id"], status=result["status"], reason=result.get("reason", ""),
                      synthesis_calls=int(result.get("synthesis_calls", 0)), seconds_on_case=row.get("seconds_on_case"))
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{result['case_id']} {result['status']}", refresh=False)
            if on_case:
                on_case(result, False)
    finally:
        if bar is not None:
            bar.close()

    rows = [_final_row(case, results[case.case_id], grid) for case in cases]
    extra_columns = list(cases[0].extra) if cases else []
    for case in cases[1:]:
        extra_columns += [c for c in case.extra if c not in extra_columns]
    summary = summarize(rows, results, settings, grid, where, Path(csv_path).resolve())
    write_metrics_csv(out / METRICS_CSV, rows, extra_columns)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=1, allow_nan=False) + "\n")

    write_cohort_report(out, rows, summary)
    seconds = time.perf_counter() - started
    log.write("run_finished", computed=computed, skipped=sorted(set(results) - set(computed)), synthesis_calls=calls,
              ok=summary["counts"]["ok"], failed=summary["counts"]["failed"], seconds=seconds)
    return CohortRun(out, rows, summary, computed, [c.case_id for c in cases if c.case_id not in computed], calls, seconds)


def _progress_bar(total: int, initial: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="case", desc="cases", file=sys.stderr, dynamic_ncols=True)


def _run_cases(todo: Sequence[CohortCase], out: Path, settings: EvaluationSettings, plan: PoolPlan | None,
               scheduler: str | None):
    """Yield each case's result as it completes (in-process, local pool or Dask)."""
    if not todo:
        return
    if scheduler:
        yield from _run_on_dask(todo, out, settings, scheduler)
    elif plan is not None and plan.workers > 1:
        yield from _run_in_pool(todo, out, settings, plan)
    else:
        device = plan.devices[0] if plan else settings.device
        threads = plan.threads_per_worker if plan else settings.threads
        try:
            for case in todo:
                yield evaluate_case_on_node(case, str(out), settings, device, threads)
        finally:
            close_node_clients()


def _run_in_pool(todo: Sequence[CohortCase], out: Path, settings: EvaluationSettings, plan: PoolPlan):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for device in plan.devices:
        slots.put((device, plan.threads_per_worker))
    with ProcessPoolExecutor(max_workers=plan.workers, mp_context=context, initializer=_pool_init,
                             initargs=(slots,)) as pool:
        pending = {pool.submit(evaluate_case_on_node, case, str(out), settings) for case in todo}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _run_on_dask(todo: Sequence[CohortCase], out: Path, settings: EvaluationSettings, scheduler: str):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise JobError("--scheduler needs the 'distributed' package: install the cohort extra "
                       "(pip install 'digital-contrast[cohort]').") from None
    try:
        dask = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as error:
        raise JobError(f"Cannot reach the Dask scheduler at {scheduler} ({error}); start the scheduler or check the address.",
                       code="scheduler_unreachable") from None
    token = uuid.uuid4().hex[:8]
    try:
        futures = [dask.submit(evaluate_case_on_node, case, str(out), settings, pure=False,
                               key=f"digital-contrast-case-{case.case_id}-{token}") for case in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
            try:
                dask.run(close_node_clients)
            except Exception:  # noqa: BLE001 - a worker gone already: its clients went with it
                pass
    finally:
        dask.close()


def _final_row(case: CohortCase, result: dict[str, Any], grid: GridIntensity) -> dict[str, Any]:
    """The ``metrics.csv`` row: the stored row, today's CSV columns, the carbon at today's grid."""
    row = dict(result.get("row") or {})
    row.update(case.extra)
    row["case_id"] = case.case_id
    row["status"] = result.get("status", STATUS_FAILED)
    row["reason"] = result.get("reason", "")
    energy = row.get("energy_j")
    row["co2e_g"] = co2e_g(float(energy), grid) if energy is not None else None
    row["grid_g_per_kwh"] = grid.g_per_kwh if energy is not None else None
    return row


def summarize(rows: Sequence[dict[str, Any]], results: dict[str, dict[str, Any]], settings: EvaluationSettings,
              grid: GridIntensity, where: str, cohort_csv: Path) -> dict[str, Any]:
    """The content of ``summary.json`` (see the module docstring); statistics over ``ok`` rows."""
    ok = [r for r in rows if r.get("status") == STATUS_OK]
    failed = [r for r in rows if r.get("status") != STATUS_OK]

    def column(name: str) -> list[float]:
        return [_number(r.get(name)) for r in ok]

    metrics = {name: {"label": label, "unit": unit, **describe(column(name))} for name, label, unit in SUMMARY_METRICS}
    agreement = {}
    for name, (pred, ref, label, unit) in BLAND_ALTMAN_PAIRS.items():
        agreement[name] = {"label": label, "unit": unit, "synthetic_column": pred, "real_column": ref,
                           **bland_altman(column(pred), column(ref))}
    models = sorted({(r.get("model_id"), r.get("model_version"), r.get("model_weights_sha256")) for r in ok},
                    key=lambda m: tuple(str(v) for v in m))
    devices = sorted({str(r.get("device")) for r in ok})
    ledger = ledger_summary([r for r in ok if r.get("energy_j") is not None], grid)
    return jsonable({
        "digital_contrast_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cohort_csv": str(cohort_csv),
        "where": where,
        "counts": {"cases": len(rows), "ok": len(ok), "failed": len(failed)},
        "failed_cases": [{"case_id": r["case_id"], "reason": r.get("reason", "")} for r in failed],
        "statistics": {"over": "cases with status ok and a finite value (n per metric)",
                       "ci": f"{CONFIDENCE:.0%} percentile bootstrap of the mean",
                       "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "bootstrap_seed": BOOTSTRAP_SEED},
        "metrics": metrics,
        "bland_altman": agreement,
        "timings": {name: describe(column(name)) for name in SUMMARY_TIMINGS},
        "energy": ledger,
        "models": [{"id": m[0], "version": m[1], "weights_sha256": m[2]} for m in models],
        "devices": devices,
        "settings": settings.to_dict(),
    })


def _number(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")
