"""What both command lines share: the usage-error exit code and the mapping of failures to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import EXIT_INTERNAL, EXIT_OUT_OF_MEMORY, EXIT_USAGE, UserError


class UsageExitParser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors; 2 means 'bad input' here, so use 64."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def run_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prog: str,
                     interrupted: str = "interrupted; nothing was written.") -> int:
    """Parse ``argv`` and run the chosen sub-command (``args._run``); map failures to exit codes.

    Shared by ``digital-contrast`` and ``digital-contrast-reader``: a ``UserError`` prints its one
    sentence (no traceback) and exits with its code; Ctrl-C exits 130 with ``interrupted``; a closed
    pipe (``| head``) is not an error; anything else is a bug and keeps its traceback.
    """
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args) or 0)
    except UserError as error:
        print(f"{prog} {args.command}: {error.message}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:  # the output went to a pager or `head` that closed early
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silence the flush at exit)
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: out of memory; try a smaller volume or another device.", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY
    except Exception:  # a bug: keep the traceback, say so
        import traceback

        traceback.print_exc()
        print(f"{prog}: internal error (a bug); please report it with the lines above.", file=sys.stderr)
        return EXIT_INTERNAL
