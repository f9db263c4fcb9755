"""JSON Lines in and out: streamed reading of `.jsonl` / `.jsonl.gz` files, thread-safe appending to an
owner-only file (`private`)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
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


class JsonlFile:
    """Appends JSON records to a file, one a line; safe to share between threads. The file (and any folder
    above it that is missing) is created owner-only."""

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

    def extend(self, recs: list[dict[str, Any]]) -> None:
        """Append records with one write."""
        if not recs:
            return
        data = b"".join(orjson.dumps(rec) + b"\n" for rec in recs)
        with self._lock, private.append(self.path) as out:
            out.write(data)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
