"""Group activity rollups: config, point-in-time values, coalescing per interval of event time, final flush."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from groupspec.middleware import Engine
from groupspec.middleware.config import ConfigError, parse_config
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin import replay as replaying
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_support import RedisSandbox, needs_redis

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "household-suppression"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
CONTRACT = {
    "rollup_interval": "5m",
    "rollups": {
        "last_order_at": {"event": "Order Placed", "value": "timestamp"},
        "last_total": {"event": "Order Placed", "value": "properties.total"},
        "orders_30d": {"event": "Order Placed", "count_window": "30d"},
    },
}


class Chain:
    """A pipeline with the Customer.io mapping and the rollup step; collects the object updates it emits."""

    def __init__(self, store=None, contract=CONTRACT) -> None:
        self.config = parse_config({"contract": contract})
        self.store = store or MemoryStore()
        self.pipeline = Engine(self.config, self.store, destination=CUSTOMERIO, clock=None)  # stream time

    def send(self, message: dict) -> list[dict]:
        """The rollup updates that come out after `message`."""
        msg, = self.pipeline.run(message)
        assert not msg.quarantined, msg.violations
        return [op for op in msg.ops if op["type"] == "object"]

    def flush(self) -> list[dict]:
        return self.pipeline.flush().ops


def at(**delta) -> str:
    return (T0 + timedelta(**delta)).isoformat()


def unix(**delta) -> int:
    return int((T0 + timedelta(**delta)).timestamp())


def order(when: str, mid: str, group: str = "hh_a", user: str = "u1", total: float = 10.0) -> dict:
    return {"type": "track", "userId": user, "event": "Order Placed", "properties": {"total": total},
            "context": {"groupId": group}, "timestamp": when, "messageId": mid}


def ping(when: str, user: str = "u9") -> dict:
    return {"type": "identify", "userId": user, "timestamp": when}


def update(group: str, **attributes) -> dict:
    return {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": group},
            "attributes": attributes}


# config

@pytest.mark.parametrize(("rollup", "problem"), [
    ({"event": "Order Placed"}, "contract.rollups.bad: expected exactly one of value or count_window"),
    ({"event": "Order Placed", "value": "timestamp", "count_window": "30d"}, "exactly one of value or count_window"),
    ({"event": "Order Placed", "count_window": "30 days"}, "contract.rollups.bad.count_window: expected a duration"),
    ({"event": "Order Placed", "value": "total"}, 'contract.rollups.bad.value: expected "timestamp" or "properties.NAME"'),
    ({"value": "timestamp"}, "contract.rollups.bad.event"),
])
def test_a_wrong_rollup_is_a_config_error_naming_the_key(rollup, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"contract": {"rollups": {"bad": rollup}}}, "groupspec.toml")
    assert str(caught.value).startswith("groupspec.toml: ") and problem in str(caught.value)


def test_rollup_interval_defaults_to_five_minutes_and_is_validated():
    assert parse_config({}).contract.rollup_interval == "5m"
    with pytest.raises(ConfigError, match="contract.rollup_interval: expected a duration like 30d, 6h, 5m"):
        parse_config({"contract": {"rollup_interval": "soon"}})


# values and coalescing

def test_events_of_one_interval_give_one_update_when_the_interval_is_over():
    chain = Chain()
    assert chain.send(order(at(seconds=10), "o1", total=5.0)) == []
    assert chain.send(order(at(minutes=1), "o2", total=7.0)) == []
    assert chain.send(order(at(minutes=4, seconds=59), "o3", total=3.0)) == []
    assert chain.send(ping(at(minutes=4, seconds=59, milliseconds=999))) == []
    assert chain.send(ping(at(minutes=5))) == [
        update("hh_a", last_order_at=unix(minutes=4, seconds=59), last_total=3.0, orders_30d=3)]
    assert chain.send(ping(at(minutes=6))) == []
    assert chain.flush() == []


def test_the_update_rides_on_the_first_message_due_and_includes_it():
    chain = Chain()
    chain.send(order(at(minutes=1), "o1"))
    assert chain.send(order(at(minutes=7), "o2", total=99.0)) == [
        update("hh_a", last_order_at=unix(minutes=7), last_total=99.0, orders_30d=2)]
    assert chain.flush() == []


def test_pending_updates_are_flushed_at_the_end_in_group_order():
    chain = Chain()
    chain.send(order(at(minutes=1), "o1", group="hh_b"))
    chain.send(order(at(minutes=2), "o2", group="hh_a", user="u2"))
    assert chain.flush() == [update("hh_a", last_order_at=unix(minutes=2), last_total=10.0, orders_30d=1),
                             update("hh_b", last_order_at=unix(minutes=1), last_total=10.0, orders_30d=1)]
    assert chain.flush() == []


def test_the_count_window_ends_at_the_latest_event_and_excludes_its_start():
    chain = Chain()
    chain.send(order(at(days=0), "o1"))
    chain.send(order(at(days=10), "o2"))
    chain.send(order(at(days=40), "o3"))  # o1 is 40 days old, o2 exactly 30: both outside (T-30d, T]
    assert chain.flush()[0]["attributes"]["orders_30d"] == 1
    chain.send(order(at(days=39, hours=23), "o4"))
    assert chain.flush()[0]["attributes"]["orders_30d"] == 2


def test_a_late_event_counts_but_does_not_roll_the_latest_values_back():
    chain = Chain()
    chain.send(order(at(days=2), "new", total=50.0))
    chain.send(order(at(days=1), "late", total=1.0))
    assert chain.flush() == [update("hh_a", last_order_at=unix(days=2), last_total=50.0, orders_30d=2)]


def test_only_forwarded_rollup_events_with_a_group_feed_rollups():
    chain = Chain()
    chain.send({"type": "track", "userId": "u1", "event": "Order Placed", "timestamp": at()})  # no group
    chain.send({"type": "track", "userId": "u1", "event": "Product Viewed", "context": {"groupId": "hh_a"},
                "timestamp": at()})
    chain.send({"type": "track", "userId": "u1", "event": "Relationship Deleted",
                "properties": {"objectId": "hh_a"}, "timestamp": at()})
    assert chain.flush() == []


def test_a_property_missing_on_an_event_leaves_that_rollup_as_it_was():
    chain = Chain()
    chain.send(order(at(), "o1", total=5.0))
    without = order(at(minutes=1), "o2")
    del without["properties"]["total"]
    chain.send(without)
    chain.send(order(at(minutes=2), "o3", total=""))
    assert chain.flush() == [update("hh_a", last_order_at=unix(minutes=2), last_total=5.0, orders_30d=3)]


def test_a_value_over_the_customerio_limit_quarantines_the_event():
    chain = Chain()
    msg, = chain.pipeline.run(order(at(), "o1") | {"properties": {"total": "x" * 1001}})
    assert msg.quarantined and msg.violations[0]["code"] == "customerio_limit"
    assert chain.flush() == []


def test_the_group_of_another_object_type_keeps_its_type():
    chain = Chain()
    chain.send({"type": "group", "userId": "u1", "groupId": "acct_9", "traits": {"objectTypeId": "2"},
                "timestamp": at()})
    chain.send({"type": "track", "userId": "u1", "event": "Order Placed", "timestamp": at(minutes=1)})
    assert chain.flush()[0]["identifiers"] == {"object_type_id": "2", "object_id": "acct_9"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hh_a", "hh_b"]), st.integers(0, 7200)), max_size=30))
def test_at_most_one_update_per_group_per_interval_and_the_last_one_is_the_final_state(orders):
    chain = Chain()
    sent: dict[str, list[tuple[int, dict]]] = {}
    orders = sorted(orders, key=lambda o: o[1])
    for index, (group, second) in enumerate(orders):
        for op in chain.send(order(at(seconds=second), f"o{index}", group=group)):
            sent.setdefault(op["identifiers"]["object_id"], []).append((second, op["attributes"]))
    for op in chain.flush():
        sent.setdefault(op["identifiers"]["object_id"], []).append((10**9, op["attributes"]))
    for group in {g for g, _ in orders}:
        times = [second for second, _ in sent[group]]
        assert len({t // 300 for t in times}) == len(times)  # distinct 5-minute slots
        mine = [second for g, second in orders if g == group]
        assert sent[group][-1][1]["orders_30d"] == len(mine)
        assert sent[group][-1][1]["last_order_at"] == unix(seconds=max(mine))


def test_replaying_twice_against_a_persistent_store_gives_the_same_updates(tmp_path):
    stream = [order(at(minutes=1), "o1"), order(at(minutes=2), "o2", group="hh_b"), ping(at(minutes=6)),
              order(at(minutes=8), "o3"), order(at(minutes=3), "late"), order(at(minutes=9), "o4"),
              ping(at(minutes=20)), order(at(minutes=21), "o5")]
    runs = []
    for _ in range(2):
        chain = Chain(SQLiteStore(str(tmp_path / "groupspec.db")))
        runs.append([chain.send(message) for message in stream] + [chain.flush()])
        chain.store.close()
    assert runs[0] == runs[1] and any(runs[0])


# the household suppression fixture, end to end

def replay_fixture(out: Path, *extra: str) -> int:
    return main(["replay", str(FIXTURE / "stream.jsonl"), "--config", str(FIXTURE / "groupspec.toml"),
                 "--out", str(out), "--expect", str(FIXTURE / "expected"), *extra])


def test_the_household_suppression_fixture_replays_to_its_expected_outputs(tmp_path, capsys):
    assert replay_fixture(tmp_path) == 0, capsys.readouterr().out
    ops = [json.loads(line) for line in (tmp_path / "customerio.jsonl").read_text().splitlines()]
    rollups = [op["attributes"] for op in ops if op["type"] == "object" and "orders_30d" in op["attributes"]
               and op["identifiers"]["object_id"] == "hh_lindqvist"]
    bens_orders = [op for op in ops if op.get("identifiers") == {"id": "user_2002"} and op.get("name") == "Order Placed"]
    assert [op["timestamp"] for op in bens_orders] == [int(datetime(2026, 7, 10, 19, 30, tzinfo=timezone.utc).timestamp())]
    assert rollups[-1]["last_order_at"] == int(datetime(2026, 11, 28, 7, 2, tzinfo=timezone.utc).timestamp())
    assert rollups[-1]["orders_30d"] == 7 and ops[-1]["attributes"] == rollups[-1]  # flushed at the end


def test_the_fixture_replays_identically_twice_on_sqlite(tmp_path, capsys):
    store = f"sqlite:///{tmp_path / 'groupspec.db'}"
    for run in ("first", "second"):
        assert replay_fixture(tmp_path / run, "--store", store) == 0, capsys.readouterr().out


@needs_redis
def test_the_fixture_replays_identically_twice_on_redis(tmp_path, capsys, monkeypatch):
    sandbox = RedisSandbox()
    monkeypatch.setattr(replaying, "open_store", lambda url: sandbox.open())
    try:
        for run in ("first", "second"):
            assert replay_fixture(tmp_path / run) == 0, capsys.readouterr().out
    finally:
        sandbox.clean()
