"""JSON Lines in and out: streamed reading of `.jsonl` / `.jsonl.gz` files, appending to an owner-only file
(`private`) that is safe between threads and processes, and the atomic rewrite an erasure makes (`rewrite`).

Every appender of a file (the service's processes, SDK hooks, backfill) and every rewrite take the file's one
inter-process lock, ``PATH.lock`` (`locked`, owner-only and fork-safe: `private.flock`): a rewrite never loses an
append made meanwhile."""

from __future__ import annotations

import gzip
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from . import forks, private


def read_lines(path: str | Path) -> Iterator[bytes]:
    """The non-blank lines of a `.jsonl` or `.jsonl.gz` file, streamed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as stream:
        for line in stream:
            if line.strip():
                yield line.rstrip(b"\r\n")


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the inter-process lock of the file at `path` (an exclusive `flock` of ``PATH.lock``)."""
    with private.flock(f"{path}.lock"):
        yield


def rewrite(path: str | Path, keep: Callable[[bytes], bytes | None], dry_run: bool = False) -> int:
    """Rewrite the file at `path` with each line as `keep(line)` makes it (None: left out), atomically (the old
    file or the new one, never half) and under its lock; the lines left out (`dry_run`: counted, nothing written).
    A missing file is left missing; an unreadable one raises OSError before anything is written."""
    path = Path(path)
    if not path.exists():
        return 0
    with locked(path):
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:  # removed meanwhile
            return 0
        kept = [new for line in lines if line.strip() and (new := keep(line)) is not None]
        removed = sum(1 for line in lines if line.strip()) - len(kept)
        changed = removed or kept != [line for line in lines if line.strip()]
        if changed and not dry_run:
            replace(path, b"".join(line + b"\n" for line in kept))
        return removed


def replace(path: Path, data: bytes) -> None:
    """Put `data` at `path` atomically: a temporary file beside it, synced, renamed over it; owner-only (0600,
    `private`), whatever the old file's mode was."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, private.FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class JsonlFile:
    """Appends JSON records to a file, one a line; safe to share between threads and processes (`locked`). The
    file (and any folder above it that is missing) is created owner-only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        forks.register(self)

    def after_fork(self, child: bool) -> None:
        """A forked child's own lock (another thread may have held the parent's)."""
        if child:
            self._lock = threading.Lock()

    def append(self, rec: dict[str, Any]) -> None:
        self.extend([rec])

    def extend(self, recs: list[dict[str, Any]]) -> list[int] | None:
        """Append records with one write; ``[inode, size]`` of the file just after it (None: nothing to append)."""
        if not recs:
            return None
        data = b"".join(orjson.dumps(rec) + b"\n" for rec in recs)
        with self._lock, locked(self.path), private.append(self.path) as out:
            out.write(data)
            out.flush()
            st = os.fstat(out.fileno())
            return [st.st_ino, st.st_size]

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
