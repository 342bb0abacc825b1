"""Errors a user can cause, mapped by the CLI to one line on stderr and an exit code.

Anything else that escapes is a bug and keeps its traceback.
"""


class TridesignError(Exception):
    """A failure the user can act on (bad file, unsupported operator, tolerance exceeded): exit 1."""

    exit_code = 1


class UsageError(TridesignError):
    """The command line itself is wrong (unknown model, bad option value): exit 2."""

    exit_code = 2
