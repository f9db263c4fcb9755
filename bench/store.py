"""Benchmark: membership lookups/s and memory per person in the SQLite and Redis stores.

    python bench/store.py [--people 1000000] [--lookups 20000] [--stores sqlite,redis] [--redis redis://127.0.0.1:6379/0]

Loads N people in bulk (two per household, one join each; every tenth also has an anonymous id linked), then
times lookups as the resolver does them — `identities(person)` then `memberships_at(those, ts)` — for random
people, one at a time. Memory per person: the SQLite file size / N; Redis `INFO memory` used_memory delta / N.
The Redis data lives under a unique key prefix and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from groupspec.middleware.stores.redis import RedisStore, membership_field
from groupspec.middleware.stores.sqlite import SQLiteStore

START = 1_767_225_600.0  # 2026-01-01
CHUNK = 10_000


def people(n: int) -> Iterator[tuple[str, str, float, str | None]]:
    """(person key, household, join time, linked anonymous key or None) for each of `n` people."""
    for i in range(n):
        yield f"u:{i}", f"hh_{i // 2}", START + i, f"a:{i}" if i % 10 == 0 else None


def load_sqlite(store: SQLiteStore, n: int) -> None:
    """Bulk insert through the store's own schema (bench only: one transaction, executemany)."""
    db = store._db
    db.execute("BEGIN")
    db.executemany("INSERT INTO memberships (person, type_id, group_id, ts, joined) VALUES (?, '1', ?, ?, 1)",
                   ((key, group, ts) for key, group, ts, _ in people(n)))
    db.executemany("INSERT INTO links (a, b) VALUES (?, ?)",
                   (pair for key, _, _, anon in people(n) if anon for pair in ((key, anon), (anon, key))))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def load_redis(store: RedisStore, n: int) -> None:
    """Bulk write the store's key layout with pipelines of CHUNK people."""
    keys, pipe = store.keys, store.redis.pipeline(transaction=False)
    for count, (key, group, ts, anon) in enumerate(people(n), 1):
        pipe.hset(keys.person(key, "e"), membership_field("1", group, ts, True), count)
        pipe.incr(keys.group("1", group, "n"))
        if anon:
            pipe.sadd(keys.person(key, "l"), anon)
            pipe.sadd(keys.person(anon, "l"), key)
        if count % CHUNK == 0:
            pipe.execute()
    pipe.execute()


def lookups_per_second(store, n: int, lookups: int) -> float:
    rng = random.Random(11)
    sample = [rng.randrange(n) for _ in range(lookups)]
    started = time.perf_counter()
    for i in sample:
        found = store.memberships_at(store.identities(f"u:{i}"), START + n)
        assert found and found[0].group_id == f"hh_{i // 2}", found
    return lookups / (time.perf_counter() - started)


def bench_sqlite(n: int, lookups: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = SQLiteStore(str(path))
        started = time.perf_counter()
        load_sqlite(store, n)
        load_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
        rate = lookups_per_second(store, n, lookups)
        store.close()
    return load_s, rate, size / n


def bench_redis(url: str, n: int, lookups: int) -> tuple[float, float, float]:
    prefix = f"gsbench-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    before = client.info("memory")["used_memory"]
    try:
        started = time.perf_counter()
        load_redis(store, n)
        load_s = time.perf_counter() - started
        used = client.info("memory")["used_memory"] - before
        rate = lookups_per_second(store, n, lookups)
    finally:
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=CHUNK):
            batch.append(key)
            if len(batch) >= CHUNK:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        store.close()
        client.close()
    return load_s, rate, used / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(f"{args.people:,} people, {args.lookups:,} lookups (identities + memberships_at), one at a time")
    print(f"{'store':<8}{'load s':>10}{'lookups/s':>12}{'bytes/person':>15}")
    for name in args.stores.split(","):
        if name == "sqlite":
            load_s, rate, per_person = bench_sqlite(args.people, args.lookups)
        elif name == "redis":
            load_s, rate, per_person = bench_redis(args.redis, args.people, args.lookups)
        else:
            parser.error(f"unknown store {name!r}: sqlite or redis")
        print(f"{name:<8}{load_s:>10.1f}{rate:>12,.0f}{per_person:>15,.0f}")


if __name__ == "__main__":
    main()
