"""Hypothesis properties of the core: any input never crashes replay, the accounting always balances, every
Customer.io operation respects the Track API limits (../shared/customerio.md), and SDK dicts are never mutated."""

from __future__ import annotations

import copy
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from core_support import config
from groupspec.middleware import Engine, open_store
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from groupspec.plugin.replay import Replay
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

BASE = """
[contract]
version = "p1"
group_id_pattern = "^(hh|acct)_[A-Za-z0-9]+$"
require_group = ["Order Placed"]
attach_group_traits = ["plan"]
[contract.group_traits]
plan = { type = "string", enum = ["basic", "pro"] }
seats = { type = "integer" }
credit = { type = "number", owner = "billing" }
[contract.rollups]
last_order_at = { event = "Order Placed", value = "timestamp" }
last_total = { event = "Order Placed", value = "properties.total" }
orders_30d = { event = "Order Placed", count_window = "30d" }
[sources.billing]
write_key = "wk_billing"
[sources.web]
write_key = "wk_web"
[sources.web.contract]
require_group = ["*"]
"""
_ACTIONS = {
    "flag": ["missing_group_id", "invalid_group_id", "group_id_conflict", "group_trait_on_person",
             "invalid_group_trait", "stale_group_update", "invalid_object_type", "not_attribute_owner"],
    "strip": ["invalid_group_id", "group_id_conflict", "group_trait_on_person", "invalid_group_trait",
              "stale_group_update", "not_attribute_owner"],
}
#: the default actions, everything that may be flagged flagged (weird data reaches the mapping), and strip
CONFIGS = {
    "default": config(BASE),
    **{action: config(BASE + "[contract.actions]\n" + "".join(f'{c} = "{action}"\n' for c in codes))
       for action, codes in _ACTIONS.items()},
}
SETTINGS = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ------------------------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=10)

def mostly(good, weird):
    """`good` three times in four, else `weird`: most generated messages get far into the chain."""
    return st.one_of(good, good, good, weird)


POOL = ["u1", "u2", "a1", "a2", "cio_x", "ada@example.com"]
GROUPS = ["hh_1", "hh_2", "acct_9"]
BAD_GROUPS = ["bob@example.com", "hh 3", "https://x.test/g", "", "h" * 151, "é" * 80]
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1),
                     timezones=st.just(timezone.utc)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
near_times = st.integers(0, 60 * 24).map(lambda m: datetime.fromtimestamp(1767225600 + m * 60, timezone.utc)
                                         .isoformat().replace("+00:00", "Z"))  # one day: joins meet events
long_text = st.text(alphabet="xé", min_size=140, max_size=1010)
ids = mostly(st.sampled_from(POOL), st.one_of(
    st.text(max_size=12), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
    long_text, st.none(), st.booleans()))
group_ids = mostly(st.sampled_from(GROUPS), st.one_of(st.sampled_from(BAD_GROUPS), st.text(max_size=10),
                                                      st.integers(0, 99), json_values))
type_ids = mostly(st.sampled_from(["1", "2", 2, 3]), st.one_of(st.sampled_from(["0", "x", -1, "", True, 1.5]),
                                                             json_values))
attribute_names = mostly(st.sampled_from(["plan", "seats", "credit", "email", "name", "total", "group_id"]),
                         st.one_of(st.text(max_size=10), st.text(alphabet="n", min_size=149, max_size=152),
                                   st.sampled_from(["objectTypeId", "object_type_id", "objectId"])))
attribute_values = mostly(st.one_of(st.sampled_from(["basic", "pro", 3, 2.5, True]), times),
                          st.one_of(json_values, st.sampled_from(["gold"]), long_text))
attributes = st.one_of(
    st.dictionaries(attribute_names, attribute_values, max_size=6),
    st.dictionaries(attribute_names, attribute_values, max_size=6),
    st.dictionaries(attribute_names, attribute_values, max_size=6),
    st.integers(295, 305).map(lambda n: {f"k{i}": i for i in range(n)}),
)


@st.composite
def group_traits(draw, clean: bool) -> dict:
    traits = draw(attributes)
    type_id = st.sampled_from(["1", "2", 2, 3]) if clean else type_ids
    for key, strategy in (("objectTypeId", type_id), ("object_type_id", type_id),
                          ("objectAttributes", mostly(attributes, json_values)),
                          ("relationshipAttributes", mostly(attributes, json_values))):
        if draw(st.integers(0, 3)) == 0:
            traits[key] = draw(strategy)
    return traits


def maybe(draw, body: dict, key: str, strategy, chance: int = 2) -> None:
    if draw(st.integers(0, chance - 1)) == 0:
        body[key] = draw(strategy)


@st.composite
def spec_messages(draw, clean: bool = True) -> dict:
    """A spec message; `clean` ones have a known type, a person and a time (their traits and ids may still be
    anything), the others may be broken anywhere."""
    person_ids = st.sampled_from(POOL[:3]) if clean else ids
    kinds = ["identify", "track", "track", "page", "screen", "group", "group", "alias"]
    kind = draw(st.sampled_from(kinds) if clean else st.sampled_from([*kinds, "Track", "GROUP", "purchase", ""]))
    body: dict = {"type": kind}
    maybe(draw, body, "anonymousId", person_ids)
    maybe(draw, body, "userId", person_ids, 1 if clean and "anonymousId" not in body or kind == "alias" else 2)
    maybe(draw, body, draw(st.sampled_from(["timestamp", "timestamp", "originalTimestamp", "sentAt"])),
          near_times if clean else st.one_of(times, st.sampled_from(["yesterday", "", 0])), 1)
    maybe(draw, body, "messageId", mostly(st.uuids().map(str), st.sampled_from(["m1", "m2", ""])))
    maybe(draw, body, "writeKey", st.sampled_from(["wk_billing", "wk_web", "wk_unknown"]), 4)
    context: dict = {}
    maybe(draw, context, "groupId", group_ids, 6)
    maybe(draw, context, "traits", attributes, 4)
    if context or (not clean and draw(st.integers(0, 9)) == 0):
        body["context"] = context if context else draw(json_values)
    kind = kind.lower()
    if kind == "group":
        maybe(draw, body, "groupId", st.sampled_from(GROUPS) if clean else group_ids, 1 if clean else 2)
        maybe(draw, body, "traits", group_traits(clean), 1)
    elif kind in ("track", "page", "screen"):
        props = draw(attributes)
        for key, strategy in (("group_id", group_ids), ("objectId", group_ids if not clean else
                                                                 st.sampled_from(GROUPS)), ("objectTypeId", type_ids),
                              ("url", st.text(max_size=20))):
            maybe(draw, props, key, strategy, 4)
        body["properties"] = props
        names = st.sampled_from(["Order Placed", "Order Placed", "Viewed", "Relationship Deleted", "Object Deleted"])
        body["event"] = draw(names if clean else st.one_of(names, st.text(max_size=10), json_scalars))
        maybe(draw, body, "name", st.text(max_size=10))
    elif kind == "identify":
        maybe(draw, body, "traits", attributes, 1)
    elif kind == "alias":
        maybe(draw, body, "previousId", person_ids, 1 if clean else 2)
    return body


envelopes = st.fixed_dictionaries(
    {"batch": st.lists(st.one_of(spec_messages(), spec_messages(clean=False), json_values), max_size=5)},
    optional={"context": json_values, "integrations": json_values,
              "writeKey": st.sampled_from(["wk_billing", "wk_web", "nope"])},
)
payloads = st.one_of(spec_messages(), spec_messages(), spec_messages(clean=False), envelopes)
lines = st.one_of(st.binary(max_size=40), json_values.map(orjson.dumps), *[payloads.map(orjson.dumps)] * 4)


def received_count(line: bytes) -> int:
    """Messages a line holds, as docs/contract.md counts them: a batch's object members once each, and all its members
    that are not objects together once (so 250k stray values cost one record); anything else once."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return 1
    if isinstance(obj, dict) and "type" not in obj and isinstance(obj.get("batch"), list):
        objects = sum(isinstance(member, dict) for member in obj["batch"])
        return objects + (objects < len(obj["batch"]))
    return 1


# --- the Customer.io limits, checked independently of plugin/customerio/limits.py -------------------------------------

PERSON_KEYS = {"id", "email", "cio_id", "anonymous_id"}
_TYPE_ID = re.compile(r"[1-9][0-9]*")


def _bytes(value) -> int:
    return len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))


def check_person(ids) -> None:
    assert isinstance(ids, dict) and len(ids) == 1 and set(ids) <= PERSON_KEYS, ids
    (value,) = ids.values()
    assert isinstance(value, str) and value and len(value.encode()) <= 150, ids


def check_object(ids) -> None:
    assert isinstance(ids, dict) and set(ids) == {"object_type_id", "object_id"}, ids
    assert isinstance(ids["object_type_id"], str) and _TYPE_ID.fullmatch(ids["object_type_id"]), ids
    assert isinstance(ids["object_id"], str) and ids["object_id"] and len(ids["object_id"].encode()) <= 150, ids


def check_attributes(attrs) -> None:
    assert isinstance(attrs, dict) and len(attrs) <= 300
    for name, value in attrs.items():
        assert len(name.encode()) <= 150, name
        assert _bytes(value) <= 1000, (name, _bytes(value))


def check_operation(op: dict) -> None:
    """One Track API v2 operation within customerio.md's limits (attribute limits: people, objects, relationships)."""
    assert len(orjson.dumps(op)) <= 32 * 1024
    kind, action = op["type"], op["action"]
    assert kind in ("person", "object")
    if action == "merge":
        check_person(op["primary"])
        check_person(op["secondary"])
        return
    (check_person if kind == "person" else check_object)(op["identifiers"])
    if action in ("event", "page", "screen"):
        assert isinstance(op["name"], str) and isinstance(op["timestamp"], int) and len(op["id"]) == 26
    if action in ("identify", "identify_anonymous"):
        check_attributes(op.get("attributes", {}))
    for link in op.get("cio_relationships", ()):
        (check_object if kind == "person" else check_person)(link["identifiers"])
        check_attributes(link.get("relationship_attributes", {}))
    if kind == "object":
        assert "anonymous_id" not in op.get("attributes", {})


# --- properties ------------------------------------------------------------------------------------------------

def run_replay(cfg, payload_lines: list[bytes], source: str | None = None):
    """(summary, output folder, its TemporaryDirectory) of a replay of `payload_lines`."""
    tmp = tempfile.TemporaryDirectory()
    summary = Replay(cfg, tmp.name, source).run((line, None) for line in payload_lines)
    return summary, Path(tmp.name), tmp


@pytest.mark.parametrize("name", sorted(CONFIGS))
@SETTINGS
@given(batch=st.lists(lines, max_size=12), source=st.sampled_from([None, "web", "billing"]))
def test_replay_of_any_lines_balances_and_emits_only_valid_operations(name, batch, source):
    summary, out, tmp = run_replay(CONFIGS[name], batch, source)
    with tmp:
        assert summary["received"] == sum(map(received_count, batch))
        assert summary["received"] == summary["forwarded"] + summary["quarantined"]
        assert "internal_error" not in summary["violations"], (out / "quarantine.jsonl").read_text()
        assert sum(summary["resolution"].values()) == summary["forwarded"]
        forwarded = (out / "forwarded.jsonl").read_bytes().splitlines()
        quarantined = (out / "quarantine.jsonl").read_bytes().splitlines()
        assert (len(forwarded), len(quarantined)) == (summary["forwarded"], summary["quarantined"])
        for line in forwarded:
            info = orjson.loads(line)["context"]["groupspec"]
            assert info["resolution"] in ("explicit", "property", "membership", "unresolved")
            assert info["contract"] == "p1"
        for line in quarantined:
            rec = orjson.loads(line)
            assert rec["violations"] and {"message", "source", "violations", "received_at"} <= set(rec) <= {
                "message", "source", "violations", "received_at", "type", "envelope", "receipt"}  # what the door gave
        for line in (out / "customerio.jsonl").read_bytes().splitlines():
            check_operation(orjson.loads(line))


@SETTINGS
@given(batch=st.lists(lines, max_size=8))
def test_replay_is_deterministic(batch):
    first, out1, tmp1 = run_replay(CONFIGS["default"], batch)
    second, out2, tmp2 = run_replay(CONFIGS["default"], batch)
    with tmp1, tmp2:
        assert first == second
        for name in ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl"):
            assert (out1 / name).read_bytes() == (out2 / name).read_bytes()


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(lines, max_size=10))
def test_the_replay_command_balances_any_file(batch):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "groupspec.toml").write_text(BASE)
        (folder / "in.jsonl").write_bytes(b"\n".join(batch))
        assert main(["replay", str(folder / "in.jsonl"), "--config", str(folder / "groupspec.toml"),
                     "--out", str(folder / "out")]) == 0
        summary = orjson.loads((folder / "out" / "summary.json").read_bytes())
        physical = [part.rstrip(b"\r") for line in batch for part in line.split(b"\n")]
        assert summary["received"] == sum(received_count(p) for p in physical if p.strip())
        assert summary["received"] == summary["forwarded"] + summary["quarantined"]
        assert "internal_error" not in summary["violations"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(SETTINGS, max_examples=examples(100))
@given(batch=st.lists(payloads, min_size=1, max_size=8), source=st.sampled_from([None, "web", "billing"]))
def test_the_callers_dicts_are_never_mutated(name, batch, source):
    pipeline = Engine(CONFIGS[name], open_store("memory://"), destination=CUSTOMERIO, clock=lambda: 1767225600.0)
    before = copy.deepcopy(batch)
    for payload in batch:
        out = pipeline.run(payload, source)
        assert all(not any(v["code"] == "internal_error" for v in m.violations) for m in out)
        members = payload["batch"] if "batch" in payload and "type" not in payload else [payload]
        strays = [m for m in members if not isinstance(m, dict)]  # one message together, where the first was
        if len(strays) > 1:
            first = next(i for i, m in enumerate(members) if not isinstance(m, dict))
            members = [m for m in members[:first] if isinstance(m, dict)] + [strays] + [
                m for m in members[first:] if isinstance(m, dict)]
        assert [m.original for m in out] == members  # the original is what the caller sent
        for m in out:
            if not m.quarantined:
                check_body_is_a_copy(m)
    assert batch == before


def check_body_is_a_copy(msg) -> None:
    """Every forwarded body is its own: enriching it later never reaches the caller's dict."""
    original = msg.original
    if isinstance(original, dict):
        assert msg.body is not original
        if isinstance(original.get("context"), dict):
            assert msg.body["context"] is not original["context"]


def message_ids(line: bytes) -> list:
    """The messageIds a line's messages carry (a message without one: its own line, as its id derives from it)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return []
    members = obj["batch"] if isinstance(obj, dict) and "type" not in obj and isinstance(obj.get("batch"), list) \
        else [obj]
    return [m.get("messageId") or orjson.dumps(m) if isinstance(m, dict) else None for m in members]


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(lines, max_size=12))
@example(batch=[  # a track and a group call sharing messageId m1 (issue 9, item 4)
    b'{"type":"track","userId":"u1","event":"Order Placed","messageId":"m1","timestamp":"2026-01-01T00:00:00Z"}',
    b'{"type":"group","userId":"u1","groupId":"hh_1","messageId":"m1","timestamp":"2026-01-01T00:00:00Z"}',
])
@example(batch=[  # the same messageId from two sources; an event of the person in between
    b'{"type":"track","anonymousId":"u1","timestamp":"2026-01-01T00:00:00Z","messageId":"m1","writeKey":"wk_billing",'
    b'"properties":{"group_id":"hh_1"},"event":"Order Placed"}',
    b'{"type":"track","anonymousId":"u1","userId":"u1","timestamp":"2026-01-01T00:00:00Z","messageId":"e3",'
    b'"event":"Order Placed"}',
    b'{"type":"group","anonymousId":"u1","timestamp":"2026-01-01T00:00:00Z","messageId":"m1","groupId":"hh_1"}',
])
def test_replaying_twice_on_sqlite_repeats_its_outputs(batch):
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/gs.db"
        outputs = []
        for run, url in (("memory", "memory://"), ("first", store), ("second", store)):
            Replay(CONFIGS["default"], f"{tmp}/{run}", store_url=url).run((line, None) for line in batch)
            outputs.append({name: Path(f"{tmp}/{run}/{name}").read_bytes()
                            for name in ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json")})
        assert outputs[1] == outputs[2]
        ids = [i for line in batch for i in message_ids(line) if i is not None]
        if len(ids) == len(set(ids)):  # a persistent store takes a repeated messageId for a replay of the first
            assert outputs[0] == outputs[1]
