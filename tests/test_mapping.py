"""Spec messages -> Customer.io Track API v2 operations: every row of SPEC.md's table, the identifier rules,
the event ULID, and the Track API limits (quarantined as `customerio_limit`)."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import ulid
from core_support import Chain, at, codes, deleted, group, identify, left, track, unix
from groupspec.middleware.message import message_key, parse_time
from groupspec.plugin.customerio.mapping import event_id

OWNED = '[contract.group_traits]\nplan = {}\n'


def op_of(payload, toml: str = OWNED, source=None) -> dict:
    msg = Chain(toml).one(payload, source=source)
    assert not msg.quarantined, msg.violations
    (op,) = msg.ops
    return op


# --- the table -----------------------------------------------------------------------------------------------------

def test_identify_is_a_person_identify_without_group_owned_traits_plus_the_anonymous_id():
    op = op_of(identify("u1", 1, anon="a1", traits={"name": "Ada", "plan": "pro", "signed_up": at(0)}))
    assert op == {"type": "person", "action": "identify", "identifiers": {"id": "u1"},
                  "attributes": {"name": "Ada", "signed_up": unix(0), "anonymous_id": "a1"},
                  "timestamp": unix(1)}


def test_an_anonymous_identify_writes_no_anonymous_id_attribute():
    op = op_of(identify(None, 1, anon="a1", traits={"name": "Ada"}))
    assert op["identifiers"] == {"anonymous_id": "a1"} and op["attributes"] == {"name": "Ada"}


def test_track_is_a_person_event_with_properties_group_id_and_the_group_trait_snapshot():
    chain = Chain('[contract]\nattach_group_traits = ["status"]\n[contract.group_traits]\nstatus = {}\n')
    chain.run(group("u1", "hh_1", 1, status="active"), group("u1", "hh_1", 5, status="cancelled"))
    msg = chain.one({**track("u1", "Order Placed", 3, properties={"total": 12.5, "at": at(2)}), "messageId": "m-1"})
    (op,) = msg.ops
    assert op == {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "Order Placed",
                  "id": event_id(message_key(None, "u:u1", "track", "m-1"), unix(3)), "timestamp": unix(3),
                  "attributes": {"total": 12.5, "at": unix(2), "group_id": "hh_1",
                                 "group_traits": {"status": "active"}}}  # as known at day 3, not day 5


def test_an_unresolved_track_has_no_group_id_attribute():
    op = op_of(track("u1", "Viewed", 1, properties={"sku": "x"}))
    assert op["attributes"] == {"sku": "x"}


def test_page_is_a_person_page_named_by_its_url():
    op = op_of({"type": "page", "userId": "u1", "name": "Home", "timestamp": at(1),
                "properties": {"url": "https://shop.test/", "title": "Shop"}})
    assert (op["type"], op["action"], op["name"]) == ("person", "page", "https://shop.test/")
    assert op["attributes"] == {"url": "https://shop.test/", "title": "Shop"} and op["timestamp"] == unix(1)
    from_context = op_of({"type": "page", "userId": "u1", "context": {"page": {"url": "https://c.test/"}}})
    assert from_context["name"] == "https://c.test/"


def test_screen_is_a_person_screen_named_by_its_name():
    op = op_of({"type": "screen", "anonymousId": "a1", "name": "Cart", "properties": {"items": 2}})
    assert (op["type"], op["action"], op["name"]) == ("person", "screen", "Cart")
    assert op["identifiers"] == {"anonymous_id": "a1"} and op["attributes"] == {"items": 2}
    assert len(op["id"]) == 26


def test_group_is_an_object_identify_with_the_relationship_to_the_person():
    op = op_of(group("u1", "hh_1", 1, anon="a1", name="The Smiths", objectTypeId=2, since=at(0),
                     relationshipAttributes={"role": "owner", "joined": at(0)}))
    assert op == {"type": "object", "action": "identify",
                  "identifiers": {"object_type_id": "2", "object_id": "hh_1"},
                  "attributes": {"name": "The Smiths", "since": unix(0)},  # no anonymous_id on objects
                  "cio_relationships": [{"identifiers": {"id": "u1"},
                                         "relationship_attributes": {"role": "owner", "joined": unix(0)}}]}


@pytest.mark.parametrize(("traits", "type_id"), [
    ({"objectTypeId": 3}, "3"), ({"objectTypeId": "3"}, "3"), ({"object_type_id": 4}, "4"), ({}, "7"),
])
def test_the_object_type_id_is_always_a_string(traits, type_id):
    op = op_of(group("u1", "hh_1", 1, **traits), '[contract]\ndefault_object_type_id = 7')
    assert op["identifiers"]["object_type_id"] == type_id
    assert "objectTypeId" not in op["attributes"] and "object_type_id" not in op["attributes"]


def test_the_source_default_object_type_applies():
    toml = '[sources.b2b]\nwrite_key = "k"\n[sources.b2b.contract]\ndefault_object_type_id = "5"\n'
    assert op_of(group("u1", "acct_1", 1), toml, source="b2b")["identifiers"]["object_type_id"] == "5"
    assert op_of(group("u1", "acct_1", 1), toml)["identifiers"]["object_type_id"] == "1"


def test_segments_nested_object_attributes_are_flattened_in():
    op = op_of(group("u1", "hh_1", 1, plan="pro", objectAttributes={"name": "Smiths", "renews": at(9)}))
    assert op["attributes"] == {"plan": "pro", "name": "Smiths", "renews": unix(9)}


def test_a_group_without_relationship_attributes_links_the_person_alone():
    op = op_of(group("u1", "hh_1", 1))
    assert op["cio_relationships"] == [{"identifiers": {"id": "u1"}}] and op["attributes"] == {}


def test_an_anonymous_group_call_is_identify_anonymous():
    op = op_of(group(None, "hh_1", 1, anon="a1", name="Smiths", email="family@x.test"))
    assert op["action"] == "identify_anonymous"
    assert op["cio_relationships"] == [{"identifiers": {"anonymous_id": "a1"}}]  # group traits are not the person's
    assert op["attributes"] == {"name": "Smiths", "email": "family@x.test"}


def test_a_group_call_without_a_person_updates_the_object_alone():
    chain = Chain('[contract]\nattach_group_traits = ["plan"]\n' + OWNED)
    msg = chain.one({"type": "group", "groupId": "hh_1", "traits": {"plan": "pro"}, "timestamp": at(1)})
    assert not msg.quarantined, msg.violations
    assert msg.ops == [{"type": "object", "action": "identify",
                        "identifiers": {"object_type_id": "1", "object_id": "hh_1"}, "attributes": {"plan": "pro"}}]
    chain.run(group("u1", "hh_1", 1))
    assert chain.one(track("u1", days=2)).body["context"]["groupspec"]["group_traits"] == {"plan": "pro"}


def test_relationship_deleted_is_an_object_delete_relationships_and_no_person_event():
    msg = Chain().one(left("u1", "acct_1", 1, type_id=2))
    assert msg.ops == [{"type": "object", "action": "delete_relationships",
                        "identifiers": {"object_type_id": "2", "object_id": "acct_1"},
                        "cio_relationships": [{"identifiers": {"id": "u1"}}]}]


def test_object_deleted_is_an_object_delete_and_no_person_event():
    msg = Chain().one(deleted("u1", "hh_1", 1))
    assert msg.ops == [{"type": "object", "action": "delete",
                        "identifiers": {"object_type_id": "1", "object_id": "hh_1"}}]


@pytest.mark.parametrize(("user", "previous", "primary", "secondary"), [
    ("u1", "a1", {"id": "u1"}, {"id": "a1"}),
    ("cio_abc", "old@x.test", {"cio_id": "abc"}, {"email": "old@x.test"}),
])
def test_alias_is_a_person_merge(user, previous, primary, secondary):
    op = op_of({"type": "alias", "userId": user, "previousId": previous})
    assert op == {"type": "person", "action": "merge", "primary": primary, "secondary": secondary}


# --- identifiers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    ({"userId": "cio_03000010"}, {"cio_id": "03000010"}),
    ({"userId": "ada@example.com"}, {"email": "ada@example.com"}),
    ({"userId": "ada@example.com", "anonymousId": "a1"}, {"email": "ada@example.com"}),
    ({"userId": "u-17"}, {"id": "u-17"}),
    ({"userId": "ada@localhost"}, {"id": "ada@localhost"}),  # not email-looking
    ({"userId": 17}, {"id": "17"}),
    ({"anonymousId": "a1", "traits": {"email": "ada@example.com"}}, {"email": "ada@example.com"}),
    # createUpdatePerson reads $.traits.email, never $.context.traits (issue #19 item 3)
    ({"anonymousId": "a1", "context": {"traits": {"email": "ada@example.com"}}}, {"anonymous_id": "a1"}),
    # Segment's createUpdatePerson: person id = userId, else traits.email whatever it holds; not an email -> id
    ({"anonymousId": "a1", "traits": {"email": "not an email"}}, {"id": "not an email"}),
    ({"userId": "u-17", "traits": {"email": "ada@example.com"}}, {"id": "u-17"}),
    ({"anonymousId": "a1"}, {"anonymous_id": "a1"}),
    ({"anonymousId": 99}, {"anonymous_id": "99"}),
])
def test_person_identifiers_follow_segments_destination(body, expected):
    assert op_of({"type": "identify", **body})["identifiers"] == expected


def test_events_use_the_same_identifier_rules():
    assert op_of(track("cio_9", days=1))["identifiers"] == {"cio_id": "9"}
    assert op_of(track("ada@example.com", days=1))["identifiers"] == {"email": "ada@example.com"}
    assert op_of(track(None, days=1, anon="a1"))["identifiers"] == {"anonymous_id": "a1"}


# --- timestamps ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-01T00:00:00Z", unix(0)),
    ("2026-01-01T00:00:00.999Z", unix(0)),
    ("2026-01-01T02:00:00+02:00", unix(0)),
    ("2026-01-01T00:00:00", unix(0)),  # no zone: UTC
    ("2026-01-01 00:00:00", "2026-01-01 00:00:00"),  # not ISO-8601 (space): Segment's isIsoDate leaves it
    ("not a time", "not a time"),
    ("2026", "2026"),
    (12, 12),
])
def test_iso_times_in_attributes_become_unix_seconds(value, expected):
    assert op_of(identify("u1", 1, traits={"t": value}))["attributes"] == {"t": expected}
    assert op_of(track("u1", days=1, properties={"t": value}))["attributes"] == {"t": expected}


def test_the_operation_timestamp_is_the_message_time_in_unix_seconds():
    op = op_of({"type": "track", "userId": "u", "event": "E", "originalTimestamp": "2026-01-02T03:04:05.678+00:00"})
    assert op["timestamp"] == unix(1, 3) + 4 * 60 + 5


# --- the event id -------------------------------------------------------------------------------------------------

def test_the_same_message_id_gives_the_same_event_id_and_another_a_different_one():
    payload = {**track("u1", days=1), "messageId": "0a1b2c3d-0000-4000-8000-000000000001"}
    a, b = op_of(dict(payload)), op_of(dict(payload))
    c = op_of({**payload, "messageId": "0a1b2c3d-0000-4000-8000-000000000002"})
    assert a["id"] == b["id"] != c["id"]


@pytest.mark.parametrize("ts", [at(0), "2026-07-15T12:34:56.789Z", "1999-12-31T23:59:59.001Z"])
def test_the_event_ids_time_part_is_the_event_time(ts):
    op = op_of({"type": "track", "userId": "u1", "event": "E", "timestamp": ts, "messageId": "m"})
    parsed = ulid.ULID.from_str(op["id"])
    assert str(parsed) == op["id"] and len(op["id"]) == 26
    assert parsed.milliseconds == int(parse_time(ts) * 1000)
    assert parsed.timestamp == pytest.approx(parse_time(ts), abs=0.001)


@pytest.mark.parametrize("message_id", ["m", "0a1b2c3d-0000-4000-8000-000000000001", "é" * 40, ""])
@pytest.mark.parametrize("ts", [0.0, 1.5, 1767225600.123, 281474976710.655])
def test_event_id_agrees_with_python_ulid(message_id, ts):
    millis = int(ts * 1000)
    expected = ulid.ULID.from_bytes(millis.to_bytes(6, "big") + hashlib.sha256(message_id.encode()).digest()[:10])
    assert event_id(message_id, ts) == str(expected)


def test_page_and_screen_ids_are_ulids_of_their_message_too():
    op = op_of({"type": "page", "userId": "u1", "name": "Home", "properties": {"url": "https://x.test/"},
                "timestamp": at(2), "messageId": "p-1"})
    assert op["id"] == event_id(message_key(None, "u:u1", "page", "p-1"), unix(2))


# --- limits ---------------------------------------------------------------------------------------------------------

def limited(payload, toml: str = ""):
    msg = Chain(toml).one(payload)
    assert msg.quarantined and codes(msg) == ["customerio_limit"], msg.violations
    assert msg.ops and all(v["message"] for v in msg.violations)
    return msg


@pytest.mark.parametrize("kind", ["identify", "track"])
def test_a_user_id_over_150_bytes_is_a_customerio_limit(kind):
    body = identify("u" * 151, 1) if kind == "identify" else track("u" * 151, days=1)
    limited(body)
    assert not Chain().one({**body, "userId": "u" * 150}).quarantined
    limited({**body, "userId": "é" * 76})  # 152 bytes in 76 characters


def test_an_email_or_anonymous_id_over_150_bytes_is_a_customerio_limit():
    limited(identify(f"{'a' * 140}@example.com", 1))
    limited(track(None, days=1, anon="a" * 151))


def test_an_attribute_name_over_150_bytes_is_a_customerio_limit():
    limited(identify("u1", 1, traits={"n" * 151: 1}))
    limited(group("u1", "hh_1", 1, **{"n" * 151: 1}))
    assert not Chain().one(identify("u1", 1, traits={"n" * 150: 1})).quarantined


def test_an_attribute_value_over_1000_bytes_is_a_customerio_limit():
    limited(identify("u1", 1, traits={"bio": "x" * 1001}))
    limited(group("u1", "hh_1", 1, notes="é" * 501))
    limited(group("u1", "hh_1", 1, relationshipAttributes={"notes": "x" * 1001}))
    assert not Chain().one(identify("u1", 1, traits={"bio": "x" * 1000})).quarantined


def test_over_300_attributes_is_a_customerio_limit():
    many = {f"a{i}": i for i in range(301)}
    limited(identify("u1", 1, traits=many))
    limited(group("u1", "hh_1", 1, **many))
    limited(group("u1", "hh_1", 1, relationshipAttributes=many))
    assert not Chain().one(identify("u1", 1, traits={f"a{i}": i for i in range(300)})).quarantined


def test_an_operation_over_32_kb_is_a_customerio_limit():
    # the message is under 32 KB, but the group trait snapshot makes its event operation larger
    toml = ('[contract]\nattach_group_traits = ["n0", "n1", "n2", "n3", "n4"]\n[contract.group_traits]\n'
            + "".join(f"n{i} = {{}}\n" for i in range(5)))
    chain = Chain(toml)
    chain.run(group("u1", "hh_1", 0, **{f"n{i}": "x" * 900 for i in range(5)}))
    props = {f"p{i}": "y" * 900 for i in range(34)}
    payload = track("u1", days=1, properties=props)
    assert len(orjson.dumps(payload)) < 32 * 1024
    msg = chain.one(payload)
    assert msg.quarantined and codes(msg) == ["customerio_limit"] and "32 KB" in msg.violations[0]["message"]


def test_a_limit_quarantine_keeps_the_original_and_forwards_nothing():
    chain = Chain()
    payload = group("u1", "hh_1", 1, notes="x" * 1001)
    msg = chain.one(dict(payload))
    assert msg.original == payload
    assert msg.violations[0]["field"] == "attributes.notes"
    assert chain.one(track("u1", days=2)).resolution == "unresolved"  # the store learned no membership


def test_no_anonymous_id_is_written_onto_an_object():
    op = op_of(group(None, "hh_1", 1, anon="a1", anonymous_id="a1", name="The Lees"))
    assert op["attributes"] == {"name": "The Lees"}
    assert op["cio_relationships"] == [{"identifiers": {"anonymous_id": "a1"}}]


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_a_page_or_screen_without_a_name_is_flagged_not_sent(kind):
    # Segment's trackPageView / trackScreenView require the URL / the name: nothing is sent (issue #19 item 4)
    msg = Chain().one({"type": kind, "userId": "u1", "timestamp": at(1), "properties": {"tab": "x"}})
    assert not msg.quarantined and msg.ops == [] and codes(msg) == ["not_mapped"]
