"""Messages in: the six spec types, RudderStack's variants, batch envelopes, the Segment size limits, id
normalisation, and every `malformed` case of SPEC.md's table."""

from __future__ import annotations

import copy

import orjson
import pytest
from core_support import Chain, at, codes, unix
from groupspec.middleware import Engine, open_store
from groupspec.middleware.message import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from groupspec.middleware.quarantine import record

SIX = {
    "identify": {"type": "identify", "userId": "u1", "traits": {"name": "Ada"}},
    "track": {"type": "track", "userId": "u1", "event": "Order Placed", "properties": {"total": 5}},
    "page": {"type": "page", "userId": "u1", "name": "Home", "properties": {"url": "https://x.test/"}},
    "screen": {"type": "screen", "anonymousId": "a1", "name": "Cart"},
    "group": {"type": "group", "userId": "u1", "groupId": "hh_1", "traits": {"plan": "pro"}},
    "alias": {"type": "alias", "userId": "u1", "previousId": "a1"},
}


@pytest.mark.parametrize("kind", sorted(SIX))
def test_each_spec_type_is_accepted_and_annotated(kind):
    payload = {**SIX[kind], "timestamp": at(1), "messageId": f"m-{kind}"}
    msg = Chain().one(payload)
    assert not msg.quarantined, msg.violations
    assert msg.type == kind and msg.body["type"] == kind
    assert msg.body["messageId"] == f"m-{kind}"
    assert msg.ts == unix(1)
    assert msg.body["context"]["groupspec"]["contract"] == "unversioned"
    assert msg.ops, "every forwarded spec message maps to Customer.io"


@pytest.mark.parametrize("kind", sorted(SIX))
def test_a_raw_line_parses_like_the_dict(kind):
    payload = {**SIX[kind], "timestamp": at(1), "messageId": "m1"}
    from_line = Chain().one(orjson.dumps(payload))
    from_text = Chain().one(orjson.dumps(payload).decode())
    from_dict = Chain().one(payload)
    assert from_line.body == from_text.body == from_dict.body
    assert from_line.ops == from_dict.ops


def test_the_type_is_case_insensitive_and_normalised():
    msg = Chain().one({"type": "Track", "userId": "u", "event": "E"})
    assert not msg.quarantined and msg.body["type"] == "track"


# --- RudderStack variants ------------------------------------------------------------------------------------

def test_rudderstack_identify_traits_under_context_traits_are_the_person_traits():
    # the RudderStack profiles read them there (`getFieldValueFromMessage(message, 'traits')`); Segment's does not
    for profile in ("rudderstack", "rudderstack-v2"):
        msg = Chain(f'[customerio]\ncompat = "{profile}"').one(
            {"type": "identify", "userId": "u1", "context": {"traits": {"name": "Ada", "age": 3}}, "timestamp": at(1)})
        assert not msg.quarantined
        (op,) = msg.ops
        assert op["attributes"] == {"name": "Ada", "age": 3, "_timestamp": unix(1)}


def test_original_timestamp_is_the_event_time_when_there_is_no_timestamp():
    msg = Chain().one({"type": "track", "userId": "u", "event": "E", "originalTimestamp": at(3),
                       "sentAt": at(4), "channel": "server"})
    assert msg.ts == unix(3)
    assert msg.ops[0]["timestamp"] == unix(3)


def test_timestamp_wins_over_original_timestamp_and_sent_at_is_the_last_resort():
    assert Chain().one({"type": "track", "userId": "u", "event": "E", "timestamp": at(2),
                        "originalTimestamp": at(3)}).ts == unix(2)
    assert Chain().one({"type": "track", "userId": "u", "event": "E", "sentAt": at(5)}).ts == unix(5)


def test_channel_and_unknown_top_level_keys_are_forwarded_untouched():
    msg = Chain().one({"type": "track", "userId": "u", "event": "E", "channel": "server", "rudderId": "r1"})
    assert not msg.quarantined
    assert msg.body["channel"] == "server" and msg.body["rudderId"] == "r1"


def test_a_message_without_a_time_gets_the_clock():
    chain = Chain()
    msg = chain.one({"type": "track", "userId": "u", "event": "E"})
    assert msg.ts == unix()  # Chain's clock


# --- batch envelopes ---------------------------------------------------------------------------------------------

def test_a_batch_yields_one_message_per_member_with_the_envelope_merged_in():
    envelope = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "A", "context": {"ip": "1.1.1.1"}},
            {"type": "identify", "userId": "u2", "integrations": {"Mixpanel": True}},
            {"type": "track", "userId": "u3", "event": "C", "writeKey": "wk_other"},
        ],
        "context": {"library": {"name": "analytics-python"}, "ip": "0.0.0.0"},
        "integrations": {"All": False},
        "writeKey": "wk_env",
    }
    original = copy.deepcopy(envelope)
    first, second, third = Chain().run(envelope)
    assert first.body["context"]["library"] == {"name": "analytics-python"}
    assert first.body["context"]["ip"] == "1.1.1.1"  # the member's own context wins per key
    assert second.body["context"]["ip"] == "0.0.0.0"
    assert first.body["integrations"] == {"All": False}
    assert second.body["integrations"] == {"All": False, "Mixpanel": True}
    assert first.body["writeKey"] == "wk_env" and third.body["writeKey"] == "wk_other"
    assert first.original == original["batch"][0]  # the member as sent, not merged
    assert envelope == original


def test_the_envelope_sent_at_corrects_the_clock_of_members_without_their_own():
    """analytics-next's batching strategy removes `sentAt` from every event and sends one on the batch
    (batched-dispatcher.js: "batching only needs a single timestamp"): a device clock 2 h fast is corrected."""
    fast = {"type": "track", "userId": "u", "event": "E", "timestamp": at(hours=1)}
    pipeline = Chain().pipeline
    alone = pipeline.run({**fast, "sentAt": at(hours=2)}, received_at=unix())
    batched, own = pipeline.run({"batch": [fast, {**fast, "sentAt": at(hours=1)}], "sentAt": at(hours=2)},
                                received_at=unix())
    assert alone[0].ts == batched.ts == unix(hours=-1)
    assert own.ts == unix()  # its own sentAt wins (timestamp = sentAt: it happened as it was received)


def test_the_envelope_write_key_selects_the_source_of_its_members():
    chain = Chain('[sources.web]\nwrite_key = "wk_web"\n[sources.app]\nwrite_key = "wk_app"')
    a, b = chain.run({"batch": [{"type": "track", "userId": "u", "event": "E"},
                                {"type": "track", "userId": "u", "event": "E", "writeKey": "wk_app"}],
                      "writeKey": "wk_web"})
    assert (a.source, b.source) == ("web", "app")


def test_a_bad_member_is_quarantined_alone():
    good, bad, worse = Chain().run({"batch": [{"type": "track", "userId": "u", "event": "E"},
                                              {"type": "track", "userId": "u"}, 7]})
    assert not good.quarantined
    assert bad.quarantined and codes(bad) == ["malformed"]
    assert worse.quarantined and codes(worse) == ["malformed"] and worse.original == 7


def test_a_batch_that_is_not_a_list_is_one_malformed_message():
    (msg,) = Chain().run({"batch": {"type": "track"}})
    assert msg.quarantined and codes(msg) == ["malformed"]


# --- limits ------------------------------------------------------------------------------------------------------

def _sized(nbytes: int, char: str = "x") -> dict:
    base = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": ""}}
    room = nbytes - len(orjson.dumps(base))
    return {**base, "properties": {"blob": char * (room // len(char.encode()))}}


def test_a_message_of_32_kb_passes_and_one_byte_more_is_malformed():
    chain = Chain()
    exact = orjson.dumps(_sized(MAX_MESSAGE_BYTES))
    assert len(exact) == MAX_MESSAGE_BYTES
    over = orjson.dumps(_sized(MAX_MESSAGE_BYTES + 1))
    parse_only = Engine(chain.config, open_store("memory://"))  # without the Customer.io limits
    assert not parse_only.run(exact)[0].quarantined
    msg = parse_only.run(over)[0]
    assert msg.quarantined and codes(msg) == ["malformed"] and "32 KB" in msg.violations[0]["message"]
    assert parse_only.run(orjson.loads(over))[0].quarantined  # a dict is measured as JSON too


def test_the_32_kb_limit_counts_bytes_of_a_text_line():
    line = orjson.dumps(_sized(40_000, "é")).decode()
    assert len(line) < MAX_MESSAGE_BYTES < len(line.encode())
    msg = Engine(Chain().config, open_store("memory://")).run(line)[0]
    assert msg.quarantined and codes(msg) == ["malformed"]


def test_a_batch_over_500_kb_quarantines_every_member():
    member = _sized(20_000)
    envelope = {"batch": [member] * 26}
    assert len(orjson.dumps(envelope)) > MAX_BATCH_BYTES
    out = Chain().run(orjson.dumps(envelope))
    assert len(out) == 26
    assert all(m.quarantined and codes(m) == ["malformed"] and "500 KB" in m.violations[0]["message"] for m in out)
    under = Chain().run({"batch": [member] * 20})
    assert not any(m.quarantined for m in under)


# --- ids ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [(42, "42"), (42.0, "42"), (7.5, "7.5"), (0, "0"), ("u-1", "u-1")])
def test_numeric_ids_are_stringified(value, text):
    msg = Chain().one({"type": "group", "userId": value, "anonymousId": value, "groupId": value})
    assert not msg.quarantined, msg.violations
    assert (msg.body["userId"], msg.body["anonymousId"], msg.body["groupId"]) == (text, text, text)
    alias = Chain().one({"type": "alias", "userId": value, "previousId": value})
    assert alias.body["previousId"] == text


@pytest.mark.parametrize("key", ["userId", "anonymousId", "groupId", "previousId"])
@pytest.mark.parametrize("value", [True, False, {"id": 1}, [1]])
def test_bool_dict_and_list_ids_are_malformed(key, value):
    payload = {"type": "alias" if key == "previousId" else "group", "userId": "u", "groupId": "g", "previousId": "p"}
    payload[key] = value
    msg = Chain().one(payload)
    assert msg.quarantined and codes(msg) == ["malformed"] and msg.violations[0]["field"] == key


def test_an_empty_user_id_falls_back_to_the_anonymous_id():
    msg = Chain().one({"type": "track", "userId": "", "anonymousId": "a1", "event": "E"})
    assert not msg.quarantined and "userId" not in msg.body
    assert msg.ops[0]["identifiers"] == {"anonymous_id": "a1"}


def test_a_missing_message_id_gets_a_deterministic_one():
    payload = {"type": "track", "userId": "u", "event": "E", "timestamp": at(1)}
    first, again = Chain().one(dict(payload)), Chain().one(orjson.dumps(payload))
    other = Chain().one({**payload, "event": "F"})
    assert first.body["messageId"] == again.body["messageId"]
    assert first.body["messageId"] != other.body["messageId"]
    assert first.ops[0]["id"] == again.ops[0]["id"]
    assert "messageId" not in payload and "messageId" not in first.original  # the caller's dict is untouched


def test_a_batch_member_without_a_message_id_gets_the_same_one_as_alone():
    member = {"type": "track", "userId": "u", "event": "E", "timestamp": at(1)}
    alone = Chain().one(member)
    (in_batch,) = Chain().run({"batch": [member]})
    assert alone.body["messageId"] == in_batch.body["messageId"]


# --- malformed ----------------------------------------------------------------------------------------------------

MALFORMED = {
    "not json": b"{this is not json",
    "truncated json": b'{"type": "track", "userId": "u"',
    "binary": b"\xff\xfe\x00\x01",
    "json array": b"[1, 2, 3]",
    "json string": b'"track"',
    "json number": b"42",
    "json null": b"null",
    "unknown type": {"type": "purchase", "userId": "u"},
    "no type": {"userId": "u", "event": "E"},
    "type not a string": {"type": 3, "userId": "u"},
    "no user or anonymous id": {"type": "track", "event": "E"},
    "identify without a person": {"type": "identify", "traits": {"name": "Ada"}},
    "alias without a person": {"type": "alias", "previousId": "p"},
    "null ids": {"type": "track", "event": "E", "userId": None, "anonymousId": None},
    "empty ids": {"type": "identify", "userId": "", "anonymousId": ""},
    "track without event": {"type": "track", "userId": "u"},
    "track with blank event": {"type": "track", "userId": "u", "event": "  "},
    "track with numeric event": {"type": "track", "userId": "u", "event": 5},
    "group without groupId": {"type": "group", "userId": "u"},
    "alias without previousId": {"type": "alias", "userId": "u"},
    "alias without userId": {"type": "alias", "anonymousId": "a", "previousId": "p"},
    "properties a list": {"type": "track", "userId": "u", "event": "E", "properties": [1]},
    "traits a string": {"type": "identify", "userId": "u", "traits": "vip"},
    "context a number": {"type": "track", "userId": "u", "event": "E", "context": 1},
    "integrations a list": {"type": "track", "userId": "u", "event": "E", "integrations": []},
    "userId a bool": {"type": "track", "userId": True, "event": "E"},
    "anonymousId an object": {"type": "track", "anonymousId": {"a": 1}, "event": "E"},
    "timestamp not iso": {"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"},
    "timestamp a number": {"type": "track", "userId": "u", "event": "E", "timestamp": 1767225600},
    "over 32 KB": orjson.dumps(_sized(MAX_MESSAGE_BYTES + 100)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_malformed_case_is_quarantined_with_its_original(name):
    payload = MALFORMED[name]
    chain = Chain()
    (msg,) = chain.run(payload)
    assert msg.quarantined and codes(msg) == ["malformed"], msg.violations
    assert msg.ops == []
    rec = record(msg)
    assert rec["violations"] == msg.violations and rec["violations"][0]["message"]
    if isinstance(payload, bytes):
        try:
            expected = orjson.loads(payload)
        except orjson.JSONDecodeError:
            expected = payload.decode("utf-8", "replace")  # the raw line, as text
        assert rec["message"] == expected
    else:
        assert rec["message"] == payload
    orjson.dumps(rec)  # always writable as a quarantine line


def test_a_malformed_message_teaches_the_store_nothing():
    chain = Chain()
    chain.run({"type": "group", "userId": "u", "groupId": "hh_1", "timestamp": "not a time"})
    msg = chain.one({"type": "track", "userId": "u", "event": "E", "timestamp": at(2)})
    assert msg.resolution == "unresolved"


def test_a_batch_member_whose_context_is_not_an_object_stays_malformed():
    line = orjson.dumps({"batch": [{"type": "track", "userId": "u1", "event": "E", "context": "web"}],
                         "context": {"ip": "1.2.3.4"}})
    (msg,) = Chain().run(line)
    assert msg.quarantined and msg.violations[0]["field"] == "context"
