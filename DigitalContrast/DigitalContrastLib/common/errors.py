"""Errors a user can cause, each with a one-sentence message and a distinct exit code.

Every command-line entry point and the background worker map these to their exit status;
anything else that escapes is a bug and exits with ``EXIT_INTERNAL`` (a traceback is fine there).

Exit codes (documented in README.md, shared by the CLI and the worker):

====  =======================  ====================================================
code  name                     meaning
====  =======================  ====================================================
0     EXIT_OK                  success
1     EXIT_INTERNAL            a bug: unexpected exception
2     EXIT_BAD_INPUT           the input volume is unreadable or fails the input gate
3     EXIT_MODEL               model missing, invalid card, or weights checksum mismatch
4     EXIT_BAD_JOB             malformed job description (worker) or bad option value
5     EXIT_OUT_OF_MEMORY       out of memory after every fallback
6     EXIT_NO_GPU              a GPU was required but none is usable
7     EXIT_OUTPUT              the output cannot be written (permissions, disk full)
64    EXIT_USAGE               command-line usage error (unknown option, missing argument)
====  =======================  ====================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_MODEL = 3
EXIT_BAD_JOB = 4
EXIT_OUT_OF_MEMORY = 5
EXIT_NO_GPU = 6
EXIT_OUTPUT = 7
EXIT_USAGE = 64


class UserError(Exception):
    """An error the user can fix. ``str(error)`` is one sentence naming the file and the fix.

    Attributes:
        code: a short machine-readable identifier (``"unreadable"``, ``"checksum_mismatch"``...).
        exit_code: the process exit status for this kind of error.
    """

    exit_code: int = EXIT_INTERNAL
    default_code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "exit_code": self.exit_code}


class MissingPackageError(UserError):
    """A Python package the step needs is not installed (inside 3D Slicer: installed on first use, after asking).

    ``package`` is the distribution to install. Pip installs of the project never raise it (pip
    brings every dependency); a stock Slicer does, until the module's dependency plan has run.
    """

    exit_code = EXIT_INTERNAL
    default_code = "missing_package"

    def __init__(self, package: str, needed_for: str) -> None:
        super().__init__(f"{needed_for} needs the Python package {package}, which is not installed; press Apply "
                         f"in the module to install it (or run: pip install {package}).", code=self.default_code)
        self.package = package


def require_package(module: str, package: str, needed_for: str):
    """``import module`` and return it, or raise :class:`MissingPackageError` naming ``package``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackageError(package, needed_for) from None


class InputError(UserError):
    """The input volume cannot be read or is not a usable non-contrast CT."""

    exit_code = EXIT_BAD_INPUT
    default_code = "bad_input"


class ModelError(UserError):
    """The model is missing, its card is invalid, or its weights fail the checksum."""

    exit_code = EXIT_MODEL
    default_code = "model_error"


class JobError(UserError):
    """A job description or an option value is malformed."""

    exit_code = EXIT_BAD_JOB
    default_code = "bad_job"


class OutOfMemoryError(UserError):
    """Out of memory even after every fallback (smaller batch, CPU stitching, CPU)."""

    exit_code = EXIT_OUT_OF_MEMORY
    default_code = "out_of_memory"


class NoGPUError(UserError):
    """A GPU was explicitly required but none is usable."""

    exit_code = EXIT_NO_GPU
    default_code = "no_gpu"


class OutputError(UserError):
    """The output cannot be written."""

    exit_code = EXIT_OUTPUT
    default_code = "output_error"


class GateWarningError(InputError):
    """The input gate warned (e.g. the scan looks contrast-enhanced) and nobody accepted the warnings.

    ``report`` is the :class:`~DigitalContrastLib.synthesis.gate.GateReport`; the message lists its warnings.
    Start again with ``allow_warnings=True`` once the user has chosen to continue.
    """

    default_code = "gate_warnings"

    def __init__(self, report) -> None:
        warnings = " ".join(w.message for w in report.warnings)
        super().__init__(f"{warnings} Continue only if this is intended (allow_warnings=True).",
                         code="gate_warnings")
        self.report = report
