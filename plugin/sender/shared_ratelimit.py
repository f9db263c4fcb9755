"""A token bucket in Redis that every replica of the service shares, so that N replicas together stay within one
rate limit (a per-process `TokenBucket` lets N replicas send N times the rate).

One Lua script takes a token: it reads the clock with Redis `TIME` (replicas on different hosts agree on it),
refills the bucket, takes one token (going into debt when empty, as `TokenBucket` does) and returns how long
the caller must wait before sending. The caller sleeps locally, so waiters never hold Redis. The bucket is one
hash under the store's key prefix with a hash tag, ``PREFIX{limits}:NAME`` (one slot: Redis Cluster too), that
expires once it would be full again.

If Redis does not answer, `acquire` raises `LimitUnavailable`: the sender sends nothing (never unthrottled)
and the service retries, showing the problem in `/health`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import NoScriptError, RedisClusterException

from .ratelimit import LimitUnavailable, TokenBucket

#: store URL schemes whose store is one Redis (or Redis Cluster) that every replica shares: their senders
#: share their rate limits. The one place that decides it (the schemes are registered in stores/urls.py).
SHARED_SCHEMES = ("redis://", "redis+cluster://")

# KEYS: the bucket hash; ARGV: rate (tokens/s), capacity. Returns [Redis time, seconds to wait before sending].
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or capacity
local stamp = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'stamp', string.format('%.6f', now))
local wait = 0
if tokens < 0 then wait = -tokens / rate end
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + capacity / rate) * 1000) + 1000)
return {string.format('%.6f', now), string.format('%.6f', wait)}
"""
_TAKE_SHA = hashlib.sha1(_TAKE.encode()).hexdigest()


class SharedTokenBucket:
    """`TokenBucket`'s interface over a bucket in Redis: `acquire()` takes a token, sleeps (through the injected
    `sleep`) for as long as the bucket says and returns the seconds waited. `capacity` is the burst: at most
    `rate * t + capacity` tokens are taken in any `t` seconds, across every client of the same `key`."""

    def __init__(self, client: Any, key: str, rate: float, *, capacity: float = 1.0,
                 sleep: Callable[[float], Any]) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        self.key = key
        self.rate = rate
        self.capacity = capacity
        self._sleep = sleep
        self._client = client  # a store's: a cluster client connects on its first command, not here

    def acquire(self) -> float:
        """Take one token, waiting for it when the bucket is empty; `LimitUnavailable` when Redis does not answer."""
        wait = self.take()[1]
        if wait > 0:
            self._sleep(wait)
        return wait

    def take(self) -> tuple[float, float]:
        """Take one token without waiting: (Redis time, seconds until it may be used)."""
        args = [self.key, repr(float(self.rate)), repr(float(self.capacity))]
        try:
            try:
                now, wait = self._client.evalsha(_TAKE_SHA, 1, *args)
            except NoScriptError:  # the first time on this server (or after a SCRIPT FLUSH)
                now, wait = self._client.eval(_TAKE, 1, *args)
        except (redis.RedisError, RedisClusterException) as exc:
            raise LimitUnavailable(f"the shared rate limit in Redis does not answer ({type(exc).__name__}: {exc})") \
                from None
        return float(now), float(wait)


def rate_limiter(store_url: str, store: Any, name: str, rate: float, *, clock: Callable[[], float],
                 sleep: Callable[[float], Any]) -> TokenBucket | SharedTokenBucket:
    """The bucket a sender named `name` uses: shared by every replica when the store is a shared Redis (in the
    store's key namespace, over its connection), else this process's own."""
    if store_url.startswith(SHARED_SCHEMES):
        return SharedTokenBucket(store.redis, f"{store.keys.prefix}{{limits}}:{name}", rate, sleep=sleep)
    return TokenBucket(rate, clock=clock, sleep=sleep)
