"""Shared pytest fixtures and marker handling for the DigitalContrast suite.

Markers (declared in pyproject.toml):
  mrml      needs slicer-core's real vtkMRMLScene; skipped with the reason if the wheel is absent
  process   spawns real subprocesses
  slow      takes more than a few seconds
  realdata  needs ../shared/data (beside the project); skipped with the reason when absent
  postgres  starts a real PostgreSQL server (fixture ``postgres_server``); skipped with the reason
            only where the binaries are absent and cannot be installed
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The real CT test files: $DIGITALCONTRAST_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("DIGITALCONTRAST_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    data = shared_data_root()
    has_data = (data / "real").is_dir()
    has_slicer = importlib.util.find_spec("slicer") is not None and importlib.util.find_spec("vtk") is not None
    skip_data = pytest.mark.skip(reason=f"real CT test data not found at {data} (see ../shared/data/README.md)")
    skip_mrml = pytest.mark.skip(reason="slicer-core is not installed (pip install -e .[test])")
    for item in items:
        if "realdata" in item.keywords and not has_data:
            item.add_marker(skip_data)
        if "mrml" in item.keywords and not has_slicer:
            item.add_marker(skip_mrml)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder ``real/`` of the shared test data (tests using it must carry the realdata marker)."""
    path = shared_data_root() / "real"
    if not path.is_dir():
        pytest.skip(f"real CT test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on a free loopback port for the whole session (Debian's package,
    installed with apt-get when missing and possible; see postgres_server.py), stopped with
    ``-m immediate`` at the end. Skips, with the reason, only where it cannot be had."""
    from postgres_server import start_server, unavailable_reason

    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the PostgreSQL driver psycopg is not installed (pip install -e .[test])")
    server = start_server()
    if server is None:
        pytest.skip(unavailable_reason())
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server) -> str:
    """The superuser's URL of a new, empty database (one per test)."""
    return postgres_server.create_database()
