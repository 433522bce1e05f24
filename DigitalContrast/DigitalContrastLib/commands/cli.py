"""``digital-contrast``: the command-line entry point.

Each sub-command lives in its own module under ``DigitalContrastLib.commands`` and is found
automatically: a module there defines ``NAME`` (the sub-command), ``HELP`` (one line),
``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and ``run(args) -> int``.

Errors a user can cause (:class:`~DigitalContrastLib.common.errors.UserError`) print one sentence on
stderr and exit with their documented code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from DigitalContrastLib import __version__
from DigitalContrastLib.common.errors import EXIT_INTERNAL, EXIT_OUT_OF_MEMORY, EXIT_USAGE, UserError

EPILOG = """\
exit codes: 0 ok, 1 internal error (a bug), 2 bad input, 3 model missing or checksum mismatch,
4 bad job or option value, 5 out of memory, 6 GPU required but absent, 7 output not writable,
64 usage error.

Run 'digital-contrast COMMAND --help' for the options of one command.
"""


class UsageExitParser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors; 2 means 'bad input' here, so use 64."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _command_modules() -> list:
    from DigitalContrastLib import commands

    modules = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full parser, one sub-parser per command module."""
    parser = UsageExitParser(
        prog="digital-contrast",
        description=(
            "DigitalContrast: synthetic contrast-enhanced CT angiograms from non-contrast CT. "
            "Check an input, make phantoms, synthesize, train, evaluate cohorts."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageExitParser)
    for module in _command_modules():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    return run_command_line(build_parser(), argv, "digital-contrast")


if __name__ == "__main__":
    sys.exit(main())
