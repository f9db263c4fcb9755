"""Streams for the retention tests: a synthetic one where people join and leave groups (each person moves between
two of them), groups change traits, people send events (counted by a rollup), spread evenly over event time; and
`PEOPLE`, random histories of a few people whose ids get linked (hypothesis)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from core_support import at
from groupspec.middleware import Engine
from hypothesis import strategies as st

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


# a person's history, for "retention never changes an answer inside the window" (hypothesis): a few people, each
# an anonymous and a user id, linked by identify (both ids) or alias, joining and leaving two households, whose
# traits change; messages arrive at most 3 days late, inside the 10-day window
PEOPLE_CONTRACT = """
[contract]
future_tolerance = "100000d"
attach_group_traits = ["plan"]
group_traits = { plan = {} }
"""
PEOPLE_RETENTION = '[store]\nretention = "10d"\ncompact_every = "1d"\n'


_ids = st.sampled_from([{"userId": "u0"}, {"userId": "u1"}, {"anonymousId": "a0"}, {"anonymousId": "a1"},
                        {"userId": "u0", "anonymousId": "a1"}])  # the last one links the two ids
_households = st.sampled_from(["hh_0", "hh_1"])
_MESSAGES = st.one_of(
    st.builds(lambda ids, hh, plan: {"type": "group", "groupId": hh, "traits": {"plan": plan}, **ids},
              _ids, _households, st.integers(0, 2)),
    st.builds(lambda ids, hh: {"type": "track", "event": "Relationship Deleted", "properties": {"objectId": hh},
                               **ids}, _ids, _households),
    st.builds(lambda user, anon: {"type": "identify", "userId": user, "anonymousId": anon},
              st.sampled_from(["u0", "u1", "u2"]), st.sampled_from(["a0", "a1", "a2"])),
    st.builds(lambda old, new: {"type": "alias", "previousId": old, "userId": new},
              st.sampled_from(["u0", "a2"]), st.sampled_from(["u1", "u2"])),
    st.builds(lambda ids: {"type": "track", "event": "Order Placed", **ids},
              st.sampled_from([{"userId": "u0"}, {"userId": "u1"}, {"userId": "u2"}, {"anonymousId": "a0"},
                               {"anonymousId": "a2"}])),
)
#: (days since the previous message's clock, days late, the message)
PEOPLE = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), _MESSAGES), min_size=1, max_size=30)


def dated(stream: list[tuple[int, int, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The messages of a `PEOPLE` stream with their ids and times."""
    clock = 0
    for i, (step, late, message) in enumerate(stream):
        clock += step
        yield {**message, "messageId": f"m{i}", "timestamp": at(clock - late, hours=i / 100)}
