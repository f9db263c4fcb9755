"""Splitting Track API v2 operations, in order, into `/api/v2/batch` request bodies within Customer.io's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from ..sender import Batch, Unsendable
from .limits import MAX_OPERATION_BYTES

BATCH_BYTES = 500_000  # "under 500 KB" whether Customer.io counts a KB as 1000 or 1024 bytes
_OPEN, _CLOSE = b'{"batch":[', b"]}"


def plan(ops: list[dict[str, Any]], batch_size: int,
         lines: list[bytes] | None = None) -> Iterator[Batch | Unsendable]:
    """Batches of at most `batch_size` operations and under 500 KB, in input order, with every unsendable
    operation yielded where it stood. Lazy: nothing past the batch being yielded has been looked at. `lines`,
    when given, are the operations already written out (`orjson.dumps(op)`, the engine's `Outcome.op_lines`):
    each operation is encoded once."""
    chunk: list[dict[str, Any]] = []
    parts: list[bytes] = []
    size = len(_OPEN) + len(_CLOSE)
    for index, op in enumerate(ops):
        try:
            encoded = orjson.dumps(op) if lines is None else lines[index]
        except (orjson.JSONEncodeError, TypeError) as exc:
            yield Unsendable(op, "not_serializable", f"operation is not JSON-serializable ({exc})")
            continue
        if len(encoded) > MAX_OPERATION_BYTES:
            yield Unsendable(op, "operation_too_large",
                             f"operation of {len(encoded)} bytes is over Customer.io's 32 KB limit")
            continue
        grown = size + len(encoded) + (1 if parts else 0)
        if parts and (len(parts) == batch_size or grown >= BATCH_BYTES):
            yield Batch(chunk, _OPEN + b",".join(parts) + _CLOSE, index)
            chunk, parts, size = [], [], len(_OPEN) + len(_CLOSE)
            grown = size + len(encoded)
        chunk.append(op)
        parts.append(encoded)
        size = grown
    if parts:
        yield Batch(chunk, _OPEN + b",".join(parts) + _CLOSE, len(ops))
