"""The store suite's fixture, shared by every test that runs on each store kind: memory, SQLite, Redis and the
session's Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.sqlite import SQLiteStore
from redis_support import RedisSandbox, needs_redis, needs_redis_server

REDIS_KINDS = [pytest.param("redis", marks=needs_redis), pytest.param("redis-cluster", marks=needs_redis_server)]


def sandbox_of(kind: str, request) -> RedisSandbox | None:
    """A key sandbox on the single Redis or on the session's cluster; None for the other stores."""
    if kind == "redis":
        return RedisSandbox()
    if kind == "redis-cluster":
        return RedisSandbox(request.getfixturevalue("redis_cluster"))
    return None


@pytest.fixture(params=["memory", "sqlite", *REDIS_KINDS])
def reopen(request, tmp_path) -> Callable:
    """Opens the store under test; calling it again reopens the same data (memory: a fresh store)."""
    opened = []
    sandbox = sandbox_of(request.param, request)

    def open_one():
        store = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(str(tmp_path / "groupspec.db"))}.get(
            request.param, sandbox and sandbox.open)()
        opened.append(store)
        return store

    open_one.kind = request.param
    yield open_one
    for store in opened:
        store.close()
    if sandbox is not None:
        sandbox.clean()
