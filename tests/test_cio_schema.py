"""Every operation groupspec writes validates against Customer.io's published Track API v2 schema (issue #19
item 8; `tests/customerio_schema/`), with only the deviations Segment's own destination sends to the real API
(`schema_support.allowed`). At run time `limits.missing` checks the required fields by hand; these tests hold it
to the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_support import Chain, at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_support import examples
from schema_support import DOCUMENT, SCHEMAS, allowed, problems

from groupspec.plugin.customerio import limits

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECTED = sorted(FIXTURES.glob("*/expected/customerio.jsonl"))
PROFILES = {"segment": "", "rudderstack": '[customerio]\ncompat = "rudderstack"\ndevice_token_event = "Token"\n',
            "rudderstack-v2": '[customerio]\ncompat = "rudderstack-v2"\ndevice_token_event = "Token"\n'}


@pytest.mark.parametrize("path", EXPECTED, ids=[p.parent.parent.name for p in EXPECTED])
def test_every_operation_of_every_fixture_validates(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        assert problems(json.loads(line)) == [], f"{path.parent.parent.name} customerio.jsonl line {number}"


def test_the_vendored_schema_takes_customerios_own_batch_example():
    # the correction (README): without `required` in v2_cio_relationships' alternatives this example is refused
    example = DOCUMENT["paths"]["/api/v2/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["example"]
    for op in example["batch"]:
        assert problems(op, deviations=False) == []


def test_the_schema_refuses_what_the_issue_found_and_the_deviations_are_only_those_allowed():
    # RudderStack's add_device for a token without a device type (issue #19 item 8): no platform
    assert problems({"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                     "device": {"token": "t", "last_used": 1}}) == ["device: 'platform' is a required property"]
    anonymous = {"type": "person", "action": "event", "identifiers": {"anonymous_id": "a1"}, "name": "x"}
    assert problems(anonymous) == [] and problems(anonymous, deviations=False)
    device = {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
              "device": {"token": "t", "platform": "iOS", "attributes": {"n": 1}}}
    assert problems(device) == [] and len(problems(device, deviations=False)) == 2
    assert problems({**device, "device": {"token": "t", "platform": "web"}})  # another platform is not a case
    assert allowed({"type": "object", "action": "identify_anonymous", "identifiers": {"object_type_id": "1",
                    "object_id": "g"}, "cio_relationships": [{"identifiers": {"anonymous_id": "a"}}]}) is not None


def _valid(kind: str, action: str) -> dict:
    """A minimal operation the schema takes, for each (type, action) `limits.REQUIRED` names."""
    ids = {"object_type_id": "1", "object_id": "g"} if kind == "object" else {"id": "u1"}
    link = {"identifiers": {"id": "u1"}} if kind == "object" else {"identifiers": {"object_type_id": "1",
                                                                                     "object_id": "g"}}
    return {"type": kind, "action": action, "identifiers": ids, "name": "n", "primary": {"id": "a"},
            "secondary": {"id": "b"}, "device": {"token": "t", "platform": "ios"}, "cio_relationships": [link]}


@pytest.mark.parametrize(("kind", "action"), sorted(limits.REQUIRED))
def test_limits_missing_names_every_field_the_schema_requires(kind, action):
    op = _valid(kind, action)
    assert (kind, action) in SCHEMAS and problems(op) == [] and limits.missing(op) is None
    for path in limits.REQUIRED[kind, action]:
        holder, key = (op["device"], path.split(".")[1]) if path.startswith("device.") else (op, path)
        without = json.loads(json.dumps(op))
        (without["device"] if holder is op["device"] else without).pop(key)
        assert problems(without), path  # the schema refuses it ...
        assert limits.missing(without)[0] == path  # ... and so does the run-time check


# --- a generated stream, under every profile ------------------------------------------------------------------------

USERS = st.sampled_from([None, "u_1", "carl@example.com", "ann@exa_mple.com", "cio_f00d", "ünï-çødé ✓", "42"])
EVENTS = st.sampled_from(["Order Completed", "Application Installed", "Application Opened", "Application Uninstalled",
                          "Device Created or Updated", "Device Deleted", "User Deleted", "User Suppressed",
                          "User Unsuppressed", "Relationship Deleted", "Object Deleted", "Token"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**13), st.text(max_size=8),
                   st.sampled_from(["2026-01-02", "2026-01-02T03:04:05+01:00", "2026-01-02 03:04", "cio_x"]))
PROPS = st.dictionaries(st.sampled_from(["total", "name", "url", "objectId", "object_type_id", "objectTypeId",
                                         "email", "at", "nested"]), VALUES | st.dictionaries(st.just("at"), VALUES),
                        max_size=4)
DEVICE = st.fixed_dictionaries({}, optional={"token": st.sampled_from(["tok-1", ""]),
                                             "type": st.sampled_from(["ios", "iOS", "android", "iPadOS", "web", 7])})
TIMES = st.sampled_from([at(1), at(1.5), "2026-01-02T03:04:05.678+05:30", "2026-01-02T03:04:05Z"])


@st.composite
def messages(draw) -> dict:
    kind = draw(st.sampled_from(["identify", "track", "page", "screen", "group", "alias"]))
    body: dict = {"type": kind, "timestamp": draw(TIMES), "messageId": draw(st.text(min_size=1, max_size=4))}
    user = draw(USERS)
    if user is not None:
        body["userId"] = user
    if user is None or draw(st.booleans()):
        body["anonymousId"] = draw(st.sampled_from(["a1", "a2"]))
    context: dict = {}
    if draw(st.booleans()):
        context["device"] = draw(DEVICE)
    if kind == "identify":
        traits = draw(PROPS)
        if draw(st.booleans()):
            traits["createdAt"] = draw(st.sampled_from([1704164645123, 1704164645, "2024-01-02T03:04:05Z"]))
        body["traits" if draw(st.booleans()) else "context"] = traits
        if "context" in body:
            context["traits"] = body.pop("context")
    elif kind == "track":
        body["event"] = draw(EVENTS)
        body["properties"] = draw(PROPS)
    elif kind in ("page", "screen"):
        body["properties"] = draw(PROPS)
        if draw(st.booleans()):
            body["name"] = draw(st.sampled_from(["Home", "Cart"]))
        if kind == "page" and draw(st.booleans()):
            context["page"] = {"url": "https://x.test/p"}
    elif kind == "group":
        body["groupId"] = draw(st.sampled_from(["g1", "acct_2"]))
        body["traits"] = draw(PROPS)
    else:
        body["previousId"] = draw(st.sampled_from(["old-1", "old@example.com"]))
        body.setdefault("userId", "u_1")
    if context:
        body["context"] = context
    return body


@pytest.mark.parametrize("profile", list(PROFILES))
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(messages(), min_size=1, max_size=12))
def test_every_operation_of_a_generated_stream_validates(profile, stream):
    chain = Chain(PROFILES[profile])
    for msg in chain.run(*stream):
        for op in msg.ops:
            assert problems(op) == [], (profile, msg.body, op)
        if not msg.quarantined and not msg.ops:  # nothing for Customer.io: said, never silent
            assert any(v["code"] == "not_mapped" for v in msg.violations), (profile, msg.body)
