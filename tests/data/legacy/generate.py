"""Writes the files of groupspec 0.1.0 (before format versions) that tests/test_formats.py opens with today's code.

Run it with the code of commit 16f43ba on the path, e.g. from a worktree of that commit:
    git worktree add /tmp/old 16f43ba && mkdir -p /tmp/oldpkg/groupspec
    ln -s /tmp/old/middleware /tmp/old/plugin /tmp/oldpkg/groupspec/
    PYTHONPATH=/tmp/oldpkg python tests/data/legacy/generate.py tests/data/legacy
It writes `store.db` (a SQLite store), `spool.db` (a service spool), `redis.json` (every key a Redis store wrote
under the prefix ``gsold:``, as data) and `answers.json` (what 0.1.0 answered to each question asked of them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import redis
from groupspec.middleware.stores.redis import RedisStore
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin.service.spool import Spool, SpoolQueue

PREFIX = "gsold:"
HH = ("household", "hh_1")


def write_facts(store) -> None:
    """A little of everything a store holds: arrivals, links, joins and a leave, a deleted group, trait
    history, activity, a pending rollup."""
    for n, ts in enumerate([100.0, 120.0, 150.0, 200.0, 250.0, 300.0, 210.0], start=1):
        assert store.admit(f"m{n}", ts) in (n, None)
    store.link("u:alice", "a:anon1", arrived=2, ts=120.0)
    store.record_membership("a:anon1", *HH, 100.0, True, arrived=1)
    store.record_membership("u:bob", *HH, 150.0, True, arrived=3)
    store.record_membership("u:bob", *HH, 300.0, False, arrived=6)
    store.record_membership("u:carol", "household", "hh_2", 150.0, True, arrived=3)
    store.record_object_deleted("household", "hh_2", 250.0, arrived=5)
    store.apply_traits(*HH, {"plan": "basic", "name": "Smiths"}, 100.0, "m1", arrived=1)
    store.apply_traits(*HH, {"plan": "family"}, 200.0, "m4", arrived=4)
    store.record_activity(*HH, "m7", 210.0, {"orders": 1})
    store.mark_rollup_pending(*HH, 500.0, 1)


#: (method, arguments) asked of every store; answers.json holds what 0.1.0 answered
QUESTIONS = [
    ("identities", ["u:alice"]), ("identities", ["a:anon1", 2]), ("identities", ["u:bob"]),
    ("memberships_at", [["u:alice", "a:anon1"], 110.0]), ("memberships_at", [["u:bob"], 160.0]),
    ("memberships_at", [["u:bob"], 310.0]), ("memberships_at", [["u:carol"], 200.0]),
    ("memberships_at", [["u:carol"], 260.0]), ("memberships_at", [["u:bob"], 160.0, 3]),
    ("traits_at", [*HH, ["plan", "name"], 150.0]), ("traits_at", [*HH, ["plan", "name"], 250.0]),
    ("traits_at", [*HH, ["plan"], 250.0, 4]),
    ("stale_traits", [*HH, ["plan", "name"], 150.0, "m9"]), ("stale_traits", [*HH, ["plan"], 200.0, "m4", 4]),
    ("activity_since", [*HH, 0.0]), ("due_rollups", [1000.0]), ("due_rollups", [400.0]),
    ("groups", []), ("members_at", [*HH, 160.0]), ("members_at", [*HH, 310.0]), ("trait_names", [*HH]),
    ("deleted_at", ["household", "hh_2"]), ("deleted_at", list(HH)), ("size", []),
    ("admit", ["m4", 200.0]), ("lookup", ["m4", ["u:bob"], 200.0, ["plan"]]),
]


def plain(value):
    """An answer as JSON data: named tuples as lists, sets sorted, tuple keys as text."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(plain(k))): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def answers(store) -> list:
    return [[method, args, plain(getattr(store, method)(*args))] for method, args in QUESTIONS]


def dump_redis(client: redis.Redis) -> list:
    out = []
    for key in sorted(client.scan_iter(match=PREFIX + "*")):
        kind = client.type(key)
        data = {"string": client.get, "hash": client.hgetall, "set": lambda k: sorted(client.smembers(k)),
                "zset": lambda k: client.zrange(k, 0, -1, withscores=True)}[kind](key)
        out.append([kind, key.removeprefix(PREFIX), data])
    return out


def main(folder: Path) -> None:
    store = SQLiteStore(str(folder / "store.db"))
    write_facts(store)
    out = {"sqlite": answers(store)}
    store.close()

    client = redis.Redis(decode_responses=True)
    client.delete(*client.keys(PREFIX + "*") or ["-"])
    store = RedisStore("redis://127.0.0.1:6379/0", prefix=PREFIX)
    write_facts(store)
    out["redis"] = answers(store)
    (folder / "redis.json").write_text(json.dumps(dump_redis(client), indent=0) + "\n")
    client.delete(*client.keys(PREFIX + "*"))

    spool = Spool(folder / "spool.db")
    spool.append([("web", None, 1_790_000_000.0, 2, b'{"batch":[{"type":"track","event":"A","userId":"u1"},'
                                                   b'{"type":"track","event":"B","userId":"u2"}]}'),
                  ("web", "identify", 1_790_000_001.0, 1, b'{"userId":"u3","traits":{"email":"u3@example.com"}}')])
    queue = SpoolQueue(folder / "spool.db")
    first = queue.take(0, 2)
    queue.done(first, {"done": 2, "problem": None, "counts": {"received": 2, "forwarded": 2}})
    queue.close()
    queue = SpoolQueue(folder / "spool.db")
    out["spool"] = {"depth": spool.depth, "worker_state": spool.worker_state(),
                    "waiting": [[e.seq, e.source, e.kind, e.received_at, e.messages, e.payload.decode()]
                                for e in queue.take(0, 100)]}
    queue.close()
    spool.close()
    (folder / "spool.db.lock").unlink()
    left = [p.name for p in folder.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert not left, f"a connection was left open: {left}"  # the last close folds the WAL into the file
    (folder / "answers.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
