"""Errors a study admin or a reader can cause, each with one sentence and a distinct exit code.

They subclass :class:`DigitalContrastLib.common.errors.UserError`, so every entry point of the extension
recognises them; the reader-study CLI (``digital-contrast-reader``) has its own exit-code table:

====  ==================  ============================================================
code  class               meaning
====  ==================  ============================================================
0                         success
1                         internal error (a bug: the traceback is printed)
2     StudyError          the study file (or another input file) is missing or invalid
3     StoreError          the answer store cannot be opened or written, or fails its
                          integrity check
4     AnswerError         an answer, item or option value is not acceptable
6     TokenError          a reader's token is missing or wrong (nothing was stored)
64    UsageError          command-line usage error (unknown option, missing argument)
====  ==================  ============================================================
"""

from __future__ import annotations

from DigitalContrastLib.common.errors import EXIT_INTERNAL, EXIT_USAGE, UserError

EXIT_OK = 0
EXIT_BAD_STUDY = 2
EXIT_STORE = 3
EXIT_BAD_ANSWER = 4
#: 6, not 5: the shared command-line runner exits 5 on MemoryError.
EXIT_TOKEN = 6

__all__ = [
    "EXIT_OK",
    "EXIT_INTERNAL",
    "EXIT_BAD_STUDY",
    "EXIT_STORE",
    "EXIT_BAD_ANSWER",
    "EXIT_TOKEN",
    "EXIT_USAGE",
    "UserError",
    "StudyError",
    "StoreError",
    "AnswerError",
    "TokenError",
    "UsageError",
]


class StudyError(UserError):
    """The study configuration (or another input file such as an import) is missing or invalid."""

    exit_code = EXIT_BAD_STUDY
    default_code = "bad_study"


class StoreError(UserError):
    """The answer store cannot be opened or written, or its integrity check failed."""

    exit_code = EXIT_STORE
    default_code = "store_error"


class AnswerError(UserError):
    """An answer, an item id or an option value is not acceptable (the store is unchanged)."""

    exit_code = EXIT_BAD_ANSWER
    default_code = "bad_answer"


class TokenError(UserError):
    """A reader's token is missing or does not match the one issued at enrolment (nothing stored)."""

    exit_code = EXIT_TOKEN
    default_code = "bad_token"


class UsageError(UserError):
    """The command was called the wrong way (a missing choice, an ambiguous question name...)."""

    exit_code = EXIT_USAGE
    default_code = "usage"
