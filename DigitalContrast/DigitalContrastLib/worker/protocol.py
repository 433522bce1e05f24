"""The background worker's wire protocol: job descriptions in, one-line messages out.

One module encodes and decodes, so the worker (``worker.py``) and the client (``client.py``)
cannot drift apart.

Job (worker stdin, one line, or a JSON file given as the worker's argument)::

    {"job_id": "a1b2", "input": "/data/ncct.nrrd", "output": "/data/synthetic.nrrd",
     "model_id": null, "device": "auto",
     "options": {"uncertainty_output": null, "overlap": null, "series_uid": null, "backend": "auto"}}

``input`` and ``output`` are required; ``job_id`` defaults to ``"job"``; ``device`` is
``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``overlap`` is the sliding-window overlap in
``[0, 1)``; ``backend`` is ``auto``, ``torch`` or ``openvino``. Unknown keys are refused, so a typo never passes silently.

Messages (worker stdout): each is ONE line, :data:`PREFIX` then compact JSON with a ``type``:

===========  ====================================================================
type         fields
===========  ====================================================================
hello        protocol, pid, mode (engine | dummy | probe), python, packages,
             torch {installed, imported, version, cuda, cuda_available},
             device {kind, name, free_memory_mb, total_memory_mb}, startup_s
stage        job_id, stage (a name from ``progress.STAGES``)
progress     job_id, stage, done, total (throttled; ``done == total`` always sent)
             (a ``--server`` relay adds overall_fraction to both, and server_url and
             server_job_id to its ``queued`` stage)
warning      job_id, code, message
result       job_id, output, sha256, files [{path, sha256}], model {id, version,
             weights_sha256}, device, timings {model_load_s, synthesis_s, job_s,
             cache_hit, ...}, peak_memory {rss_mb, gpu_mb}, torch_imported, provenance
error        job_id, code, exit_code, message (one sentence), trace (bugs only)
task_result  task, value (the JSON value of a ``--task`` run; see ``tasks.py``)
===========  ====================================================================

Every other line on stdout or stderr is plain log text.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from DigitalContrastLib.common.errors import JobError, require_package
from DigitalContrastLib.synthesis.options import BACKENDS, SynthesisOptions

#: Marks a protocol line; the digit is the protocol version.
PREFIX = "@@DC1 "
PROTOCOL_VERSION = 1

#: Message types and the fields each one must carry (``job_id`` only inside a job).
MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "hello": ("protocol", "mode", "torch", "device"),
    "stage": ("stage",),
    "progress": ("stage", "done", "total"),
    "warning": ("code", "message"),
    "result": ("output", "sha256", "model", "device", "timings"),
    "error": ("code", "exit_code", "message"),
    "task_result": ("task", "value"),
}

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["input", "output"],
    "properties": {
        "job_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9_.:-]+$"},
        "input": {"type": "string", "minLength": 1},
        "output": {"type": "string", "minLength": 1},
        "model_id": {"type": ["string", "null"], "minLength": 1},
        "device": {"type": "string", "pattern": DEVICE_PATTERN},
        "options": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "uncertainty_output": {"type": ["string", "null"], "minLength": 1},
                "overlap": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 1},
                "series_uid": {"type": ["string", "null"], "minLength": 1},
                "backend": {"enum": [*BACKENDS, None]},
            },
        },
    },
}


# ---------------------------------------------------------------------------- messages
def encode_message(type_: str, **fields: Any) -> str:
    """One protocol line (ending in a newline) for a message of ``type_`` with ``fields``.

    Raises ValueError for an unknown type or a missing required field (a bug in the caller).
    """
    if type_ not in MESSAGE_FIELDS:
        raise ValueError(f"unknown message type {type_!r}")
    missing = [name for name in MESSAGE_FIELDS[type_] if name not in fields]
    if missing:
        raise ValueError(f"{type_} message lacks {missing}")
    body = json.dumps({"type": type_, **fields}, separators=(",", ":"), default=_json_default, allow_nan=False)
    return PREFIX + body + "\n"


def decode_line(line: str) -> dict[str, Any] | None:
    """The message carried by ``line``, or None when it is plain log text.

    Tolerates a line that a stray write (without a newline) glued in front of the prefix, and a
    trailing ``\\r`` (Windows). A line with the prefix but unreadable JSON counts as log text.
    """
    at = line.find(PREFIX)
    if at < 0:
        return None
    try:
        message = json.loads(line[at + len(PREFIX):].strip())
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") not in MESSAGE_FIELDS:
        return None
    return message


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------------------- jobs
def make_job(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: SynthesisOptions = SynthesisOptions(),
    *,
    job_id: str | None = None,
) -> dict[str, Any]:
    """A validated job description with absolute paths and a fresh ``job_id`` when none is given."""
    job = {
        "job_id": job_id or uuid.uuid4().hex[:12],
        "input": os.path.abspath(os.fspath(input_path)),
        "output": os.path.abspath(os.fspath(output_path)),
        **options.with_absolute_paths().job_fields(),
    }
    return validate_job(job)


def parse_job(text: str, source: str = "on stdin") -> dict[str, Any]:
    """Decode and validate one job line (or a job file's text); raises JobError in one sentence."""
    try:
        job = json.loads(text)
    except ValueError as error:
        raise JobError(
            f"the job {source} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "send one JSON object per line.",
            code="job_not_json",
        ) from None
    return validate_job(job, source)


def validate_job(job: Any, source: str = "") -> dict[str, Any]:
    """``job`` checked against :data:`JOB_SCHEMA`, with defaults filled in (a new dict).

    Raises JobError naming the first offending field, e.g. ``job on stdin: options.overlap:
    1.5 is greater than or equal to the maximum of 1; fix the job description.``
    """
    jsonschema = require_package("jsonschema", "jsonschema", "Checking a synthesis job")
    where = f"job {source}".strip()
    validator = jsonschema.Draft202012Validator(JOB_SCHEMA)
    errors = sorted(validator.iter_errors(job), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path) or "(the whole job)"
        raise JobError(f"{where}: {field}: {first.message}; fix the job description.", code="bad_job")
    options = dict(job.get("options") or {})
    return {
        "job_id": job.get("job_id") or "job",
        "input": job["input"],
        "output": job["output"],
        "model_id": job.get("model_id"),
        "device": job.get("device") or "auto",
        "options": {
            "uncertainty_output": options.get("uncertainty_output"),
            "overlap": options.get("overlap"),
            "series_uid": options.get("series_uid"),
            "backend": options.get("backend") or "auto",
        },
    }


def job_line(job: Mapping[str, Any]) -> str:
    """``job`` as the one line the worker reads (ends in a newline)."""
    return json.dumps(dict(job), separators=(",", ":")) + "\n"
