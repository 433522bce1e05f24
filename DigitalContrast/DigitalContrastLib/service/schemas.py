"""The shapes of the service's JSON answers: they make the OpenAPI document that clients and fuzzers read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refusal: one sentence, a short code, and the exit code the CLI would give."""

    detail: str = Field(description="one sentence naming what is wrong and the fix")
    code: str
    exit_code: int


class JobOptions(BaseModel):
    model_id: str | None = None
    uncertainty: bool = False
    overlap: float | None = None
    series_uid: str | None = None
    backend: str = "auto"


class WorkerInfo(BaseModel):
    slot: int | None = None
    pid: int | None = None
    device: str | None = None


class JobErrorInfo(BaseModel):
    code: str
    message: str
    exit_code: int
    log_tail: list[str] | None = None


class JobResult(BaseModel):
    sha256: str | None = None
    model: dict[str, Any] | None = None
    device: str | None = None
    timings: dict[str, Any] | None = None
    peak_memory: dict[str, Any] | None = None
    files: dict[str, str] = Field(default_factory=dict, description="file name -> SHA-256")


class GateNote(BaseModel):
    code: str
    message: str


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "ok", "error", "cancelled"]
    input_name: str
    options: JobOptions
    created: float
    started: float | None = None
    ended: float | None = None
    stage: str | None = None
    progress: float = Field(ge=0.0, le=1.0, description="fraction of the whole job")
    eta_s: float | None = None
    queue_position: int | None = Field(None, description="queued jobs taken before this one (0: next)")
    worker: WorkerInfo | None = None
    result: JobResult | None = None
    error: JobErrorInfo | None = None
    gate_warnings: list[GateNote] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[JobStatus]


class ModelInfo(BaseModel):
    id: str
    version: str
    ifu: str | None = None
    title: str | None = None
    intended_use: str | None = None
    weights_sha256: str | None = None
    verified: bool | None = None
    card: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]


class SlotHealth(BaseModel):
    slot: int
    device: str
    worker_alive: bool
    busy: bool
    jobs_run: int
    models_loaded: list[str]
    worker: dict[str, Any] | None = None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    device: dict[str, Any]
    queue_length: int
    running: int
    workers: list[SlotHealth]
    retention_hours: float
    max_upload_mb: float
