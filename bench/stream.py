"""The cost-per-message stream of issue 20, generated (deterministic for a seed):

    python bench/stream.py OUT.jsonl [--messages 200000] [--people 20000]

First a group call for each of `people` persons into `people / 10` households with traits `name` and
`plan_type`, then identifies (8%) and tracks (92%) over three event names with nested properties, half of the
tracks carrying `context.groupId`. `CONTRACT` requires a group on "Order Placed" and declares one enum group
trait; every message of the stream is valid under it (no violation: the common case).
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

EVENTS = ("Product Viewed", "Cart Updated", "Order Placed")
PLANS = ("free", "plus", "family")
CONTRACT_TOML = """\
[contract]
version = "bench-20"
group_id_pattern = "^hh_[0-9]+$"
require_group = ["Order Placed"]

[contract.group_traits.plan_type]
type = "string"
enum = ["free", "plus", "family"]

[store]
url = "memory://"
"""
_LIBRARY = {"library": {"name": "analytics-python", "version": "2.3.2"}}


def messages(count: int, people: int, seed: int = 7):
    """The stream's messages as dicts, in order."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    households = max(1, people // 10)
    for i in range(count):
        at = (start + timedelta(seconds=i * 3)).isoformat().replace("+00:00", "Z")
        if i < people:
            person, household = i, i % households
            msg = {"type": "group", "userId": f"user_{person}", "groupId": f"hh_{household}",
                   "traits": {"name": f"Household {household}", "plan_type": PLANS[household % 3]}}
        else:
            person = rng.randrange(people)
            if rng.random() < 0.08:
                msg = {"type": "identify", "userId": f"user_{person}",
                       "traits": {"email": f"user_{person}@example.com", "first_name": "Sam",
                                  "created_at": "2025-06-01T10:00:00Z"}}
            else:
                msg = {"type": "track", "userId": f"user_{person}", "event": rng.choice(EVENTS),
                       "properties": {"order": {"sku": f"sku_{rng.randrange(500)}",
                                                "price": round(rng.random() * 90, 2),
                                                "items": [{"n": rng.randrange(5), "tag": "a"}]},
                                      "currency": "EUR"}}
        context = dict(_LIBRARY)
        if msg["type"] == "track" and rng.random() < 0.5:
            context["groupId"] = f"hh_{person % households}"
        msg.update(timestamp=at, messageId=f"m{i}", context=context)
        yield msg


def write(path: Path, count: int, people: int, seed: int = 7) -> None:
    with path.open("wb") as out:
        for msg in messages(count, people, seed):
            out.write(orjson.dumps(msg) + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--people", type=int, default=20_000)
    args = parser.parse_args()
    write(args.out, args.messages, args.people)
    return 0


if __name__ == "__main__":
    sys.exit(main())
