"""``digital-contrast serve``: the synthesis service, an authenticated HTTP API in front of persistent workers."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

NAME = "serve"
HELP = "run the synthesis service: an HTTP API with tokens, a fair queue and warm workers (one per GPU)"
ORDER = 35
DESCRIPTION = """\
Serve synthesis to a department: workstations (3D Slicer's "Remote server..." device, the CLI's
'synthesize --server URL', 'evaluate --server URL') send a non-contrast CT and get the synthetic CTA
back, with the same progress, cancel, input check and provenance as a local run. The API is under
/v1 with its OpenAPI document at /openapi.json and pages at /docs.

Jobs run on --workers persistent worker processes (the model stays loaded), at most one per GPU,
first in first out with the users served in turn. Uploads, results and job records are deleted
after --retention-hours (they are patient data). Listen on 127.0.0.1 and put a reverse proxy with
TLS in front (docs/service.md); plain HTTP must never leave the machine.

Tokens: the tokens file holds salted hashes only. Add a user's token with --add-token NAME: the
token is printed once, alone on standard output, and the command exits.

examples:
  digital-contrast serve --tokens /srv/dc/tokens.json --add-token ws-radiology-3
  digital-contrast serve --tokens /srv/dc/tokens.json --data-dir /srv/dc/data --port 8700
  DIGITAL_CONTRAST_TOKEN=dc_... digital-contrast synthesize ncct.nrrd out.nrrd --server https://gpu1.example.org
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: behind a proxy)")
    parser.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    parser.add_argument("--tokens", metavar="FILE", default=None,
                        help="the tokens file (default: DATA_DIR/tokens.json)")
    parser.add_argument("--add-token", metavar="NAME", default=None,
                        help="add a token for user NAME to the tokens file, print it once and exit")
    parser.add_argument("--device", default="auto", help="auto (one worker per GPU, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="persistent workers (default: one per GPU, or one on the CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per worker")
    parser.add_argument("--data-dir", default="digital-contrast-service", metavar="DIR",
                        help="where jobs are kept (default ./digital-contrast-service)")
    parser.add_argument("--retention-hours", type=float, default=24.0, metavar="H",
                        help="delete inputs, results and job records after H hours (default 24)")
    parser.add_argument("--max-upload-mb", type=float, default=2048.0, metavar="MB", help="largest upload (default 2048)")
    parser.add_argument("--max-queued", type=int, default=10, metavar="N",
                        help="queued and running jobs per user at most (default 10)")
    parser.add_argument("--web-port", type=int, default=None, metavar="PORT",
                        help="also serve the browser review page on this port (needs the 'web' extra)")
    parser.add_argument("--dummy", action="store_true", help="numpy-only fake synthesis (tests and demos; not a model)")
    parser.add_argument("--dummy-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn's log level (default warning)")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.common.errors import JobError, require_package

    data_dir = Path(args.data_dir).expanduser().resolve()
    tokens = Path(args.tokens).expanduser().resolve() if args.tokens else data_dir / "tokens.json"
    if args.add_token is not None:
        from DigitalContrastLib.service.tokens import TokenStore

        print(TokenStore(tokens).add_token(args.add_token), flush=True)
        print(f"Token for {args.add_token} added to {tokens}; it is shown only this once.", file=sys.stderr)
        return 0
    for value, name in ((args.retention_hours, "--retention-hours"), (args.max_upload_mb, "--max-upload-mb"),
                        (args.max_queued, "--max-queued")):
        if value <= 0:
            raise JobError(f"{name} {value:g} must be greater than 0.", code="bad_option")
    require_package("fastapi", "digital-contrast[service]", "The synthesis service")
    uvicorn = require_package("uvicorn", "digital-contrast[service]", "The synthesis service")
    from DigitalContrastLib.service.app import create_app
    from DigitalContrastLib.service.devices import plan_devices
    from DigitalContrastLib.service.settings import ServiceSettings
    from DigitalContrastLib.service.tokens import TokenStore

    if not TokenStore(tokens).users():
        print(f"warning: {tokens} holds no token yet: every request will get 401. Add one with "
              f"'digital-contrast serve --tokens {tokens} --add-token NAME'.", file=sys.stderr)
    settings = ServiceSettings(data_dir=data_dir, tokens_file=tokens, device=args.device, workers=args.workers,
                               retention_hours=args.retention_hours, max_upload_mb=args.max_upload_mb,
                               max_queued_per_user=args.max_queued, threads=args.threads, dummy=args.dummy,
                               dummy_seconds=args.dummy_seconds)
    plan = plan_devices(args.device, args.workers, dummy=args.dummy)
    app = create_app(settings, plan)
    web = _start_web(args) if args.web_port else None
    print(f"DigitalContrast service on http://{args.host}:{args.port}/v1 ({plan.policy}; data in {data_dir})",
          file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait(10)
    return 0


def _start_web(args: argparse.Namespace):
    """The review page beside the API: its own process (trame serves its own web socket). It holds the
    read end of a pipe whose write end only this process has, so it ends with us even after a SIGKILL."""
    api = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    return subprocess.Popen([sys.executable, "-m", "DigitalContrastLib.web", "--server", api, "--host", args.host,
                             "--port", str(args.web_port), "--exit-with-stdin"],
                            stdin=subprocess.PIPE, env=dict(os.environ))
