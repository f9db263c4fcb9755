"""Forwarding the enriched messages to a Segment-compatible upstream (Segment, a RudderStack data plane):
Segment's `/v1/batch` envelope under 500 KB, Basic auth with the upstream's write key, over the shared
`BatchSender` (the same retries, `Unauthorized` and report as Customer.io delivery; refusals go to
`upstream.dead_letter`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
from groupspec.middleware.config import Config, ConfigError

from . import Batch, BatchSender, DeadLetterFile, SendReport, TokenBucket, json_client
from .sender import DeadLetter

MAX_BATCH_BYTES = 480 * 1024  # under Segment's 500 KB, with room for the envelope
MAX_BATCH_MESSAGES = 500


class Upstream:
    """`send(messages)` posts them in order, in batches under 500 KB (`transport` replaces the network).
    `sender.throttled` says whether the upstream is throttling it."""

    def __init__(self, config: Config, *, dead_letter: DeadLetter | None = None,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, transport: httpx.BaseTransport | None = None) -> None:
        settings = config.upstream
        if settings.url is None:
            raise ConfigError(f"{config.path}: upstream.url: expected a URL")
        self.endpoint = settings.url.rstrip("/") + "/v1/batch"
        auth = httpx.BasicAuth(config.require("upstream.write_key", settings.write_key), "")
        bucket = None if settings.rate_limit is None else TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
        self.sender = BatchSender(
            json_client(auth, settings.timeout, transport=transport), self.endpoint, settings,
            dead_letter or DeadLetterFile(settings.dead_letter, key="forwarded").add, name="the upstream",
            hint="check upstream.write_key", bucket=bucket, sleep=sleep, clock=clock, rng=rng)

    def __repr__(self) -> str:
        return f"Upstream(endpoint={self.endpoint!r})"

    def close(self) -> None:
        self.sender.client.close()

    def send(self, messages: list[dict[str, Any]]) -> SendReport:
        """Forward `messages` in order; raises `Unauthorized` or `SendFailed` with the unforwarded rest."""
        return self.sender.send(messages, _batches(messages))


def _batches(messages: list[dict[str, Any]]) -> Iterator[Batch]:
    """Consecutive slices of `messages` as `/v1/batch` requests, each under the upstream's limits."""
    start, parts, size = 0, [], 0
    for index, message in enumerate(messages):
        encoded = orjson.dumps(message)
        if parts and (len(parts) == MAX_BATCH_MESSAGES or size + len(encoded) > MAX_BATCH_BYTES):
            yield Batch(messages[start:index], b'{"batch":[' + b",".join(parts) + b"]}", index)
            start, parts, size = index, [], 0
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        yield Batch(messages[start:], b'{"batch":[' + b",".join(parts) + b"]}", len(messages))
