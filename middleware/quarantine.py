"""Quarantine records: the original message (or raw line) with its source, violations and time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .jsonl import JsonlFile, read_lines
from .message import Message


def iso(ts: float) -> str:
    """Unix seconds -> ISO-8601 UTC with milliseconds, as Segment writes times."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(msg: Message) -> dict[str, Any]:
    """The quarantine record of a dropped message."""
    return {
        "message": writable(msg.original),
        "source": msg.source,
        "violations": msg.violations,
        "received_at": iso(msg.received_at),
    }


def writable(original: Any) -> Any:
    """`original` if orjson can write it, else its JSON text (e.g. nested beyond orjson's 255 levels, which
    `orjson.loads` accepts up to 1024): the record can always be written, and `quarantine replay` reads the text
    back as a line. Only a quarantined message pays for the check."""
    try:
        orjson.dumps(original)
        return original
    except TypeError:  # orjson.JSONEncodeError
        pass
    try:
        return json.dumps(original, ensure_ascii=False, default=repr)
    except (RecursionError, ValueError, TypeError):
        return repr(original)[:1000]


def payloads(path: str | Path) -> Iterator[tuple[Any, str | None]]:
    """(payload, source) of each record of a quarantine file, to run them through the current contract."""
    for line in read_lines(path):
        try:
            rec = orjson.loads(line)
            yield rec["message"], rec.get("source")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            yield line, None


class QuarantineFile(JsonlFile):
    """The quarantine: one `record(msg)` a line."""

    def add(self, msg: Message) -> None:
        self.append(record(msg))
