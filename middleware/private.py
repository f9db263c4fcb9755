"""Owner-only files: what holds people's data (the quarantine, the dead letters, the SQLite store, the spool) is
created readable and writable by its owner alone (0600). An appended file's missing folders are made owner-only
(0700): a quarantine or a dead letter must never fail to be written; a store's or a spool's missing folder is an
error at startup instead (a mistyped path must not start an empty store). A file or folder that exists already
keeps its mode (SQLite gives its -wal and -shm files the database's)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

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
