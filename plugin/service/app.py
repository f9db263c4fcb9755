"""The ASGI application: the Segment HTTP Tracking API endpoints, `/health`, `/metrics` and `/report.json`.

A bare ASGI callable (no framework) keeps the per-request cost low: the intake only authenticates, checks the
JSON and sizes (`intake.admit`) and waits for the spool commit (`GroupCommit`); the worker does the rest.

A hostile or broken client costs little: a Basic auth key is checked before the body is read, a declared or
received body over the limit is refused (413) without reading the rest, a body must arrive within
`read_timeout` (else 408), and every such refusal closes the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from .commit import GroupCommit
from .intake import ENDPOINTS, Rejected, admit, basic_user, decompress, limit_for, signature_valid, source_of
from .metrics import Metrics

log = logging.getLogger("groupspec.service")

_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_SUCCESS = orjson.dumps({"success": True})
_CLOSE = (b"connection", b"close")
WEBHOOK = "/v1/webhook/"  # + a source name: Segment's Webhooks destinations post there, signed


class App:
    """`health()` returns the problems that make the service unhealthy (none: healthy); `on_read` brings `metrics`
    up to date before `/metrics` or `/report.json` shows them; `on_shutdown` runs at the ASGI lifespan's shutdown,
    after the server has finished the requests in flight.

    `webhook_secrets` maps source names to their shared secret: their requests must be signed (`X-Signature`).
    `throttled()` says whether a destination asked delivery to wait (shown by `/health`).
    `operator_token`, when set, is the Bearer token `/report.json` and `/metrics` need; unset, `/report.json` is
    refused (403) and `/metrics` is open. `read_timeout`: seconds for a request body to arrive."""

    def __init__(self, sources: dict[str, str], commit: GroupCommit, metrics: Metrics,
                 health: Callable[[], list[str]], spool_depth: Callable[[], int],
                 clock: Callable[[], float] = time.time, on_shutdown: Callable[[], None] = lambda: None,
                 on_read: Callable[[], None] = lambda: None, *, webhook_secrets: dict[str, str] | None = None,
                 operator_token: str | None = None, read_timeout: float = 10.0,
                 throttled: Callable[[], bool] = lambda: False) -> None:
        self.sources = sources
        self.webhook_secrets = webhook_secrets or {}
        self.operator_token = operator_token.encode("utf-8") if operator_token else None
        self.read_timeout = read_timeout
        self.on_shutdown = on_shutdown
        self.on_read = on_read
        self.commit = commit
        self.metrics = metrics
        self.health = health
        self.throttled = throttled
        self.spool_depth = spool_depth
        self.clock = clock
        self._pages = {"/health": self._health, "/metrics": self._metrics, "/report.json": self._report}

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        webhook = path.startswith(WEBHOOK)
        if path in ENDPOINTS or webhook:
            if webhook and path[len(WEBHOOK):] not in self.webhook_secrets:
                return await _respond(send, 404, _error("not found: no source with a webhook_secret has this name"))
            if method != "POST":
                return await _respond(send, 405, _error("use POST"))
            kind = None if webhook else ENDPOINTS[path]
            return await self._intake(scope, receive, send, kind, path[len(WEBHOOK):] if webhook else None)
        page = self._pages.get(path)
        if page is None:
            return await _respond(send, 404, _error("not found"))
        if method != "GET":
            return await _respond(send, 405, _error("use GET"))
        if path != "/health":
            refused = self._operator_refusal(path, dict(scope["headers"]).get(b"authorization"))
            if refused is not None:
                return await _respond(send, *refused)
        await _respond(send, *page())

    def _operator_refusal(self, path: str, authorization: bytes | None) -> tuple[int, bytes, list] | None:
        """Why an operator page is refused (None: it is not): no `service.operator_token` (for `/report.json`),
        or not `Authorization: Bearer <token>`."""
        if self.operator_token is None:
            if path == "/metrics":
                return None
            return 403, _error(f"{path} is off: set service.operator_token and send it as a Bearer token"), _JSON
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.operator_token):
            return None
        return 401, _error(f"{path} needs Authorization: Bearer <service.operator_token>"), \
            [*_JSON, (b"www-authenticate", b'Bearer realm="groupspec"')]

    def _health(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        problems = self.health()
        body: dict[str, Any] = {"status": "unhealthy", "problems": problems} if problems else {"status": "ok"}
        if self.throttled():  # a destination asked to wait (429, `Retry-After`): delivery is slowed, not broken
            body["throttled"] = True
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

    async def _intake(self, scope: dict[str, Any], receive: Callable, send: Callable, kind: str | None,
                      hook: str | None) -> None:
        """A request to the endpoint of `kind`, or to the webhook of source `hook`."""
        received_at = self.clock()
        source = hook
        headers = dict(scope["headers"])
        try:
            limit = limit_for(kind)
            write_key = basic_user(headers.get(b"authorization")) if source is None else None
            if write_key is not None:
                source = source_of(write_key, self.sources)  # before the body is read: an unknown key costs nothing
            _check_length(headers.get(b"content-length"), limit)
            try:
                async with asyncio.timeout(self.read_timeout):
                    raw = await _read_body(receive, limit)
            except TimeoutError:
                raise Rejected(408, f"the request body did not arrive within {self.read_timeout:g} s") from None
            if source is not None:
                self._check_signature(source, raw, headers)
            body = decompress(raw, headers.get(b"content-encoding"), limit)
            row = admit(kind, body, self.sources, write_key, received_at, hook)
            if source is None:  # selected by the body's writeKey
                self._check_signature(row[0], raw, headers)
        except Rejected as exc:
            self.metrics.requests[exc.status] += 1
            log.info("request refused", extra={"status": exc.status, "reason": exc.message, "path": scope["path"]})
            close = [_CLOSE] if exc.status in (401, 408, 413) else []  # the body may be unread: drop the connection
            return await _respond(send, exc.status, _error(exc.message), [*_JSON, *close])
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

    def _check_signature(self, source: str, raw: bytes, headers: dict[bytes, bytes]) -> None:
        """A source with a `webhook_secret` takes only bodies signed with it (`X-Signature`, over the bytes sent)."""
        secret = self.webhook_secrets.get(source)
        if secret is not None and not signature_valid(raw, secret, headers.get(b"x-signature")):
            raise Rejected(401, "missing or wrong X-Signature (hex HMAC-SHA1 of the body with the webhook_secret)")


def _check_length(declared: bytes | None, limit: int) -> None:
    """Refuse a body whose `Content-Length` is over `limit` before reading any of it."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise Rejected(413, f"request body of {int(declared)} bytes is over the {limit // 1024} KB limit")


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
