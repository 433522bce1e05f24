"""``python -m DigitalContrastLib.web --server URL [--host H] [--port N]``: serve the review page."""

from __future__ import annotations

import argparse
import os
import sys
import threading


def _exit_when_stdin_closes() -> None:
    """End this process when its parent has gone (even by SIGKILL): the parent holds our stdin's pipe."""
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m DigitalContrastLib.web",
                                     description="The DigitalContrast review page: a browser front end of a synthesis "
                                                 "service (digital-contrast serve --web-port starts it beside the API).")
    parser.add_argument("--server", required=True, metavar="URL", help="the synthesis service, e.g. http://127.0.0.1:8700")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8701, help="port (default 8701)")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when standard input closes (how 'serve --web-port' ties the page to itself)")
    args = parser.parse_args(argv)
    if args.exit_with_stdin:
        _exit_when_stdin_closes()
    from .review_app import ReviewApp

    app = ReviewApp(args.server)
    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
