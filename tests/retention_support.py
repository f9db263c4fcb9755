"""A synthetic stream for the retention tests: people join and leave groups (each person moves between two of
them), groups change traits, people send events (counted by a rollup), spread evenly over event time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from core_support import at
from groupspec.middleware import Engine

#: retention 3d, compacted every 6h of stream time; a rollup counting `Order Placed` over 1d
TOML = """
[store]
retention = "3d"
compact_every = "6h"

[contract]
future_tolerance = "100000d"

[contract.rollups.orders]
event = "Order Placed"
count_window = "1d"
"""


def stream(count: int, days: float, people: int = 2000, groups: int = 200, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` messages evenly spread over `days` of event time."""
    rng = random.Random(seed)
    for i in range(count):
        person = rng.randrange(people)
        group = rng.choice((person % groups, (person * 7 + 3) % groups))
        ids = {"userId": f"u{person}", "anonymousId": f"a{person}", "messageId": f"m{i}",
               "timestamp": at(days * i / count)}
        roll = rng.random()
        if roll < 0.15:
            yield {"type": "group", "groupId": f"g{group}", "traits": {"plan": rng.choice("abc")}, **ids}
        elif roll < 0.25:
            yield {"type": "track", "event": "Relationship Deleted", "properties": {"objectId": f"g{group}"}, **ids}
        elif roll < 0.35:
            yield {"type": "identify", "traits": {"n": i}, **ids}
        else:
            yield {"type": "track", "event": "Order Placed", "properties": {"n": i}, **ids}


def run_stream(engine: Engine, count: int, days: float, samples: int, batch: int = 500) -> list[dict[str, int]]:
    """Feed the stream a batch at a time, compacting as the service does between chunks; the store's size after
    each of `samples` equal parts of the stream."""
    sizes, part, pending = [], count // samples, []
    for i, message in enumerate(stream(count, days), 1):
        pending.append(message)
        if len(pending) == batch or i % part == 0:
            with engine.transaction():
                engine.process({"batch": pending})
            engine.flush()
            engine.compact()
            pending = []
        if i % part == 0:
            sizes.append(engine.store.size())
    return sizes
