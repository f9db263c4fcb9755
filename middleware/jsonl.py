"""JSON Lines in and out: streamed reading of `.jsonl` / `.jsonl.gz` files, thread-safe appending."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def read_lines(path: str | Path) -> Iterator[bytes]:
    """The non-blank lines of a `.jsonl` or `.jsonl.gz` file, streamed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as stream:
        for line in stream:
            if line.strip():
                yield line.rstrip(b"\r\n")


class JsonlFile:
    """Appends JSON records to a file, one a line; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, rec: dict[str, Any]) -> None:
        self.extend([rec])

    def extend(self, recs: list[dict[str, Any]]) -> None:
        """Append records with one write."""
        if not recs:
            return
        data = b"".join(orjson.dumps(rec) + b"\n" for rec in recs)
        with self._lock, self.path.open("ab") as out:
            out.write(data)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
