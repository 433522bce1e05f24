"""``python -m DigitalContrastReaderLib.station.reader_process``: one reader's page process.

The front process (:mod:`.front`) starts it and talks to it over pipes, in the project's worker
style: it reads one JSON command per line on stdin and answers with lines on stdout that start
with :data:`PREFIX` followed by compact JSON (other stdout lines are logs). Credentials travel
on the pipe, never on the command line or in the environment.

1. The first stdin line is its configuration: ``{"store": PATH_OR_URL, "images": DIR|null,
   "port": N, "idle_after_seconds": S}``. It opens the store (a PostgreSQL store as the
   study's reader role), builds the page (:class:`~.reader_app.ReaderPageApp`), starts its
   server on ``127.0.0.1:N`` and says ``{"event": "loaded"}`` (or ``failed`` with a sentence).
2. ``{"cmd": "sign_in", "reader_id": R, "token": T}``: ``signed_in``, or ``refused`` with the
   sentence (nothing is stored; the process waits for another try).
3. ``{"cmd": "verify", "reader_id": R, "token": T}``: ``verified`` with ``ok`` (the same reader
   signing in from another browser joins this process).
4. ``{"cmd": "stop"}`` or the end of stdin (the front has gone, even by SIGKILL): the page is
   closed (every acknowledged answer is durable already) and the process exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

PREFIX = "@@station "


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve(stdin: asyncio.StreamReader, config: dict[str, Any]) -> int:
    from DigitalContrastLib.common.errors import UserError
    from DigitalContrastReaderLib.store.location import open_reading_store

    try:
        store = open_reading_store(config["store"], images_dir=config.get("images"))
    except UserError as error:  # a store that cannot be opened: one sentence, no traceback
        emit("failed", message=str(error))
        return 3
    from .reader_app import ReaderPageApp

    app = ReaderPageApp(idle_after_seconds=float(config.get("idle_after_seconds") or 60.0))
    app.server.start(host="127.0.0.1", port=int(config["port"]), open_browser=False, show_connection_info=False,
                     exec_mode="task", timeout=0, disable_logging=True)
    await app.server.ready
    emit("loaded", pid=os.getpid())
    signed_in = False
    try:
        while line := await stdin.readline():
            command = json.loads(line)
            name = command.get("cmd")
            if name == "sign_in" and not signed_in:
                refusal = app.sign_in(store, str(command.get("reader_id", "")), str(command.get("token", "")))
                signed_in = refusal is None
                if signed_in:
                    emit("signed_in")
                else:
                    emit("refused", message=refusal)
            elif name == "verify":
                emit("verified", ok=bool(app.same_reader(str(command.get("reader_id", "")),
                                                         str(command.get("token", "")))))
            elif name == "stop":
                break
    finally:
        app.close()
        store.close()
    return 0


async def main_async() -> int:
    stdin = await _lines()
    first = await stdin.readline()
    if not first:
        return 0
    return await serve(stdin, json.loads(first))


def main() -> int:
    code = asyncio.run(main_async())
    sys.stdout.flush()
    # VTK objects torn down by the interpreter at exit can crash it; the store is closed already.
    os._exit(code)


if __name__ == "__main__":
    main()
