"""``digital-contrast-reader serve STORE``: the options and the start of the reading station."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from DigitalContrastReaderLib.study.errors import StoreError, UsageError

DESCRIPTION = """\
Start the web reading station for a study store: readers open http://HOST:PORT/ in a browser,
sign in with their reader id and token, and read their schedule (no install on their side).
Each signed-in reader gets their own page process; the admin view (/admin) shows progress per
reader with the admin token the station prints at start (or $DIGITAL_CONTRAST_STATION_ADMIN_TOKEN).

STORE is a SQLite file (one site: the station can read the whole file, key included) or the
study's PostgreSQL reader role, postgresql://<db>_reader@HOST:PORT/<db> with its password in
PGPASSWORD or ~/.pgpass, plus --images (the blinded images from 'digital-contrast-reader images'):
then the station holds no key at all.
"""
EXAMPLES = """\
examples:
  digital-contrast-reader serve study.sqlite --port 8765
  PGPASSWORD=... digital-contrast-reader serve postgresql://aorta_pilot_reader@dbhost/aorta_pilot \\
      --images blinded/ --site "Hospital B"
More: docs/reading-station.md
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = DESCRIPTION, EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("store", metavar="STORE", help="the study's answer store: a .sqlite file or a postgresql:// URL "
                                                   "of the study's reader role")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for "
                                                       "every interface, behind your site's HTTPS proxy)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--images", type=Path, metavar="FOLDER",
                   help="PostgreSQL: the folder of blinded images ('digital-contrast-reader images DB --out FOLDER'); "
                        "default $DIGITAL_CONTRAST_READER_IMAGES")
    p.add_argument("--site", help="site name shown in the admin view (default: the store's site)")
    p.add_argument("--max-readers", type=int, default=16,
                   help="readers reading at once (each reader's page process takes about 0.7 GB; default 16)")
    p.add_argument("--idle-minutes", type=float, default=20.0,
                   help="stop a reader's page process after this long with no browser connected (default 20); "
                        "the reader signs in again and continues")
    p.add_argument("--spares", type=int, default=1,
                   help="page processes kept loaded for the next sign-ins (default 1)")
    p.add_argument("--idle-after-seconds", type=float, default=60.0,
                   help="active reading time stops counting after this long without an interaction (default 60)")


def run(args: argparse.Namespace) -> int:
    from .admin_progress import ProgressSource
    from .front import Station, admin_token_from_environment, serve_station

    if args.max_readers < 1 or args.spares < 0 or args.idle_minutes <= 0 or args.idle_after_seconds <= 0:
        raise UsageError("--max-readers must be at least 1, --spares 0 or more, --idle-minutes and "
                         "--idle-after-seconds above 0.")
    images = args.images or os.environ.get("DIGITAL_CONTRAST_READER_IMAGES")
    location = str(args.store)
    progress = ProgressSource(location, images_dir=images, site=args.site)  # a bad store fails here, once
    admin_token, generated = admin_token_from_environment()
    config = {"store": location, "images": str(images) if images else None,
              "idle_after_seconds": args.idle_after_seconds}
    station = Station(config, progress, admin_token, idle_minutes=args.idle_minutes, spares=args.spares,
                      max_readers=args.max_readers)

    def announce(url: str) -> None:
        print(f"Reading station for {getattr(progress.store, 'location', location)} at {url}", flush=True)
        print(f"  readers sign in at {url} with their reader id and token", flush=True)
        print(f"  admin view: {url}admin", flush=True)
        if generated:
            print(f"  admin token (shown once; set DIGITAL_CONTRAST_STATION_ADMIN_TOKEN to choose it): "
                  f"{admin_token}", flush=True)
        print("Stop it with Ctrl+C (answers are saved as they are given).", flush=True)

    from .processes import PageProcessError

    try:
        asyncio.run(serve_station(station, args.host, args.port, announce))
    except OSError as error:  # the port
        raise UsageError(str(error)) from None
    except PageProcessError as error:  # the first page process could not open the store or start
        raise StoreError(f"The reading page could not start: {error}") from None
    return 0
