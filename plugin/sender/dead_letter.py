"""The dead letter: items a destination refused, with its reason, kept for inspection and replay."""

from __future__ import annotations

import time
from typing import Any

from groupspec.middleware.jsonl import JsonlFile
from groupspec.middleware.quarantine import iso


def record(item: dict[str, Any], error: dict[str, Any], failed_at: float, key: str = "operation") -> dict[str, Any]:
    """The dead-letter record of a refused item, stored under `key` ("operation" for Customer.io, "forwarded"
    for the upstream)."""
    return {key: item, "error": error, "failed_at": iso(failed_at)}


class DeadLetterFile(JsonlFile):
    """Appends dead-letter records to a JSONL file; safe to share between threads.

    `add` has the shape `BatchSender` expects of its `dead_letter` callable.
    """

    def __init__(self, path: Any, key: str = "operation") -> None:
        super().__init__(path)
        self.key = key

    def add(self, item: dict[str, Any], error: dict[str, Any]) -> None:
        self.append(record(item, error, time.time(), self.key))
