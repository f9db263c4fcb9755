"""What a destination's batching plan hands the sender: request bodies with their items, and items that
cannot be sent at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Batch:
    """Items that go out in one request; `end` is the index in the input after the last one considered;
    `headers` are this request's own (e.g. the upstream's Basic auth of the items' source)."""

    items: list[Any]
    body: bytes
    end: int
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Unsendable:
    """An item the destination would refuse whole: dead-lettered where it stood, never sent."""

    item: Any
    reason: str
    message: str
