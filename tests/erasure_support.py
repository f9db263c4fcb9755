"""Helpers of the erasure tests (issue 23): generated histories of people (user ids, anonymous ids, emails,
shared devices) in groups, and scans of every record a store kind holds, as text, for a forgotten person's ids."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import redis
from hypothesis import strategies as st

from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.redis import RedisStore
from groupspec.middleware.stores.sqlite import SQLiteStore

GROUPS = ["hh_1", "hh_2", "hh_3"]


def user(i: int) -> str:
    return f"user{i}z"  # no id is part of another (user1z is not in user11z)


def anon(i: int) -> str:
    return f"anon{i}z"


def email(i: int) -> str:
    return f"person{i}z@example.com"


def person_names(i: int) -> list[str]:
    """Every identifier of person `i` (their alias's old id too): the strings none of whose bytes may stay after
    they are forgotten."""
    return [user(i), anon(i), email(i), f"old{i}z"]


#: one generated history step: (kind, person, group, shared device)
steps = st.lists(st.tuples(st.sampled_from(["identify", "group", "track", "leave", "alias"]),
                           st.integers(0, 3), st.sampled_from(GROUPS), st.booleans()), min_size=3, max_size=25)


def history(plan: list[tuple[str, int, str, bool]]) -> list[dict[str, Any]]:
    """Spec messages of a generated history, a minute apart: person 0 always identifies and joins a group first;
    a `shared` step uses the shared device ``anon-shared-device`` (so it links several people)."""
    out: list[dict[str, Any]] = []
    plan = [("identify", 0, "hh_1", False), ("group", 0, "hh_1", False), *plan]
    for n, (kind, i, group_id, shared) in enumerate(plan):
        body: dict[str, Any] = {"userId": user(i), "anonymousId": "anon-shared-device" if shared else anon(i),
                                "messageId": f"m-{n}", "timestamp": f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z"}
        if kind == "identify":
            body.update(type="identify", traits={"email": email(i), "plan": "pro"})
        elif kind == "group":
            body.update(type="group", groupId=group_id, traits={"name": f"home {group_id}", "size": n,
                                                                 "relationshipAttributes": {"role": "payer"}})
        elif kind == "track":
            body.update(type="track", event="Order Placed", properties={"total": n})
        elif kind == "leave":
            body.update(type="track", event="Relationship Deleted",
                        properties={"objectId": group_id, "objectTypeId": "1"})
        else:  # an alias from the person's old id
            body.update(type="alias", previousId=f"old{i}z")
        out.append(body)
    return out


def answers(store: Any, people: list[int]) -> dict[str, Any]:
    """What the store answers for `people` (the memberships recorded under each of their ids, and the shared
    device's, at the end) and for every group (its trait snapshot), to compare before and after another person
    is forgotten."""
    far = 4e9
    out: dict[str, Any] = {}
    for key in ["a:anon-shared-device", *(k for i in people for k in ("u:" + user(i), "a:" + anon(i)))]:
        out[key] = sorted(store.memberships_at([key], far))
    for group_id in GROUPS:
        out[group_id] = store.traits_at("1", group_id, ["name", "size"], far)
    return out


def dump(store: Any, path: Path | None = None) -> bytes:
    """Every key and row of the store, as bytes (SQLite: every table's rows, and the raw main file and WAL)."""
    if isinstance(store, MemoryStore):
        return repr(vars(store)).encode()
    if isinstance(store, SQLiteStore):
        db = sqlite3.connect(str(path))
        try:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = repr([db.execute(f"SELECT * FROM {table}").fetchall() for table in tables]).encode()
        finally:
            db.close()
        raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        return rows + raw
    assert isinstance(store, RedisStore)
    return b"".join(_redis_dump(client, store.keys.prefix) for client in _masters(store))


def _masters(store: RedisStore) -> list[redis.Redis]:
    if not store.cluster:
        return [redis.Redis(connection_pool=store.redis.connection_pool)]
    return [redis.Redis(host=node.host, port=node.port) for node in store.redis.get_primaries()]


def _redis_dump(client: redis.Redis, prefix: str) -> bytes:
    out = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
                 "zset": lambda k: client.zrange(k, 0, -1, withscores=True)}[kind](key)
        out.append(repr((key, value)).encode())
    return b"".join(out)


def found(data: bytes, names: list[str]) -> list[str]:
    return [name for name in names if name.encode() in data]

