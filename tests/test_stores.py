"""One suite for every membership store: memory, SQLite, Redis (a real server on 127.0.0.1:6379) and Redis Cluster
(three local masters started for the session, `redis_support.redis_cluster`)."""

from __future__ import annotations

import socket
import tomllib
import sqlite3
from unittest import mock

import orjson
import pytest
from groupspec.middleware import Engine
from groupspec.middleware.config import parse_config
from groupspec.middleware.message import Message
from groupspec.middleware.stores import Membership, StoreError, open_store
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores import redis as redis_store
from groupspec.middleware.stores.redis import Keys, RedisStore, membership_field
from groupspec.middleware.stores.sqlite import SQLiteStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_support import examples
from redis.crc import key_slot
from redis_support import RedisSandbox, needs_redis

from store_support import REDIS_KINDS, reopen, sandbox_of  # noqa: F401  (the fixture: every store kind)


@pytest.fixture
def store(reopen):
    return reopen()


def groups(memberships: list[Membership]) -> list[str]:
    return [m.group_id for m in memberships]


# identity links

def test_an_unlinked_person_is_only_itself(store):
    assert store.identities("u:1") == ["u:1"]
    store.link("u:1", "u:1")
    assert store.identities("u:1") == ["u:1"]


def test_links_go_both_ways(store):
    store.link("a:anon", "u:1")
    assert store.identities("u:1") == ["u:1", "a:anon"]
    assert store.identities("a:anon") == ["a:anon", "u:1"]


def test_links_are_transitive_along_alias_chains(store):
    store.link("a:anon", "u:legacy")  # identify with both ids
    store.link("u:legacy", "u:new")  # alias legacy -> new
    store.link("u:new", "u:newest")  # alias again
    found = store.identities("a:anon")
    assert found[0] == "a:anon" and sorted(found) == ["a:anon", "u:legacy", "u:new", "u:newest"]
    assert sorted(store.identities("u:newest")) == sorted(found)
    store.link("u:new", "u:legacy")  # a repeated link changes nothing
    assert sorted(store.identities("u:legacy")) == sorted(found)


# point-in-time membership

def test_membership_before_join_after_join_after_leave_and_rejoin(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.record_membership("u:1", "1", "hh_a", 200.0, False)
    store.record_membership("u:1", "1", "hh_a", 300.0, True)
    assert store.memberships_at(["u:1"], 99.0) == []
    assert store.memberships_at(["u:1"], 100.0) == [Membership("1", "hh_a", 100.0)]
    assert store.memberships_at(["u:1"], 150.0) == [Membership("1", "hh_a", 100.0)]
    assert store.memberships_at(["u:1"], 250.0) == []
    assert store.memberships_at(["u:1"], 400.0) == [Membership("1", "hh_a", 300.0)]


def test_an_object_deletion_ends_every_membership_from_then_on(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.record_membership("u:2", "1", "hh_a", 110.0, True)
    store.record_object_deleted("1", "hh_a", 200.0)
    assert groups(store.memberships_at(["u:1"], 199.0)) == ["hh_a"]
    assert store.memberships_at(["u:1"], 200.0) == [] and store.memberships_at(["u:2"], 250.0) == []
    store.record_membership("u:1", "1", "hh_a", 300.0, True)  # recreated later: a new membership
    assert groups(store.memberships_at(["u:1"], 300.0)) == ["hh_a"]


def test_several_object_types_latest_joined_first(store):
    store.record_membership("u:1", "1", "acct_a", 100.0, True)
    store.record_membership("u:1", "2", "loc_x", 200.0, True)
    store.record_membership("u:1", "2", "loc_y", 150.0, True)
    assert store.memberships_at(["u:1"], 250.0) == [
        Membership("2", "loc_x", 200.0), Membership("2", "loc_y", 150.0), Membership("1", "acct_a", 100.0)]
    assert store.memberships_at(["u:1"], 160.0)[0] == Membership("2", "loc_y", 150.0)


def test_memberships_of_linked_persons_are_combined(store):
    store.record_membership("a:anon", "1", "hh_a", 100.0, True)
    store.record_membership("u:1", "2", "acct_b", 200.0, True)
    assert groups(store.memberships_at(["u:1", "a:anon"], 300.0)) == ["acct_b", "hh_a"]
    assert groups(store.memberships_at(["u:1"], 300.0)) == ["acct_b"]


def test_a_leave_that_arrives_before_its_join_still_applies_at_its_time(store):
    store.record_membership("u:1", "1", "hh_a", 200.0, False)
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    assert groups(store.memberships_at(["u:1"], 150.0)) == ["hh_a"]
    assert store.memberships_at(["u:1"], 200.0) == []


def test_events_at_the_same_time_go_to_the_later_recorded_and_duplicates_are_ignored(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.record_membership("u:1", "1", "hh_a", 100.0, False)
    assert store.memberships_at(["u:1"], 100.0) == []
    store.record_membership("u:1", "1", "hh_a", 100.0, True)  # a replayed join: already known, changes nothing
    assert store.memberships_at(["u:1"], 100.0) == []
    store.record_membership("u:2", "1", "hh_a", 100.0, False)  # the same ids for another person are another event
    store.record_membership("u:2", "1", "hh_a", 100.0, True)
    assert groups(store.memberships_at(["u:2"], 100.0)) == ["hh_a"]


# group traits

def test_traits_at_answers_as_of_the_asked_time(store):
    store.apply_traits("1", "hh_a", {"status": "active", "plan": "basic"}, 100.0, "m1")
    store.apply_traits("1", "hh_a", {"status": "paused"}, 200.0, "m2")
    store.apply_traits("1", "hh_a", {"status": "cancelled"}, 150.0, "m3")  # late, but newer than m1
    assert store.traits_at("1", "hh_a", ["status", "plan"], 50.0) == {}
    assert store.traits_at("1", "hh_a", ["status", "plan"], 120.0) == {"status": "active", "plan": "basic"}
    assert store.traits_at("1", "hh_a", ["status"], 170.0) == {"status": "cancelled"}
    assert store.traits_at("1", "hh_a", ["status", "missing"], 999.0) == {"status": "paused"}
    assert store.traits_at("1", "hh_b", ["status"], 999.0) == {}


def test_trait_values_keep_their_json_types(store):
    values = {"n": 1.5, "i": 3, "b": False, "s": "x y", "l": [1, "a"], "d": {"k": None}, "none": None}
    store.apply_traits("1", "hh_a", values, 100.0, "m1")
    assert store.traits_at("1", "hh_a", list(values), 100.0) == values


def test_a_reapplied_message_does_not_change_trait_history(store):
    store.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m1")
    store.apply_traits("1", "hh_a", {"status": "changed"}, 100.0, "m1")
    assert store.traits_at("1", "hh_a", ["status"], 100.0) == {"status": "active"}


def test_stale_traits_are_those_with_a_newer_value(store):
    store.apply_traits("1", "hh_a", {"status": "active", "plan": "basic"}, 200.0, "m2")
    assert store.stale_traits("1", "hh_a", ["status", "plan", "other"], 100.0, "m1") == {"status", "plan"}
    assert store.stale_traits("1", "hh_a", ["status"], 300.0, "m3") == set()
    assert store.stale_traits("1", "hh_b", ["status"], 100.0, "m1") == set()


def test_a_reapplied_message_compares_as_it_did_first(store):
    store.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m1")  # first: nothing newer, applied
    store.apply_traits("1", "hh_a", {"status": "paused"}, 200.0, "m2")
    assert store.stale_traits("1", "hh_a", ["status"], 150.0, "late") == {"status"}
    # replaying the stream: m1 again is judged against what was known before it, as the first time
    assert store.stale_traits("1", "hh_a", ["status"], 100.0, "m1") == set()
    assert store.stale_traits("1", "hh_a", ["status"], 200.0, "m2") == set()
    store.apply_traits("1", "hh_a", {"status": "cancelled"}, 50.0, "m0")  # an old update that slipped in
    assert store.stale_traits("1", "hh_a", ["status"], 50.0, "m0") == {"status"}  # and stays stale on replay


# activity log and pending rollups

def test_activity_is_recorded_once_per_message_and_read_back_in_time_order(store):
    first = store.record_activity("1", "hh_a", "m2", 200.0, {"orders": 1})
    second = store.record_activity("1", "hh_a", "m1", 100.0, {"orders": 1, "last": 100})
    assert store.record_activity("1", "hh_a", "m2", 200.0, {"orders": 1}) == first  # re-applied: its first seq
    assert first < second
    entries = store.activity_since("1", "hh_a", 0.0)
    assert [(e.ts, e.seq, e.message_id, e.values) for e in entries] == [
        (100.0, second, "m1", {"orders": 1, "last": 100}), (200.0, first, "m2", {"orders": 1})]
    assert [e.message_id for e in store.activity_since("1", "hh_a", 150.0)] == ["m2"]
    assert store.activity_since("1", "hh_b", float("-inf")) == []


def test_pending_rollups_keep_the_earliest_due_time_and_the_highest_seq(store):
    store.mark_rollup_pending("1", "hh_a", 300.0, 5)
    store.mark_rollup_pending("1", "hh_a", 600.0, 7)
    store.mark_rollup_pending("1", "hh_b", 120.0, 2)
    assert store.due_rollups(100.0) == []
    assert store.due_rollups(300.0) == [("1", "hh_b", 120.0, 2), ("1", "hh_a", 300.0, 7)]
    store.clear_rollup_pending("1", "hh_a", 6)  # sent up to 6: the entry 7 is still pending
    store.clear_rollup_pending("1", "hh_b", 2)
    assert store.due_rollups(float("inf")) == [("1", "hh_a", 300.0, 7)]
    store.clear_rollup_pending("1", "hh_a", 7)
    assert store.due_rollups(float("inf")) == []


# persistence

def test_everything_survives_a_reopen(reopen):
    if reopen.kind == "memory":
        pytest.skip("the memory store lives as long as its process")
    first = reopen()
    first.link("a:anon", "u:1")
    first.record_membership("a:anon", "1", "hh_a", 100.0, True)
    first.record_object_deleted("1", "hh_b", 50.0)
    first.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m1")
    seq = first.record_activity("1", "hh_a", "o1", 100.0, {"orders": 1})
    first.mark_rollup_pending("1", "hh_a", 300.0, seq)
    first.close()
    again = reopen()
    assert again.identities("u:1") == ["u:1", "a:anon"]
    assert again.memberships_at(again.identities("u:1"), 150.0) == [Membership("1", "hh_a", 100.0)]
    assert again.traits_at("1", "hh_a", ["status"], 150.0) == {"status": "active"}
    assert again.stale_traits("1", "hh_a", ["status"], 100.0, "m1") == set()
    assert again.record_activity("1", "hh_a", "o1", 100.0, {"orders": 1}) == seq
    assert again.due_rollups(300.0) == [("1", "hh_a", 300.0, seq)]


# arrival order: a replayed message sees what it saw the first time

def test_admit_numbers_each_message_once_in_order_of_first_arrival(store):
    if isinstance(store, MemoryStore):
        assert store.admit("m1") is None  # no per-message memory: replays there are hermetic
        return
    first, second = store.admit("m1"), store.admit("m2")
    assert second > first
    assert store.admit("m1") == first and store.admit("m2") == second  # a replay keeps its number
    assert store.admit("m3") > second


def test_facts_recorded_on_or_after_an_arrival_are_unknown_before_it(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True, arrived=5)
    store.record_membership("u:1", "1", "hh_a", 150.0, False, arrived=7)
    store.record_membership("u:1", "1", "hh_b", 90.0, True, arrived=None)  # always known
    store.record_object_deleted("1", "hh_b", 120.0, arrived=6)
    store.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m5", arrived=5)
    store.apply_traits("1", "hh_a", {"status": "paused"}, 110.0, "m6", arrived=6)
    store.link("a:anon", "u:1", arrived=6)
    store.link("u:1", "u:old", arrived=None)
    store.link("u:old", "u:1", arrived=3)  # already linked: the first record stays
    known = lambda before: (sorted(store.identities("a:anon", before=before)),
                            groups(store.memberships_at(["u:1"], 200.0, before=before)),
                            store.traits_at("1", "hh_a", ["status"], 200.0, before=before))
    assert known(5) == (["a:anon"], ["hh_b"], {})
    assert known(6) == (["a:anon"], ["hh_a", "hh_b"], {"status": "active"})
    assert known(7) == (["a:anon", "u:1", "u:old"], ["hh_a"], {"status": "paused"})
    assert known(8) == (["a:anon", "u:1", "u:old"], [], {"status": "paused"}) == known(None)
    assert store.identities("u:old", before=1) == ["u:old", "u:1"]


def test_a_lookup_gives_what_the_separate_calls_give(store):
    first = store.admit("first")
    store.link("a:anon", "u:1", arrived=first)
    store.link("u:1", "u:old")
    store.record_membership("u:old", "1", "hh_a", 100.0, True, arrived=first)
    store.record_membership("a:anon", "2", "loc_x", 120.0, True)
    store.record_membership("u:1", "1", "hh_b", 90.0, True)
    store.record_object_deleted("1", "hh_b", 110.0)
    store.record_membership("u:1", "1", "hh_later", 300.0, True)
    store.apply_traits("1", "hh_a", {"status": "active", "plan": "pro"}, 100.0, "g1", arrived=first)
    store.apply_traits("1", "hh_a", {"status": "paused"}, 250.0, "g2")
    store.apply_traits("1", "hh_named", {"status": "trial"}, 50.0, "g3")
    names = ["status", "plan"]
    for message_id in ("first", "later"):  # a replay of the first (which saw none of its own facts), a new one
        found = store.lookup(message_id, ["u:1", "a:anon"], 200.0, names, ("1", "hh_named"))
        arrival = store.admit(message_id)
        persons = store.identities("u:1", before=arrival)
        persons += [k for k in store.identities("a:anon", before=arrival) if k not in persons]
        assert found.arrival == arrival and found.persons == persons
        assert found.memberships == store.memberships_at(persons, 200.0, before=arrival)
        for group, traits in found.traits.items():  # what a store gives, it gives as `traits_at` would
            assert traits == store.traits_at(*group, names, 200.0, before=arrival)
        if isinstance(store, RedisStore):  # in the same round trip: the named group's and every membership's
            assert set(found.traits) >= {("1", "hh_named"), *((m.object_type_id, m.group_id) for m in found.memberships)}
    assert groups(found.memberships) == ["loc_x", "hh_a"] and found.traits.get(("1", "hh_a"), {}) in ({}, {"status": "active", "plan": "pro"})
    nobody = store.lookup("nobody", [], 200.0)
    assert nobody == (store.admit("nobody"), [], [], {}, None, None if nobody.arrival is None else 200.0)


def test_a_lookup_for_one_person_gives_what_the_separate_calls_give(store):
    first = store.admit("first", 50.0)
    store.record_membership("u:1", "1", "hh_a", 100.0, True, arrived=first)
    store.record_membership("u:1", "1", "hh_b", 90.0, True)
    store.record_object_deleted("1", "hh_b", 110.0)
    store.record_membership("u:1", "2", "loc_x", 300.0, True)  # after the message's time
    store.record_membership("u:2", "1", "hh_c", 80.0, True)
    second = store.admit("second", 60.0)
    store.link("u:2", "a:anon", arrived=second)  # known to messages after "second" only
    store.record_membership("a:anon", "1", "hh_d", 70.0, True)
    for message_id, person in [("first", "u:1"), ("new", "u:1"), ("second", "u:2"), ("later", "u:2"),
                               ("stranger", "u:3")]:
        found = store.lookup(message_id, [person], 200.0)
        arrival = store.admit(message_id)
        persons = store.identities(person, before=arrival)
        assert found.arrival == arrival and found.persons == persons
        assert found.memberships == store.memberships_at(persons, 200.0, before=arrival)
    assert groups(store.lookup("later", ["u:2"], 200.0).memberships) == ["hh_c", "hh_d"]
    assert groups(store.lookup("new", ["u:1"], 200.0).memberships) == ["hh_a"]


def test_an_sqlite_lookup_for_one_unlinked_person_is_two_statements(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    statements = []
    store._db.set_trace_callback(statements.append)
    assert groups(store.lookup("m1", ["u:1"], 200.0).memberships) == ["hh_a"]
    assert len(statements) == 2  # arrive, then the person's links and memberships at once


def test_a_lookup_gives_the_stale_traits_of_the_group_asked_as_stale_traits_would(store):
    first = store.admit("m1", 100.0)
    store.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m1", arrived=first)
    store.apply_traits("1", "hh_a", {"status": "paused", "plan": "pro"}, 200.0, "m2", arrived=store.admit("m2", 200.0))
    store.apply_traits("2", "hh_a", {"status": "closed"}, 300.0, "m3")  # another object type: not this group's
    names = ["status", "plan", "never"]

    def stale(message_id: str, at: float, group=("1", "hh_a")) -> set[str]:
        # read at a later time than the event (a retention horizon): staleness is judged at the event's time
        found = store.lookup(message_id, ["u:1"], at + 50.0, ["status"], ("1", "hh_a"), event_ts=at,
                             stale_group=group, stale_names=names)
        assert found.stale == store.stale_traits(*group, names, at, message_id, before=found.arrival)
        return found.stale

    remembers = first is not None  # a store with arrival numbers (not memory)
    assert stale("late", 150.0) == {"status", "plan"}
    # a replay compares as it did first: m2 was not known before m1 (memory: every fact is known)
    assert stale("m1", 100.0) == (set() if remembers else {"plan"})
    assert stale("m2", 200.0) == set()
    assert stale("late", 150.0, ("2", "hh_a")) == {"status"}
    store.apply_traits("1", "hh_a", {"plan": "basic"}, 50.0, "m0", arrived=store.admit("m0", 50.0))  # slipped in late
    assert stale("m0", 50.0) == {"status", "plan"}  # re-applied: compares as when it was first recorded
    assert store.lookup("m4", ["u:1"], 200.0).stale is None  # not asked


def test_writes_in_a_batch_are_seen_by_reads_inside_it_and_kept(store):
    with store.batch():
        store.link("a:anon", "u:1")
        store.record_membership("a:anon", "1", "hh_a", 100.0, True)
        assert store.identities("u:1") == ["u:1", "a:anon"]  # a read inside sees the writes before it
        store.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "m1")
        store.record_object_deleted("1", "hh_a", 300.0)
    assert groups(store.lookup("m2", ["u:1"], 200.0).memberships) == ["hh_a"]
    assert store.traits_at("1", "hh_a", ["status"], 200.0) == {"status": "active"}
    assert store.memberships_at(["a:anon"], 300.0) == []
    if isinstance(store, RedisStore):  # queued writes: a batch that fails sends none of them
        with pytest.raises(RuntimeError):
            with store.batch():
                store.link("u:2", "u:3")
                raise RuntimeError("the message failed")
        assert store.identities("u:2") == ["u:2"]


def test_arrival_numbers_and_the_facts_they_hide_survive_a_reopen(reopen):
    if reopen.kind == "memory":
        pytest.skip("the memory store lives as long as its process")
    first = reopen()
    join, event = first.admit("join"), first.admit("event")
    first.record_membership("u:1", "1", "hh_a", 100.0, True, arrived=join)
    first.apply_traits("1", "hh_a", {"status": "active"}, 100.0, "join", arrived=join)
    late = first.admit("late")
    first.record_membership("u:1", "1", "hh_b", 50.0, True, arrived=late)
    first.link("a:anon", "u:1", arrived=late)
    first.close()
    again = reopen()
    assert (again.admit("join"), again.admit("event"), again.admit("late")) == (join, event, late)
    assert again.admit("new") > late
    assert groups(again.memberships_at(["u:1"], 200.0, before=event)) == ["hh_a"]
    assert again.traits_at("1", "hh_a", ["status"], 200.0, before=join) == {}
    assert again.identities("a:anon", before=event) == ["a:anon"]
    new = again.admit("new")
    assert again.identities("a:anon", before=new) == ["a:anon", "u:1"]
    assert groups(again.memberships_at(["u:1"], 200.0, before=new)) == ["hh_a", "hh_b"]


OLD_SQLITE_SCHEMA = """
CREATE TABLE links (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
INSERT INTO links VALUES ('a:anon', 'u:1'), ('u:1', 'a:anon');
CREATE TABLE memberships (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, person TEXT NOT NULL, type_id TEXT NOT NULL, group_id TEXT NOT NULL,
    ts REAL NOT NULL, joined INTEGER NOT NULL, UNIQUE (person, type_id, group_id, ts, joined));
CREATE TABLE deletions (
    type_id TEXT NOT NULL, group_id TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (type_id, group_id, ts)) WITHOUT ROWID;
CREATE TABLE traits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type_id TEXT NOT NULL, group_id TEXT NOT NULL, name TEXT NOT NULL,
    ts REAL NOT NULL, message_id TEXT NOT NULL, value BLOB NOT NULL, UNIQUE (type_id, group_id, name, message_id));
INSERT INTO memberships (person, type_id, group_id, ts, joined) VALUES ('u:1', '1', 'hh_a', 100.0, 1),
    ('u:1', '1', 'hh_b', 100.0, 1);
INSERT INTO deletions VALUES ('1', 'hh_b', 150.0);
INSERT INTO traits (type_id, group_id, name, ts, message_id, value) VALUES ('1', 'hh_a', 'status', 100.0, 'm1', '"active"');
"""


def test_a_sqlite_file_from_before_arrival_numbers_opens_and_its_facts_stay_known(tmp_path):
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.executescript(OLD_SQLITE_SCHEMA)
    old.close()
    store = SQLiteStore(path)
    first = store.admit("m9")
    assert store.identities("a:anon", before=first) == ["a:anon", "u:1"]
    assert groups(store.memberships_at(["u:1"], 200.0, before=first)) == ["hh_a"]
    assert store.traits_at("1", "hh_a", ["status"], 200.0, before=first) == {"status": "active"}
    store.record_membership("u:1", "1", "hh_c", 100.0, True, arrived=first)
    assert groups(store.memberships_at(["u:1"], 200.0, before=first)) == ["hh_a"]
    store.close()
    assert groups(SQLiteStore(path).memberships_at(["u:1"], 200.0, before=first + 1)) == ["hh_a", "hh_c"]


@needs_redis
def test_redis_values_from_before_arrival_numbers_stay_known():
    sandbox = RedisSandbox()
    store = sandbox.open()
    try:
        keys, client = store.keys, store.redis
        client.hset(keys.person("u:1", "e"), membership_field("1", "hh_a", 100.0, True), 1)
        client.hset(keys.person("u:1", "e"), membership_field("1", "hh_b", 100.0, True), 2)
        client.sadd(keys.group("1", "hh_b", "d"), repr(150.0))
        client.hset(keys.group("1", "hh_a", "t:status"), "m1", '3 [100.0,"active"]')
        client.sadd(keys.person("a:anon", "l"), "u:1")
        first = store.admit("m9")
        assert store.identities("a:anon", before=first) == ["a:anon", "u:1"]
        assert groups(store.memberships_at(["u:1"], 200.0, before=first)) == ["hh_a"]
        assert store.traits_at("1", "hh_a", ["status"], 200.0, before=first) == {"status": "active"}
    finally:
        store.close()
        sandbox.clean()


STREAM = [  # (messageId, message): facts that arrive after the events they predate, and an identity link
    ("e1", {"type": "track", "userId": "u1", "event": "Order Placed", "timestamp": "2026-11-10T10:00:00Z"}),
    ("g1", {"type": "group", "userId": "u1", "groupId": "hh_a", "traits": {"status": "active"},
            "timestamp": "2026-11-09T10:00:00Z"}),
    ("e2", {"type": "track", "userId": "u1", "event": "Order Placed", "timestamp": "2026-11-12T10:00:00Z"}),
    ("g2", {"type": "group", "userId": "u1", "groupId": "hh_a", "traits": {"status": "paused"},
            "timestamp": "2026-11-11T10:00:00Z"}),
    ("l1", {"type": "track", "userId": "u1", "event": "Relationship Deleted",
            "properties": {"objectId": "hh_a", "objectTypeId": "1"}, "timestamp": "2026-11-11T12:00:00Z"}),
    ("j2", {"type": "group", "userId": "u2", "groupId": "hh_b", "timestamp": "2026-11-01T10:00:00Z"}),
    ("e3", {"type": "track", "userId": "u2", "event": "Order Placed", "timestamp": "2026-11-12T10:00:00Z"}),
    ("d1", {"type": "track", "userId": "u2", "event": "Object Deleted",
            "properties": {"objectId": "hh_b", "objectTypeId": 1}, "timestamp": "2026-11-05T10:00:00Z"}),
    ("e4", {"type": "track", "userId": "u2", "event": "Order Placed", "timestamp": "2026-11-04T10:00:00Z"}),
    ("e5", {"type": "track", "anonymousId": "a1", "event": "Cart Updated", "timestamp": "2026-11-10T11:00:00Z"}),
    ("i1", {"type": "identify", "userId": "u1", "anonymousId": "a1", "timestamp": "2026-11-10T12:00:00Z"}),
]
TRAITS = parse_config({"contract": {"attach_group_traits": ["status"], "group_traits": {"status": {"type": "string"}}}})


def forwarded(store, order: list[int]) -> list[bytes]:
    pipeline = Engine(TRAITS, store)
    return [orjson.dumps(msg.body) for i in order
            for msg in pipeline.run({**STREAM[i][1], "messageId": STREAM[i][0]})]


@pytest.mark.parametrize("kind", ["sqlite", *REDIS_KINDS])
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(STREAM))))
def test_replaying_any_order_of_late_facts_twice_gives_the_same_outputs(kind, order, request):
    sandbox = sandbox_of(kind, request) or RedisSandbox()
    store = SQLiteStore(":memory:") if kind == "sqlite" else sandbox.open()
    try:
        assert forwarded(store, order) == forwarded(store, order)
    finally:
        store.close()
        sandbox.clean()


def test_a_message_not_seen_before_sees_every_fact_known(tmp_path):
    store = SQLiteStore(str(tmp_path / "groupspec.db"))
    first = forwarded(store, [0, 1])  # the event, then its group's late join with the status
    again = forwarded(store, [0])
    new = Engine(TRAITS, store).run({**STREAM[0][1], "messageId": "e1-new"})[0].body
    store.close()
    assert again == first[:1] and b"hh_a" not in again[0]  # replayed: as the first time
    assert new["context"]["groupId"] == "hh_a" and new["context"]["groupspec"]["group_traits"] == {"status": "active"}


# every store gives the same point-in-time answers as a brute-force model

PERSONS = ["u:1", "u:2", "a:3"]
GROUPS = [("1", "hh_a"), ("1", "hh_b"), ("2", "loc_x")]
events = st.lists(st.tuples(
    st.sampled_from(["join", "leave", "delete"]), st.sampled_from(PERSONS), st.sampled_from(GROUPS),
    st.integers(0, 6).map(float)), max_size=25)


def model_memberships(history: list[tuple], persons: list[str], ts: float) -> list[Membership]:
    """Memberships by brute force: per group the newest (time, first recording) join/leave decides."""
    recorded: list[tuple] = []
    for kind, person, group, at in history:
        if kind != "delete" and (kind, person, group, at) not in recorded:
            recorded.append((kind, person, group, at))
    deleted = {(group, at) for kind, _, group, at in history if kind == "delete"}
    out = []
    for group in GROUPS:
        decisive = [(at, index, kind) for index, (kind, person, g, at) in enumerate(recorded)
                    if g == group and person in persons and at <= ts]
        if not decisive:
            continue
        at, _, kind = max(decisive)
        if kind == "join" and not any(g == group and at <= gone <= ts for g, gone in deleted):
            out.append(Membership(*group, at))
    return sorted(out, key=lambda m: (-m.since, m.object_type_id, m.group_id))


@pytest.mark.parametrize("kind", REDIS_KINDS)
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(history=events)
def test_every_store_matches_the_model_for_any_event_sequence(kind, history, request):
    sandbox = sandbox_of(kind, request)
    stores = [MemoryStore(), SQLiteStore(":memory:"), sandbox.open()]
    try:
        for store in stores:
            for kind, person, (type_id, group_id), at in history:
                if kind == "delete":
                    store.record_object_deleted(type_id, group_id, at)
                else:
                    store.record_membership(person, type_id, group_id, at, kind == "join")
        for persons in (["u:1"], ["a:3"], ["u:1", "u:2", "a:3"]):
            for ts in range(-1, 8):
                want = model_memberships(history, persons, float(ts))
                assert [store.memberships_at(persons, float(ts)) for store in stores] == [want] * 3
                found = [store.lookup(f"m{ts}", persons, float(ts), ["x"], ("1", "hh_a")) for store in stores]
                assert [one.memberships for one in found] == [want] * 3
    finally:
        for store in stores:
            store.close()
        sandbox.clean()


# a lookup's stale traits agree with `stale_traits` and a brute-force model for any history of group calls

TRAIT_NAMES = ["status", "plan", "seats"]
GROUP_CALLS = st.lists(st.tuples(
    st.sampled_from(["m1", "m2", "m3", "m4", "m5"]), st.sampled_from([("1", "hh_a"), ("2", "hh_a")]),
    st.integers(0, 5).map(float), st.sets(st.sampled_from(TRAIT_NAMES), min_size=1)), max_size=14)


def model_stale(recorded: list[tuple], arrivals: list[str], group, names, ts: float, message_id: str) -> set[str]:
    """By brute force: a name is stale when a value newer than `ts` was recorded before the message's own entry
    (if any) by a message that arrived before it (`recorded`: (group, name, ts, message id) in recording order)."""
    before = arrivals.index(message_id)
    out = set()
    for name in names:
        history = [(at, mid) for g, n, at, mid in recorded if (g, n) == (group, name) and arrivals.index(mid) < before]
        own = next((i for i, (_, mid) in enumerate(history) if mid == message_id), len(history))
        if any(at > ts for at, _ in history[:own]):
            out.add(name)
    return out


@pytest.mark.parametrize("kind", REDIS_KINDS)
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(calls=GROUP_CALLS)
def test_every_store_gives_the_stale_traits_of_the_model_in_its_lookup(kind, calls, request):
    """Each call is a group call through the engine's steps: the lookup (asking its own group's stale
    traits), then the write of its traits; a message id seen again is a replay (possibly with other times).
    SQLite composes the lookup (`Store.lookup`); the memory store has no arrival numbers (every fact known)."""
    sandbox = sandbox_of(kind, request)
    stores = [SQLiteStore(":memory:"), sandbox.open()]
    recorded: list[tuple] = []
    arrivals: list[str] = []
    try:
        for message_id, group, at, names in calls:
            names = sorted(names)
            if message_id not in arrivals:
                arrivals.append(message_id)
            want = model_stale(recorded, arrivals, group, TRAIT_NAMES, at, message_id)
            for store in stores:
                found = store.lookup(message_id, ["u:1"], at + 1.0, ["status"], ("1", "hh_a"), event_ts=at,
                                     stale_group=group, stale_names=TRAIT_NAMES)
                assert found.stale == want == store.stale_traits(*group, TRAIT_NAMES, at, message_id,
                                                                 before=found.arrival)
                store.apply_traits(*group, {name: at for name in names}, at, message_id, arrived=found.arrival)
            recorded += [(group, name, at, message_id) for name in names
                         if not any(r[:2] == (group, name) and r[3] == message_id for r in recorded)]
    finally:
        for store in stores:
            store.close()
        sandbox.clean()


# a late group update keeps its place in history: every trait value is recorded at its own time; "stale" only
# decides what becomes current (what is sent), and a dropped message teaches nothing

def history_engine(store, action: str) -> Engine:
    """A replay-style engine (stream time) that snapshots `plan` and `seats`; `stale_group_update` is `action`."""
    contract = {"attach_group_traits": ["plan", "seats"], "group_traits": {"plan": {}, "seats": {}},
                "future_tolerance": "100000d", "actions": {"stale_group_update": action}}
    return Engine(parse_config({"contract": contract}), store, clock=None)


@pytest.mark.parametrize("action", ["strip", "flag", "drop"])
def test_a_late_group_update_keeps_its_place_in_history(store, action):
    engine = history_engine(store, action)

    def run(message_id: str, day: int, **fields) -> Message:
        msg, = engine.run({"userId": "u1", "messageId": message_id, "timestamp": f"2026-11-{day:02}T10:00:00Z",
                           **fields})
        return msg

    run("g1", 1, type="group", groupId="hh_1", traits={"plan": "basic"})
    run("g2", 4, type="group", groupId="hh_1", traits={"plan": "cancelled"})
    late = run("g3", 2, type="group", groupId="hh_1", traits={"plan": "active"})  # arrives after Nov 4's
    assert [v["code"] for v in late.violations] == ["stale_group_update"]
    assert late.quarantined == (action == "drop")
    assert ("plan" in late.body["traits"]) == (action != "strip")  # under strip it is not sent
    snapshot = run("t1", 3, type="track", event="Order Placed").body["context"]["groupspec"]["group_traits"]
    assert snapshot == {"plan": "basic" if action == "drop" else "active"}  # the value in force on Nov 3
    now = run("t2", 5, type="track", event="Order Placed").body["context"]["groupspec"]["group_traits"]
    assert now == {"plan": "cancelled"}  # what is current is unchanged


LATE_UPDATES = st.lists(st.one_of(
    st.tuples(st.just("group"), st.integers(0, 6), st.dictionaries(st.sampled_from(["plan", "seats"]),
                                                                  st.integers(0, 3), min_size=1)),
    st.tuples(st.just("track"), st.integers(0, 7), st.booleans()),  # explicit group id, else by membership
), min_size=1, max_size=12)


def model_history(calls: list[tuple], action: str) -> list[tuple[int, dict]]:
    """By brute force, the group calls a store records, in arrival order: every one, except under `drop` one
    carrying a value older than a recorded value of the same name (it is quarantined)."""
    recorded: list[tuple[int, dict]] = []
    for day, traits in calls:
        stale = {name for name in traits for at, known in recorded if name in known and at > day}
        if not (stale and action == "drop"):
            recorded.append((day, traits))
    return recorded


def model_in_force(recorded: list[tuple[int, dict]], day: int) -> dict:
    """Each name's value in force at `day`: the latest dated at or before it (the later recorded of a tie)."""
    out: dict = {}
    for name in ("plan", "seats"):
        dated = [(at, i, known[name]) for i, (at, known) in enumerate(recorded) if name in known and at <= day]
        if dated:
            out[name] = max(dated)[2]
    return out


@pytest.mark.parametrize("action", ["strip", "flag", "drop"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", *REDIS_KINDS])
@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(stream=LATE_UPDATES)
def test_whatever_order_updates_arrive_in_a_snapshot_is_the_value_in_force_at_its_time(kind, action, stream, request):
    sandbox = sandbox_of(kind, request)
    store = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(":memory:")}.get(kind, sandbox and sandbox.open)()
    engine = history_engine(store, action)
    calls: list[tuple[int, dict]] = []
    try:
        for i, (what, day, detail) in enumerate(stream):
            body = {"type": what, "userId": "u1", "messageId": f"m{i}", "timestamp": f"2026-11-{day + 1:02}T10:00:00Z"}
            recorded = model_history(calls, action)
            if what == "group":
                msg, = engine.run({**body, "groupId": "hh_1", "traits": detail})
                stale = {name for name in detail for at, known in recorded if name in known and at > day}
                flagged = sorted(stale)[:1] if action == "drop" else sorted(stale)  # a drop stops at the first
                assert [v["field"] for v in msg.violations] == [f"traits.{name}" for name in flagged]
                assert msg.quarantined == bool(stale and action == "drop")
                if not msg.quarantined:
                    sent = {name for name in detail if action == "flag" or name not in stale}
                    assert set(msg.body["traits"]) == sent
                calls.append((day, detail))
                continue
            msg, = engine.run({**body, "event": "Order Placed", **({"context": {"groupId": "hh_1"}} if detail else {})})
            info = msg.body["context"]["groupspec"]
            if detail or any(at <= day for at, _ in recorded):  # named, or a member by then
                assert info["group_traits"] == model_in_force(recorded, day)
            else:
                assert info["resolution"] == "unresolved" and "group_traits" not in info
    finally:
        store.close()
        if sandbox is not None:
            sandbox.clean()


def test_a_group_call_of_another_object_type_and_a_numeric_id_is_judged_against_its_own_group(store):
    engine = Engine(TRAITS, store)

    def call(message_id: str, day: int, **traits) -> list[str]:
        msg, = engine.run({"type": "group", "userId": "u1", "groupId": 42, "messageId": message_id,
                           "timestamp": f"2026-11-{day:02}T10:00:00Z", "traits": {"status": "x", **traits}})
        return [v["code"] for v in msg.violations]

    assert call("g1", 10, objectTypeId=2) == []
    assert call("g2", 5, objectTypeId="2") == ["stale_group_update"]  # the same object: "2", "42"
    assert call("g3", 5) == []  # the default type's 42 is another object
    assert call("g1", 10, objectTypeId=2) == []  # a replay compares as it did first


# the Redis layout works on a cluster

@pytest.mark.parametrize("group_id", ["hh_8f3k2", "odd}{id", "acct:1"])
def test_every_key_a_script_touches_lies_in_one_cluster_slot(group_id):
    keys = Keys("gs")
    group = [keys.group("1", group_id, kind) for kind in ("n", "d", "a", "ad", "t:plan", "t:status")]
    assert len({key_slot(key.encode()) for key in group}) == 1
    assert len({key_slot(keys.person("u:" + group_id, kind).encode()) for kind in ("e", "l", "la")}) == 1
    assert len({key_slot(keys.pending(kind).encode()) for kind in ("due", "seq")}) == 1
    assert len({key_slot(keys.arrivals(kind).encode()) for kind in ("n", "ids")}) == 1
    assert keys.group("1", group_id, "n") != keys.group("1:" + group_id, "", "n")  # ids cannot run together


def test_a_key_prefix_with_braces_is_refused():
    with pytest.raises(ValueError, match="must not contain braces"):
        Keys("gs{x}")


# a Redis outage is an error, never an empty answer

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_open_store_routes_redis_urls_to_the_redis_store():
    store = open_store(f"redis://127.0.0.1:{closed_port()}/2")
    assert isinstance(store, RedisStore)
    store.close()


def test_a_redis_store_that_cannot_connect_raises_store_error_without_the_password():
    port = closed_port()
    store = RedisStore(f"redis://:s3cret@127.0.0.1:{port}/0")
    calls = [lambda: store.identities("u:1"), lambda: store.memberships_at(["u:1"], 1.0),
             lambda: store.record_membership("u:1", "1", "hh_a", 1.0, True),
             lambda: store.apply_traits("1", "hh_a", {"x": 1}, 1.0, "m"),
             lambda: store.record_activity("1", "hh_a", "m", 1.0, {"n": 1}), lambda: store.due_rollups(1.0)]
    for call in calls:
        with pytest.raises(StoreError) as caught:
            call()
        assert f"127.0.0.1:{port}/0 unavailable" in str(caught.value) and "s3cret" not in str(caught.value)
    store.close()


def test_the_pipeline_quarantines_a_message_when_redis_is_down():
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0")
    msg, = Engine(parse_config({}), store).run(b'{"type":"track","userId":"u1","event":"Order Placed"}')
    store.close()
    assert msg.quarantined and [v["code"] for v in msg.violations] == ["store_unavailable"]
    assert "unavailable" in msg.violations[0]["message"]


# grouped writes

def test_a_transaction_keeps_writes_visible_inside_and_commits_them(reopen):
    store = reopen()
    with store.transaction():
        store.record_membership("u:1", "1", "hh_1", 10.0, True)
        assert groups(store.memberships_at(["u:1"], 20.0)) == ["hh_1"]
    if reopen.kind != "memory":
        store.close()
        assert groups(reopen().memberships_at(["u:1"], 20.0)) == ["hh_1"]


def test_a_failed_transaction_leaves_nothing_half_written(tmp_path):
    store = SQLiteStore(str(tmp_path / "groupspec.db"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.record_membership("u:1", "1", "hh_1", 10.0, True)
            raise RuntimeError("the chunk failed")
    assert store.memberships_at(["u:1"], 20.0) == []
    store.record_membership("u:1", "1", "hh_2", 10.0, True)  # the store still works afterwards
    assert groups(store.memberships_at(["u:1"], 20.0)) == ["hh_2"]


# read-only enumeration (`groupspec verify`)

def test_groups_lists_every_group_known_by_membership_trait_or_deletion(store):
    assert store.groups() == []
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.apply_traits("2", 'loc "x"]}:1', {"city": "Oslo"}, 100.0, "m1")  # a group id that looks like the layout
    store.record_object_deleted("1", "hh_gone", 50.0)
    store.record_activity("1", "hh_a", "m2", 100.0, {"n": 1})
    assert store.groups() == [("1", "hh_a"), ("1", "hh_gone"), ("2", 'loc "x"]}:1')]


def test_members_at_follows_joins_leaves_and_deletions(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.record_membership("a:anon}:e", "1", "hh_a", 110.0, True)
    store.record_membership("u:2", "1", "hh_a", 100.0, True)
    store.record_membership("u:2", "1", "hh_a", 150.0, False)
    store.record_membership("u:3", "1", "hh_b", 100.0, True)
    assert store.members_at("1", "hh_a", 120.0) == ["a:anon}:e", "u:1", "u:2"]
    assert store.members_at("1", "hh_a", 200.0) == ["a:anon}:e", "u:1"]
    assert store.members_at("1", "hh_a", 105.0) == ["u:1", "u:2"]
    store.record_object_deleted("1", "hh_a", 300.0)
    assert store.members_at("1", "hh_a", 400.0) == []
    assert store.members_at("1", "hh_b", 400.0) == ["u:3"]
    assert store.members_at("1", "nobody", 400.0) == []


def test_persons_seen_are_members_and_former_members(store):
    store.record_membership("u:1", "1", "hh_a", 100.0, True)
    store.record_membership("u:2", "1", "hh_a", 100.0, True)
    store.record_membership("u:2", "1", "hh_a", 150.0, False)
    store.record_membership("a:left}:e", "1", "hh_a", 90.0, False)  # a leave alone is a fact of the group
    store.record_membership("u:3", "1", "hh_b", 100.0, True)
    store.record_object_deleted("1", "hh_b", 200.0)
    assert store.persons_seen("1", "hh_a") == ["a:left}:e", "u:1", "u:2"]
    assert store.persons_seen("1", "hh_b") == ["u:3"] and store.persons_seen("1", "nobody") == []


def test_linked_to_is_the_direct_links_only(store):
    store.link("a:anon", "u:old")  # identify with both ids
    store.link("u:old", "u:new")  # alias old -> new
    store.link("a:old", "u:new")
    assert store.linked_to("u:new") == ["a:old", "u:old"]
    assert store.linked_to("u:old") == ["a:anon", "u:new"]
    assert store.linked_to("a:anon") == ["u:old"] and store.linked_to("u:nobody") == []
    assert sorted(store.identities("a:anon")) == ["a:anon", "a:old", "u:new", "u:old"]  # the walk goes further


def test_trait_names_are_every_name_recorded_for_the_group(store):
    assert store.trait_names("1", "hh_a") == []
    store.apply_traits("1", "hh_a", {"plan_type": "family", "status": "active"}, 100.0, "m1")
    store.apply_traits("1", "hh_a", {"status": "paused", "x*y": 1}, 200.0, "m2")
    store.apply_traits("1", "hh_ab", {"other": 1}, 200.0, "m3")
    assert store.trait_names("1", "hh_a") == ["plan_type", "status", "x*y"]
    assert store.trait_names("1", "hh_ab") == ["other"]

# retention: compact(horizon) keeps every answer at or after the horizon and drops what is older

H = 100.0  # the horizon of the retention tests

PEOPLE = ["u:1", "a:1", "u:2", "a:2"]
facts = st.lists(st.tuples(
    st.sampled_from(["join", "leave", "delete", "trait", "link"]), st.sampled_from(PEOPLE),
    st.sampled_from(["g1", "g2"]), st.sampled_from([10.0, 50.0, 90.0, 100.0, 120.0, 150.0]), st.integers(0, 3),
), max_size=25)


def record(store, history) -> None:
    for i, (what, person, group, ts, value) in enumerate(history):
        if what == "link":  # an identify with both ids or an alias, at any time: links carry none
            store.link(person, PEOPLE[value])
        elif what == "delete":
            store.record_object_deleted("1", group, ts)
        elif what == "trait":
            store.apply_traits("1", group, {"plan": value}, ts, f"m{i}")
        else:
            store.record_membership(person, "1", group, ts, what == "join")


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=facts)
def test_compaction_keeps_every_answer_at_or_after_the_horizon(kind, history):
    sandbox = RedisSandbox()
    store = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(":memory:"), "redis": sandbox.open}[kind]()
    whole = MemoryStore()  # the uncompacted answers
    try:
        record(store, history)
        record(whole, history)
        store.compact(H)
        for person in PEOPLE:
            assert sorted(store.identities(person)) == sorted(whole.identities(person))
        for ts in (H, 110.0, 120.0, 150.0, 200.0):
            for persons in (["u:1"], ["u:1", "a:1"], ["u:2"]):
                assert store.memberships_at(persons, ts) == whole.memberships_at(persons, ts)
                found, want = store.lookup(f"r{ts}", persons, ts), whole.lookup(f"r{ts}", persons, ts)
                assert (sorted(found.persons), found.memberships) == (sorted(want.persons), want.memberships)
            for group in ("g1", "g2"):
                assert store.traits_at("1", group, ["plan"], ts) == whole.traits_at("1", group, ["plan"], ts)
                stale = store.stale_traits("1", group, ["plan"], ts, "new")
                assert stale == whole.stale_traits("1", group, ["plan"], ts, "new")
    finally:
        store.close()
        sandbox.clean()


def test_compaction_removes_old_history_but_the_fact_in_force_at_the_horizon(store):
    store.record_membership("u:1", "1", "g1", 10.0, True)
    store.record_membership("u:1", "1", "g1", 20.0, False)
    store.record_membership("u:1", "1", "g1", 30.0, True)  # in force at the horizon
    store.record_membership("u:1", "1", "g1", 120.0, False)
    for i, ts in enumerate((10.0, 20.0, 30.0, 120.0)):
        store.apply_traits("1", "g1", {"plan": f"p{i}"}, ts, f"t{i}")
    store.record_object_deleted("1", "g2", 10.0)
    store.record_object_deleted("1", "g2", 20.0)
    removed = store.compact(H)
    assert (removed["memberships"], removed["traits"], removed["deletions"]) == (2, 2, 1)
    size = store.size()
    assert (size["memberships"], size["traits"], size["deletions"]) == (2, 2, 1)
    assert groups(store.memberships_at(["u:1"], H)) == ["g1"]
    assert store.traits_at("1", "g1", ["plan"], H) == {"plan": "p2"}


def test_compaction_removes_activity_and_its_dedupe_records_older_than_the_horizon(store):
    store.record_activity("1", "g1", "old", 50.0, {"orders": 1})
    store.record_activity("1", "g1", "new", 150.0, {"orders": 1})
    assert store.compact(H)["activity"] == 1
    assert [e.message_id for e in store.activity_since("1", "g1", 0.0)] == ["new"]
    assert store.size()["activity"] == 1
    seq = store.record_activity("1", "g1", "old", 50.0, {"orders": 1})  # its dedupe record went with it
    assert seq > store.activity_since("1", "g1", 150.0)[0].seq


def test_links_are_identity_not_history_and_compaction_keeps_every_one(store):
    store.link("a:1", "u:1", arrived=1)  # a visitor signed up long before the horizon
    store.link("u:1", "u:2", arrived=2)  # then an alias
    removed = store.compact(H)
    assert removed.get("links", 0) == 0 and store.size()["links"] == 2
    assert sorted(store.identities("u:2")) == ["a:1", "u:1", "u:2"]


def test_links_with_a_time_from_the_previous_release_are_kept_by_compaction(tmp_path):
    path = str(tmp_path / "previous.db")
    previous = sqlite3.connect(path)  # the links table as the previous release made it: with the link's time
    previous.executescript("CREATE TABLE links (a TEXT NOT NULL, b TEXT NOT NULL, arrived INTEGER, ts REAL,"
                           " PRIMARY KEY (a, b)) WITHOUT ROWID; INSERT INTO links VALUES ('a:1', 'u:1', 1, 50.0),"
                           " ('u:1', 'a:1', 1, 50.0);")
    previous.close()
    store = SQLiteStore(path)
    try:
        store.link("u:1", "u:2", arrived=2)
        store.compact(H)
        assert sorted(store.identities("a:1")) == ["a:1", "u:1", "u:2"]
    finally:
        store.close()


@needs_redis
def test_redis_link_times_from_the_previous_release_are_ignored_by_compaction():
    sandbox = RedisSandbox()
    store = sandbox.open()
    try:
        store.link("a:1", "u:1", arrived=1)
        for one, two in (("a:1", "u:1"), ("u:1", "a:1")):  # the previous release's link times
            store.redis.hset(store.keys.person(one, "lt"), two, repr(50.0))
        store.compact(H)
        assert store.identities("a:1") == ["a:1", "u:1"] and store.size()["links"] == 1
    finally:
        store.close()
        sandbox.clean()


def test_arrival_records_older_than_the_horizon_are_removed_and_a_replay_of_one_is_new(store):
    if store.admit("x", 1.0) is None:
        pytest.skip("the memory store keeps no arrival records")
    old, kept = store.admit("old", 50.0), store.admit("kept", 150.0)
    assert store.size()["arrivals"] == 3
    assert store.compact(H)["arrivals"] == 2
    assert store.size()["arrivals"] == 1
    assert store.admit("kept", 150.0) == kept
    assert store.admit("old", 50.0) > kept > old  # numbered as new


@pytest.mark.long  # issue 20: over ~20 s; `python -m pytest -m long`
@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def test_a_compacted_store_levels_off_while_the_stream_grows(kind, tmp_path):
    from retention_support import TOML, run_stream
    from groupspec.plugin.customerio.mapping import CUSTOMERIO
    sandbox = RedisSandbox()
    opens = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(str(tmp_path / "s.db")), "redis": sandbox.open}
    store = opens[kind]()
    try:
        engine = Engine(parse_config(tomllib.loads(TOML), "t.toml"), store, destination=CUSTOMERIO, clock=None)
        count = 8000 if kind == "redis" else 24000
        sizes = [sum(size.values()) for size in run_stream(engine, count, days=24, samples=8)]  # 3 days a sample
        assert max(sizes[4:]) <= 1.3 * min(sizes[4:]), sizes  # 5th to 8th sample: the count grows 2x, the store not
    finally:
        store.close()
        sandbox.clean()


def test_deleted_at_is_the_latest_deletion(store):
    assert store.deleted_at("1", "hh_a") is None
    store.record_object_deleted("1", "hh_a", 50.0)
    store.record_object_deleted("1", "hh_a", 20.0)
    assert store.deleted_at("1", "hh_a") == 50.0 and store.deleted_at("1", "hh_b") is None


# a chunk's lookups answered from what `prefetch` read for it: the same answers as one at a time, the chunk's own
# earlier writes seen by its later messages

CHUNK_GROUPS = [("1", "g1"), ("1", "g2"), ("2", "g1")]
CHUNK_PERSONS = ["u:1", "u:2", "a:1"]
STEPS = st.lists(st.one_of(
    st.tuples(st.just("lookup"), st.sampled_from([f"m{i}" for i in range(6)]),
              st.lists(st.sampled_from(CHUNK_PERSONS), min_size=1, max_size=2, unique=True), st.integers(1, 6),
              st.sampled_from([None, *CHUNK_GROUPS]), st.booleans(), st.booleans()),
    st.tuples(st.just("link"), st.sampled_from(CHUNK_PERSONS), st.sampled_from(CHUNK_PERSONS)),
    st.tuples(st.just("member"), st.sampled_from(CHUNK_PERSONS), st.sampled_from(CHUNK_GROUPS), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(CHUNK_GROUPS), st.integers(1, 6)),
    st.tuples(st.just("traits"), st.sampled_from(CHUNK_GROUPS), st.sets(st.sampled_from(TRAIT_NAMES), min_size=1),
              st.integers(1, 6)),
    st.tuples(st.just("cut"))), max_size=30)


def stepped(store, steps: list[tuple], chunked: bool) -> list[tuple]:
    """Run `steps` on `store`: lookups (each foreseen by its chunk's `prefetch` or not) and the writes a message
    makes after its lookup (stamped with its arrival number); chunks end at each "cut" (`chunked`: inside a
    transaction, after a `prefetch` of the chunk's foreseen lookups). What each lookup answered, then every
    fact the store holds."""
    chunks, chunk = [], []
    for step in steps:
        if step[0] == "cut":
            chunks.append(chunk)
            chunk = []
        else:
            chunk.append(step)
    answers, last = [], (None, None)
    for chunk in [*chunks, chunk]:
        with store.transaction():
            if chunked:
                foreseen = [step for step in chunk if step[0] == "lookup" and step[6]]
                store.prefetch([s[1] for s in foreseen], [p for s in foreseen for p in s[2]],
                               [s[4] for s in foreseen if s[4]], TRAIT_NAMES)
            for step in chunk:
                if step[0] == "lookup":
                    _, message_id, persons, at, group, stale, _ = step
                    found = store.lookup(message_id, persons, at + 0.5, TRAIT_NAMES if group else [], group,
                                         event_ts=float(at), stale_group=group if stale else None,
                                         stale_names=TRAIT_NAMES if stale else [])
                    answers.append(found)
                    last = (message_id, found.arrival)
                elif step[0] == "link":
                    store.link(step[1], step[2], arrived=last[1])
                elif step[0] == "member":
                    store.record_membership(step[1], *step[2], float(step[3]), step[4], arrived=last[1])
                elif step[0] == "delete":
                    store.record_object_deleted(*step[1], float(step[2]), arrived=last[1])
                elif last[0] is not None:
                    store.apply_traits(*step[1], {name: step[3] for name in sorted(step[2])}, float(step[3]),
                                       last[0], arrived=last[1], source="s")
    held = [sorted(store.membership_events(CHUNK_PERSONS)), store.deletions(CHUNK_GROUPS),
            [store.trait_history(*group, name) for group in CHUNK_GROUPS for name in TRAIT_NAMES],
            [store.identities(person) for person in CHUNK_PERSONS], [store.arrive(f"m{i}") for i in range(6)]]
    return answers + held


@pytest.mark.parametrize("kind", ["memory", "sqlite", *REDIS_KINDS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(steps=STEPS, spare=st.sampled_from([0, 1, 16]))
def test_a_prefetched_chunk_answers_and_writes_as_one_message_at_a_time(kind, steps, spare, request):
    """Any mix of lookups (replays included, some not foreseen by the prefetch, with or without spare arrival
    numbers for them) and the writes a later lookup of the same chunk depends on: the same answers (arrival
    numbers included) and the same facts held."""
    sandboxes = [sandbox_of(kind, request) for _ in range(2)]
    opened = [{"memory": MemoryStore, "sqlite": lambda: SQLiteStore(":memory:")}.get(kind, sandbox and sandbox.open)()
              for sandbox in sandboxes]
    try:
        with mock.patch.object(redis_store, "_SPARE", spare):
            assert stepped(opened[0], steps, chunked=False) == stepped(opened[1], steps, chunked=True)
    finally:
        for store, sandbox in zip(opened, sandboxes):
            store.close()
            if sandbox is not None:
                sandbox.clean()


@pytest.mark.parametrize("kind", ["memory", "sqlite", *REDIS_KINDS])
def test_a_later_message_of_a_prefetched_chunk_sees_the_earlier_ones_writes(kind, request):
    """Everything the chunk's lookups need is read before its first message; each write then changes what a
    later lookup of the chunk answers, as it would one at a time."""
    sandboxes = [sandbox_of(kind, request) for _ in range(2)]
    opened = [{"memory": MemoryStore, "sqlite": lambda: SQLiteStore(":memory:")}.get(kind, sandbox and sandbox.open)()
              for sandbox in sandboxes]
    g1, g2, g3 = ("1", "g1"), ("1", "g2"), ("1", "g3")
    before = [("member", "u:1", g1, 1, True), ("member", "a:1", g2, 1, True), ("member", "u:4", g3, 1, True),
              ("lookup", "m0", ["u:3"], 1, g1, False, True), ("traits", g1, {"status"}, 1), ("cut",)]
    chunk = [("lookup", "m1", ["u:1"], 2, None, False, True), ("member", "u:1", g1, 2, False),
             ("lookup", "m2", ["u:1"], 3, None, False, True),  # its person's membership events changed
             ("lookup", "m3", ["a:1"], 3, None, False, True), ("lookup", "m4", ["u:2"], 3, None, False, True),
             ("link", "u:2", "a:1"), ("lookup", "m5", ["u:2"], 3, None, False, True),  # its links changed
             ("lookup", "m6", ["u:3"], 3, g1, True, True), ("traits", g1, {"status"}, 5),
             ("lookup", "m7", ["u:3"], 4, g1, True, True),  # its group's traits changed
             ("lookup", "m8", ["u:4"], 3, None, False, True), ("delete", g3, 3),
             ("lookup", "m9", ["u:4"], 4, None, False, True),  # its group was deleted
             ("lookup", "m1", ["u:1"], 2, None, False, True), ("lookup", "m10", ["u:1"], 2, None, False, False)]
    try:
        one_at_a_time, chunked = (stepped(store, before + chunk, chunked=flag) for store, flag in zip(opened, (False, True)))
        assert chunked == one_at_a_time
        groups = [[m.group_id for m in found.memberships] for found in chunked[1:10]]
        assert groups == [["g1"], [], ["g2"], [], ["g2"], [], [], ["g3"], []]
        assert chunked[5].persons == ["u:2", "a:1"]
        assert chunked[6].stale == set() and chunked[7].stale == {"status"}
        if kind != "memory":  # the memory store keeps no arrival numbers
            assert chunked[10].arrival == chunked[1].arrival  # a replay in the chunk: its first number
            assert chunked[11].arrival > chunked[9].arrival  # not foreseen: numbered after, all the same
    finally:
        for store, sandbox in zip(opened, sandboxes):
            store.close()
            if sandbox is not None:
                sandbox.clean()


def forwarded_in_chunks(store, order: list[int], size: int) -> list[bytes]:
    """`forwarded`, fed as a door feeds the engine: chunks of `size` in a transaction, each prefetched."""
    engine = Engine(TRAITS, store)
    payloads = [{**STREAM[i][1], "messageId": STREAM[i][0]} for i in order]
    out = []
    for at in range(0, len(payloads), size):
        with engine.transaction():
            engine.prefetch([(payload, None) for payload in payloads[at:at + size]])
            for payload in payloads[at:at + size]:
                out += map(orjson.dumps, engine.process(payload).forwarded)
    return out


@pytest.mark.parametrize("kind", REDIS_KINDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(STREAM))), size=st.integers(2, len(STREAM)))
def test_a_prefetched_chunk_forwards_what_one_message_at_a_time_forwards(kind, order, size, request):
    """Late facts, leaves, deletions and identity links arriving in any order, a later message of a chunk
    depending on an earlier one's writes; replayed once more as a second run of the same chunks."""
    sandboxes = [sandbox_of(kind, request) for _ in range(2)]
    one, chunked = (sandbox.open() for sandbox in sandboxes)
    try:
        want = forwarded(one, order) + forwarded(one, order)
        assert forwarded_in_chunks(chunked, order, size) + forwarded_in_chunks(chunked, order, size) == want
    finally:
        for store, sandbox in zip((one, chunked), sandboxes):
            store.close()
            sandbox.clean()


def test_a_store_that_does_not_prefetch_costs_a_door_nothing_to_prefetch_for(tmp_path):
    """The engine reads a chunk's payloads for `prefetch` only for a store that prefetches (Redis)."""
    def unread():
        raise AssertionError("a chunk's payloads were read for a store that does not prefetch")
        yield

    for store in (MemoryStore(), SQLiteStore(str(tmp_path / "s.db"))):
        engine = Engine(TRAITS, store)
        with engine.transaction():
            engine.prefetch(unread())
        store.close()
