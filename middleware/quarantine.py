"""Quarantine records: the original message (or raw line) with its source, violations and time."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .message import Message


def iso(ts: float) -> str:
    """Unix seconds -> ISO-8601 UTC with milliseconds, as Segment writes times."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(msg: Message) -> dict[str, Any]:
    """The quarantine record of a dropped message."""
    return {
        "message": msg.original,
        "source": msg.source,
        "violations": msg.violations,
        "received_at": iso(msg.received_at),
    }


class JsonlFile:
    """Appends JSON records to a file, one a line; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, rec: dict[str, Any]) -> None:
        line = orjson.dumps(rec) + b"\n"
        with self._lock, self.path.open("ab") as out:
            out.write(line)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]


class QuarantineFile(JsonlFile):
    """The quarantine: one `record(msg)` a line."""

    def add(self, msg: Message) -> None:
        self.append(record(msg))
