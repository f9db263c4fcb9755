"""Forwarding the enriched messages to a Segment-compatible upstream (Segment, a RudderStack data plane):
Segment's `/v1/batch` envelope under 500 KB, over the shared `BatchSender` (the same retries, `Unauthorized` and
report as Customer.io delivery; refusals go to `upstream.dead_letter`).

Each message goes under the write key of its source (`Config.upstream_key`: the source's `upstream_write_key`,
else the write key it arrived with, else `upstream.write_key`), so each groupspec source reaches its own upstream
source; a request holds one key's messages (Basic auth with that key), and a message that carries a `writeKey` of
its own carries that key (Segment reads a body's `writeKey` before the header's)."""

from __future__ import annotations

import base64
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
#: a message on its way upstream: (its source, the enriched body)
Forward = tuple[str | None, dict[str, Any]]


class Upstream:
    """`send(items)` posts `(source, message)` pairs, each source's in order, in batches under 500 KB (`transport`
    replaces the network). `sender.throttled` says whether the upstream is throttling it."""

    def __init__(self, config: Config, *, dead_letter: DeadLetter | None = None,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, transport: httpx.BaseTransport | None = None) -> None:
        settings = config.upstream
        if settings.url is None:
            raise ConfigError(f"{config.path}: upstream.url: expected a URL")
        self.config = config
        self.endpoint = settings.url.rstrip("/") + "/v1/batch"
        self._keys = {name: config.upstream_key(name) for name in config.sources}  # fails fast when one is unset
        bucket = None if settings.rate_limit is None else TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
        dead = dead_letter or DeadLetterFile(settings.dead_letter, key="forwarded").add
        self.sender = BatchSender(
            json_client(None, settings.timeout, transport=transport), self.endpoint, settings,
            lambda item, error: dead(item[1], error), name="the upstream",
            hint="check the source's upstream_write_key (or write_key, or upstream.write_key)", bucket=bucket,
            sleep=sleep, clock=clock, rng=rng)

    def __repr__(self) -> str:
        return f"Upstream(endpoint={self.endpoint!r})"

    def close(self) -> None:
        self.sender.client.close()

    def send(self, items: list[Forward]) -> SendReport:
        """Forward `items`; raises `Unauthorized` or `SendFailed` with the unforwarded rest. They go grouped by
        write key (`items` is sorted in place, stably: each source's messages keep their order; different upstream
        sources have no order between them), and the `remaining` of a failure is in that order."""
        items.sort(key=lambda item: self._key_of(item[0]))
        return self.sender.send(items, self._batches(items))

    def _key_of(self, source: str | None) -> str:
        key = self._keys.get(source)
        if key is None:  # a message of no (declared) source: the default key
            key = self._keys[source] = self.config.upstream_key(None)
        return key

    def _batches(self, items: list[Forward]) -> Iterator[Batch]:
        """Consecutive slices of `items` as `/v1/batch` requests, each of one write key and under the limits."""
        start, parts, size, current = 0, [], 0, None
        for index, (source, message) in enumerate(items):
            key = self._key_of(source)
            if message.get("writeKey", key) != key:  # the sender's key in the body: the upstream source's instead
                message = {**message, "writeKey": key}
            encoded = orjson.dumps(message)
            if parts and (key != current or len(parts) == MAX_BATCH_MESSAGES or size + len(encoded) > MAX_BATCH_BYTES):
                yield _batch(items[start:index], parts, index, current)
                start, parts, size = index, [], 0
            parts.append(encoded)
            size += len(encoded) + 1
            current = key
        if parts:
            yield _batch(items[start:], parts, len(items), current)


def _batch(items: list[Forward], parts: list[bytes], end: int, write_key: str) -> Batch:
    """One request: Basic auth with the write key as the username (no password), as the Segment SDKs send it."""
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode("ascii")
    return Batch(items, b'{"batch":[' + b",".join(parts) + b"]}", end, {"Authorization": auth})
