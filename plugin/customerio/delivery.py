"""Delivering Track API v2 operations to Customer.io: ordered batches, retries, a rate limit, the dead letter.

`Delivery.send(ops)` sends the operations in order, one batch at a time, so object-before-relationship
ordering and per-person order hold within and across batches. Every operation ends delivered, in the dead
letter (Customer.io refused it: 207, 400, over 32 KB), or in the `remaining` of the exception that stopped
the call (401: `Unauthorized`; retries exhausted or an unexpected answer: `DeliveryFailed`) for the caller to
keep queued.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
from groupspec.middleware.config import Config, ConfigError, CustomerIO

from .batching import Batch, Unsendable, plan
from .dead_letter import DeadLetterFile
from .ratelimit import TokenBucket
from .retry import backoff, retry_after, retryable

log = logging.getLogger("groupspec.delivery")

DeadLetter = Callable[[dict[str, Any], dict[str, Any]], None]
_REFUSED = frozenset({400, 413, 422})  # the whole request is invalid: retrying cannot help
_FORBIDDEN = frozenset({401, 403})


@dataclass
class DeliveryReport:
    """What one `send` did: operations delivered and dead-lettered, retries, HTTP requests made."""

    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    requests: int = 0


class DeliveryFailed(Exception):
    """Delivery stopped; `remaining` holds the operations not delivered, in order, to keep queued."""

    def __init__(self, message: str, remaining: list[dict[str, Any]], report: DeliveryReport) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.report = report


class Unauthorized(DeliveryFailed, ConfigError):
    """Customer.io refused the site id / API key: stop delivering, report unhealthy, keep everything queued."""


class Delivery:
    """A Track API v2 client over one kept-alive httpx connection pool. Use one sender per instance:
    concurrent `send` calls would interleave their batches."""

    def __init__(self, settings: CustomerIO, site_id: str, api_key: str, *, dead_letter: DeadLetter | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self._dead_letter = dead_letter or DeadLetterFile(settings.dead_letter).add
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
        self._client = httpx.Client(
            base_url=settings.base_url,
            auth=httpx.BasicAuth(site_id, api_key),
            timeout=settings.timeout,
            headers={"Content-Type": "application/json", "User-Agent": "groupspec"},
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        )

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> Delivery:
        """A client for `config.customerio`; ConfigError when the site id or API key is not set."""
        settings = config.customerio
        return cls(settings, config.require("customerio.site_id", settings.site_id),
                   config.require("customerio.api_key", settings.api_key), **options)

    def __repr__(self) -> str:
        return f"Delivery(url={self.settings.base_url!r}, batch_size={self.settings.batch_size})"

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def check_auth(self) -> bool:
        """True when Customer.io accepts the credentials (`GET /auth`), False when it refuses them;
        DeliveryFailed when it cannot tell (unreachable, or another answer)."""
        self._bucket.acquire()
        try:
            response = self._client.get("/auth")
        except httpx.RequestError as exc:
            raise DeliveryFailed(f"{self.settings.base_url}/auth: {_describe(exc)}", [], DeliveryReport()) from None
        if response.status_code in _FORBIDDEN:
            return False
        if response.is_success:
            return True
        raise DeliveryFailed(f"{self.settings.base_url}/auth: unexpected HTTP {response.status_code}", [],
                             DeliveryReport())

    def send(self, ops: list[dict[str, Any]]) -> DeliveryReport:
        """Deliver `ops` in order; raises `Unauthorized` or `DeliveryFailed` with the undelivered rest."""
        report = DeliveryReport()
        for item in plan(ops, self.settings.batch_size):
            if isinstance(item, Unsendable):
                self._dead([item.op], {"status": None, "reason": item.reason, "field": "", "message": item.message},
                           report)
                continue
            rest = ops[item.end:]
            response = self._post(item, rest, report)
            self._settle(item, rest, response, report)
        return report

    def _post(self, batch: Batch, rest: list[dict[str, Any]], report: DeliveryReport) -> httpx.Response:
        """The first answer that is not worth retrying; DeliveryFailed once `max_retries` are spent."""
        settings = self.settings
        for attempt in range(settings.max_retries + 1):
            self._bucket.acquire()
            report.requests += 1
            try:
                response = self._client.post("/api/v2/batch", content=batch.body)
            except httpx.RequestError as exc:  # connection, protocol and timeout errors
                failure, wait = _describe(exc), None
            else:
                if not retryable(response.status_code):
                    return response
                failure = f"HTTP {response.status_code}"
                wait = retry_after(response.headers.get("Retry-After"), datetime.now(timezone.utc))
            if attempt == settings.max_retries:
                break
            if wait is None:
                wait = backoff(attempt, settings.retry_base, settings.retry_cap, self._rng)
            log.warning("customerio: %s from %s/api/v2/batch; retry %d of %d in %.2fs", failure,
                        settings.base_url, attempt + 1, settings.max_retries, wait)
            report.retries += 1
            self._sleep(wait)
        raise DeliveryFailed(
            f"{settings.base_url}/api/v2/batch: {failure} after {settings.max_retries} retries; "
            f"{len(batch.ops) + len(rest)} operations not delivered", batch.ops + rest, report)

    def _settle(self, batch: Batch, rest: list[dict[str, Any]], response: httpx.Response,
                report: DeliveryReport) -> None:
        status = response.status_code
        if status == 207:
            self._partial(batch, response, report)
        elif status in _FORBIDDEN:
            raise Unauthorized(
                f"{self.settings.base_url}: Customer.io refused the credentials (HTTP {status}); check "
                f"customerio.site_id and customerio.api_key", batch.ops + rest, report)
        elif status in _REFUSED:
            errors = _errors(response)
            first = errors[0] if errors else {}
            error = {"status": status, "reason": first.get("reason", "bad_request"), "field": first.get("field", ""),
                     "message": first.get("message", response.text[:500]), "errors": errors}
            self._dead(batch.ops, error, report)
        elif response.is_success:
            report.delivered += len(batch.ops)
        else:
            raise DeliveryFailed(f"{self.settings.base_url}/api/v2/batch: unexpected HTTP {status}",
                                 batch.ops + rest, report)

    def _partial(self, batch: Batch, response: httpx.Response, report: DeliveryReport) -> None:
        """207: the operations named by `batch_index` go to the dead letter, the others are delivered."""
        failed: dict[int, dict[str, Any]] = {}
        for error in _errors(response):
            index = error.get("batch_index")
            if isinstance(index, int) and 0 <= index < len(batch.ops) and index not in failed:
                failed[index] = {"status": 207, "reason": error.get("reason", ""), "field": error.get("field", ""),
                                 "message": error.get("message", "")}
        if not failed:  # a 207 that names no operation cannot say which were refused: dead-letter them all
            self._dead(batch.ops, {"status": 207, "reason": "unreadable_partial_failure", "field": "",
                                   "message": response.text[:500]}, report)
            return
        for index, error in sorted(failed.items()):
            self._dead([batch.ops[index]], error, report)
        report.delivered += len(batch.ops) - len(failed)

    def _dead(self, ops: list[dict[str, Any]], error: dict[str, Any], report: DeliveryReport) -> None:
        for op in ops:
            self._dead_letter(op, error)
        report.dead_lettered += len(ops)
        log.warning("customerio: %d operation(s) to the dead letter (%s): %s", len(ops),
                    f"HTTP {error['status']}" if error["status"] else "not sent", error["reason"])


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Customer.io's `{"errors": [...]}`, or [] when the body is not that."""
    try:
        errors = orjson.loads(response.content).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _describe(exc: httpx.RequestError) -> str:
    return f"{type(exc).__name__} ({exc})" if str(exc) else type(exc).__name__
