"""The Redis the tests use (a real server on 127.0.0.1:6379; tests that need it are skipped without it) and
RedisStores under a throw-away key prefix."""

from __future__ import annotations

import uuid

import pytest
import redis
from groupspec.middleware.stores.redis import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_answers() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_answers(), reason=f"no Redis answers at {REDIS_URL} (CI starts one)")


class RedisSandbox:
    """RedisStores under a unique key prefix, whose keys are all deleted at the end."""

    def __init__(self) -> None:
        self.prefix = f"gstest-{uuid.uuid4().hex[:12]}:"

    def open(self) -> RedisStore:
        return RedisStore(REDIS_URL, prefix=self.prefix)

    def clean(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
