"""The dead letter: Track API operations Customer.io refused, with its reason, kept for inspection and replay."""

from __future__ import annotations

import time
from typing import Any

from groupspec.middleware.jsonl import JsonlFile
from groupspec.middleware.quarantine import iso


def record(op: dict[str, Any], error: dict[str, Any], failed_at: float) -> dict[str, Any]:
    """The dead-letter record of a refused operation."""
    return {"operation": op, "error": error, "failed_at": iso(failed_at)}


class DeadLetterFile(JsonlFile):
    """Appends dead-letter records to a JSONL file (`[customerio] dead_letter`); safe to share between threads.

    `add` has the shape `Delivery` expects of its `dead_letter` callable.
    """

    def add(self, op: dict[str, Any], error: dict[str, Any]) -> None:
        self.append(record(op, error, time.time()))
