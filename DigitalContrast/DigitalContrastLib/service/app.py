"""The HTTP API of the synthesis service (FastAPI), versioned under ``/v1``.

=======  ===============================  ==========================================================
method   path                             what
=======  ===============================  ==========================================================
GET      /v1/health                       device, queue length, workers and their loaded models (no token)
GET      /v1/models                       the models with their cards
POST     /v1/jobs                         submit: the request body is the file (NRRD/NIfTI/MHA or a
                                          zip of one DICOM series), options in the query
GET      /v1/jobs                         the caller's jobs
GET      /v1/jobs/{id}                    status and progress
GET      /v1/jobs/{id}/events             server-sent events: the worker's messages (``?after=N`` resumes)
GET      /v1/jobs/{id}/result             the synthetic volume (NRRD, int16 HU, the input's grid)
GET      /v1/jobs/{id}/provenance         its provenance JSON
GET      /v1/jobs/{id}/uncertainty        the uncertainty map, when asked for
GET      /v1/jobs/{id}/dicom              the labelled synthetic DICOM series as a zip
POST     /v1/jobs/{id}/cancel             cancel (a running job's worker is killed)
DELETE   /v1/jobs/{id}                    delete a finished job's files now
=======  ===============================  ==========================================================

Every route but health needs ``Authorization: Bearer <token>``; a job is visible to its owner only
(anyone else gets the same 404 as for a job that does not exist). Every refusal is a 4xx whose JSON
body holds one sentence (``detail``), a ``code`` and the CLI's ``exit_code``. The routes only move
bytes and call the library: reading and checking inputs (``uploads.py``), the queue and the
workers (``scheduler.py``), the export (a worker ``--task export`` process).
"""

# no "from __future__ import annotations": FastAPI reads the route signatures' annotations at run time
import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from DigitalContrastLib import __version__
from DigitalContrastLib.common.errors import EXIT_BAD_JOB, UserError
from DigitalContrastLib.ct.dicom_export import REQUIRED_PROVENANCE

from . import schemas
from .devices import DevicePlan
from .jobs import ACTIVE, RESULT_NAME, UNCERTAINTY_NAME, JobIndex, ServiceJob, new_job_id
from .scheduler import FairQueue, WorkerPool
from .settings import ServiceSettings
from .tokens import TokenStore
from .uploads import UploadRefused, prepare_input, too_large, upload_suffix

JOB_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="the job's id (16 hex digits)")]
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 409, 413, 415, 422, 429)}
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
#: One server-sent event: ``id`` (its number), ``event`` (its type), ``data`` (the event as JSON:
#: ``seq``, ``type``, ``data``, ``job_id``, ``overall_fraction``, ``eta_s``).
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "id": {"type": "string", "pattern": "^[0-9]+$"},
    "event": {"type": "string", "enum": ["queued", "started", "hello", "stage", "progress", "warning", "result", "error",
                                         "end"]},
    "data": {"type": "string", "contentMediaType": "application/json"}}}
UPLOAD_BODY = {"requestBody": {"required": True, "description": "the file, as is", "content": BINARY}}


class VolumeFileResponse(FileResponse):
    """A file sent in 1 MiB chunks (Starlette's 64 KiB make a 150 MB CT cost twice the time on loopback)."""

    chunk_size = 1 << 20


class ServiceError(Exception):
    """A refusal: HTTP ``status``, ``code`` and one sentence."""

    def __init__(self, status: int, code: str, message: str, exit_code: int = EXIT_BAD_JOB) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.exit_code = status, code, message, exit_code


def _error_response(status: int, code: str, message: str, exit_code: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message, "code": code, "exit_code": exit_code}, status_code=status, headers=headers)


class Service:
    """The running service's parts: tokens, jobs, queue, workers."""

    def __init__(self, settings: ServiceSettings, plan: DevicePlan) -> None:
        self.settings = settings
        self.plan = plan
        self.tokens = TokenStore(settings.tokens_file)
        self.index = JobIndex(settings.jobs_dir)
        self.queue = FairQueue()
        self.pool = WorkerPool(plan.devices, self.queue, dummy=settings.dummy, dummy_seconds=settings.dummy_seconds,
                               threads=settings.threads, work_root=Path(settings.data_dir) / "work",
                               worker_args=settings.worker_args)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="dc-service-retention", daemon=True)

    def start(self) -> None:
        self.index.restore()
        self.index.sweep(self.settings.retention_hours * 3600)
        self.pool.start()
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.pool.stop()

    def _sweep_loop(self) -> None:
        retention_s = self.settings.retention_hours * 3600
        while not self._stop.wait(min(60.0, max(1.0, retention_s / 4))):
            self.index.sweep(retention_s)

    # ------------------------------------------------------------------ jobs
    def status(self, job: ServiceJob) -> dict[str, Any]:
        record = job.record()
        positions = self.queue.positions() if job.status == "queued" else {}
        return {
            "id": job.id, "status": job.status, "input_name": job.input_name, "options": job.options,
            "created": job.created, "started": job.started, "ended": job.ended, "stage": job.stage,
            "progress": min(1.0, max(0.0, 1.0 if job.status == "ok" else job.fraction)), "eta_s": job.eta_s,
            "queue_position": positions.get(job.id), "worker": record["worker"], "result": job.result,
            "error": job.error, "gate_warnings": job.gate_warnings}

    def job_of(self, job_id: str, user: str) -> ServiceJob:
        job = self.index.get(job_id, user)
        if job is None:
            raise ServiceError(404, "no_such_job", f"There is no job {job_id} of yours on this server (it may have "
                                                   "passed the retention time); submit it again.")
        return job

    def cancel(self, job: ServiceJob, wait_s: float = 10.0) -> None:
        if job.status == "queued" and self.queue.remove(job):
            job.status, job.ended = "cancelled", time.time()
            job.remove_inputs()
            job.save()
            job.add_event("end", {"status": "cancelled", "exit_code": 130, "cancel_reason": "cancelled by its owner"})
            job.settled.set()
            return
        job.cancel_requested.set()
        job.settled.wait(wait_s)  # its worker killed, its files removed and its record saved

    def export_dicom(self, job: ServiceJob) -> Path:
        """The job's labelled DICOM series as a zip (made once by a worker ``--task export`` process)."""
        import shutil
        import zipfile

        from DigitalContrastLib.worker.task_process import TaskProcess

        archive = job.folder / "dicom.zip"
        if archive.is_file():
            return archive
        provenance = json.loads((job.result_dir / (RESULT_NAME + ".json")).read_text(encoding="utf-8"))
        model = provenance.get("model") or {}
        meta_file = job.folder / "dicom_meta.json"
        arguments = {
            "synthetic": str(job.result_dir / RESULT_NAME), "out_dir": str(job.folder / "dicom"), "overwrite": True,
            "provenance": {"model_id": model.get("id"), "model_version": model.get("version"),
                           "weights_sha256": model.get("weights_sha256"), "software_version": __version__},
            "source_dicom_meta": json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else None}
        missing = [key for key in REQUIRED_PROVENANCE if not arguments["provenance"].get(key)]
        if missing:  # refused before a process is started for it
            raise ServiceError(409, "missing_provenance", f"Job {job.id}'s result has no {', '.join(missing)} (a "
                                                          "dummy synthesis is not a model output); it cannot be "
                                                          "exported as DICOM.", EXIT_BAD_JOB)
        try:
            value = TaskProcess(["--task", "export"], arguments, threads=1).wait(300.0)
        except UserError as error:
            raise ServiceError(409, error.code, error.message, error.exit_code) from None
        partial = archive.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zipped:
            for name in value["files"]:
                zipped.write(name, "SYNTHETIC/" + Path(name).name)
        partial.replace(archive)
        shutil.rmtree(job.folder / "dicom", ignore_errors=True)
        return archive


def create_app(settings: ServiceSettings, plan: DevicePlan) -> FastAPI:
    """The FastAPI application of a service with ``settings`` on the workers of ``plan``."""
    service = Service(settings, plan)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="DigitalContrast synthesis service", version=__version__, lifespan=lifespan,
                  description="Synthetic CT angiograms from non-contrast CT, computed on this server's workers. "
                              "Every route but /v1/health needs a bearer token.")
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="a token from 'digital-contrast serve --add-token NAME'")

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, error: ServiceError) -> JSONResponse:
        return _error_response(error.status, error.code, error.message, error.exit_code)

    @app.exception_handler(UploadRefused)
    async def _refused(_request: Request, error: UploadRefused) -> JSONResponse:
        return _error_response(error.status, error.code, error.message, error.exit_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = " ".join(str(part) for part in first.get("loc", ()))
        return _error_response(422, "bad_request", f"The request's {where or 'parameters'} are wrong "
                                                   f"({first.get('msg', 'invalid')}); fix the request.", EXIT_BAD_JOB)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = {404: "There is no such route; see /docs for the API.",
                   405: "This route does not take that method; see /docs for the API."}.get(
            error.status_code, f"{error.detail}.")
        return _error_response(error.status_code, "http_error", message, EXIT_BAD_JOB)

    def current_user(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if credentials is None:
            raise ServiceError(401, "no_token", "This request has no bearer token; send 'Authorization: Bearer "
                                                "<token>' (the CLI reads DIGITAL_CONTRAST_TOKEN).")
        user = service.tokens.user_for(credentials.credentials)
        if user is None:
            raise ServiceError(401, "bad_token", "The bearer token is not valid on this server; ask its "
                                                 "administrator for a token ('digital-contrast serve --add-token').")
        return user

    User = Annotated[str, Depends(current_user)]

    @app.get("/v1/health", response_model=schemas.Health, tags=["service"])
    def health() -> dict[str, Any]:
        """The device, the queue and each worker with the models it holds loaded. No token needed."""
        workers = [slot.describe() for slot in service.pool.slots]
        return {"status": "ok", "version": __version__, "device": plan.hello.get("device") or {},
                "queue_length": len(service.queue), "running": sum(w["busy"] for w in workers), "workers": workers,
                "retention_hours": settings.retention_hours, "max_upload_mb": settings.max_upload_mb}

    @app.get("/v1/models", response_model=schemas.ModelList, responses=ERRORS, tags=["models"])
    def models(_user: User) -> dict[str, Any]:
        """The models this server runs, each with its card."""
        if settings.dummy:
            return {"default": "dummy", "models": [{"id": "dummy", "version": "0.0.0", "title": "numpy-only dummy "
                                                    "synthesis (tests; not a model)", "card": {}}]}
        from DigitalContrastLib.models.cards import DEFAULT_MODEL_ID, discover_models

        cards = discover_models().models.values()
        return {"default": DEFAULT_MODEL_ID, "models": [{**card.summary(verify=False), "card": card.data}
                                                        for card in cards]}

    @app.post("/v1/jobs", status_code=201, response_model=schemas.JobStatus, responses=ERRORS, tags=["jobs"],
              openapi_extra=UPLOAD_BODY)
    async def submit(request: Request, user: User,
                     filename: Annotated[str, Query(min_length=1, max_length=255,
                                                    description="the file's name; its extension says the format")],
                     model: Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$",
                                                        description="model id (default: the server's)")] = None,
                     uncertainty: bool = False,
                     overlap: Annotated[float | None, Query(ge=0.0, lt=1.0)] = None,
                     backend: Annotated[Literal["auto", "torch", "openvino"], Query(
                         description="which library runs the network on the server's device (see --backend)")]
                     = "auto",
                     series: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[0-9.]+$",
                                                         description="the DICOM series, when a zip holds several")]
                     = None) -> JSONResponse:
        """Submit a job. The body is the file itself (``application/octet-stream``)."""
        upload_suffix(filename)
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(filename, limit)
        queued = sum(1 for job in service.index.of_user(user) if job.status in ACTIVE)
        if queued >= settings.max_queued_per_user:
            raise ServiceError(429, "queue_limit", f"You have {queued} jobs queued or running, the limit of this "
                                                   "server; wait for one to end or cancel one.")
        job = ServiceJob(id=new_job_id(), user=user, folder=settings.jobs_dir / "pending", input_name=filename,
                         options={"model_id": model, "uncertainty": bool(uncertainty), "overlap": overlap,
                                  "series_uid": series, "backend": backend})
        job.folder = settings.jobs_dir / job.id
        job.folder.mkdir(parents=True)
        try:
            upload = job.folder / "upload.part"
            size = 0
            with open(upload, "wb", buffering=4 << 20) as sink:  # few, large writes
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_large(filename, limit)
                    sink.write(chunk)
            if size == 0:
                raise UploadRefused(422, "empty_upload", f"The upload {filename} is empty; send the file as the "
                                                         "request body.")
            prepared = await run_in_threadpool(prepare_input, job.folder, upload, filename, limit, series)
        except BaseException:
            await run_in_threadpool(_remove, job.folder)
            raise
        job.input_path, job.gate_warnings = prepared.path, prepared.gate_warnings
        job.save()
        service.index.add(job)
        job.add_event("queued", {"position": len(service.queue)})
        service.queue.put(job)
        return JSONResponse(service.status(job), status_code=201)

    @app.get("/v1/jobs", response_model=schemas.JobList, responses=ERRORS, tags=["jobs"])
    def list_jobs(user: User) -> dict[str, Any]:
        """The caller's jobs, oldest first."""
        return {"jobs": [service.status(job) for job in service.index.of_user(user)]}

    @app.get("/v1/jobs/{job_id}", response_model=schemas.JobStatus, responses=ERRORS, tags=["jobs"])
    def job_status(job_id: JOB_ID, user: User) -> dict[str, Any]:
        """A job's status and progress."""
        return service.status(service.job_of(job_id, user))

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], responses={
        **ERRORS, 200: {"description": "server-sent events", "content": {"text/event-stream": {"schema": SSE_EVENT}}}})
    async def job_events(job_id: JOB_ID, user: User, request: Request,
                         after: Annotated[int, Query(ge=0, le=10**9, description="resume after this event number")] = 0
                         ) -> StreamingResponse:
        """The job's events as server-sent events (``id:`` is the event number, ``event:`` its type, ``data:``
        the event as JSON), from event ``after + 1`` (or the ``Last-Event-ID`` header) until ``end``."""
        job = service.job_of(job_id, user)
        last = request.headers.get("last-event-id")
        start = int(last) if last and last.isdigit() else after
        return StreamingResponse(_event_stream(job, start, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def finished_file(job_id: str, user: str, name: str) -> Path:
        job = service.job_of(job_id, user)
        if job.status != "ok":
            raise ServiceError(409, "not_finished", f"Job {job_id} is {job.status}, not finished; wait for its end "
                                                    "event before downloading.")
        path = job.result_dir / name
        if not path.is_file():
            raise ServiceError(404, "no_such_file", f"Job {job_id} has no {name} (uncertainty must be asked for "
                                                    "when submitting).")
        return path

    def download(job_id: str, user: str, name: str) -> FileResponse:
        path = finished_file(job_id, user, name)
        sha256 = ((service.job_of(job_id, user).result or {}).get("files") or {}).get(name) or ""
        return VolumeFileResponse(path, media_type="application/octet-stream", filename=name,
                                  headers={"X-Content-SHA256": str(sha256)})

    files = {"description": "the file", "content": BINARY}

    @app.get("/v1/jobs/{job_id}/result", tags=["results"], responses={**ERRORS, 200: files},
             response_class=FileResponse)
    def result(job_id: JOB_ID, user: User) -> FileResponse:
        """The synthetic CTA: NRRD, int16 HU, exactly the input's grid. ``X-Content-SHA256`` gives its hash."""
        return download(job_id, user, RESULT_NAME)

    @app.get("/v1/jobs/{job_id}/uncertainty", tags=["results"], responses={**ERRORS, 200: files},
             response_class=FileResponse)
    def uncertainty(job_id: JOB_ID, user: User) -> FileResponse:
        """The voxel-wise SD map (int16 HU) of the flip passes, when the job asked for it."""
        return download(job_id, user, UNCERTAINTY_NAME)

    @app.get("/v1/jobs/{job_id}/provenance", tags=["results"], responses=ERRORS)
    def provenance(job_id: JOB_ID, user: User) -> dict[str, Any]:
        """The provenance JSON of the result (input and model hashes, device, timings, gate warnings)."""
        path = finished_file(job_id, user, RESULT_NAME + ".json")
        data = json.loads(path.read_text(encoding="utf-8"))
        job = service.job_of(job_id, user)
        data["input"] = {**(data.get("input") or {}), "path": job.input_name}
        data["output"] = {**(data.get("output") or {}), "path": RESULT_NAME}
        return data

    @app.get("/v1/jobs/{job_id}/dicom", tags=["results"], responses={
        **ERRORS, 200: {"description": "a zip of the series", "content": {"application/zip": {"schema": {
            "type": "string", "format": "binary"}}}}}, response_class=FileResponse)
    async def dicom(job_id: JOB_ID, user: User) -> FileResponse:
        """The synthetic series as labelled DICOM (Synthetic Data YES, DERIVED, a SYNTHETIC description), zipped."""
        finished_file(job_id, user, RESULT_NAME)
        archive = await run_in_threadpool(service.export_dicom, service.job_of(job_id, user))
        return FileResponse(archive, media_type="application/zip", filename=f"synthetic-{job_id}-dicom.zip")

    @app.post("/v1/jobs/{job_id}/cancel", response_model=schemas.JobStatus, responses=ERRORS, tags=["jobs"])
    async def cancel(job_id: JOB_ID, user: User) -> dict[str, Any]:
        """Cancel a queued or running job (its worker is killed); an ended job is left as it is."""
        job = service.job_of(job_id, user)
        if job.status in ACTIVE:
            await run_in_threadpool(service.cancel, job)
        return service.status(job)

    @app.delete("/v1/jobs/{job_id}", status_code=204, responses=ERRORS, tags=["jobs"], response_class=Response)
    async def delete(job_id: JOB_ID, user: User) -> Response:
        """Delete an ended job and all its files now, before the retention time."""
        job = service.job_of(job_id, user)
        if job.status in ACTIVE:
            raise ServiceError(409, "job_active", f"Job {job_id} is {job.status}; cancel it first.")
        await run_in_threadpool(service.index.forget, job)
        return Response(status_code=204)

    return app


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


async def _event_stream(job: ServiceJob, after: int, request: Request):
    """Yield the job's events after number ``after`` as they come; a comment every 15 s keeps proxies open."""
    seq, quiet_since = after, time.monotonic()
    while True:
        events = job.events_after(seq)
        if not events and job.finished:
            if any(e["type"] == "end" for e in job.events):
                return  # asked for events after the end: there are none
            # a job restored from disk has no event log: its end, from the record
            events = [{"seq": seq + 1, "type": "end", "job_id": job.id, "overall_fraction": job.fraction,
                       "eta_s": None, "data": {"status": job.status, "error": job.error}}]
        for event in events:
            seq = event["seq"]
            yield f"id: {seq}\nevent: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
            if event["type"] == "end":
                return
        if not events:
            if time.monotonic() - quiet_since > 15:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)
        else:
            quiet_since = time.monotonic()
