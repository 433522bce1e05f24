"""``python -m DigitalContrastLib.web --server URL [--host H] [--port N]``: serve the review page."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m DigitalContrastLib.web",
                                     description="The DigitalContrast review page: a browser front end of a synthesis "
                                                 "service (digital-contrast serve --web-port starts it beside the API).")
    parser.add_argument("--server", required=True, metavar="URL", help="the synthesis service, e.g. http://127.0.0.1:8700")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8701, help="port (default 8701)")
    args = parser.parse_args(argv)
    from .review_app import ReviewApp

    app = ReviewApp(args.server)
    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
