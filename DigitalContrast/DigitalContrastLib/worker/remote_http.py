"""HTTP for the remote client, with the standard library only (3D Slicer's Python has it; no extra package).

One request per connection (``http.client``), bearer token, JSON or streamed bodies, server-sent
events read line by line, and the service's refusals turned into the project's errors: the JSON
body ``{"detail", "code", "exit_code"}`` becomes the UserError subclass of that exit code, with the
server's one sentence.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from DigitalContrastLib.common.errors import JobError, UserError

from .outcome import ERRORS_BY_EXIT_CODE, WorkerError

#: The environment variable that holds the token of the CLI and the Python client.
TOKEN_ENV = "DIGITAL_CONTRAST_TOKEN"
CHUNK_BYTES = 1 << 20


class Cancelled(Exception):
    """The caller cancelled while bytes were moving."""


class ServerConnection:
    """The service at ``url`` (``http://host:port`` or ``https://...``, optionally with a path prefix)."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JobError(f"The server URL {url!r} is not an http:// or https:// address; give one such as "
                           "https://gpu-server.example.org.", code="bad_server_url")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._parts = parts
        self._prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._ssl = ssl_context

    def _connection(self, timeout_s: float | None) -> http.client.HTTPConnection:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if self._parts.scheme == "https":
            return http.client.HTTPSConnection(self._parts.hostname, self._parts.port, timeout=timeout,
                                               context=self._ssl or ssl.create_default_context())
        return http.client.HTTPConnection(self._parts.hostname, self._parts.port, timeout=timeout)

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "DigitalContrast-remote-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def path(self, route: str, query: Mapping[str, Any] | None = None) -> str:
        query = {k: ("true" if v is True else "false" if v is False else v) for k, v in (query or {}).items()
                 if v is not None}
        return self._prefix + route + (("?" + urlencode(query)) if query else "")

    def open(self, method: str, route: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             upload: BinaryIO | None = None, upload_size: int = 0, headers: Mapping[str, str] | None = None,
             timeout_s: float | None = None, cancelled: Callable[[], bool] = lambda: False,
             on_sent: Callable[[int], None] | None = None) -> http.client.HTTPResponse:
        """Send a request and return the response once its status is in (raises for a 4xx or 5xx).

        ``upload`` (a binary file of ``upload_size`` bytes) is sent as the body in 1 MiB chunks;
        ``cancelled()`` is asked before each (True aborts with :class:`Cancelled`) and ``on_sent(bytes)``
        told after each.
        """
        connection = self._connection(timeout_s)
        try:
            connection.putrequest(method, self.path(route, query))
            extra = dict(headers or {})
            if upload is not None:
                extra.update({"Content-Type": "application/octet-stream", "Content-Length": str(upload_size)})
            elif body is not None:
                extra.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
            elif method in ("POST", "PUT", "DELETE"):
                extra["Content-Length"] = "0"
            for name, value in self._headers(extra).items():
                connection.putheader(name, value)
            connection.endheaders()
            if upload is not None:
                sent = 0
                while chunk := upload.read(CHUNK_BYTES):
                    if cancelled():
                        connection.close()
                        raise Cancelled()
                    connection.send(chunk)
                    sent += len(chunk)
                    if on_sent is not None:
                        on_sent(sent)
            elif body is not None:
                connection.send(body)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise unreachable(self.url, error) from None
        if response.status >= 400:
            try:
                raise refusal(self.url, response.status, response.read())
            finally:
                connection.close()
        return response

    def json(self, method: str, route: str, **options: Any) -> Any:
        response = self.open(method, route, **options)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise unreachable(self.url, error) from None
        finally:
            response.close()
        return json.loads(raw) if raw else None


def unreachable(url: str, error: BaseException) -> WorkerError:
    return WorkerError(f"The server {url} cannot be reached ({type(error).__name__}: {error}); check the URL and that "
                       "'digital-contrast serve' runs there.", code="server_unreachable")


def refusal(url: str, status: int, raw: bytes) -> UserError:
    """The error a 4xx or 5xx answer stands for, with the server's sentence."""
    try:
        body = json.loads(raw)
        detail, code, exit_code = str(body["detail"]), str(body.get("code") or "refused"), int(body.get("exit_code", 4))
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip().splitlines()
        detail, code = (text[0][:300] if text else f"HTTP {status}"), f"http_{status}"
        exit_code = 1 if status >= 500 else 4
    if status >= 500:
        return WorkerError(f"The server {url} failed (HTTP {status}): {detail}", code=code)
    cls = ERRORS_BY_EXIT_CODE.get(exit_code, JobError)
    error = cls(detail if status != 401 else f"{detail} (server {url})", code=code)
    error.http_status = status  # type: ignore[attr-defined]
    return error


def server_sent_events(response: http.client.HTTPResponse) -> Iterator[tuple[str, str, str]]:
    """``(id, event, data)`` of each server-sent event, as they arrive; comments are skipped."""
    event_id, event_type, data = "", "message", []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield event_id, event_type, "\n".join(data)
            event_id, event_type, data = "", "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "event":
                event_type = value
            elif name == "data":
                data.append(value)
