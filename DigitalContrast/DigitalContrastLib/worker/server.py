"""The background synthesis worker: a separate process that runs one job (or many) and reports.

Run it as ``python -m DigitalContrastLib.worker`` (Slicer: ``PythonSlicer
Scripts/DigitalContrastWorker.py``, the same entry). Normally the client (``client.py``) starts
it; by hand::

    python -m DigitalContrastLib.worker job.json       # one job from a JSON file
    echo '{"input": "a.nrrd", "output": "b.nrrd"}' | python -m DigitalContrastLib.worker
    python -m DigitalContrastLib.worker --serve         # one job per stdin line until EOF
    python -m DigitalContrastLib.worker --probe         # report torch and the device, run nothing
    python -m DigitalContrastLib.worker --task metrics  # one task of tasks.py (check, registration, metrics, export)
    python -m DigitalContrastLib.worker --dummy ...     # numpy-only fake synthesis (self-tests)

The job format and the messages are defined in ``protocol.py``: every message is one stdout line,
``@@DC1 `` then compact JSON (``hello``, ``stage``, ``progress``, ``warning``, ``result``,
``error``). Anything else the process prints (including what libraries write to file descriptor
1, which is redirected to stderr) is plain log text.

Exit codes (the table in ``errors.py`` and README.md; in ``--serve`` mode each job's code is in
its ``error`` message and the process exits 0 at EOF):

====  ==========================================================
code  meaning
====  ==========================================================
0     success (or ``--serve`` reached the end of its input)
1     internal error (a bug): the ``error`` message has a short trace
2     bad input: unreadable volume, or the input gate found an error
3     model missing, invalid card, or weights checksum mismatch
4     bad job description (not JSON, unknown key, wrong type or value)
5     out of memory after every fallback
6     a GPU was required (``device: cuda``) but none is usable
7     the output cannot be written
====  ==========================================================

The output is written under a temporary name and renamed only when complete, so a killed job
leaves nothing that looks like a result. In ``--serve`` mode loaded models stay in memory between
jobs, keyed by (model id, device): a second job on the same model reports ``cache_hit: true``
and ``model_load_s: 0``. Cancelling is the parent's decision: it kills this process (tree).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from DigitalContrastLib import __version__
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import (
    EXIT_BAD_JOB,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    JobError,
    OutOfMemoryError,
    OutputError,
    UserError,
)
from DigitalContrastLib.common.hardware import memory_mb, physical_cores
from DigitalContrastLib.synthesis import dummy as dummy_synthesis
from DigitalContrastLib.synthesis.options import SynthesisOptions

from . import protocol, tasks

#: At most this many ``progress`` messages per second per stage (``done == total`` always goes).
PROGRESS_MESSAGES_PER_S = 5.0
_PROCESS_STARTED = time.time()


# ---------------------------------------------------------------------------- messages out
class ClientGone(BaseException):
    """The reader of our messages closed the pipe (the client died): stop, cleaning up as we unwind.

    A BaseException, so that the ``except Exception`` of a job does not report it as a bug.
    """


class MessageChannel:
    """Writes protocol messages, one whole line at a time, from any thread.

    ``install()`` keeps the real stdout for messages only and points file descriptor 1 (and
    ``sys.stdout``) at stderr, so a library that prints, even from C, cannot split a message line.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    @classmethod
    def install(cls) -> "MessageChannel":
        sys.stdout.flush()
        message_fd = os.dup(1)
        os.dup2(2, 1)
        return cls(message_fd)

    def send(self, type_: str, **fields: Any) -> None:
        data = protocol.encode_message(type_, **fields).encode("utf-8")
        with self._lock:
            while data:
                try:
                    written = os.write(self._fd, data)
                except (BrokenPipeError, ConnectionResetError):
                    raise ClientGone from None
                data = data[written:]


class ThrottledProgress:
    """The engine's ``progress(stage, done, total)`` callback, turned into messages for one job.

    Sends a ``stage`` message when the stage changes, then ``progress`` messages at most
    ``PROGRESS_MESSAGES_PER_S`` per second, always including the final ``done == total``.
    """

    def __init__(self, channel: MessageChannel, job_id: str) -> None:
        self._channel = channel
        self._job_id = job_id
        self._stage: str | None = None
        self._last_sent = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._stage:
            self._stage = stage
            self._last_sent = 0.0
            self._channel.send("stage", job_id=self._job_id, stage=stage)
        if done >= total or now - self._last_sent >= 1.0 / PROGRESS_MESSAGES_PER_S:
            self._last_sent = now
            self._channel.send("progress", job_id=self._job_id, stage=stage, done=int(done), total=int(total))


def warning_sender(channel: MessageChannel, job_id: str) -> Callable[..., None]:
    """An ``on_warning`` callback accepting ``(code, message)``, a dict, or an object with both."""

    def on_warning(*args: Any) -> None:
        if len(args) == 2:
            code, message = args
        else:
            item = args[0] if args else ""
            if isinstance(item, dict):
                code, message = item.get("code", "warning"), item.get("message", str(item))
            else:
                code, message = getattr(item, "code", "warning"), getattr(item, "message", str(item))
        channel.send("warning", job_id=job_id, code=str(code), message=str(message))

    return on_warning


# ---------------------------------------------------------------------------- hello / probe
def describe_environment(mode: str, import_torch: bool) -> dict[str, Any]:
    """The ``hello`` fields: versions, torch build, device and its free memory.

    torch is imported only when ``import_torch`` (never in dummy mode); its absence is reported,
    not raised.
    """
    torch_info: dict[str, Any] = {"installed": _installed_version("torch"), "imported": False}
    device: dict[str, Any] = _cpu_device()
    if import_torch:
        try:
            import torch
        except Exception as error:  # noqa: BLE001 - a broken torch install is reported, not fatal
            torch_info["error"] = f"{type(error).__name__}: {error}"
        else:
            torch_info.update(imported=True, version=torch.__version__, cuda=torch.version.cuda,
                              cuda_available=bool(torch.cuda.is_available()))
            if torch_info["cuda_available"]:
                torch_info["device_count"] = torch.cuda.device_count()
                free, total = torch.cuda.mem_get_info(0)
                device = {"kind": "cuda", "name": torch.cuda.get_device_name(0),
                          "free_memory_mb": free / 2**20, "total_memory_mb": total / 2**20}
    return {
        "protocol": protocol.PROTOCOL_VERSION,
        "pid": os.getpid(),
        "mode": mode,
        "python": platform.python_version(),
        "packages": {
            "digital-contrast": __version__,
            **{name: _installed_version(name) for name in ("numpy", "SimpleITK", "monai", "safetensors")},
        },
        "torch": torch_info,
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "startup_s": _seconds_since_process_start(),
    }


def _cpu_device() -> dict[str, Any]:
    free_mb, total_mb = memory_mb()
    return {"kind": "cpu", "name": _cpu_name(), "cores": physical_cores(), "free_memory_mb": free_mb,
            "total_memory_mb": total_mb}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _seconds_since_process_start() -> float:
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil absent (a stock Slicer), or a sandbox hiding /proc
        return time.time() - _PROCESS_STARTED


def _peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process and peak GPU memory torch allocated, in MiB."""
    rss_mb = None
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    except ImportError:  # Windows
        try:
            import psutil

            rss_mb = getattr(psutil.Process().memory_info(), "peak_wset", 0) / 2**20
        except ImportError:
            rss_mb = None
    gpu_mb = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20
    return {"rss_mb": rss_mb, "gpu_mb": gpu_mb}


# ---------------------------------------------------------------------------- running jobs
class JobRunner:
    """Runs jobs with an engine module (``synthesis`` or ``dummy_synthesis``) and a model cache.

    The cache keeps loaded engines keyed by (model id, device) for the life of the process.
    """

    def __init__(self, dummy: bool = False, dummy_seconds: float = 0.0, dummy_model_seconds: float = 0.2,
                 dummy_spawn_child: bool = False) -> None:
        self.dummy = dummy
        self._dummy_options = {"seconds": dummy_seconds, "spawn_child": dummy_spawn_child}
        self._dummy_model_seconds = dummy_model_seconds
        self._engines: dict[tuple[str | None, str], Any] = {}

    @property
    def mode(self) -> str:
        return "dummy" if self.dummy else "engine"

    def _module(self):
        if self.dummy:

            return dummy_synthesis
        from DigitalContrastLib.synthesis import api as synthesis  # imports torch: only on the real path

        return synthesis

    def _engine(self, model_id: str | None, device: str, progress: Callable) -> tuple[Any, float, bool]:
        key = (model_id, device)
        if key in self._engines:
            progress("model", 1, 1)
            return self._engines[key], 0.0, True
        progress("model", 0, 1)
        _log(f"loading model {model_id or 'default'} for device {device}")
        started = time.perf_counter()
        module = self._module()
        if self.dummy:
            engine = module.load_engine(model_id, device, load_seconds=self._dummy_model_seconds)
        else:
            engine = module.load_engine(model_id, device)
        self._engines[key] = engine
        progress("model", 1, 1)
        return engine, time.perf_counter() - started, False

    def run(self, job: dict[str, Any], channel: MessageChannel) -> dict[str, Any]:
        """Run one validated job; returns the ``result`` message fields. Raises UserError subclasses."""
        received = time.perf_counter()
        job_id = job["job_id"]
        _log(f"job {job_id}: {job['input']} -> {job['output']} (model {job['model_id'] or 'default'}, "
             f"device {job['device']}, {self.mode})")
        progress = ThrottledProgress(channel, job_id)
        on_warning = warning_sender(channel, job_id)
        output = Path(job["output"])
        options = job["options"]
        _check_writable(output)
        if options["uncertainty_output"]:
            _check_writable(Path(options["uncertainty_output"]))
        before = _sidecars(output)

        engine, model_load_s, cache_hit = self._engine(job["model_id"], job["device"], progress)
        module = self._module()
        extra = self._dummy_options if self.dummy else {}

        def progress_after_model(stage: str, done: int, total: int) -> None:
            if stage != "model":  # reported above; the engine's own "model" step is instant here
                progress(stage, done, total)

        started = time.perf_counter()
        try:
            provenance = module.synthesize_file(
                job["input"], job["output"], SynthesisOptions.from_job(job), engine=engine,
                progress=progress_after_model, on_warning=on_warning, **extra,
            )
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", -1)):
                raise OutputError(
                    f"output {output} cannot be written ({os.strerror(error.errno)}); free space or choose another folder.",
                    code="output_not_writable",
                ) from None
            raise
        synthesis_s = time.perf_counter() - started
        _log(f"job {job_id}: done in {synthesis_s:.2f} s (model load {model_load_s:.2f} s, cache hit {cache_hit})")

        sha256 = provenance.get("output_sha256") or file_sha256(output)
        files = [{"path": str(output), "sha256": sha256}]
        if options["uncertainty_output"] and Path(options["uncertainty_output"]).is_file():
            files.append({"path": options["uncertainty_output"], "sha256": file_sha256(options["uncertainty_output"])})
        for sidecar in sorted(_sidecars(output) - before):
            files.append({"path": str(sidecar), "sha256": file_sha256(sidecar)})
        card = engine.card
        return {
            "job_id": job_id,
            "output": str(output),
            "sha256": sha256,
            "files": files,
            "model": {"id": card.id, "version": card.version, "weights_sha256": card.weights_sha256},
            "device": str(engine.device),
            "timings": {
                "model_load_s": model_load_s,
                "cache_hit": cache_hit,
                "synthesis_s": synthesis_s,
                "job_s": time.perf_counter() - received,
                "worker_uptime_s": _seconds_since_process_start(),
            },
            "peak_memory": _peak_memory(),
            "torch_imported": "torch" in sys.modules,
            "provenance": provenance,
        }


def _log(text: str) -> None:
    """Plain log text (stderr): what the client keeps as the last lines of a failed job."""
    print(f"[DigitalContrast worker {os.getpid()}] {text}", file=sys.stderr, flush=True)


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"output folder {path.parent} cannot be created ({error.strerror}); choose a writable folder.",
            code="output_not_writable",
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"output folder {path.parent} is not writable; choose a writable folder.",
                          code="output_not_writable")


def _sidecars(output: Path) -> set[Path]:
    """Files beside ``output`` that share its stem (``out.json`` for ``out.nii.gz``), not partial ones."""
    stem = output.name.split(".")[0]
    if not output.parent.is_dir():
        return set()
    return {p for p in output.parent.iterdir()
            if p.is_file() and p.name.startswith(stem + ".") and p != output and not p.name.startswith(".")}


def run_job_text(text: str, source: str, runner: Any, channel: MessageChannel) -> int:
    """Parse and run one job with ``runner`` (a JobRunner or a ``relay.RelayRunner``), sending its messages;
    returns its exit code (never raises)."""
    state: dict[str, Any] = {"job_id": None}

    def body() -> None:
        job = protocol.parse_job(text, source)
        state["job_id"] = job["job_id"]
        channel.send("result", **runner.run(job, channel))

    return run_reporting(body, channel, lambda: state["job_id"])


def run_task_text(name: str, text: str, channel: MessageChannel) -> int:
    """Run ``--task NAME`` on one JSON line of arguments, sending ``task_result`` or ``error``; never raises."""

    def body() -> None:
        try:
            arguments = json.loads(text or "{}")
        except ValueError as error:
            raise JobError(f"the arguments of task {name!r} are not JSON ({error.msg}); this is a bug of the caller.",
                           code="bad_task") from None
        value = tasks.run_task(name, arguments, ThrottledProgress(channel, name))
        channel.send("task_result", job_id=name, task=name, value=value)

    return run_reporting(body, channel, lambda: name)


def run_reporting(body: Callable[[], None], channel: MessageChannel, job_id: Callable[[], str | None]) -> int:
    """Run ``body``; map what it raises to one ``error`` message and the exit code (0 when it returns)."""
    try:
        body()
        return EXIT_OK
    except UserError as error:
        channel.send("error", job_id=job_id(), **error.to_dict())
        return error.exit_code
    except MemoryError:
        error = OutOfMemoryError("the worker ran out of memory; close other programs or use a smaller volume.")
        channel.send("error", job_id=job_id(), **error.to_dict())
        return EXIT_OUT_OF_MEMORY
    except Exception as error:  # noqa: BLE001 - a bug: report it with a short trace
        if type(error).__name__ == "OutOfMemoryError":  # torch's, if the engine let one escape
            user = OutOfMemoryError(f"out of memory on the device ({error}); use the CPU or a smaller volume.")
            channel.send("error", job_id=job_id(), **user.to_dict())
            return EXIT_OUT_OF_MEMORY
        traceback.print_exc()
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-4))
        channel.send("error", job_id=job_id(), code="internal", exit_code=EXIT_INTERNAL,
                     message=f"internal error (a bug): {type(error).__name__}: {error}", trace=trace[-2000:])
        return EXIT_INTERNAL


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m DigitalContrastLib.worker",
        description="DigitalContrast background synthesis worker (normally started by the client).",
    )
    parser.add_argument("job", nargs="?", help="job JSON file; without it, one job line is read from stdin")
    parser.add_argument("--serve", action="store_true", help="read one job per stdin line until EOF, keeping models loaded")
    parser.add_argument("--probe", action="store_true", help="print the hello message (torch, device, memory) and exit")
    parser.add_argument("--task", metavar="NAME", help="run one task of tasks.py (input check, registration, metrics, "
                                                       "DICOM export) on one JSON line of arguments, then exit")
    parser.add_argument("--server", metavar="URL", help="run each job on the synthesis service at URL (the token in "
                                                       "DIGITAL_CONTRAST_TOKEN): the 'Remote server' device, relay.py")
    parser.add_argument("--dummy", action="store_true", help="numpy-only fake synthesis, no torch (self-tests)")
    parser.add_argument("--dummy-seconds", type=float, default=0.0, help="make the dummy inference last this long")
    parser.add_argument("--dummy-model-seconds", type=float, default=0.2, help="fake model load time of the dummy")
    parser.add_argument("--dummy-spawn-child", action="store_true",
                        help="test mode: the dummy keeps a child process alive during each job")
    return parser


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run the worker; returns the exit code (see the module docstring)."""
    try:
        return _main(argv, stdin)
    except ClientGone:
        _log("the client closed its end of the pipe; stopping")
        return EXIT_INTERNAL


def _main(argv: Sequence[str] | None, stdin: TextIO | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage error is a bad job for the client
        return EXIT_BAD_JOB if exit_.code else EXIT_OK
    stdin = stdin or sys.stdin
    channel = MessageChannel.install()
    if args.probe:
        channel.send("hello", **describe_environment("probe", import_torch=True))
        return EXIT_OK
    if args.task:
        return run_task_text(args.task, stdin.readline(), channel)
    if args.server:
        from .relay import RelayRunner  # the remote path: no torch, no engine in this process

        runner = RelayRunner(args.server)
    else:
        runner = JobRunner(dummy=args.dummy, dummy_seconds=args.dummy_seconds,
                           dummy_model_seconds=args.dummy_model_seconds, dummy_spawn_child=args.dummy_spawn_child)
    channel.send("hello", **describe_environment(runner.mode, import_torch=not (args.dummy or args.server)))
    if args.serve:
        for number, line in enumerate(stdin, start=1):
            if line.strip():
                run_job_text(line, f"on stdin line {number}", runner, channel)
        return EXIT_OK
    if args.job:
        try:
            text = Path(args.job).read_text(encoding="utf-8")
        except OSError as error:
            channel.send("error", job_id=None, **JobError(
                f"job file {args.job} cannot be read ({error.strerror}); check the path.", code="job_unreadable").to_dict())
            return EXIT_BAD_JOB
        return run_job_text(text, f"file {args.job}", runner, channel)
    return run_job_text(stdin.readline(), "on stdin", runner, channel)


if __name__ == "__main__":
    sys.exit(main())
