"""Delivering Track API v2 operations to Customer.io: its batching plan and its answers (400 errors, 207
partial failures) over the shared `BatchSender`.

`Delivery.send(ops)` sends the operations in order, one batch at a time, so object-before-relationship
ordering and per-person order hold within and across batches. Every operation ends delivered, in the dead
letter (Customer.io refused it: 207, 400, over 32 KB), or in the `remaining` of the exception that stopped
the call (401: `Unauthorized`; retries exhausted or an unexpected answer: `SendFailed`) for the caller to
keep queued.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from groupspec.middleware.config import Config, CustomerIO

from ..sender import (Batch, BatchSender, DeadLetterFile, SendFailed, SendHeld, SendReport, SharedTokenBucket, TokenBucket,
                      json_client)
from ..sender.sender import FORBIDDEN, Accepted, DeadLetter, describe
from ..sender.ratelimit import LimitUnavailable
from .batching import plan


class Delivery:
    """A Track API v2 client over one kept-alive httpx connection pool (`transport` replaces the network;
    `bucket` replaces this process's own bucket of `settings.rate_limit`, e.g. by one shared with other replicas).
    Use one sender per instance: concurrent `send` calls would interleave their batches. `sender.throttled`
    says whether Customer.io is throttling it."""

    def __init__(self, settings: CustomerIO, site_id: str, api_key: str, *, dead_letter: DeadLetter | None = None,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, transport: httpx.BaseTransport | None = None,
                 bucket: TokenBucket | SharedTokenBucket | None = None) -> None:
        self.settings = settings
        self._bucket = bucket or TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
        client = json_client(httpx.BasicAuth(site_id, api_key), settings.timeout, base_url=settings.base_url,
                             transport=transport)
        self.sender = BatchSender(
            client, f"{settings.base_url}/api/v2/batch", settings,
            dead_letter or DeadLetterFile(settings.dead_letter).add, name="Customer.io",
            hint="check customerio.site_id and customerio.api_key", refusal=refusal, partial=partial,
            bucket=self._bucket, sleep=sleep, clock=clock, rng=rng)

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
        self.sender.client.close()

    def check_auth(self) -> bool:
        """True when Customer.io accepts the credentials (`GET /auth`), False when it refuses them;
        SendFailed when it cannot tell (unreachable, or another answer)."""
        try:
            self._bucket.acquire()
        except LimitUnavailable as exc:
            raise SendHeld(f"{self.settings.base_url}/auth: {exc}", [], SendReport()) from None
        try:
            response = self.sender.client.get("/auth")
        except httpx.RequestError as exc:
            raise SendFailed(f"{self.settings.base_url}/auth: {describe(exc)}", [], SendReport()) from None
        if response.status_code in FORBIDDEN:
            return False
        if response.is_success:
            return True
        raise SendFailed(f"{self.settings.base_url}/auth: unexpected HTTP {response.status_code}", [],
                         SendReport())

    def send(self, ops: list[dict[str, Any]], accepted: Accepted | None = None,
             lines: list[bytes] | None = None) -> SendReport:
        """Deliver `ops` in order; raises `Unauthorized` or `SendFailed` with the undelivered rest. `accepted` is
        called with the operations of each batch Customer.io accepted; `lines` are the operations already
        written out (the engine's `Outcome.op_lines`), else they are written here."""
        return self.sender.send(ops, plan(ops, self.settings.batch_size, lines), accepted)


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The dead-letter error of a request Customer.io refused whole (400): its first error, and all of them."""
    errors = _errors(response)
    first = errors[0] if errors else {}
    return {"status": response.status_code, "reason": first.get("reason", "bad_request"),
            "field": first.get("field", ""), "message": first.get("message", response.text[:500]), "errors": errors}


def partial(batch: Batch, response: httpx.Response) -> dict[int, dict[str, Any]]:
    """207: the errors of the operations named by `batch_index`, by index; all of them when it names none."""
    if response.status_code != 207:
        return {}
    failed: dict[int, dict[str, Any]] = {}
    for error in _errors(response):
        index = error.get("batch_index")
        if isinstance(index, int) and 0 <= index < len(batch.items) and index not in failed:
            failed[index] = {"status": 207, "reason": error.get("reason", ""), "field": error.get("field", ""),
                             "message": error.get("message", "")}
    if failed:
        return failed
    unreadable = {"status": 207, "reason": "unreadable_partial_failure", "field": "", "message": response.text[:500]}
    return dict.fromkeys(range(len(batch.items)), unreadable)


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Customer.io's `{"errors": [...]}`, or [] when the body is not that."""
    try:
        errors = orjson.loads(response.content).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
