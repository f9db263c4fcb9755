"""Benchmark: the cost of `install()` on a Segment client, against the same client bare.

    python bench/sdk_overhead.py [--calls 20000] [--people 1000] [--rounds 3] [--profile]

Runs the same `track` calls on a bare `segment.analytics.Client(send=False)` and on an installed one whose
memory store already knows every person's household (seeded with `group` calls), alternately, `--rounds` times,
and prints the best time of each and the ratio installed/bare (target: at most 1.3). `--profile` adds the top
functions of one more installed run (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from groupspec.middleware import install
from groupspec.middleware.config import parse_config
from groupspec.middleware.stores import open_store
from segment.analytics import Client

CONTRACT = {
    "version": "bench",
    "group_id_pattern": "^hh_[0-9]+$",
    "require_group": ["Order Placed"],
    "group_traits": {"subscription_status": {"type": "string", "enum": ["active", "paused", "cancelled"]}},
}
EVENTS = ["Product Viewed", "Cart Updated", "Order Placed", "Checkout Started"]


def calls(n: int, people: int) -> list[tuple[str, str, dict]]:
    return [(f"user_{i % people}", EVENTS[i % len(EVENTS)], {"sku": f"sku_{i % 97}", "price": 12.5, "quantity": 1})
            for i in range(n)]


def run(client: Client, work: list[tuple[str, str, dict]]) -> float:
    start = time.perf_counter()
    for user, event, properties in work:
        client.track(user, event, properties)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate runs of each; the best counts")
    parser.add_argument("--profile", action="store_true", help="print the top functions of the installed run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({"contract": CONTRACT, "quarantine": {"path": str(Path(tmp) / "quarantine.jsonl")}})
        store = open_store("memory://")
        installed = install(Client("bench", send=False), config, source="web", store=store)
        for i in range(args.people):  # the store knows the people: their household, from a group call
            ok, _ = installed.group(f"user_{i}", f"hh_{i % (args.people // 3 or 1)}", {"subscription_status": "active"})
            assert ok
        bare = Client("bench", send=False)
        work = calls(args.calls, args.people)
        for client in (bare, installed):  # warm up both
            run(client, work[:1000])
        timings = [(run(bare, work), run(installed, work)) for _ in range(args.rounds)]
        bare_s, installed_s = min(t[0] for t in timings), min(t[1] for t in timings)
        print(f"{args.calls} track calls, {args.people} people known to the store (memory://), best of {args.rounds}")
        print(f"bare:      {bare_s:.3f} s  ({bare_s / args.calls * 1e6:.1f} us/call)")
        print(f"installed: {installed_s:.3f} s  ({installed_s / args.calls * 1e6:.1f} us/call)")
        print(f"ratio installed/bare: {installed_s / bare_s:.2f}  (target <= 1.30)")
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(run, installed, work)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
