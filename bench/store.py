"""Benchmark: membership lookups/s and memory per person in the SQLite and Redis stores; with `--engine`, round
trips per message and messages/s through the engine on a single Redis and on a three-master Redis Cluster.

    python bench/store.py [--people 1000000] [--lookups 20000] [--stores sqlite,redis] [--redis redis://127.0.0.1:6379/0]
    python bench/store.py --engine [--before main] [--people 2000] [--messages 5000] [--replicas 3] [--chunk 100]

Bulk: loads N people (two per household, one join each; every tenth also has an anonymous id linked), then
times lookups as the resolver does them — `identities(person)` then `memberships_at(those, ts)` — for random
people, one at a time. Memory per person: the SQLite file size / N; Redis `INFO memory` used_memory delta / N.

Engine: starts a local three-master cluster (tests/redis_support.py `LocalCluster`), then for each store (the
single Redis of `--redis`, the cluster) and each revision (`--before REV` first, then this tree) runs, in a child
process against that revision's code: N group calls (a join with a trait, two people per household), then M
track messages of random people resolved by membership with the trait attached (`attach_group_traits`), fed as a
door feeds it: `--chunk` messages per transaction, each chunk prefetched (`Engine.prefetch`) by a revision that
has it (`--chunk 1`: one at a time, no prefetch). Round
trips are counted in redis-py (`RoundTrips`: batches sent to several masters before a reply is read count once);
the CPU time of the engine's process per track message is the steadier figure on a busy machine.
REV's store cannot open a cluster URL; its cluster figures are its store on a hand-wired cluster client.
`--replicas N` then runs this tree's track phase in N processes at once on one store (the same key prefix, so
they share its arrival counter and memberships, as replicas of the service do): combined messages/s and round
trips per message, next to one process.

The Redis data lives under a unique key prefix and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
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


ROOT = Path(__file__).resolve().parent.parent
TRAITS = {"contract": {"attach_group_traits": ["status"], "group_traits": {"status": {"type": "string"}}}}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def open_bench_store(url: str, prefix: str):
    """A RedisStore on `url`; a revision whose store cannot open a cluster URL gets its store on a cluster client
    (its scripts registered there)."""
    from groupspec.middleware.stores import StoreError
    from groupspec.middleware.stores.redis import RedisStore

    try:
        return RedisStore(url, prefix=prefix)
    except (StoreError, ValueError):
        pass
    from redis.cluster import ClusterNode, RedisCluster
    from redis.commands.core import Script

    nodes = [ClusterNode(host, int(port)) for host, port in
             (one.split(":") for one in url.removeprefix("redis+cluster://").split(","))]
    store = RedisStore("redis://127.0.0.1:1/0", prefix=prefix)
    store.redis = RedisCluster(startup_nodes=nodes, decode_responses=True)
    for name, value in list(vars(store).items()):
        if isinstance(value, Script):
            setattr(store, name, store.redis.register_script(value.script))
    return store


def engine_child(url: str, people: int, messages: int, prefix: str | None = None, phases: str = "joins,tracks",
                 seed: int = 7, chunk: int = 100) -> dict[str, float]:
    """Joins then track messages through the engine on `url` (the code on `sys.path`), `chunk` messages per
    transaction, each chunk prefetched (`Engine.prefetch`) where the code has it: round trips per message and
    messages/s of each phase of `phases`. Under a fresh prefix, deleted afterwards, unless `prefix` names the
    one a run shares (the caller deletes it)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from groupspec.middleware import Engine
    from groupspec.middleware.config import parse_config
    from redis_support import RedisSandbox, RoundTrips

    sandbox = RedisSandbox(url)
    store = open_bench_store(url, prefix or sandbox.prefix)
    engine = Engine(parse_config(TRAITS), store)
    prefetch = chunk > 1 and hasattr(engine, "prefetch")
    rng = random.Random(seed)
    joins = [{"type": "group", "userId": f"u{i}", "groupId": f"hh_{i // 2}", "traits": {"status": f"s{i % 5}"},
              "messageId": f"j{i}", "timestamp": iso(START + i)} for i in range(people)]
    tracks = [{"type": "track", "userId": f"u{rng.randrange(people)}", "event": "Order Placed", "messageId": f"t{seed}-{i}",
               "timestamp": iso(START + people + i)} for i in range(messages)]
    out: dict[str, float] = {}
    try:
        store.admit("warm-up")  # a cluster client learns the slot map on its first command
        for phase, batch in (("joins", joins), ("tracks", tracks)):
            if phase not in phases.split(","):
                continue
            with RoundTrips() as trips:
                started, cpu = time.perf_counter(), time.process_time()
                for at in range(0, len(batch), chunk):  # as a door feeds the engine
                    with engine.transaction():
                        if prefetch:
                            engine.prefetch([(message, None) for message in batch[at:at + chunk]])
                        for message in batch[at:at + chunk]:
                            outcome = engine.process(message)
                            assert not outcome.quarantined, outcome.quarantined
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            out[phase + "_cpu"] = cpu / len(batch) * 1e6
            out[phase + "_rt"] = trips.count / len(batch)
            out[phase + "_rate"] = len(batch) / elapsed
        if "tracks" in phases:
            assert outcome.forwarded[-1]["context"]["groupspec"]["group_traits"], outcome.forwarded[-1]
    finally:
        store.close()
        if prefix is None:
            sandbox.clean()
    return out


def child_command(url: str, args, *extra: str) -> list[str]:
    return [sys.executable, __file__, "--engine-child", url, "--people", str(args.people),
            "--messages", str(args.messages), "--chunk", str(args.chunk), *extra]


def replicas_figures(url: str, args) -> dict[str, float]:
    """This tree's track phase in `args.replicas` processes at once on one store, after one process's joins."""
    from redis_support import RedisSandbox

    sandbox = RedisSandbox(url)
    try:
        subprocess.run(child_command(url, args, "--prefix", sandbox.prefix, "--phases", "joins"), check=True,
                       capture_output=True)
        started = time.perf_counter()
        children = [subprocess.Popen(child_command(url, args, "--prefix", sandbox.prefix, "--phases", "tracks",
                                                   "--seed", str(100 + i)), stdout=subprocess.PIPE, text=True)
                    for i in range(args.replicas)]
        got = [json.loads(child.communicate()[0].splitlines()[-1]) for child in children]
        wall = time.perf_counter() - started  # process start-up included: a floor for the combined rate
        if any(child.returncode for child in children):
            raise RuntimeError(f"a replica of the engine benchmark on {url} failed")
    finally:
        sandbox.clean()
    return {"rt": sum(one["tracks_rt"] for one in got) / len(got), "rate": args.replicas * args.messages / wall,
            "each": sum(one["tracks_rate"] for one in got) / len(got)}


def engine_compare(args) -> None:
    """The engine figures of each store and revision, in one table."""
    sys.path.insert(0, str(ROOT / "tests"))
    from redis_support import LocalCluster

    def figures(url: str, pythonpath: str | None) -> dict[str, float]:
        env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else dict(os.environ)
        done = subprocess.run(child_command(url, args), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the engine benchmark on {url} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.splitlines()[-1])

    with LocalCluster() as cluster:
        stores = [("redis", args.redis), ("redis-cluster", cluster.url)]
        runs = []
        if args.before:
            from revision import exported

            with exported(args.before) as tree:
                runs += [(args.before, name, figures(url, str(tree / "path"))) for name, url in stores]
        runs += [("this tree", name, figures(url, None)) for name, url in stores]
        shared = [(name, replicas_figures(url, args)) for name, url in stores] if args.replicas > 1 else []
    fed = "one at a time" if args.chunk == 1 else f"chunks of {args.chunk} (prefetched where the revision can)"
    print(f"engine over Redis: {args.people:,} group calls (joins with a trait), then {args.messages:,} track "
          f"messages resolved by membership with the trait attached; {fed}")
    print(f"{'revision':<12}{'store':<15}{'joins RT/msg':>13}{'joins msg/s':>13}{'tracks RT/msg':>15}{'tracks msg/s':>14}"
          f"{'tracks CPU us/msg':>19}")
    for revision, name, got in runs:
        print(f"{revision:<12}{name:<15}{got['joins_rt']:>13.2f}{got['joins_rate']:>13,.0f}"
              f"{got['tracks_rt']:>15.2f}{got['tracks_rate']:>14,.0f}{got['tracks_cpu']:>19,.0f}")
    if shared:
        print(f"\nthis tree, track messages in {args.replicas} processes at once on one store (one key prefix)")
        print(f"{'store':<15}{'1 process msg/s':>17}{f'{args.replicas} processes msg/s':>20}{'each msg/s':>12}{'RT/msg':>8}")
        single = {name: got for revision, name, got in runs if revision == "this tree"}
        for name, got in shared:
            print(f"{name:<15}{single[name]['tracks_rate']:>17,.0f}{got['rate']:>20,.0f}{got['each']:>12,.0f}{got['rt']:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=None, help="default 1,000,000 (bulk) or 2,000 (--engine)")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--engine", action="store_true", help="round trips and messages/s through the engine")
    parser.add_argument("--messages", type=int, default=5_000, help="track messages (--engine)")
    parser.add_argument("--before", metavar="REV", help="--engine: also measure this git revision, first")
    parser.add_argument("--replicas", type=int, default=3, help="--engine: this tree's tracks in N processes at once")
    parser.add_argument("--chunk", type=int, default=100, help="--engine: messages per transaction (1: one at a time)")
    parser.add_argument("--engine-child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--phases", default="joins,tracks", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_child:
        print(json.dumps(engine_child(args.engine_child, args.people or 2_000, args.messages, args.prefix,
                                      args.phases, args.seed, args.chunk)))
        return
    if args.engine:
        args.people = args.people or 2_000
        engine_compare(args)
        return
    args.people = args.people or 1_000_000
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
