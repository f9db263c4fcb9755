"""Benchmark: `groupspec replay` throughput against an orjson floor (parse every line, write it out twice).

    python bench/replay.py [--messages 200000] [--people 20000] [--before REV]

Generates a stream (10% group/identify, 90% track, half of the tracks without any group id), runs the floor
and the replay in this one process, and prints messages/s, the ratio replay/floor and peak memory (RSS).
`--before REV` first runs this benchmark as it was at git revision REV against that revision's code
(`bench/revision.py`), so one run reports before and after on the same machine.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from groupspec.middleware.config import parse_config
from groupspec.middleware.jsonl import read_lines
from groupspec.plugin.replay import Replay

CONFIG = {
    "contract": {
        "version": "bench",
        "group_id_pattern": "^hh_[0-9]+$",
        "require_group": ["Order Placed"],
        "attach_group_traits": ["subscription_status"],
        "group_traits": {"subscription_status": {"type": "string", "enum": ["active", "paused", "cancelled"]}},
    }
}
EVENTS = ["Product Viewed", "Cart Updated", "Order Placed", "Checkout Started"]


def generate(path: Path, messages: int, people: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with path.open("wb") as out:
        for i in range(messages):
            person = rng.randrange(people)
            user = f"user_{person}"
            household = f"hh_{person // 2}"
            at = (start + timedelta(seconds=i * 3)).isoformat().replace("+00:00", "Z")
            roll = rng.random()
            if roll < 0.05:
                msg = {"type": "group", "userId": user, "groupId": household,
                       "traits": {"name": f"Household {person // 2}", "subscription_status": rng.choice(["active", "paused"])}}
            elif roll < 0.10:
                msg = {"type": "identify", "userId": user, "anonymousId": f"anon_{person}",
                       "traits": {"email": f"{user}@example.com", "first_name": "Sam"}}
            else:
                msg = {"type": "track", "userId": user, "event": rng.choice(EVENTS),
                       "properties": {"sku": f"sku_{rng.randrange(500)}", "price": round(rng.random() * 90, 2)}}
                if rng.random() < 0.5:
                    msg["properties"]["group_id"] = household
            msg.update(timestamp=at, messageId=f"m{i}",
                       context={"library": {"name": "analytics-python", "version": "2.3.2"}})
            out.write(orjson.dumps(msg) + b"\n")


def floor(path: Path, out: Path) -> float:
    began = time.perf_counter()
    with (out / "a.jsonl").open("wb") as a, (out / "b.jsonl").open("wb") as b:
        for line in read_lines(path):
            obj = orjson.loads(line)
            a.write(orjson.dumps(obj) + b"\n")
            b.write(orjson.dumps(obj) + b"\n")
    return time.perf_counter() - began


def replay(path: Path, out: Path) -> float:
    config = parse_config(CONFIG, "bench")
    began = time.perf_counter()
    summary = Replay(config, out).run((line, None) for line in read_lines(path))
    elapsed = time.perf_counter() - began
    assert summary["received"] == summary["forwarded"] + summary["quarantined"]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--before", metavar="REV", help="also run the benchmark of this git revision, first")
    args = parser.parse_args()
    if args.before:
        from revision import exported, run

        with exported(args.before) as tree:
            print(f"--- before ({args.before})")
            print(run(tree, "bench/replay.py", "--messages", str(args.messages), "--people", str(args.people)), end="")
        print("--- after (this tree)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stream = work / "stream.jsonl"
        generate(stream, args.messages, args.people)
        floor_s = min(floor(stream, work) for _ in range(3))  # the floor's best of three: a conservative ratio
        replay_s = replay(stream, work / "out")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = args.messages
    print(f"messages: {n}  people: {args.people}")
    print(f"floor (orjson parse + write twice): {n / floor_s:,.0f} msg/s")
    print(f"groupspec replay:                   {n / replay_s:,.0f} msg/s")
    print(f"ratio replay/floor: {replay_s / floor_s:.2f}x (target <= 9x)")
    print(f"peak RSS: {peak_mb:.0f} MB (target < 400 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
