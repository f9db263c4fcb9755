"""Erasure (issue 23): a forgotten person leaves no record in any store kind (SQLite's main file and WAL
included), other people's answers stay as they were, message keys are stored as keyed hashes, and
`[privacy] suppress_forgotten` drops a forgotten person's later messages as `suppressed`."""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Callable

import orjson
import pytest
from erasure_support import answers, dump, found, history, person_names, steps, user
from hypothesis import HealthCheck, given, settings
from redis_support import RedisSandbox, needs_redis, needs_redis_server
from store_support import sandbox_of

from groupspec.middleware import Engine
from groupspec.middleware.config import parse_config
from groupspec.middleware.message import message_key
from groupspec.middleware.privacy import KeyedHash, erasable, forget, keyed_hash
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin.customerio.common import event_id
from groupspec.plugin.customerio.mapping import CUSTOMERIO

KINDS = ["memory", "sqlite", pytest.param("redis", marks=needs_redis),
         pytest.param("redis-cluster", marks=needs_redis_server)]
TOML = """
[contract]
future_tolerance = "100000d"
"""
USER_DELETED = {"type": "track", "userId": user(0), "anonymousId": "anon0z", "event": "User Deleted",
                "messageId": "m-deleted", "timestamp": "2026-01-02T00:00:00Z", "properties": {}}


@pytest.fixture(params=KINDS)
def opener(request, tmp_path) -> Callable:
    """Opens a fresh store of each kind (a new one per call: hypothesis examples share the fixture)."""
    opened, sandboxes = [], []

    def open_one():
        if request.param == "memory":
            store = MemoryStore()
        elif request.param == "sqlite":
            path = tmp_path / f"s{len(opened)}.db"
            store = SQLiteStore(str(path))
            store.path = path
        else:
            sandbox = sandbox_of(request.param, request)
            sandboxes.append(sandbox)
            store = sandbox.open()
        opened.append(store)
        return store

    open_one.kind = request.param
    yield open_one
    for store in opened:
        store.close()
    for sandbox in sandboxes:
        sandbox.clean()


def run(store, messages, toml: str = TOML) -> Engine:
    engine = Engine(parse_config(tomllib.loads(toml), "t.toml"), store, destination=CUSTOMERIO, clock=None)
    with engine.transaction():
        for body in messages:
            engine.process(orjson.dumps(body))
    return engine


def others(plan) -> list[int]:
    return sorted({i for _, i, _, _ in plan} - {0})


def _store_bytes(store) -> bytes:
    return dump(store, getattr(store, "path", None))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps)
def test_user_deleted_leaves_none_of_the_persons_ids_in_any_store_and_others_answers_unchanged(opener, plan):
    store = opener()
    messages = history(plan)
    run(store, messages)
    before = answers(store, others(plan))
    run(store, [USER_DELETED])
    assert found(_store_bytes(store), person_names(0)) == []
    assert answers(store, others(plan)) == before


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps)
def test_people_forget_leaves_none_of_the_persons_ids_in_any_store_and_others_answers_unchanged(opener, plan):
    store = opener()
    engine = run(store, history(plan))
    before = answers(store, others(plan))
    done = forget(store, engine.hasher, ["u:" + user(0), "a:" + user(0)], names=[user(0)])
    assert store.scrub()
    assert "u:" + user(0) in done.keys and done.removed["memberships"] >= 1
    assert found(_store_bytes(store), person_names(0)) == []
    assert answers(store, others(plan)) == before


def test_a_shared_device_stays_linked_to_the_others_and_an_exclusive_one_goes(opener):
    store = opener()
    store.link("a:shared", "u:alice")
    store.link("a:shared", "u:bob")
    store.link("a:mine", "u:alice")
    store.link("u:alice", "u:old-alice")  # an alias: linked to alice alone
    store.record_membership("u:alice", "1", "hh_1", 10.0, True)
    store.record_membership("u:bob", "1", "hh_1", 20.0, True)
    keys, kept = erasable(store, ["u:alice"])
    assert sorted(keys) == ["a:mine", "u:alice", "u:old-alice"] and kept == ["a:shared"]
    removed = store.forget(keys)
    assert removed == {"links": 3, "memberships": 1}  # alice with shared, mine and old-alice
    assert store.linked_to("a:shared") == ["u:bob"] and store.linked_to("u:alice") == []
    assert [m.group_id for m in store.memberships_at(["u:bob"], 30.0)] == ["hh_1"]
    assert store.members_at("1", "hh_1", 30.0) == ["u:bob"]


def test_a_dry_run_counts_and_removes_nothing(opener):
    store = opener()
    store.link("a:x", "u:alice")
    store.record_membership("u:alice", "1", "hh_1", 10.0, True)
    assert store.forget(["u:alice", "a:x"], dry_run=True) == {"links": 1, "memberships": 1}
    assert store.linked_to("u:alice") == ["a:x"] and store.persons_seen("1", "hh_1") == ["u:alice"]


def test_message_keys_are_stored_as_keyed_hashes_and_event_ids_still_come_from_the_plain_key(opener):
    store = opener()
    body = {"type": "track", "userId": user(5), "event": "Order Placed", "messageId": "m-1",
            "timestamp": "2026-01-01T00:00:00Z", "properties": {"group_id": "hh_1"}}
    engine = run(store, [{"type": "group", "userId": user(5), "groupId": "hh_1", "messageId": "m-0",
                          "timestamp": "2026-01-01T00:00:00Z", "traits": {"name": "x"}}])
    with engine.transaction():
        out = engine.process(orjson.dumps(body))
    plain = message_key(None, "u:" + user(5), "track", "m-1")
    assert out.ops[0]["id"] == event_id(plain, 1767225600.0)  # the id Customer.io dedupes on is unchanged
    data = _store_bytes(store)
    assert user(5).encode() in data  # the person is known by their links and memberships ...
    assert b"m-1" not in data and b"m-0" not in data  # ... but no message key is stored in plain
    assert engine.hasher(plain).encode() in data or opener.kind == "memory"  # memory keeps no arrival records


def test_the_keyed_hash_is_the_configured_key_or_one_the_store_keeps(tmp_path):
    path = str(tmp_path / "s.db")
    one, two = SQLiteStore(path), SQLiteStore(path)
    try:
        config = parse_config({})
        assert keyed_hash(config, one)("k") == keyed_hash(config, two)("k")  # two processes, one store: one key
        configured = parse_config({"privacy": {"key": "0123456789abcdef-s3kr1t"}})
        assert keyed_hash(configured, one)("k") == KeyedHash(b"0123456789abcdef-s3kr1t")("k") != keyed_hash(config, one)("k")
        assert "s3kr1t" not in repr(configured.privacy) and "s3kr1t" not in repr(keyed_hash(configured, one))
    finally:
        one.close()
        two.close()


def _plain_store(path: str, plain: str) -> None:
    """A store as groupspec wrote it before message keys were hashed: plain keys in arrivals, traits, activity."""
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM privacy WHERE name = 'message_keys'")
    db.execute("INSERT INTO messages (message_id, ts) VALUES (?, ?)", (plain, 1767225600.0))
    db.execute("INSERT INTO traits (type_id, group_id, name, ts, message_id, value, arrived) VALUES"
               " ('1', 'hh_1', 'name', 1767225600.0, ?, '\"x\"', 1)", (plain,))
    db.execute("INSERT INTO activity (type_id, group_id, message_id, ts, value) VALUES ('1', 'hh_1', ?, 1.0, '{}')",
               (plain,))
    db.commit()
    db.close()


def test_an_sqlite_store_with_plain_message_keys_is_rekeyed_once_and_keeps_its_arrivals(tmp_path):
    path = str(tmp_path / "old.db")
    plain = message_key(None, "u:" + user(7), "group", "m-old")
    _plain_store(path, plain)
    store = SQLiteStore(path)
    try:
        hasher = keyed_hash(parse_config({}), store)
        assert store.admit(hasher(plain)) == 1  # the same message seen again: its arrival number, not a new one
        assert store.rekey_message_keys(hasher) == 0  # marked: never scanned again
        assert store.stale_traits("1", "hh_1", ["name"], 0.0, hasher(plain)) == set()  # its own entry, re-keyed
    finally:
        store.close()
    assert user(7).encode() not in open(path, "rb").read()


@needs_redis
def test_a_redis_store_with_plain_message_keys_is_rekeyed_once():
    """A keyspace of format version 1 (before erasure) holds plain message keys; opening it migrates it."""
    sandbox = RedisSandbox()
    old = sandbox.open()
    plain = message_key(None, "u:" + user(8), "group", "m-old")
    old.admit(plain, 5.0)
    old.apply_traits("1", "hh_1", {"name": "x"}, 5.0, plain)
    old.record_activity("1", "hh_1", plain, 5.0, {"n": 1})
    old.redis.delete(old.keys.privacy("message_keys"), old.keys.privacy("key"))
    old.redis.set(old.keys.format("version"), 1)
    old.close()
    store = sandbox.open()
    try:
        hasher = keyed_hash(parse_config({}), store)
        assert hasher("x")  # prepares the key: re-keys the store
        assert store.admit(hasher(plain)) == 1 and store.rekey_message_keys(hasher) == 0
        assert [e.message_id for e in store.activity_since("1", "hh_1", 0.0)] == [hasher(plain)]
        assert found(dump(store), [user(8)]) == []
    finally:
        store.close()
        sandbox.clean()


SUPPRESS = TOML + "\n[privacy]\nsuppress_forgotten = true\n"


def test_suppress_forgotten_drops_a_forgotten_persons_later_messages_unrecorded(opener):
    store = opener()
    engine = run(store, history([("track", 1, "hh_1", False)]) + [USER_DELETED], toml=SUPPRESS)
    later = {"type": "track", "userId": user(0), "event": "Order Placed", "messageId": "m-late",
             "timestamp": "2026-01-03T00:00:00Z"}
    seen_by_device = {**later, "userId": None, "anonymousId": "anon0z", "messageId": "m-late-2"}
    with engine.transaction():
        out = engine.process(orjson.dumps({"batch": [later, seen_by_device, {**later, "userId": user(1)}]}))
    assert (out.counts.forwarded, out.counts.suppressed, len(out.quarantined)) == (1, 2, 0)
    summary = out.counts.summary()
    assert summary["received"] == summary["forwarded"] + summary["quarantined"] + summary["suppressed"] == 3
    assert found(_store_bytes(store), person_names(0)) == []  # stored nowhere, the suppression list included


def test_without_suppression_summary_json_keeps_its_shape_and_a_forgotten_person_may_come_back(opener):
    store = opener()
    engine = run(store, history([]) + [USER_DELETED])
    with engine.transaction():
        out = engine.process(orjson.dumps({"type": "identify", "userId": user(0), "messageId": "m-again",
                                           "timestamp": "2026-01-03T00:00:00Z"}))
    assert out.counts.forwarded == 1 and "suppressed" not in out.counts.summary()


def test_erase_on_names_the_events_and_an_empty_list_keeps_the_old_ending_of_memberships(opener):
    store = opener()
    run(store, history([]) + [USER_DELETED], toml=TOML + "\n[privacy]\nerase_on = []\n")
    assert store.linked_to("u:" + user(0)) == ["a:anon0z"]  # kept: only the memberships ended
    assert store.memberships_at(["u:" + user(0)], 4e9) == []
    other = opener()
    run(other, history([]) + [{**USER_DELETED, "event": "Account Closed"}],
        toml=TOML + '\n[privacy]\nerase_on = ["Account Closed"]\n')
    assert found(_store_bytes(other), person_names(0)) == []


def test_privacy_config_errors_name_the_file_the_key_and_what_was_expected():
    from groupspec.middleware.config import ConfigError

    with pytest.raises(ConfigError, match=r"^t\.toml: privacy\.key: expected a secret of at least 16 characters"):
        parse_config({"privacy": {"key": "short"}}, "t.toml")
    with pytest.raises(ConfigError, match=r"^t\.toml: privacy\.erase_on: expected event names"):
        parse_config({"privacy": {"erase_on": [" "]}}, "t.toml")
    with pytest.raises(ConfigError, match=r"^t\.toml: privacy\.key: environment variable GS_UNSET_KEY is not set"):
        parse_config({"privacy": {"key": "${GS_UNSET_KEY}"}}, "t.toml")


def test_verify_after_an_erasure_neither_expects_nor_recreates_the_persons_relationships(opener):
    from groupspec.plugin.verify.expected import view

    store = opener()
    run(store, history([("group", 1, "hh_1", False)]) + [USER_DELETED])
    group = view(store, parse_config({}), "1", "hh_1")
    named = repr((group.members, group.left, group.anonymous, group.unsure))
    assert user(0) not in named and "anon0z" not in named and user(1) in named
