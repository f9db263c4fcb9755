"""The flat path (middleware/fastpath.py) against the whole chain: generated streams with every kind of message
and violation (late group updates, time-less re-sends, messages Customer.io gets nothing for: `not_mapped`), every
compat profile, group id migrations recorded before or during the stream, memory and SQLite stores, with and without retention, rollups, attached
traits, a live clock and the flag / strip actions, give byte-identical outputs (forwarded lines, Customer.io
operations, quarantine records, summary, counts) and the same store answers whichever road the messages take.

After any change to the message path, run this file: when the roads differ, the flat path must follow the
rule (its predicate in fastpath.py) or decline the message."""

from __future__ import annotations

import itertools
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware import Engine, open_store
from groupspec.middleware.config import parse_config
from groupspec.middleware.migrations import Migration, arrival_key
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
PEOPLE = ["u1", "u2", "u3", "ann@example.com"]
ODD_PEOPLE = ["cio_7", 42, 4.0, "", True, None, "u" * 151]  # the last: over Customer.io's 150-byte identifier
HOUSEHOLDS = {"u1": "hh_1", "u2": "hh_2", "u3": "hh_1", "ann@example.com": "hh_3"}
BAD_GROUPS = ["hh 1", "x@y.co", "https://x", 7, True, {"x": 1}, "", "hh_" + "9" * 160, "acct_1"]
EVENTS = ["Order Placed", "Product Viewed", "Signed Up"]
ODD_EVENTS = ["Relationship Deleted", "Object Deleted", "User Deleted", "User Suppressed", "User Unsuppressed",
              "Application Installed", "Application Opened", "Application Uninstalled", "Device Deleted",
              "Push Token", "", " ", 5, None]
OBJECT_TYPES = ["1", "2", 2, "0", "x", True, None]


def iso(seconds: float, lower: bool = False) -> str:
    text = (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return text.lower() if lower else text


def pick(draw, common: list[Any], odd: list[Any], p: float = 0.1) -> Any:
    """One of `common`, or with probability `p` one of `odd`."""
    return draw(st.sampled_from(odd if chance(draw, p) else common))


def chance(draw, p: float) -> bool:
    """True with probability `p`; shrinks to False (the common message)."""
    return draw(st.integers(0, 999)) >= 1000 * (1 - p)


@st.composite
def times(draw, i: int) -> dict[str, Any]:
    """The `i`th message's times: a day after the one before, or (late, early) anywhere in 120 days."""
    at = i * 86400 if not chance(draw, 0.3) else draw(st.integers(0, 120 * 86400))
    kind = pick(draw, ["plain"], ["lower", "corrected", "received", "future", "bad", "number", "none", "ancient",
                                  "original", "none"], 0.15)
    return {
        "plain": {"timestamp": iso(at)},
        "lower": {"timestamp": iso(at, lower=True)},
        "corrected": {"originalTimestamp": iso(at), "sentAt": iso(at + 5)},
        "original": {"originalTimestamp": iso(at)},
        "received": {"timestamp": iso(at), "receivedAt": iso(at + draw(st.sampled_from([1, 3 * 86400])))},
        "future": {"timestamp": "2099-01-01T00:00:00Z"},
        "bad": {"timestamp": "yesterday"},
        "number": {"timestamp": 1767225600},
        "none": {},
        "ancient": {"timestamp": "1969-12-31T00:00:00Z"},
    }[kind]


@st.composite
def messages(draw, n: itertools.count) -> dict[str, Any]:
    kind = pick(draw, ["track"] * 5 + ["identify"] * 2 + ["group"] * 3 + ["page", "screen"],
                ["alias", "Track", "bogus", None])
    i = next(n)
    msg: dict[str, Any] = {"type": kind, **draw(times(i))}
    user = pick(draw, PEOPLE, ODD_PEOPLE)
    if user is not None or chance(draw, 0.5):
        msg["userId"] = user
    if chance(draw, 0.2) or user is None:
        msg["anonymousId"] = pick(draw, ["a1", "a2"], ["", 3, None])
    message_id = pick(draw, ["new"], ["none", "number", "again"])
    if message_id != "none":
        msg["messageId"] = {"new": f"m{i}", "number": 12, "again": "m1"}[message_id]
    own = HOUSEHOLDS.get(user, "hh_3")  # the person's household, or (a conflict, a move) another one
    household = own if not chance(draw, 0.25) else draw(st.sampled_from(sorted(set(HOUSEHOLDS.values()) - {own})))
    context: dict[str, Any] = {"library": {"name": "analytics-python"}}
    if chance(draw, 0.4):
        context["groupId"] = pick(draw, [household], BAD_GROUPS)
    if chance(draw, 0.05):
        context["traits"] = {"plan_type": "free"} if draw(st.booleans()) else {"email": "c@example.com"}
    if chance(draw, 0.1):
        context["device"] = {"token": "tok", "type": draw(st.sampled_from(["ios", "android"]))}
    msg["context"] = context if not chance(draw, 0.03) else "not an object"
    if kind in ("track", "Track", "page", "screen"):
        msg["event"] = pick(draw, EVENTS, ODD_EVENTS, 0.15)
        props: dict[str, Any] = {"total": pick(draw, [10, 12.5], ["", None, "x" * 1200]),
                                 "order": {"sku": "s1", "at": "2026-02-01T00:00:00Z", "items": [1, 2]}}
        if chance(draw, 0.15):
            props["group_id"] = pick(draw, [household], BAD_GROUPS)
        if chance(draw, 0.1):  # an attribute Customer.io's schema types (a string): `limits.TYPED_ATTRIBUTES`
            props[draw(st.sampled_from(["recipient", "url"]))] = draw(st.sampled_from(["x@example.com", 5]))
        if msg["event"] in ("Relationship Deleted", "Object Deleted") or chance(draw, 0.05):
            props["objectId"] = pick(draw, [household], [None, 5])
            if chance(draw, 0.5):
                props["objectTypeId"] = draw(st.sampled_from(OBJECT_TYPES))
        if kind == "page" and chance(draw, 0.5):
            props["url"] = "https://example.com/p"
        msg["properties"] = props
        if kind in ("page", "screen") and chance(draw, 0.5):
            msg["name"] = "Home"
    elif kind == "identify":
        traits: dict[str, Any] = {"email": "x@example.com", "created_at": "2025-06-01T10:00:00Z"}
        if chance(draw, 0.1):
            traits["plan_type"] = "free"
        if chance(draw, 0.1):
            traits["objectId"] = household
        if chance(draw, 0.15):
            traits["group_id"] = pick(draw, [household], BAD_GROUPS)
        msg["traits"] = traits if not chance(draw, 0.05) else None
    elif kind == "group":
        if not chance(draw, 0.03):
            msg["groupId"] = pick(draw, [household], BAD_GROUPS)
        traits = {"name": f"Household {household}", "plan_type": pick(draw, ["free", "plus"], ["gold", 3, None])}
        if chance(draw, 0.1):
            traits["owned"] = 1
        if chance(draw, 0.1):
            traits["objectTypeId"] = draw(st.sampled_from(OBJECT_TYPES))
        if chance(draw, 0.1):
            traits["objectAttributes"] = {"plan_type": "plus", "size": 4}
        if chance(draw, 0.1):
            traits["relationshipAttributes"] = {"role": "owner"}
        if chance(draw, 0.1):
            traits["action"] = draw(st.sampled_from(["delete_relationships", "delete", "add_relationships"]))
        msg["traits"] = traits if not chance(draw, 0.1) else {}
    elif kind == "alias":
        msg["previousId"] = draw(st.sampled_from(["a1", "old", None]))
    if chance(draw, 0.1):
        msg["writeKey"] = "wk_crm"
    return msg


def config(compat: str, store_url: str, retention: bool, rollups: bool, attach: bool, actions: str | None):
    contract: dict[str, Any] = {
        "version": "diff", "group_id_pattern": "^hh_[0-9]+$", "require_group": ["Order Placed"],
        "group_traits": {"plan_type": {"type": "string", "enum": ["free", "plus"]}, "owned": {"owner": "crm"}},
    }
    if attach:
        contract["attach_group_traits"] = ["plan_type"]
    if rollups:
        contract["rollups"] = {"last_total": {"event": "Order Placed", "value": "properties.total"},
                               "orders": {"event": "Order Placed", "count_window": "30d"}}
    if actions is not None:
        contract["actions"] = {code: actions for code in
                               ("invalid_group_id", "group_id_conflict", "group_trait_on_person",
                                "invalid_group_trait", "stale_group_update", "not_attribute_owner")}
    store: dict[str, Any] = {"url": store_url}
    if retention:
        store["retention"] = "45d"
    return parse_config({"contract": contract, "customerio": {"compat": compat}, "store": store,
                         "sources": {"crm": {"write_key": "wk_crm", "contract": {"require_group": []}}}})


class Declines:
    """A flat path that takes nothing: every message takes the whole chain."""

    def take(self, msg) -> bool:
        return False


def migrate(store, when: str) -> None:
    """Record group id migrations: hh_2 renamed hh_4, hh_3 merged into hh_1 from day 20."""
    if when == "before":
        store.record_migration(Migration("1", "hh_2", "hh_4", "rename", START.timestamp(), False,
                                         store.admit(arrival_key("1", "hh_2"))))
    else:
        store.record_migration(Migration("1", "hh_3", "hh_1", "merge", (START + timedelta(days=20)).timestamp(),
                                         False, store.admit(arrival_key("1", "hh_3"))))


def outputs(cfg, store_url: str, payloads: list[Any], flat: bool, live: bool,
            migrations: str | None = None) -> dict[str, Any]:
    """What a replay-like run (chunks of 5, a compaction between chunks, a flush) writes, and the store's answers;
    `migrations`: group ids migrated "before" the run, or "during" it (after its first chunk)."""
    store = open_store(store_url)
    if migrations == "before":
        migrate(store, "before")
    clock = (lambda: (START + timedelta(days=60)).timestamp()) if live else None
    engine = Engine(cfg, store, destination=CUSTOMERIO, clock=clock)
    if not flat:
        engine.flat = Declines()
    lines: list[bytes] = []
    ops: list[bytes] = []
    quarantine: list[bytes] = []
    counts = []
    for start in range(0, len(payloads), 5):
        if migrations == "during" and start == 5:
            migrate(store, "during")
        with engine.transaction():
            for payload in payloads[start:start + 5]:
                out = engine.process(orjson.dumps(payload))
                lines += out.forwarded_lines
                ops += out.op_lines
                quarantine += [orjson.dumps(rec) for rec in out.quarantined]
                counts.append(out.counts.to_dict())
                assert len(out.op_times) == len(out.ops)
        engine.compact(force=True)
    with engine.transaction():
        ops += engine.flush().op_lines
    people = ["u:u1", "u:u2", "u:ann@example.com", "u:cio_7", "u:42", "u:4", "a:a1", "a:a2"]
    end = (START + timedelta(days=130)).timestamp()
    groups = store.groups()
    answers = {
        "identities": [store.identities(p) for p in people],
        "memberships": [store.memberships_at([p], end) for p in people],
        "groups": groups,
        "members": [store.members_at(t, g, end) for t, g in groups],
        "traits": [store.traits_at(t, g, store.trait_names(t, g), end) for t, g in groups],
        "deleted": [store.deleted_at(t, g) for t, g in groups],
        "size": store.size(),
    }
    store.close()
    return {"forwarded": lines, "ops": ops, "quarantine": quarantine, "counts": counts, "store": answers}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), compat=st.sampled_from(["segment", "rudderstack", "rudderstack-v2"]),
       kind=st.sampled_from(["memory", "sqlite"]), retention=st.booleans(), rollups=st.booleans(),
       attach=st.booleans(), live=st.booleans(), actions=st.sampled_from([None, "flag", "strip"]),
       migrations=st.sampled_from([None, None, "before", "during"]))
def test_flat_path_and_chain_give_the_same_bytes(data, compat, kind, retention, rollups, attach, live, actions,
                                                 migrations):
    n = itertools.count(1)
    payloads = data.draw(st.lists(messages(n), min_size=4, max_size=40))
    if data.draw(st.booleans()):  # a re-sent stream: every message again
        payloads += payloads
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for flat in (True, False):
            url = "memory://" if kind == "memory" else f"sqlite:///{Path(tmp) / f'{flat}.db'}"
            cfg = config(compat, url, retention, rollups, attach, actions)
            results.append(outputs(cfg, url, payloads, flat, live, migrations))
    flat_out, chain_out = results
    for key in flat_out:
        assert flat_out[key] == chain_out[key], key


def test_the_flat_path_takes_the_common_messages():
    """The differential test is not empty: tracks, identifies, group calls, pages and screens that break no rule
    take the flat path (and the ones that do, the chain)."""
    cfg = config("segment", "memory://", False, False, True, None)
    engine = Engine(cfg, open_store("memory://"), destination=CUSTOMERIO, clock=None)
    taken = []
    take = engine.flat.take
    engine.flat.take = lambda msg: taken.append(take(msg)) or taken[-1]
    base = {"timestamp": iso(0), "userId": "u1"}
    common = [
        {**base, "type": "group", "groupId": "hh_1", "traits": {"name": "One", "plan_type": "free"}, "messageId": "1"},
        {**base, "type": "identify", "traits": {"email": "u1@example.com"}, "messageId": "2"},
        {**base, "type": "track", "event": "Order Placed", "messageId": "3"},
        {**base, "type": "track", "event": "Viewed", "context": {"groupId": "hh_1"}, "messageId": "4"},
        {**base, "type": "page", "name": "Home", "messageId": "5"},
        {**base, "type": "screen", "name": "Home", "messageId": "6"},
    ]
    unusual = [
        {**base, "type": "track", "event": "Viewed", "context": {"groupId": "hh_2"}, "messageId": "7"},  # conflict
        {**base, "type": "group", "groupId": "hh_1", "traits": {"plan_type": "gold"}, "messageId": "8"},  # enum
        {**base, "type": "track", "event": "Viewed"},  # no messageId: the chain makes one
        {**base, "type": "alias", "previousId": "a1", "messageId": "9"},
        {"type": "track", "event": "Viewed", "userId": "u1", "messageId": "10"},  # no time: maybe a re-send
        {"type": "track", "event": "Viewed", "userId": "u1", "messageId": "11", "originalTimestamp": iso(5)},
        {**base, "type": "group", "groupId": "hh_1", "traits": {"plan_type": "plus"}, "messageId": "12",
         "timestamp": iso(-5)},  # older than message 1's plan_type: stale, a late group update
    ]
    for payload in common + unusual:
        engine.process(orjson.dumps(payload))
    assert taken == [True] * len(common) + [False] * len(unusual)


def test_the_flat_path_declines_while_a_migration_is_recorded():
    """With any group id migration recorded, every message takes the whole chain (`MapMigrated`, the migrated
    reads)."""
    cfg = config("segment", "memory://", False, False, True, None)
    store = open_store("memory://")
    engine = Engine(cfg, store, destination=CUSTOMERIO, clock=None)
    taken = []
    take = engine.flat.take
    engine.flat.take = lambda msg: taken.append(take(msg)) or taken[-1]
    track = {"timestamp": iso(0), "userId": "u1", "type": "track", "event": "Viewed"}
    with engine.transaction():
        engine.process(orjson.dumps({**track, "messageId": "1"}))
    migrate(store, "before")
    with engine.transaction():
        out = engine.process(orjson.dumps({**track, "messageId": "2", "context": {"groupId": "hh_2"}}))
    assert taken == [True, False]
    assert out.forwarded[0]["context"]["groupId"] == "hh_4"


def test_the_flat_tail_finishes_what_the_flat_front_took():
    """A message the flat front took is finished by `FlatTail` (the chain's tail without the step dispatch); one the
    front declined by the chain's own steps."""
    cfg = config("segment", "memory://", False, True, True, None)
    engine = Engine(cfg, open_store("memory://"), destination=CUSTOMERIO, clock=None)
    finished = []
    finish = engine.flat_tail.finish
    engine.flat_tail.finish = lambda msg: finished.append(msg.body["messageId"]) or finish(msg)
    base = {"timestamp": iso(0), "userId": "u1", "type": "track", "event": "Order Placed"}
    engine.process(orjson.dumps({**base, "context": {"groupId": "hh_1"}, "messageId": "1"}))
    engine.process(orjson.dumps({**base, "context": {"groupId": "hh 1"}, "messageId": "2"}))  # invalid_group_id
    assert finished == ["1"]


def test_the_flat_mapping_leaves_what_the_limits_refuse_to_the_chain():
    """An event with a typed attribute of another type (not_mapped) or an identifier over 150 bytes
    (customerio_limit) gets the chain's outcome on the flat road; a well-formed one the flat mapping's."""
    base = {"timestamp": iso(0), "type": "track", "event": "Viewed", "context": {"groupId": "hh_1"}}
    payloads = [{**base, "userId": "u1", "messageId": "1", "properties": {"recipient": 5}},
                {**base, "userId": "u1", "messageId": "2", "properties": {"recipient": "x@example.com"}},
                {**base, "userId": "u" * 151, "messageId": "3"},
                {**base, "userId": "u1", "messageId": "4", "properties": {"at": "2026-02-01T00:00:00Z"}}]
    results = []
    for flat in (True, False):
        cfg = config("segment", "memory://", False, False, True, None)
        engine = Engine(cfg, open_store("memory://"), destination=CUSTOMERIO, clock=None)
        if flat:
            flat_map, made = engine.flat_tail.flat_map, []
            engine.flat_tail.flat_map = lambda msg: made.append(flat_map(msg) is not None) or flat_map(msg)
        else:
            engine.flat = Declines()
        outs = [engine.process(orjson.dumps(p)) for p in payloads]
        results.append([(o.forwarded_lines, o.op_lines, [orjson.dumps(r) for r in o.quarantined]) for o in outs])
    assert results[0] == results[1]
    assert [len(ops) for _, ops, _ in results[0]] == [0, 1, 0, 1]
    assert made == [False, False, False, True]  # a typed attribute, even a good one: the limits decide


def test_the_flat_tail_quarantines_a_failing_step_as_the_chain_does():
    """What a tail step raises quarantines that message alone, named by the step, on either road."""
    payloads = [{"timestamp": iso(i), "userId": "u1", "type": "track", "event": event, "messageId": str(i),
                 "properties": {"total": 10}, "context": {"groupId": "hh_1"}}
                for i, event in enumerate(["Order Placed", "Boom", "Product Viewed"])]
    records = []
    for flat in (True, False):
        cfg = config("segment", "memory://", False, True, True, None)
        destination = type("Failing", (), {
            "operations": staticmethod(lambda msg: 1 / 0 if msg.body["event"] == "Boom" else CUSTOMERIO.operations(msg)),
            "object_update": staticmethod(CUSTOMERIO.object_update), "problem": staticmethod(CUSTOMERIO.problem)})()
        engine = Engine(cfg, open_store("memory://"), destination=destination, clock=None)
        if not flat:
            engine.flat = Declines()
        outs = [engine.process(orjson.dumps(p)) for p in payloads]
        records.append([(o.forwarded_lines, o.op_lines, [orjson.dumps(r) for r in o.quarantined]) for o in outs])
    assert records[0] == records[1]
    assert orjson.loads(records[0][1][2][0])["violations"][-1]["field"] == "_map"
