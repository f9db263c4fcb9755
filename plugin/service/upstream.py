"""Forwarding the enriched messages to a Segment-compatible upstream (Segment, a RudderStack data plane) as
`/v1/batch` requests with the upstream's write key, retried like Customer.io requests."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
from groupspec.middleware.config import Config, ConfigError

from ..customerio.retry import backoff, retry_after, retryable

log = logging.getLogger("groupspec.upstream")

MAX_BATCH_BYTES = 480 * 1024  # under Segment's 500 KB, with room for the envelope
MAX_BATCH_MESSAGES = 500


class UpstreamFailed(Exception):
    """Forwarding stopped; `remaining` holds the messages not forwarded, in order. `forwarded` and `retries`
    count what the call did before it stopped."""

    def __init__(self, message: str, remaining: list[dict[str, Any]], forwarded: int, retries: int) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.forwarded = forwarded
        self.retries = retries


class UpstreamUnauthorized(UpstreamFailed):
    """The upstream refused the write key: keep everything queued and report unhealthy."""


class Upstream:
    """`send(messages)` posts them in order, in batches under 500 KB; returns the retries it needed."""

    def __init__(self, config: Config, *, sleep: Callable[[float], Any] = time.sleep,
                 rng: random.Random | None = None) -> None:
        settings = config.upstream
        if settings.url is None:
            raise ConfigError(f"{config.path}: upstream.url: expected a URL")
        self.settings = settings
        self.endpoint = settings.url.rstrip("/") + "/v1/batch"
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            auth=httpx.BasicAuth(config.require("upstream.write_key", settings.write_key), ""),
            timeout=settings.timeout, headers={"Content-Type": "application/json", "User-Agent": "groupspec"})

    def __repr__(self) -> str:
        return f"Upstream(endpoint={self.endpoint!r})"

    def close(self) -> None:
        self._client.close()

    def send(self, messages: list[dict[str, Any]]) -> int:
        retries = done = 0
        for start, end, body in _batches(messages):
            for attempt in range(self.settings.max_retries + 1):
                try:
                    response = self._client.post(self.endpoint, content=body)
                except httpx.RequestError as exc:
                    failure, wait = type(exc).__name__, None
                else:
                    status = response.status_code
                    if response.is_success:
                        break
                    if status in (401, 403):
                        raise UpstreamUnauthorized(f"{self.endpoint}: the upstream refused the write key (HTTP "
                                                   f"{status}); check upstream.write_key", messages[start:], done, retries)
                    if not retryable(status):  # the upstream will never take this batch: say so, go on
                        log.error("upstream refused a batch", extra={"status": status, "messages": end - start,
                                                                      "response": response.text[:300]})
                        break
                    failure = f"HTTP {status}"
                    wait = retry_after(response.headers.get("Retry-After"), datetime.now(timezone.utc))
                if attempt == self.settings.max_retries:
                    raise UpstreamFailed(f"{self.endpoint}: {failure} after {attempt} retries",
                                         messages[start:], done, retries)
                retries += 1
                self._sleep(wait if wait is not None else backoff(attempt, 0.5, 30.0, self._rng))
            done = end
        return retries


def _batches(messages: list[dict[str, Any]]) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, request body) of consecutive slices of `messages`, each under the upstream's limits."""
    start, parts, size = 0, [], 0
    for index, message in enumerate(messages):
        encoded = orjson.dumps(message)
        if parts and (len(parts) == MAX_BATCH_MESSAGES or size + len(encoded) > MAX_BATCH_BYTES):
            yield start, index, b'{"batch":[' + b",".join(parts) + b"]}"
            start, parts, size = index, [], 0
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        yield start, len(messages), b'{"batch":[' + b",".join(parts) + b"]}"
