"""Owner-only files: what holds people's data (the quarantine, the dead letters, the SQLite store, the spool) is
created readable and writable by its owner alone (0600). An appended file's missing folders are made owner-only
(0700): a quarantine or a dead letter must never fail to be written; a store's or a spool's missing folder is an
error at startup instead (a mistyped path must not start an empty store). A file or folder that exists already
keeps its mode (SQLite gives its -wal and -shm files the database's). Lock files (`flock`: ``PATH.lock`` beside
the quarantine and the dead letters, the spool's) are owner-only too, and a forked child lets go of the ones
another thread held."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from . import forks

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_folders(path: str | Path) -> None:
    """Create the missing folders above the file `path`, each owner-only."""
    missing = []
    folder = Path(path).absolute().parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)


def create(path: str | Path) -> None:
    """Create `path` empty and owner-only unless it exists, before a library (sqlite3) opens it; a missing
    folder is left for that library to report."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    except FileNotFoundError:
        pass


def append(path: str | Path) -> BinaryIO:
    """`path` opened to append bytes, created owner-only (with its missing folders)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        make_folders(path)
        fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, "ab")


class _HeldLocks:
    """The lock files (`flock`) this process's threads hold, by thread: a forked child closes its copies of the
    ones other threads held (they are gone in the child, and a copy kept open would keep the lock held after the
    parent lets it go); the forking thread's own stay with it (`forks.py`)."""

    def __init__(self) -> None:
        self.fds: dict[int, tuple[int, int]] = {}  # fd -> (thread ident, fd)
        self.guard = threading.Lock()

    def after_fork(self, child: bool) -> None:
        if child:
            self.guard = threading.Lock()
            me = threading.get_ident()
            for fd, (owner, _) in list(self.fds.items()):
                if owner != me:
                    del self.fds[fd]
                    try:
                        os.close(fd)
                    except OSError:
                        pass


_HELD = _HeldLocks()
forks.register(_HELD)


@contextmanager
def flock(path: str | Path, kind: int = fcntl.LOCK_EX, wait: float | None = None,
          busy: str | None = None) -> Iterator[None]:
    """Hold a `flock` of the lock file at `path`, created owner-only (with its missing folders, owner-only too):
    `wait` seconds at most, else TimeoutError (its message: `busy`); None: as long as it takes. Fork-safe (`_HeldLocks`); released when
    the block ends (and by the kernel when the process dies)."""
    flags = os.O_RDWR | os.O_CREAT
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        make_folders(path)
        fd = os.open(path, flags, FILE_MODE)
    with _HELD.guard:
        _HELD.fds[fd] = (threading.get_ident(), fd)
    try:
        if wait is None:
            fcntl.flock(fd, kind)
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, kind | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(busy or f"{path} is held for longer than {wait:.0f}s") from None
                    time.sleep(0.05)
        yield
    finally:
        with _HELD.guard:
            known = _HELD.fds.pop(fd, None)
        if known is not None:  # not closed for us by a fork (a child whose forking thread held it keeps it)
            os.close(fd)
