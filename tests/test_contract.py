"""The contract: every violation code with each action it allows and what that does to the forwarded message
and the quarantine; stale updates per attribute; ownership per source; replays that repeat exactly."""

from __future__ import annotations

import copy

import orjson
import pytest
from core_support import Chain, at, codes, group, identify, left, track, unix
from groupspec.middleware import Engine
from groupspec.middleware.stores import StoreError
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.mapping import CUSTOMERIO

TRAITS = """
[contract.group_traits]
plan = { type = "string", enum = ["basic", "pro"] }
seats = { type = "integer" }
renews_at = { type = "timestamp" }
credit = { type = "number", owner = "billing" }
vip = {}
[sources.billing]
write_key = "wk_billing"
[sources.web]
write_key = "wk_web"
"""


def chain(code: str, action: str, extra: str = "") -> Chain:
    return Chain(f'[contract]\n{extra}\n[contract.actions]\n{code} = "{action}"\n{TRAITS}')


def violations_of(msg) -> list[str]:
    return [v["code"] for v in msg.body["context"]["groupspec"]["violations"]]


def assert_quarantined(msg, code: str) -> None:
    assert msg.quarantined and code in codes(msg), msg.violations
    assert msg.ops == []


# --- missing_group_id ---------------------------------------------------------------------------------------------

def test_missing_group_id_flag_forwards_with_the_violation():
    c = chain("missing_group_id", "flag", 'require_group = ["Order Placed"]')
    msg = c.one(track("u", "Order Placed", 1))
    assert not msg.quarantined and violations_of(msg) == ["missing_group_id"]
    assert msg.violations[0]["field"] == "context.groupId"
    assert msg.ops[0]["action"] == "event"
    assert violations_of(c.one(track("u", "Page Viewed", 1))) == []  # not required


def test_missing_group_id_drop_quarantines():
    c = chain("missing_group_id", "drop", 'require_group = ["*"]')
    assert_quarantined(c.one(track("u", "Anything", 1)), "missing_group_id")


def test_a_required_event_that_resolves_by_membership_is_not_missing():
    c = chain("missing_group_id", "drop", 'require_group = ["*"]')
    c.run(group("u", "hh_1", 0))
    msg = c.one(track("u", "Order Placed", 1))
    assert not msg.quarantined and violations_of(msg) == []


def test_missing_group_id_is_only_for_track_events():
    c = chain("missing_group_id", "drop", 'require_group = ["*"]')
    assert not c.one(identify("u", 1)).quarantined
    assert not c.one({"type": "page", "userId": "u", "name": "Home"}).quarantined


# --- invalid_group_id ---------------------------------------------------------------------------------------------

PATTERN = 'group_id_pattern = "^hh_[a-z0-9]+$"'


@pytest.mark.parametrize("bad", ["bob@example.com", "https://x.test/hh_1", "hh 1", "hh_1\n", "HH_1", "h" * 151])
def test_invalid_group_ids_are_found(bad):
    c = chain("invalid_group_id", "drop", PATTERN)
    assert_quarantined(c.one(track("u", days=1, context={"groupId": bad})), "invalid_group_id")


def test_an_over_150_byte_id_is_invalid_even_without_a_pattern():
    c = chain("invalid_group_id", "drop")
    assert_quarantined(c.one(group("u", "é" * 76, 1)), "invalid_group_id")  # 152 bytes, 76 characters
    assert not c.one(group("u", "h" * 150, 1)).quarantined


def test_invalid_group_id_flag_forwards_the_id_with_the_violation():
    c = chain("invalid_group_id", "flag", PATTERN)
    msg = c.one(track("u", days=1, properties={"group_id": "XX"}))
    assert not msg.quarantined and violations_of(msg) == ["invalid_group_id"]
    assert msg.violations[0]["field"] == "properties.group_id"
    assert msg.body["context"]["groupId"] == "XX" and msg.ops[0]["attributes"]["group_id"] == "XX"


def test_invalid_group_id_strip_removes_the_id_and_resolves_from_membership():
    c = chain("invalid_group_id", "strip", PATTERN)
    c.run(group("u", "hh_1", 0))
    explicit = c.one(track("u", days=1, context={"groupId": "bob@example.com"}))
    prop = c.one(track("u", days=1, properties={"group_id": "XX", "total": 3}))
    for msg in (explicit, prop):
        assert not msg.quarantined and violations_of(msg) == ["invalid_group_id"]
        assert msg.resolution == "membership" and msg.body["context"]["groupId"] == "hh_1"
        assert msg.ops[0]["attributes"]["group_id"] == "hh_1"
    assert prop.body["properties"] == {"total": 3}
    assert prop.original["properties"] == {"group_id": "XX", "total": 3}  # the original is untouched


def test_invalid_group_id_drop_quarantines_the_original():
    c = chain("invalid_group_id", "drop", PATTERN)
    payload = track("u", days=1, context={"groupId": "bob@example.com"})
    msg = c.one(copy.deepcopy(payload))
    assert_quarantined(msg, "invalid_group_id")
    assert msg.original == payload


@pytest.mark.parametrize(("action", "quarantined"), [("flag", False), ("strip", True), ("drop", True)])
def test_on_a_group_call_the_id_is_the_subject_so_strip_drops(action, quarantined):
    c = chain("invalid_group_id", action, PATTERN)
    msg = c.one(group("u", "bob@example.com", 1))
    assert msg.quarantined is quarantined and codes(msg) == ["invalid_group_id"]


@pytest.mark.parametrize("where", ["context", "properties"])
def test_a_flagged_non_string_group_id_on_an_event_does_not_crash(where):
    c = chain("invalid_group_id", "flag", 'attach_group_traits = ["plan"]')
    body = track("u", days=1, **({"context": {"groupId": [1]}} if where == "context"
                                 else {"properties": {"group_id": [1]}}))
    msg = c.one(body)
    assert not msg.quarantined and codes(msg) == ["invalid_group_id"], msg.violations


def test_an_invalid_group_call_teaches_no_membership():
    c = chain("invalid_group_id", "drop", PATTERN)
    c.run(group("u", "XX", 1))
    assert c.one(track("u", days=2)).resolution == "unresolved"


# --- group_id_conflict -------------------------------------------------------------------------------------------

def test_a_conflict_needs_known_memberships():
    c = chain("group_id_conflict", "drop")
    assert not c.one(track("u", days=1, context={"groupId": "hh_2"})).quarantined  # nothing known: no conflict
    c.run(group("u", "hh_1", 0))
    assert not c.one(track("u", days=1, context={"groupId": "hh_1"})).quarantined  # a member: no conflict
    assert_quarantined(c.one(track("u", days=1, context={"groupId": "hh_2"})), "group_id_conflict")


def test_a_conflict_is_judged_at_the_events_time():
    c = chain("group_id_conflict", "drop")
    c.run(group("u", "hh_1", 1), left("u", "hh_1", 3), group("u", "hh_2", 3))
    assert not c.one(track("u", days=2, context={"groupId": "hh_1"})).quarantined
    assert c.one(track("u", days=4, context={"groupId": "hh_1"})).quarantined


def test_group_id_conflict_flag_keeps_the_explicit_id():
    c = chain("group_id_conflict", "flag")
    c.run(group("u", "hh_1", 0))
    msg = c.one(track("u", days=1, context={"groupId": "hh_2"}))
    assert not msg.quarantined and violations_of(msg) == ["group_id_conflict"]
    assert msg.body["context"]["groupId"] == "hh_2" and msg.resolution == "explicit"


def test_group_id_conflict_strip_uses_the_membership_instead():
    c = chain("group_id_conflict", "strip")
    c.run(group("u", "hh_1", 0))
    msg = c.one(track("u", days=1, context={"groupId": "hh_2"}))
    assert not msg.quarantined and violations_of(msg) == ["group_id_conflict"]
    assert msg.body["context"]["groupId"] == "hh_1" and msg.resolution == "membership"
    assert msg.ops[0]["attributes"]["group_id"] == "hh_1"


def test_by_default_a_conflicting_id_is_kept_out_and_the_event_still_goes():
    """Issue 18: `group_id_conflict` strips by default: the conflicting id never reaches Customer.io; the event
    goes, resolved by the person's membership."""
    c = Chain(f"[contract]\n{TRAITS}")
    c.run(group("u", "hh_1", 0))
    msg = c.one(track("u", days=1, context={"groupId": "hh_2"}))
    assert not msg.quarantined and violations_of(msg) == ["group_id_conflict"]
    assert msg.body["context"]["groupId"] == "hh_1" and msg.resolution == "membership"
    assert [op["attributes"]["group_id"] for op in msg.ops] == ["hh_1"]
    assert "hh_2" not in orjson.dumps(msg.ops).decode()


def test_a_group_call_joining_a_new_group_is_no_conflict():
    c = chain("group_id_conflict", "drop")
    c.run(group("u", "hh_1", 0))
    assert not c.one(group("u", "hh_2", 1)).quarantined


# --- group_trait_on_person ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["traits", "context.traits"])
def test_group_trait_on_person_strip_removes_only_the_group_traits(where):
    c = chain("group_trait_on_person", "strip")
    person = {"plan": "pro", "name": "Ada", "vip": True}
    payload = identify("u", 1, **({"traits": person} if where == "traits" else {"context": {"traits": person}}))
    msg = c.one(copy.deepcopy(payload))
    assert not msg.quarantined
    assert sorted(v["field"] for v in msg.violations) == [f"{where}.plan", f"{where}.vip"]
    holder = msg.body["traits"] if where == "traits" else msg.body["context"]["traits"]
    assert holder == {"name": "Ada"}
    # Segment's createUpdatePerson reads person attributes from `traits` only (issue #19 item 3)
    assert msg.ops[0]["attributes"] == ({"name": "Ada"} if where == "traits" else {})
    assert msg.original == payload


def test_group_trait_on_person_flag_forwards_them_but_never_as_person_attributes():
    c = chain("group_trait_on_person", "flag")
    msg = c.one(identify("u", 1, traits={"plan": "pro", "name": "Ada"}))
    assert not msg.quarantined and violations_of(msg) == ["group_trait_on_person"]
    assert msg.body["traits"] == {"plan": "pro", "name": "Ada"}
    assert msg.ops[0]["attributes"] == {"name": "Ada"}  # the mapping leaves group-owned traits off people


def test_group_trait_on_person_drop_quarantines():
    c = chain("group_trait_on_person", "drop")
    assert_quarantined(c.one(identify("u", 1, traits={"seats": 3})), "group_trait_on_person")
    assert not c.one(identify("u", 1, traits={"name": "Ada"})).quarantined


def test_group_traits_on_a_group_call_are_where_they_belong():
    c = chain("group_trait_on_person", "drop")
    assert not c.one(group("u", "hh_1", 1, plan="pro")).quarantined


# --- invalid_group_trait -----------------------------------------------------------------------------------------

def test_by_default_an_invalid_group_trait_is_kept_out_and_the_group_call_still_goes():
    """Issue 18: `invalid_group_trait` strips by default: the bad value never reaches Customer.io (nor the store);
    the group call goes with its other traits."""
    c = Chain(f"[contract]\n{TRAITS}")
    msg = c.one(group("u", "hh_1", 1, plan="actve", seats=3, credit="12.50"), source="billing")
    assert not msg.quarantined and sorted(violations_of(msg)) == ["invalid_group_trait", "invalid_group_trait"]
    assert "plan" not in msg.body["traits"] and "credit" not in msg.body["traits"] and msg.body["traits"]["seats"] == 3
    (op,) = msg.ops
    assert op["attributes"] == {"seats": 3}
    assert c.store.traits_at("1", "hh_1", ["plan", "credit", "seats"], unix(2)) == {"seats": 3}


@pytest.mark.parametrize(("name", "value"), [
    ("plan", "gold"),            # not in the enum
    ("plan", 3),                 # not a string
    ("seats", 2.5),              # not an integer
    ("seats", True),             # a bool is not an integer
    ("renews_at", "soon"),       # not a timestamp
])
def test_invalid_group_traits_are_found(name, value):
    c = chain("invalid_group_trait", "drop")
    msg = c.one(group("u", "hh_1", 1, **{name: value}))
    assert_quarantined(msg, "invalid_group_trait")
    assert msg.violations[0]["field"] == f"traits.{name}"


@pytest.mark.parametrize(("name", "value"), [
    ("plan", "basic"), ("seats", 4), ("renews_at", "2026-03-01T00:00:00Z"), ("renews_at", 1767225600),
    ("vip", {"any": "thing"}), ("plan", None),
])
def test_valid_group_traits_pass(name, value):
    c = chain("invalid_group_trait", "drop")
    assert not c.one(group("u", "hh_1", 1, **{name: value})).quarantined


def test_invalid_group_trait_flag_forwards_the_value():
    c = chain("invalid_group_trait", "flag")
    msg = c.one(group("u", "hh_1", 1, plan="gold", seats=2))
    assert not msg.quarantined and violations_of(msg) == ["invalid_group_trait"]
    assert msg.ops[0]["attributes"] == {"plan": "gold", "seats": 2}


def test_invalid_group_trait_strip_removes_only_the_bad_trait():
    c = chain("invalid_group_trait", "strip")
    msg = c.one(group("u", "hh_1", 1, plan="gold", seats=2))
    assert not msg.quarantined and violations_of(msg) == ["invalid_group_trait"]
    assert msg.body["traits"] == {"seats": 2} and msg.ops[0]["attributes"] == {"seats": 2}


def test_invalid_group_trait_strip_reaches_segments_nested_object_attributes():
    c = chain("invalid_group_trait", "strip")
    msg = c.one(group("u", "hh_1", 1, objectAttributes={"plan": "gold", "seats": 2}))
    assert msg.ops[0]["attributes"] == {"seats": 2}


# --- stale_group_update ------------------------------------------------------------------------------------------

def test_stale_group_update_strip_drops_only_the_older_attributes():
    c = chain("stale_group_update", "strip", 'attach_group_traits = ["plan", "vip"]')
    c.run(group("u", "hh_1", 2, plan="pro"))
    msg = c.one(group("u", "hh_1", 1, plan="basic", vip="gold"))  # plan is older than day 2's; vip is new
    assert not msg.quarantined and violations_of(msg) == ["stale_group_update"]
    assert msg.violations[0]["field"] == "traits.plan"
    assert msg.ops[0]["attributes"] == {"vip": "gold"}
    assert c.one(track("u", days=3)).body["context"]["groupspec"]["group_traits"] == {"plan": "pro", "vip": "gold"}
    # the snapshot at day 1.5: the stale plan was not sent, but it is the value in force then (issue 17, item 10)
    assert c.one(track("u", days=1.5)).body["context"]["groupspec"]["group_traits"] == {"plan": "basic", "vip": "gold"}


def test_stale_group_update_flag_forwards_with_the_violation_and_newest_still_wins():
    c = chain("stale_group_update", "flag", 'attach_group_traits = ["plan"]')
    c.run(group("u", "hh_1", 2, plan="pro"))
    msg = c.one(group("u", "hh_1", 1, plan="basic"))
    assert not msg.quarantined and violations_of(msg) == ["stale_group_update"]
    assert msg.ops[0]["attributes"] == {"plan": "basic"}
    assert c.one(track("u", days=3)).body["context"]["groupspec"]["group_traits"] == {"plan": "pro"}


def test_stale_group_update_drop_quarantines():
    c = chain("stale_group_update", "drop")
    c.run(group("u", "hh_1", 2, plan="pro"))
    assert_quarantined(c.one(group("u", "hh_1", 1, plan="basic")), "stale_group_update")
    assert not c.one(group("u", "hh_1", 3, plan="basic")).quarantined  # newer: fine


def test_staleness_is_per_group_and_per_object_type():
    c = chain("stale_group_update", "drop")
    c.run(group("u", "hh_1", 2, plan="pro"))
    assert not c.one(group("u", "hh_2", 1, plan="basic")).quarantined
    assert not c.one(group("u", "hh_1", 1, plan="basic", objectTypeId="2")).quarantined


def test_a_trait_stripped_by_an_earlier_check_is_not_also_reported_stale():
    c = Chain(f'[contract]\n[contract.actions]\ninvalid_group_trait = "strip"\nstale_group_update = "flag"\n{TRAITS}')
    c.run(group("u", "hh_1", 2, plan="pro", seats=3))
    msg = c.one(group("u", "hh_1", 1, plan="basic", seats="many"))  # both older; seats is not even an integer
    assert [(v["code"], v["field"]) for v in msg.violations] == [
        ("invalid_group_trait", "traits.seats"), ("stale_group_update", "traits.plan")]


def test_the_same_group_call_twice_is_not_stale():
    c = chain("stale_group_update", "drop")
    payload = {**group("u", "hh_1", 2, plan="pro"), "messageId": "m-1"}
    assert not c.one(dict(payload)).quarantined
    assert not c.one(dict(payload)).quarantined


# --- invalid_object_type -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_id", ["households", "0", 0, -2, "1.5", 1.5, True, "", " 1"])
def test_invalid_object_type_drop_quarantines(type_id):
    c = chain("invalid_object_type", "drop")
    assert_quarantined(c.one(group("u", "hh_1", 1, objectTypeId=type_id)), "invalid_object_type")


@pytest.mark.parametrize("type_id", ["2", 2, "15"])
def test_positive_integer_type_ids_pass_as_strings(type_id):
    msg = chain("invalid_object_type", "drop").one(group("u", "hh_1", 1, object_type_id=type_id))
    assert msg.ops[0]["identifiers"] == {"object_type_id": str(type_id), "object_id": "hh_1"}


def test_invalid_object_type_on_an_object_event_is_found():
    c = chain("invalid_object_type", "drop")
    assert_quarantined(c.one(left("u", "hh_1", 1, type_id="abc")), "invalid_object_type")


def test_invalid_object_type_flag_forwards_and_the_limits_keep_it_from_customer_io():
    c = chain("invalid_object_type", "flag")
    bare = Engine(c.config, MemoryStore())  # without the Customer.io mapping: forwarded, flagged
    (msg,) = bare.run(group("u", "hh_1", 1, objectTypeId="households"))
    assert not msg.quarantined and violations_of(msg) == ["invalid_object_type"]
    mapped = c.one(group("u", "hh_1", 1, objectTypeId="households"))  # no op may carry a non-numeric type id
    assert mapped.quarantined and codes(mapped) == ["invalid_object_type", "customerio_limit"]


# --- not_attribute_owner -----------------------------------------------------------------------------------------

def test_only_the_owner_source_may_write_an_owned_trait():
    c = chain("not_attribute_owner", "drop")
    assert_quarantined(c.one(group("u", "hh_1", 1, credit=5)), "not_attribute_owner")  # no source
    assert_quarantined(c.one(group("u", "hh_1", 1, credit=5), source="web"), "not_attribute_owner")
    assert not c.one(group("u", "hh_1", 1, credit=5), source="billing").quarantined


def test_the_write_key_selects_the_owner_source_over_the_default():
    c = chain("not_attribute_owner", "drop")
    assert not c.one({**group("u", "hh_1", 1, credit=5), "writeKey": "wk_billing"}, source="web").quarantined
    assert c.one({**group("u", "hh_1", 1, credit=5), "writeKey": "wk_web"}, source="billing").quarantined
    # an unknown write key falls back to the given source
    assert not c.one({**group("u", "hh_1", 1, credit=5), "writeKey": "wk_x"}, source="billing").quarantined


def test_not_attribute_owner_strip_removes_only_the_owned_trait():
    c = chain("not_attribute_owner", "strip")
    msg = c.one(group("u", "hh_1", 1, credit=5, plan="pro"), source="web")
    assert not msg.quarantined and violations_of(msg) == ["not_attribute_owner"]
    assert msg.ops[0]["attributes"] == {"plan": "pro"}


def test_not_attribute_owner_flag_forwards_the_value():
    c = chain("not_attribute_owner", "flag")
    msg = c.one(group("u", "hh_1", 1, credit=5), source="web")
    assert not msg.quarantined and violations_of(msg) == ["not_attribute_owner"]
    assert msg.ops[0]["attributes"] == {"credit": 5}


def test_the_owner_check_uses_the_sources_own_contract():
    c = Chain(TRAITS + '[sources.web.contract.actions]\nnot_attribute_owner = "drop"\n')
    assert c.one(group("u", "hh_1", 1, credit=5), source="web").quarantined
    assert not c.one(group("u", "hh_1", 1, credit=5)).quarantined  # [contract] default: strip


# --- malformed, store_unavailable, internal_error ------------------------------------------------------------------

def test_malformed_always_drops_whatever_the_other_actions():
    c = chain("invalid_group_id", "flag")
    assert_quarantined(c.one(b"not json"), "malformed")


class UnavailableStore(MemoryStore):
    def memberships_at(self, persons, ts, before=None):
        raise StoreError("redis at 127.0.0.1:6379 did not answer")


def test_a_store_that_cannot_answer_quarantines_with_store_unavailable():
    pipeline = Engine(Chain().config, UnavailableStore(), destination=CUSTOMERIO)
    (msg,) = pipeline.run(track("u", days=1))
    assert msg.quarantined and codes(msg) == ["store_unavailable"] and "127.0.0.1" in msg.violations[0]["message"]


def test_a_bug_in_a_step_quarantines_with_internal_error():
    def broken(msg):
        raise KeyError("oops")

    pipeline = Engine(Chain().config, MemoryStore(), steps=[broken])
    payload = track("u", days=1)
    (msg,) = pipeline.run(copy.deepcopy(payload))
    assert msg.quarantined and codes(msg) == ["internal_error"] and "KeyError" in msg.violations[0]["message"]
    assert msg.original == payload


# --- replaying twice on a persistent store -------------------------------------------------------------------------

STREAM = [
    group("alice", "hh_1", 1, plan="pro", vip="gold"),
    group("bob", "hh_1", 1.5, plan="basic", credit=4),   # credit without the owner source: stripped
    track("alice", days=2),
    group("alice", "hh_1", 0.5, plan="basic"),           # stale
    left("bob", "hh_1", 3),
    track("bob", days=2.5),                              # late: still a member then
    track("bob", days=4),
    track("alice", days=1.2, context={"groupId": "hh_9"}),  # conflict
    identify("carol", 2, anon="anon-c"),
    group(None, "hh_2", 2, anon="anon-c"),
    track("carol", days=3),
    {"type": "track", "userId": "dave", "event": "Order Placed", "timestamp": at(5), "messageId": "fixed-id"},
]


def _replay(tmp_path, name: str, store: str, lines: list[bytes]) -> dict[str, bytes]:
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    config = tmp_path / "groupspec.toml"
    config.write_text('[contract]\nversion = "t1"\nrequire_group = ["Order Placed"]\n'
                      'attach_group_traits = ["plan"]\n' + TRAITS)
    out = tmp_path / name
    assert main(["replay", str(stream), "--config", str(config), "--out", str(out), "--store", store]) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_replaying_the_same_stream_twice_on_sqlite_gives_the_same_bytes(tmp_path, capsys):
    lines = [orjson.dumps(m) for m in STREAM] + [b"garbage line"]
    store = f"sqlite:///{tmp_path / 'gs.db'}"
    first = _replay(tmp_path, "first", store, lines)
    second = _replay(tmp_path, "second", store, lines)
    hermetic = _replay(tmp_path, "memory", "memory://", lines)
    assert set(first) == {"forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json"}
    assert first == second
    assert first == hermetic  # a fresh persistent store answers as the hermetic run
    summary = orjson.loads(first["summary.json"])
    assert summary["violations"]["stale_group_update"] == 1
    assert summary["violations"]["not_attribute_owner"] == 1
    assert summary["violations"]["group_id_conflict"] == 1


def test_a_group_call_quarantined_by_a_limit_replays_the_same_on_sqlite(tmp_path, capsys):
    lines = [orjson.dumps(group("alice", "hh_1", 1, plan="pro", notes="x" * 1001)),  # over 1000 bytes: quarantined
             orjson.dumps(group("alice", "hh_1", 2, plan="basic"))]
    store = f"sqlite:///{tmp_path / 'gs.db'}"
    assert _replay(tmp_path, "first", store, lines) == _replay(tmp_path, "second", store, lines)


def test_a_failing_step_logs_its_traceback_once_per_kind(caplog):
    def broken(msg):
        raise KeyError("oops")

    pipeline = Engine(Chain().config, MemoryStore(), steps=[broken])
    with caplog.at_level("ERROR", logger="groupspec"):
        for day in range(3):
            (msg,) = pipeline.run(track("u", days=day))
            assert codes(msg) == ["internal_error"] and msg.violations[0]["field"] == "broken"
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_a_stale_set_the_lookup_gave_for_another_group_is_not_used(monkeypatch):
    from groupspec.middleware import resolve

    c = chain("stale_group_update", "flag")
    c.run(group("u", "hh_1", 2, plan="pro"))
    # the lookup is asked about another group than the checks settle on: its answer is set aside, the store asked
    monkeypatch.setattr(resolve, "group_call_target", lambda msg: (("1", "hh_other"), ["plan"]))
    assert codes(c.one(group("u", "hh_1", 1, plan="basic"))) == ["stale_group_update"]
