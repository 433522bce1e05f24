"""A real PostgreSQL server for tests and benchmarks, on a free loopback port (not a test itself).

Debian's ``postgresql`` package: the binaries in ``/usr/lib/postgresql/<version>/bin`` (installed
with apt-get when missing and this user is root with apt-get, as ``make test`` does). The
server refuses to run as root, so as root it runs as user ``postgres`` (``runuser``) on a
temporary folder owned by ``postgres``; as another user it runs as that user. ``initdb`` makes a
cluster with trust authentication on loopback only; :meth:`PostgresServer.stop` stops it with
``-m immediate`` (what a power cut does) and removes the folder.

    server = start_server()            # None, and the reason in ``unavailable_reason()``, if impossible
    url = server.create_database("t1") # postgresql://postgres@127.0.0.1:PORT/t1
    server.stop()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_REASON: list[str] = []
_NAMES = itertools.count(1)


def unavailable_reason() -> str:
    return _REASON[-1] if _REASON else "PostgreSQL could not be started"


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL binary folder, or the one of ``pg_ctl`` on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if
                   p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and (Path(on_path).parent / "initdb").exists() else None


def install_with_apt() -> bool:
    """``apt-get install postgresql`` when this user is root and apt-get exists."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]):
        if subprocess.run(args, env=env, capture_output=True, timeout=900).returncode != 0:
            return False
    return find_bin_dir() is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path, folder: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.run_as = run_as
        self.superuser = "postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns the superuser's URL of it."""
        name = name or f"study{next(_NAMES)}_{os.getpid()}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PostgresServer | None:
    """Start a throw-away server (None when impossible: see :func:`unavailable_reason`)."""
    bin_dir = find_bin_dir() or (find_bin_dir() if install_with_apt() else None)
    if bin_dir is None:
        _REASON.append("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin) and cannot be installed here "
                       "(needs root and apt-get: 'apt-get install postgresql')")
        return None
    run_as = None
    folder = Path(tempfile.mkdtemp(prefix="dc-postgres-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _REASON.append("PostgreSQL refuses to run as root and there is no 'postgres' user")
            return None
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = "postgres"
    server = PostgresServer(bin_dir, folder, free_port(), run_as)
    done = server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                       "--no-instructions")
    if done.returncode != 0:
        _REASON.append(f"initdb failed: {done.stderr.strip()[-300:]}")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    options = f"-p {server.port} -k {folder} -h 127.0.0.1 -c max_connections=200"
    done = server._run("pg_ctl", "-D", str(server.data), "-o", options, "-l", str(folder / "server.log"), "-w",
                       "-t", "60", "start")
    if done.returncode != 0:
        log = (folder / "server.log").read_text(errors="replace")[-400:] if (folder / "server.log").exists() else ""
        _REASON.append(f"pg_ctl start failed: {done.stderr.strip()[-200:]} {log}")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return server


@contextlib.contextmanager
def running_server():
    """A server for the ``with`` block (the benchmark's entry point)."""
    server = start_server()
    if server is None:
        raise RuntimeError(unavailable_reason())
    try:
        yield server
    finally:
        server.stop()
