"""Sub-commands of ``digital-contrast``, one module each, discovered by ``cli.py``.

A command module defines::

    NAME = "check"            # the sub-command
    HELP = "one line"         # shown in 'digital-contrast --help'
    ORDER = 10                # position in the help listing
    DESCRIPTION = "..."       # optional, longer text for 'digital-contrast check --help'
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit code

Commands stay thin: they parse, call the library, print. No computation lives here.
"""
