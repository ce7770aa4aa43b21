"""The Spark driver's scratch folder, which a killed run cannot leak.

A JVM that is killed (kill -9, the OOM killer, a machine's crash) leaves behind what Spark and its libraries put in
the temporary folder: with a local master the state stores' RocksDB working copies, shuffle and spill files, the
native libraries they unpack (lz4, snappy, RocksDB), a folder per session. A stream restarted after each crash
leaked that much every time, in ``/tmp``, where nothing could tell c360's leftovers from another program's.

So every c360 process that starts Spark claims a folder of its own under one root (``spark.scratch_dir``) and holds
a lock on it (``flock``) for as long as it lives; the driver JVM's temporary folder (``java.io.tmpdir``, Spark's
local folder unless ``spark.local.dir`` says otherwise) is that folder. The operating system releases the lock when
the process dies, however it dies, so the next c360 process that starts Spark removes the folders no one holds.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; Spark keeps the system's temporary folder there
    fcntl = None

log = logging.getLogger(__name__)

# <pid>-<8 hex digits>, and its lock <pid>-<8 hex digits>.lock: nothing else under the root is touched
_NAME = re.compile(r"^(\d+-[0-9a-f]{8})(\.lock)?$")
_ROOT_LOCK = ".lock"  # held while sweeping and claiming, so two processes starting at once do not race


def root_for(scratch_dir: str, state_dir: str) -> Path:
    """The scratch root: ``scratch_dir``, or ``<state_dir>/scratch`` when it is empty."""
    return Path(scratch_dir or Path(state_dir) / "scratch").absolute()


@contextmanager
def _root_locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _ROOT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _unheld(lock: Path) -> bool:
    """Whether no process holds ``lock`` (a vanished file counts as held: someone else swept it; so does one this
    user may not open: another user's, not c360's to remove)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _sweep(root: Path) -> list[Path]:
    names = {m.group(1) for m in map(_NAME.match, os.listdir(root)) if m}
    removed = []
    for name in sorted(names):
        folder, lock = root / name, root / f"{name}.lock"
        if lock.exists() and not _unheld(lock):
            # its process is alive (this one's too: a second open file's flock is refused while the first's holds)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        removed.append(folder)
    return removed


def sweep(root: Path) -> list[Path]:
    """Remove the folders under ``root`` whose process is gone (their lock held by no one, or no lock at all);
    the folders removed. Folders of live processes, and anything not named like a claimed folder, stay."""
    if fcntl is None or not root.is_dir():
        return []
    with _root_locked(root):
        return _sweep(root)


_claimed: list[Path] = []  # the folder this process claimed last


def current() -> Path | None:
    """The folder this process claimed (the last one), if any: a child process that must not outlive this one
    (the stream's parse worker) keeps its files in a subfolder of it, removed with it."""
    return _claimed[0] if _claimed else None


def claim(root: Path) -> Path | None:
    """A new folder under ``root`` for this process, locked until the process ends; first removes the folders of
    processes that are gone (:func:`sweep`). None where the platform has no ``flock`` (Windows). Raises OSError
    when ``root`` cannot be written."""
    if fcntl is None:
        return None
    with _root_locked(root):
        removed = _sweep(root)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # left open for the process's life: the lock lives as long as it (not inherited by child processes)
        fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else can know the name yet
        folder = root / name
        folder.mkdir(mode=0o700)
    _claimed[:] = [folder]
    if removed:
        log.info("removed the scratch folders of %d c360 process(es) that ended without cleaning up (in %s)",
                 len(removed), root)
    return folder
