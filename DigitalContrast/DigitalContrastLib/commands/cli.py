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
import pkgutil
import sys
from collections.abc import Sequence

from DigitalContrastLib import __version__
from DigitalContrastLib.common.cli_support import UsageExitParser, run_command_line

EPILOG = """\
exit codes: 0 ok, 1 internal error (a bug), 2 bad input, 3 model missing or checksum mismatch,
4 bad job or option value, 5 out of memory, 6 GPU required but absent, 7 output not writable,
64 usage error.

Run 'digital-contrast COMMAND --help' for the options of one command.
"""


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    return run_command_line(build_parser(), argv, "digital-contrast")


if __name__ == "__main__":
    sys.exit(main())
