"""User-facing errors: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import errno
import os
import tempfile


class C360Error(Exception):
    """A problem the user can fix (bad argument, missing file, unreachable broker, missing tool).

    The message is one line saying what is wrong and what to do.
    """

    exit_code = 1


# what the operating system says when the lake's storage refuses a write, and what c360 tells the user
STORAGE_ERRORS = {
    "No space left on device": "the disk is full",
    "Disk quota exceeded": "the disk quota is used up",
    "Read-only file system": "the file system is read-only",
    "Permission denied": "permission denied",
}


def error_text(exc: BaseException) -> str:
    """Everything an exception says, the JVM's side included (a Py4J error's Java trace, a captured Spark
    exception's stack trace, the exceptions it was raised from)."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), str(getattr(exc, "desc", "") or ""), str(getattr(exc, "_stackTrace", "") or "")]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def first_line(exc: BaseException) -> str:
    """An exception's first line for a log line (its type when it says nothing)."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def storage_error(text: str, where: str) -> str | None:
    """A one-line message when ``text`` (an error's text) says storage refused a write; None otherwise."""
    for marker, what in STORAGE_ERRORS.items():
        if marker in text:
            return (f"{what} ({marker}) while writing {where}: free space or fix the path's permissions, then run "
                    "the command again; Delta commits are atomic, so no table holds a half-written batch, and "
                    "a stream resumes from its checkpoint")
    return None


def mixed_timestamps_error(text: str) -> str | None:
    """A one-line message when ``text`` says the embedded engine met a table whose files hold timestamps of two
    Parquet types (Spark's INT96 before 2026-12-07, delta-rs' UTC microseconds); None otherwise."""
    import re

    found = re.search(r"Fail to merge schema field '([^']+)' because the from data_type = Timestamp", text)
    if not found:
        return None
    return (f"a table's files hold column {found.group(1)!r} as two timestamp types (Spark's INT96, written before "
            "2026-12-07, and delta-rs' microseconds), which the embedded engine cannot read together: run with "
            "batch.engine = \"spark\" (--engine spark), or rewrite the table once (docs/operations.md, \"The "
            "stream's writer, and lakes from before bronze_records\")")


def check_writable(path: str, what: str, flag: str) -> None:
    """Fail fast, before Spark starts, when a local folder cannot be written: a file is created and removed in it,
    or, when it does not exist yet, in its nearest existing parent (nothing is left behind). Object-store URIs
    are left to the storage's own errors."""
    if "://" in path and not path.startswith("file:"):
        return
    folder = os.path.abspath(path.removeprefix("file://").removeprefix("file:"))
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        if not os.path.isdir(probe):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), probe)
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".c360-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise C360Error(f"cannot write the {what} at {folder} ({reason}): choose a writable path ({flag} or the "
                        f"config file) or fix its permissions") from None
