"""User-facing errors: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class C360Error(Exception):
    """A problem the user can fix (bad argument, missing file, unreachable broker, missing tool).

    The message is one line saying what is wrong and what to do.
    """

    exit_code = 1
