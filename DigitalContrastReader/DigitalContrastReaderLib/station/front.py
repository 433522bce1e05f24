"""The reading station's front process: sign-in, the admin view, and one page process per reader.

``digital-contrast-reader serve STORE`` runs :func:`run_station`. The front is the station's only
public door (one origin, one port):

=============================  =================================================================
``GET /``                      the sign-in page (reader id + token)
``POST /sign-in``              checks them in a page process; on success the reader's browser
                               gets a cookie and goes to ``/s/<session>/``, a neutral random id
``/s/<session>/...``           the reader's page process (HTTP and WebSocket), for that cookie only
``GET /s/<session>/alive``     200 while the session lives, 410 when it has ended (the page's
                               script asks after a lost connection)
``POST /s/<session>/sign-out`` ends the session (every acknowledged answer is durable already)
``GET /admin``                 progress per reader and site, live (admin token); nothing of answers
``GET /admin/progress``        the same as JSON (``Authorization: Bearer <admin token>``)
=============================  =================================================================

Each signed-in reader gets their own page process (:mod:`.processes`): trame's state, shared by
every browser connected to a process, never holds two readers. A session ends when its reader
signs out, when no browser has been connected to it for ``idle_minutes``, or when its process
stops; the reader then signs in again and continues where the store says they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .admin_progress import ProgressSource, progress_rows
from .pages import NOTES, SIGN_IN_REFUSED, admin_page, sign_in_page
from .processes import PageProcesses, PageProcessError, ReaderSession
from .proxy import PageProxy

COOKIE = "dc_station_session"
ADMIN_TOKEN_ENV = "DIGITAL_CONTRAST_STATION_ADMIN_TOKEN"
REAP_EVERY_S = 15.0


class Station:
    """The front's state: the page processes and the signed-in readers' sessions.

    Args:
        config: what every page process gets (store location, images folder, idle_after_seconds).
        progress: where the admin view reads progress (:mod:`.admin_progress`).
        admin_token: the admin view's token.
        idle_minutes: a session with no browser connected for this long is stopped.
    """

    def __init__(self, config: dict[str, Any], progress: ProgressSource, admin_token: str, *,
                 idle_minutes: float = 20.0, spares: int = 1, max_readers: int = 16) -> None:
        self.processes = PageProcesses(config, spares=spares, max_readers=max_readers)
        self.progress = progress
        self.admin_token = admin_token
        self.idle_s = idle_minutes * 60.0
        self.max_readers = max_readers
        self.sessions: dict[str, ReaderSession] = {}
        self.proxy = PageProxy()
        self._reader_locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task | None = None

    async def start(self) -> None:
        await self.processes.start()
        self._reaper = asyncio.ensure_future(self._reap_forever())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.gather(*(s.process.stop() for s in self.sessions.values()), return_exceptions=True)
        self.sessions.clear()
        await self.processes.close()
        await self.proxy.close()
        self.progress.close()

    # ------------------------------------------------------------------ sessions
    def session_of(self, request: web.Request, session_id: str) -> ReaderSession | None:
        """The live session ``session_id`` when the request carries its cookie."""
        session = self.sessions.get(session_id)
        cookie = request.cookies.get(COOKIE, "")
        if session is None or not hmac.compare_digest(cookie, session_id):
            return None
        if not session.process.alive:
            self.sessions.pop(session_id, None)
            return None
        return session

    async def sign_in(self, reader_id: str, token: str) -> tuple[ReaderSession | None, str]:
        """A session for the reader, or None and the sentence to show (nothing is stored)."""
        reader_id, token = reader_id.strip(), token.strip()
        if not reader_id or not token:
            return None, "Enter your reader id and your token."
        lock = self._reader_locks.setdefault(reader_id, asyncio.Lock())
        async with lock:
            current = next((s for s in self.sessions.values() if s.reader_id == reader_id and s.process.alive), None)
            if current is not None:  # the same reader from another browser or tab joins their page
                reply = await current.process.request({"cmd": "verify", "reader_id": reader_id, "token": token})
                if reply.get("ok"):
                    current.touch()
                    return current, ""
                return None, SIGN_IN_REFUSED
            if len(self.sessions) >= self.max_readers:
                return None, (f"The station is full ({self.max_readers} readers are reading); try again in a few "
                              "minutes or ask the study admin.")
            process = await self.processes.take()
            reply = await process.request({"cmd": "sign_in", "reader_id": reader_id, "token": token})
            if reply["event"] != "signed_in":
                self.processes.give_back(process)
                return None, reply.get("message") or SIGN_IN_REFUSED
            session = ReaderSession(secrets.token_urlsafe(18), reader_id, process)
            self.sessions[session.session_id] = session
            return session, ""

    async def end(self, session: ReaderSession) -> None:
        self.sessions.pop(session.session_id, None)
        await session.process.stop()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            await self.reap()

    async def reap(self) -> None:
        """Stop the sessions no browser has used for ``idle_minutes``; forget stopped ones."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if not session.process.alive:
                self.sessions.pop(session.session_id, None)
            elif session.connections == 0 and now - session.last_seen > self.idle_s:
                print(f"reading station: session of reader {session.reader_id} stopped after "
                      f"{self.idle_s / 60:g} min without a browser", file=sys.stderr, flush=True)
                await self.end(session)

    # ------------------------------------------------------------------ admin
    def admin_progress(self) -> dict[str, Any]:
        reading = {s.reader_id: s for s in self.sessions.values() if s.process.alive}
        rows = progress_rows(self.progress, {r: s.process.rss_bytes() for r, s in reading.items()})
        spares = len(self.processes._spares)
        return {"readers": rows, "summary": f"{len(reading)} reader(s) reading now, {spares} spare page process(es); "
                                           f"updated {time.strftime('%H:%M:%S')}."}


# ---------------------------------------------------------------------- routes


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def build_app(station: Station) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        session = station.session_of(request, request.cookies.get(COOKIE, ""))
        if session is not None:
            raise web.HTTPSeeOther(f"s/{session.session_id}/")
        note = next((text for key, text in NOTES.items() if key in request.query), "")
        return _html(sign_in_page(note=note))

    @routes.post("/sign-in")
    async def sign_in(request: web.Request) -> web.Response:
        form = await request.post()
        reader_id, token = str(form.get("reader_id", "")), str(form.get("token", ""))
        try:
            session, sentence = await station.sign_in(reader_id, token)
        except PageProcessError as error:
            return _html(sign_in_page(error=f"The station could not open a reading page ({error}); try again or "
                                            "tell the study admin.", reader_id=reader_id), status=503)
        if session is None:
            return _html(sign_in_page(error=sentence, reader_id=reader_id), status=401)
        response = web.HTTPSeeOther(f"s/{session.session_id}/")
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"  # behind an HTTPS proxy
        response.set_cookie(COOKIE, session.session_id, httponly=True, samesite="Strict", path="/", secure=secure)
        raise response

    @routes.get("/s/{sid}/alive")
    async def alive(request: web.Request) -> web.Response:
        session = station.session_of(request, request.match_info["sid"])
        if session is None:
            return web.json_response({"alive": False}, status=410)
        session.touch()
        return web.json_response({"alive": True})

    @routes.post("/s/{sid}/sign-out")
    async def sign_out(request: web.Request) -> web.Response:
        session = station.session_of(request, request.match_info["sid"])
        if session is not None:
            await station.end(session)
        response = web.HTTPSeeOther("../../?signed_out=1")
        response.del_cookie(COOKIE, path="/")
        raise response

    @routes.route("*", "/s/{sid}/{tail:.*}")
    async def page(request: web.Request) -> web.StreamResponse:
        sid = request.match_info["sid"]
        session = station.session_of(request, sid)
        if session is None:
            if request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket":
                raise web.HTTPSeeOther("../../?ended=1" if request.match_info["tail"] == "" else "/?ended=1")
            raise web.HTTPGone(text="This reading session has ended; sign in again.")
        session.touch()
        tail = request.raw_path.split("?", 1)[0][len(f"/s/{sid}/"):]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            session.connections += 1
            try:
                return await station.proxy.websocket(request, session.process.port, tail, session.touch)
            finally:
                session.connections -= 1
                session.touch()
        return await station.proxy.http(request, session.process.port, tail)

    @routes.get("/s/{sid}")
    async def page_root(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther(f"{request.match_info['sid']}/")

    @routes.get("/admin")
    async def admin(request: web.Request) -> web.Response:
        return _html(admin_page())

    @routes.get("/admin/progress")
    async def admin_progress(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given, station.admin_token):
            return web.json_response({"error": "That admin token is wrong; use the one the station printed when it "
                                               "started."}, status=401)
        return web.json_response(station.admin_progress(), headers={"Cache-Control": "no-store"})

    app = web.Application(client_max_size=1 << 20)
    app.add_routes(routes)
    return app


async def serve_station(station: Station, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Run the station until SIGINT/SIGTERM; the page processes stop with it (and by themselves
    when the front dies: their stdin closes)."""
    await station.start()
    runner = web.AppRunner(build_app(station), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await station.close()
        await runner.cleanup()
        raise OSError(f"port {port} on {host} cannot be used ({error.strerror}); choose another with --port") from None
    announce(f"http://{host}:{port}/")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await station.close()
        await runner.cleanup()


def admin_token_from_environment() -> tuple[str, bool]:
    """The admin token: ``$DIGITAL_CONTRAST_STATION_ADMIN_TOKEN``, else a new one (second value True)."""
    given = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    return (given, False) if given else (secrets.token_urlsafe(24), True)
