"""The front's side of the per-reader page processes (:mod:`.reader_process`).

:class:`PageProcess` starts one on a free loopback port and exchanges its pipe messages;
:class:`PageProcesses` keeps warm spare processes (a page process takes seconds to import
trame, VTK and Slicer's libraries, so a reader who signs in gets one that is ready), hands one
to each signed-in reader, and stops those no browser has used for a while. Two readers never
share a process: trame's state, which every browser connected to a process shares, holds one
reader only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .reader_process import PREFIX

#: How long a page process may take to load (imports, the page, its server).
LOAD_TIMEOUT_S = 120.0
#: How long a sign-in or a verification may take (the token's key derivation, the first item).
REPLY_TIMEOUT_S = 60.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PageProcessError(RuntimeError):
    """A page process failed to start or stopped answering (a sentence for the admin's log)."""


class PageProcess:
    """One page process: its port, its pipe, its replies."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.config = {**config, "port": self.port}
        self.proc: asyncio.subprocess.Process | None = None
        self.loaded: asyncio.Future | None = None
        self._replies: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._one_at_a_time = asyncio.Lock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loaded = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "DigitalContrastReaderLib.station.reader_process",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            env={**os.environ, "TRAME_DISABLE_V2_WARNING": "1"}, limit=2**20,
        )
        self._send(self.config)
        self._reader = asyncio.ensure_future(self._read())

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if not text.startswith(PREFIX):
                print(f"[page {self.pid}] {text}", file=sys.stderr, flush=True)
                continue
            message = json.loads(text[len(PREFIX):])
            if message["event"] in ("loaded", "failed") and self.loaded is not None and not self.loaded.done():
                self.loaded.set_result(message)
            else:
                self._replies.put_nowait(message)
        await self.proc.wait()
        if self.loaded is not None and not self.loaded.done():
            self.loaded.set_result({"event": "failed", "message": f"the page process exited ({self.proc.returncode})"})
        self._replies.put_nowait({"event": "exited"})

    async def wait_loaded(self) -> None:
        assert self.loaded is not None
        try:
            message = await asyncio.wait_for(asyncio.shield(self.loaded), LOAD_TIMEOUT_S)
        except asyncio.TimeoutError:
            await self.kill()
            raise PageProcessError(f"a page process did not start within {LOAD_TIMEOUT_S:.0f} s") from None
        if message["event"] != "loaded":
            raise PageProcessError(message.get("message", "a page process failed to start"))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its reply (commands are sent one at a time)."""
        async with self._one_at_a_time:
            if not self.alive:
                raise PageProcessError("the page process has stopped")
            self._send(message)
            try:
                reply = await asyncio.wait_for(self._replies.get(), REPLY_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise PageProcessError("the page process did not answer") from None
        if reply["event"] == "exited":
            raise PageProcessError("the page process has stopped")
        return reply

    async def stop(self, grace_s: float = 10.0) -> None:
        """Ask the process to close its page and exit; kill it if it does not."""
        if not self.alive:
            return
        with contextlib.suppress(Exception):
            self._send({"cmd": "stop"})
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except asyncio.TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            await self.proc.wait()

    def rss_bytes(self) -> int | None:
        """Resident memory of the process (psutil), None when it has stopped."""
        import psutil

        try:
            return psutil.Process(self.pid).memory_info().rss if self.alive else None
        except psutil.Error:
            return None


@dataclass
class ReaderSession:
    """A signed-in reader and their page process. ``session_id`` is random and neutral."""

    session_id: str
    reader_id: str
    process: PageProcess
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    connections: int = 0

    def touch(self) -> None:
        self.last_seen = time.monotonic()


class PageProcesses:
    """Spare page processes, and the one of each signed-in reader.

    Args:
        config: what every page process gets (store, images, idle_after_seconds).
        spares: page processes kept loaded for the next sign-ins.
        max_readers: most readers reading at once (each has a process of a few hundred MB).
    """

    def __init__(self, config: dict[str, Any], *, spares: int = 1, max_readers: int = 16) -> None:
        self.config = config
        self.spares_wanted = max(0, spares)
        self.max_readers = max_readers
        self._spares: list[PageProcess] = []
        self._starting: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the spares and wait for the first one (a broken store shows here, once)."""
        first = PageProcess(self.config)
        await first.start()
        await first.wait_loaded()
        self._spares.append(first)
        self._top_up()

    def _top_up(self) -> None:
        missing = self.spares_wanted - len(self._spares) - len(self._starting)
        for _ in range(max(0, missing)):
            task = asyncio.ensure_future(self._start_spare())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_spare(self) -> None:
        process = PageProcess(self.config)
        try:
            await process.start()
            await process.wait_loaded()
        except PageProcessError as error:
            print(f"reading station: a spare page process failed: {error}", file=sys.stderr, flush=True)
            await process.kill()
            return
        self._spares.append(process)

    async def take(self) -> PageProcess:
        """A loaded page process with no reader (a spare, or a new one)."""
        async with self._lock:
            while self._spares:
                process = self._spares.pop(0)
                if process.alive:
                    self._top_up()
                    return process
            process = PageProcess(self.config)
            await process.start()
        await process.wait_loaded()
        self._top_up()
        return process

    def give_back(self, process: PageProcess) -> None:
        """A process whose sign-in was refused holds no reader: it stays a spare."""
        if process.alive and len(self._spares) < max(self.spares_wanted, 1):
            self._spares.append(process)
        else:
            asyncio.ensure_future(process.stop())

    async def close(self) -> None:
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*(p.stop(grace_s=5) for p in self._spares), return_exceptions=True)
        self._spares.clear()
