"""What ``digital-contrast serve`` is configured with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceSettings:
    """The service's settings.

    Attributes:
        data_dir: jobs (uploads, results, records) live in ``data_dir/jobs/<job id>/``.
        tokens_file: the salted token hashes (``tokens.py``).
        device: the workers' device: ``auto`` (one worker per GPU, else one on the CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        workers: persistent workers (warm models); None: one per GPU, or one without a GPU.
        retention_hours: uploads, results and job records older than this are deleted.
        max_upload_mb: the largest upload accepted (MiB).
        max_queued_per_user: a user's queued and running jobs at most.
        threads: CPU threads per worker (None: the physical cores divided among the workers).
        dummy, dummy_seconds: run the numpy-only fake synthesis (tests, demos without a model).
        worker_args: extra worker options (tests).
    """

    data_dir: Path
    tokens_file: Path
    device: str = "auto"
    workers: int | None = None
    retention_hours: float = 24.0
    max_upload_mb: float = 2048.0
    max_queued_per_user: int = 10
    threads: int | None = None
    dummy: bool = False
    dummy_seconds: float = 0.0
    worker_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def jobs_dir(self) -> Path:
        return Path(self.data_dir) / "jobs"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
