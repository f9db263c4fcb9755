"""The retrying batch sender both destinations use: it posts planned batches in order, retries what the
destination may take later, dead-letters what it refuses, and stops with the unsent rest when it must."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import httpx
from groupspec.middleware.config import Sending

from .batch import Batch, Unsendable
from .ratelimit import LimitUnavailable, TokenBucket
from .report import SendFailed, SendHeld, SendReport, Unauthorized
from .shared_ratelimit import SharedTokenBucket
from .retry import backoff, retry_after, retryable

log = logging.getLogger("groupspec.sender")

DeadLetter = Callable[[Any, dict[str, Any]], None]
Refusal = Callable[[httpx.Response], dict[str, Any]]
Partial = Callable[[Batch, httpx.Response], dict[int, dict[str, Any]]]
Accepted = Callable[[list[Any]], None]
REFUSED = frozenset({400, 413, 422})  # the whole request is invalid: retrying cannot help
FORBIDDEN = frozenset({401, 403})


def json_client(auth: httpx.Auth | None, timeout: float, *, base_url: str = "",
                transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A kept-alive JSON client; `transport` stands in for the network (tests pass an `httpx.MockTransport`)."""
    return httpx.Client(base_url=base_url, auth=auth, timeout=timeout, transport=transport,
                        headers={"Content-Type": "application/json", "User-Agent": "groupspec"},
                        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The dead-letter error of a request refused whole: its status and the start of the answer."""
    return {"status": response.status_code, "reason": "refused", "message": response.text[:500]}


def describe(exc: httpx.RequestError) -> str:
    """A network error's kind and text (which carries no credentials)."""
    return f"{type(exc).__name__} ({exc})" if str(exc) else type(exc).__name__


class BatchSender:
    """Posts batches to `url` through `client`, one at a time, in order; use one `send` at a time.

    Retries 408/425/429/5xx and network errors (full-jitter backoff, or `Retry-After` capped at
    `settings.retry_cap`); 401/403 raise `Unauthorized`; 400/413/422, and the items `partial` names in a 2xx
    answer, go to `dead_letter` with the error `refusal` reads. `throttled_until` is the `clock` time until
    which the destination asked to be left alone (429 or `Retry-After`).
    """

    def __init__(self, client: httpx.Client, url: str, settings: Sending, dead_letter: DeadLetter, *,
                 name: str, hint: str, refusal: Refusal = refusal, partial: Partial | None = None,
                 bucket: TokenBucket | SharedTokenBucket | None = None, sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.client = client
        self.url = url
        self.settings = settings
        self.name = name
        self.hint = hint
        self.throttled_until = float("-inf")
        self._dead_letter = dead_letter
        self._refusal = refusal
        self._partial = partial
        self._bucket = bucket
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def throttled(self) -> bool:
        """Whether the destination's last 429 or `Retry-After` still holds."""
        return self._clock() < self.throttled_until

    def send(self, items: list[Any], plan: Iterable[Batch | Unsendable],
             accepted: Accepted | None = None) -> SendReport:
        """Send `plan`, the batches (and unsendable items) of `items` in order. Every item ends delivered,
        dead-lettered, or in the `remaining` of the `SendFailed` (or `Unauthorized`) that stopped the call.
        `accepted` is called with the items of each batch the destination accepted, as it answers."""
        report = SendReport()
        for entry in plan:
            if isinstance(entry, Unsendable):
                self._dead([entry.item], {"status": None, "reason": entry.reason, "message": entry.message}, report)
                continue
            remaining = entry.items + items[entry.end:]
            self._settle(entry, remaining, self._post(entry, remaining, report), report, accepted)
        return report

    def _post(self, batch: Batch, remaining: list[Any], report: SendReport) -> httpx.Response:
        """The first answer that is not worth retrying; SendFailed once `max_retries` are spent."""
        settings = self.settings
        for attempt in range(settings.max_retries + 1):
            if self._bucket is not None:
                try:
                    report.throttled_seconds += self._bucket.acquire()
                except LimitUnavailable as exc:
                    raise SendHeld(f"{self.name}: {exc}; {len(remaining)} items held back", remaining, report) \
                        from None
            report.requests += 1
            status = asked = None
            try:
                response = self.client.post(self.url, content=batch.body, headers=batch.headers)
            except httpx.RequestError as exc:  # connection, protocol and timeout errors
                failure = describe(exc)
            else:
                status = response.status_code
                if not retryable(status):
                    return response
                failure = f"HTTP {status}"
                asked = retry_after(response.headers.get("Retry-After"), datetime.now(timezone.utc))
            if attempt == settings.max_retries:
                break
            if asked is None:
                wait = backoff(attempt, settings.retry_base, settings.retry_cap, self._rng)
            else:
                wait = min(asked, settings.retry_cap)
            if asked is not None or status == 429:
                self.throttled_until = self._clock() + wait
                report.throttled_seconds += wait
            log.warning("%s: %s from %s; retry %d of %d in %.2fs", self.name, failure, self.url, attempt + 1,
                        settings.max_retries, wait)
            report.retries += 1
            self._sleep(wait)
        raise SendFailed(f"{self.url}: {failure} after {settings.max_retries} retries; {len(remaining)} items "
                         f"not sent", remaining, report)

    def _settle(self, batch: Batch, remaining: list[Any], response: httpx.Response, report: SendReport,
                accepted: Accepted | None) -> None:
        status = response.status_code
        if status in FORBIDDEN:
            raise Unauthorized(f"{self.url}: {self.name} refused the credentials (HTTP {status}); {self.hint}",
                               remaining, report)
        if status in REFUSED:
            self._dead(batch.items, self._refusal(response), report)
        elif response.is_success:
            refused = self._partial(batch, response) if self._partial else {}
            for index, error in sorted(refused.items()):
                self._dead([batch.items[index]], error, report)
            report.delivered += len(batch.items) - len(refused)
            if accepted is not None:
                accepted([item for index, item in enumerate(batch.items) if index not in refused])
        else:
            raise SendFailed(f"{self.url}: unexpected HTTP {status}", remaining, report)

    def _dead(self, items: list[Any], error: dict[str, Any], report: SendReport) -> None:
        for item in items:
            self._dead_letter(item, error)
        report.dead_lettered += len(items)
        log.warning("%s: %d item(s) to the dead letter (%s): %s", self.name, len(items),
                    f"HTTP {error['status']}" if error["status"] else "not sent", error["reason"])
