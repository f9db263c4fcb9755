"""The ASGI application: the Segment HTTP Tracking API endpoints, `/health`, `/metrics` and `/report.json`.

A bare ASGI callable (no framework) keeps the per-request cost low: the intake only authenticates, checks the
JSON and sizes (`intake.admit`) and waits for the spool commit (`GroupCommit`); the worker does the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from .commit import GroupCommit
from .intake import ENDPOINTS, Rejected, admit, basic_user, decompress, limit_for
from .metrics import Metrics

log = logging.getLogger("groupspec.service")

_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_SUCCESS = orjson.dumps({"success": True})


class App:
    """`health()` returns the problems that make the service unhealthy (none: healthy); `on_read` brings `metrics`
    up to date before `/metrics` or `/report.json` shows them; `on_shutdown` runs at the ASGI lifespan's shutdown,
    after the server has finished the requests in flight."""

    def __init__(self, sources: dict[str, str], commit: GroupCommit, metrics: Metrics,
                 health: Callable[[], list[str]], spool_depth: Callable[[], int],
                 clock: Callable[[], float] = time.time, on_shutdown: Callable[[], None] = lambda: None,
                 on_read: Callable[[], None] = lambda: None) -> None:
        self.sources = sources
        self.on_shutdown = on_shutdown
        self.on_read = on_read
        self.commit = commit
        self.metrics = metrics
        self.health = health
        self.spool_depth = spool_depth
        self.clock = clock
        self._pages = {"/health": self._health, "/metrics": self._metrics, "/report.json": self._report}

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ENDPOINTS:
            if method != "POST":
                return await _respond(send, 405, _error("use POST"))
            return await self._intake(scope, receive, send, ENDPOINTS[path])
        page = self._pages.get(path)
        if page is None:
            return await _respond(send, 404, _error("not found"))
        if method != "GET":
            return await _respond(send, 405, _error("use GET"))
        await _respond(send, *page())

    def _health(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        problems = self.health()
        body = {"status": "unhealthy", "problems": problems} if problems else {"status": "ok"}
        return 503 if problems else 200, orjson.dumps(body), _JSON

    def _metrics(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        self.on_read()
        return 200, self.metrics.prometheus(self.spool_depth(), not self.health()).encode(), _TEXT

    def _report(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        self.on_read()
        return 200, orjson.dumps(self.metrics.coverage("service")), _JSON

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.on_shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _intake(self, scope: dict[str, Any], receive: Callable, send: Callable, kind: str | None) -> None:
        received_at = self.clock()
        headers = dict(scope["headers"])
        try:
            limit = limit_for(kind)
            body = await _read_body(receive, limit)
            body = decompress(body, headers.get(b"content-encoding"), limit)
            row = admit(kind, body, self.sources, basic_user(headers.get(b"authorization")), received_at)
        except Rejected as exc:
            self.metrics.requests[exc.status] += 1
            log.info("request refused", extra={"status": exc.status, "reason": exc.message, "path": scope["path"]})
            return await _respond(send, exc.status, _error(exc.message))
        if row[3]:
            try:
                await self.commit.write(row)
            except Exception as exc:  # the spool cannot take it: the client must retry, nothing was accepted
                self.metrics.requests[503] += 1
                log.error("spool write failed", extra={"error": str(exc)})
                return await _respond(send, 503, _error("cannot spool the request; retry later"))
            self.metrics.received += row[3]
        self.metrics.requests[200] += 1
        await _respond(send, 200, _SUCCESS)


def _error(message: str) -> bytes:
    return orjson.dumps({"success": False, "message": message})


async def _read_body(receive: Callable, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise Rejected(400, "client disconnected")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"request body is over the {limit // 1024} KB limit")
        chunks.append(chunk)
        more = event.get("more_body", False)
    return b"".join(chunks)


async def _respond(send: Callable, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
