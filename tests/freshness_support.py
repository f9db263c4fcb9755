"""A delivery worker over a real spool, a memory store and Customer.io behind an `httpx.MockTransport`, for unit
tests of what the worker observes while it delivers (the group update lag, a held-back send)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
from groupspec.middleware import Engine
from groupspec.middleware.config import parse_config
from groupspec.middleware.jsonl import JsonlFile
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from groupspec.plugin.spool import Spool, SpoolQueue
from groupspec.plugin.service.worker import Worker

EVENT_TIME = 1_790_000_000.0  # the messages' own time: 2026-09-21T14:13:20Z, u2's group call a minute before
STREAM = {"batch": [
    {"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": "2026-09-21T14:13:20Z",
     "traits": {"email": "a@x.io"}},
    {"type": "group", "userId": "u1", "groupId": "hh_1", "messageId": "g1", "timestamp": "2026-09-21T14:13:20Z",
     "traits": {"plan": "pro"}},
    {"type": "group", "userId": "u2", "groupId": "hh_1", "messageId": "g2", "timestamp": "2026-09-21T14:12:20Z",
     "traits": {"plan": "pro"}},
    {"type": "track", "userId": "u1", "event": "Order Placed", "messageId": "t1", "timestamp": "2026-09-21T14:13:20Z"},
]}


def worker_over(tmp_path: Path, *, bucket: Any = None, stopping: threading.Event | None = None,
                wall: Any = None, batch_size: int = 2, per_request: float = 0.0) -> tuple[Worker, list[dict[str, Any]]]:
    """A worker with `STREAM` spooled (received at `EVENT_TIME`), and the list of operations Customer.io accepts.
    `wall` (a FakeClock) is the worker's clock; each request to Customer.io takes `per_request` seconds of it."""
    config = parse_config({
        "contract": {"version": "t", "group_id_pattern": "^hh_[0-9]+$"},
        "sources": {"web": {"write_key": "wk"}},
        "customerio": {"url": "http://cio.test", "site_id": "s", "api_key": "k", "batch_size": batch_size,
                       "rate_limit": 1000, "max_retries": 0},
    })
    accepted: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        accepted.extend(orjson.loads(request.content)["batch"])
        if wall is not None:
            wall.now += per_request
        return httpx.Response(200, json={})

    spool = Spool(tmp_path / "spool.db")
    spool.append([("web", None, EVENT_TIME, len(STREAM["batch"]), orjson.dumps(STREAM))])
    spool.close()
    extra = {} if wall is None else {"wall": wall}
    delivery = Delivery(config.customerio, "s", "k", transport=httpx.MockTransport(answer), bucket=bucket,
                        dead_letter=lambda *a: None, sleep=lambda s: None)
    worker = Worker(SpoolQueue(tmp_path / "spool.db"), Engine(config, MemoryStore(), destination=CUSTOMERIO),
                    JsonlFile(tmp_path / "quarantine.jsonl"), delivery, None, stopping=stopping, **extra)
    return worker, accepted
