"""Delivering a worker's output: the job folder, the checks, and the move into place.

The client owns a job folder (``dc-job-*``) and tells the worker to write there. Its files reach the
requested paths only when every reported SHA-256 matches, by an atomic rename (a copy and a rename
across file systems), the main output last; JSON beside the output is rewritten to name the
delivered paths. Folders left by clients that died are removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import OutputError
from DigitalContrastLib.common.hardware import process_exists

from .outcome import WorkerError

JOB_FOLDER_PREFIX = "dc-job-"


@dataclass
class RunningJob:
    job: dict[str, Any]          # as requested (final paths)
    worker_job: dict[str, Any]   # as sent (paths in the job folder)
    folder: Path
    started: float
    weights: dict[str, float]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    fraction: float = 0.0
    eta_s: float | None = None
    eta_at: float = 0.0
    renamed: dict[str, str] = field(default_factory=dict)  # job-folder path -> delivered path

    @property
    def job_id(self) -> str:
        return self.job["job_id"]


def final_result(job: RunningJob) -> dict[str, Any]:
    """The worker's result with the delivered paths in place of the job-folder ones."""
    result = _replace_paths({k: v for k, v in (job.result or {}).items() if k != "type"}, job.renamed)
    result["output"] = job.job["output"]
    result["uncertainty_output"] = job.job["options"]["uncertainty_output"]
    return result


def _replace_paths(value: Any, renamed: Mapping[str, str]) -> Any:
    """``value`` (JSON-like) with every string equal to a key of ``renamed`` replaced by its value."""
    if isinstance(value, str):
        return renamed.get(value, value)
    if isinstance(value, dict):
        return {k: _replace_paths(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_paths(v, renamed) for v in value]
    return value


def _rewrite_json_paths(path: Path, renamed: Mapping[str, str]) -> None:
    """Rewrite a (verified) JSON file in the job folder so that it names the delivered paths."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return  # not JSON after all: deliver it as it is
    updated = _replace_paths(data, renamed)
    if updated != data:
        path.write_text(json.dumps(updated, indent=2) + "\n", encoding="utf-8")


def require_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"output folder {folder} cannot be created ({error.strerror}); choose a writable folder.",
                          code="output_not_writable") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable; choose a writable folder.",
                          code="output_not_writable")


def move_into_place(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination`` (atomic); across file systems copy to a temp name first."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, destination)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            with atomic_path(destination) as tmp:
                shutil.copyfile(source, tmp)
    except OSError as error:
        raise OutputError(f"output {destination} cannot be written ({error.strerror}); choose a writable folder.",
                          code="output_not_writable") from None


def remove_stale_job_folders(root: Path) -> None:
    """Remove job folders left by clients that died (their ``owner.pid`` is not running)."""
    try:
        candidates = list(root.glob(JOB_FOLDER_PREFIX + "*"))
    except OSError:
        return
    for folder in candidates:
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not process_exists(owner):
            shutil.rmtree(folder, ignore_errors=True)


def deliver(job: RunningJob, verify: bool = True) -> Path:
    """Verify every reported file's SHA-256, then move them into place, the main output last.

    ``verify=False`` leaves the hash check to the caller (the result keeps every file's SHA-256).

    JSON files beside the output (the provenance) name the job-folder paths the worker
    wrote; they are rewritten to name the delivered paths.
    """
    result = job.result or {}
    main = Path(result.get("output", "")).resolve()
    files = result.get("files") or [{"path": result.get("output"), "sha256": result.get("sha256")}]
    moves = []
    for item in files:
        source = Path(str(item.get("path"))).resolve()
        destination = final_path(job, source)
        if not source.is_file() or (verify and file_sha256(source) != item.get("sha256")):
            raise WorkerError(
                f"the worker's output {source.name} is missing or does not match the SHA-256 it reported; "
                "nothing was delivered.", code="checksum_mismatch")
        moves.append((source == main, source, destination))
        job.renamed[str(item.get("path"))] = job.renamed[str(source)] = str(destination)
    if not any(is_main for is_main, _, _ in moves):
        raise WorkerError("the worker's result does not list its main output; nothing was delivered.",
                          code="protocol_error")
    for _, source, destination in sorted(moves, key=lambda move: move[0]):
        if source.suffix == ".json":
            _rewrite_json_paths(source, job.renamed)
        move_into_place(source, destination)
    return Path(job.job["output"])


def final_path(job: RunningJob, source: Path) -> Path:
    folder = job.folder.resolve()
    try:
        part, *rest = source.relative_to(folder).parts
    except ValueError:
        raise WorkerError(f"the worker wrote {source} outside its job folder; nothing was delivered.",
                          code="protocol_error") from None
    target = job.job["output"] if part == "out" else job.job["options"]["uncertainty_output"]
    if part not in ("out", "unc") or not rest or not target:
        raise WorkerError(f"the worker reported an unexpected file {source.name}; nothing was delivered.",
                          code="protocol_error")
    return Path(target).parent.joinpath(*rest)
