"""Quarantine records: the original message (or raw line) with its source, violations and time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from .jsonl import JsonlFile, read_lines
from .message import Message, parse_time


def iso(ts: float) -> str:
    """Unix seconds -> ISO-8601 UTC with milliseconds, as Segment writes times."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(msg: Message) -> dict[str, Any]:
    """The quarantine record of a dropped message, with what its door supplied (`Refused` reads it back): the
    endpoint's `type`, the batch `envelope` merged into it, and `receipt` when `received_at` is the service's
    receipt of the request."""
    rec = {
        "message": writable(msg.original),
        "source": msg.source,
        "violations": msg.violations,
        "received_at": iso(msg.received_at),
    }
    if msg.endpoint_type is not None:
        rec["type"] = msg.endpoint_type
    if msg.envelope is not None:
        rec["envelope"] = writable(msg.envelope)
    if msg.receipt:
        rec["receipt"] = True
    return rec


class Refused(NamedTuple):
    """A quarantine record as a replay feeds it to the engine: the message as its door gave it (`payload`, with
    the batch envelope it came in), its source, the endpoint's type, and its time (`received_at`, a receipt or
    only the time of a message without one)."""

    payload: Any
    source: str | None
    kind: str | None = None
    received_at: float | None = None
    receipt: bool = False


def refused(rec: dict[str, Any]) -> Refused:
    """The `Refused` of a quarantine record, today's or an earlier release's (which has no `type`, `envelope` or
    `receipt`: its message replays with its `received_at` as the time of a message without one)."""
    message, envelope = rec["message"], rec.get("envelope")
    if isinstance(envelope, dict) and isinstance(message, dict):
        message = {**envelope, "batch": [message]}  # the engine merges it into the member as it did
    kind = rec.get("type")
    return Refused(message, rec.get("source"), kind if isinstance(kind, str) else None,
                   parse_time(rec.get("received_at")), rec.get("receipt") is True)


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


def payloads(path: str | Path) -> Iterator[Refused]:
    """The `Refused` of each record of a quarantine file, to run them through the current contract (a line that
    is no record is replayed as it is, and ends malformed)."""
    for line in read_lines(path):
        try:
            yield refused(orjson.loads(line))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            yield Refused(line, None)


class QuarantineFile(JsonlFile):
    """The quarantine: one `record(msg)` a line."""

    def add(self, msg: Message) -> None:
        self.append(record(msg))
