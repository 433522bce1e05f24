"""Forwarding a reader's HTTP requests and WebSocket to their page process (aiohttp).

The front process is the station's only public door: ``/s/<session>/<path>`` goes to
``http://127.0.0.1:<port>/<path>`` of that session's page process, and a WebSocket upgrade at
the same place is joined to the page process's WebSocket, message by message, so the page, its
assets and trame's WebSocket all come from one origin. Cookies stay at the front.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

#: Headers that belong to one connection, not to the message (RFC 9110 section 7.6.1), plus the
#: ones the front owns.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "cookie", "set-cookie", "content-length"}
CHUNK_BYTES = 1 << 16


class PageProxy:
    """Forwards requests to page processes on the loopback interface (one client session)."""

    def __init__(self) -> None:
        self._client: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def http(self, request: web.Request, port: int, path: str) -> web.StreamResponse:
        """Forward one HTTP request and stream the answer back."""
        url = _target(f"http://127.0.0.1:{port}/{path}", request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self.client.request(request.method, url, headers=headers,
                                                 data=body, allow_redirects=False)
        except aiohttp.ClientError:
            raise web.HTTPBadGateway(text="The reading page is not answering; reload the page in a moment.") from None
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
        return response

    async def websocket(self, request: web.Request, port: int, path: str,
                        on_message: Callable[[], None] = lambda: None) -> web.WebSocketResponse:
        """Join the browser's WebSocket to the page process's, until either side closes."""
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        browser = web.WebSocketResponse(protocols=protocols, max_msg_size=0, compress=False)
        await browser.prepare(request)
        try:
            page = await self.client.ws_connect(_target(f"ws://127.0.0.1:{port}/{path}", request),
                                                protocols=protocols, max_msg_size=0)
        except aiohttp.ClientError:
            await browser.close(code=aiohttp.WSCloseCode.TRY_AGAIN_LATER, message=b"page process not answering")
            return browser

        async def pump(source, target, count: bool) -> None:
            async for message in source:
                if count:
                    on_message()
                if message.type == aiohttp.WSMsgType.TEXT:
                    await target.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await target.send_bytes(message.data)
                else:
                    break

        tasks = [asyncio.ensure_future(pump(browser, page, True)), asyncio.ensure_future(pump(page, browser, False))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await page.close()
            await browser.close()
        return browser


def _target(base: str, request: web.Request) -> URL:
    """``base`` with the request's query string, exactly as the browser encoded it."""
    return URL(base + ("?" + request.query_string if request.query_string else ""), encoded=True)
