"""Customer.io parity (issues #10 and #19): each rule of docs/parity-reference.md, with the expected values taken
from the reference destinations' code (Segment's action-destinations `customerio/`, RudderStack's rudder-transformer
`customerio/transform.ts` + `util.ts` (v1, the default) and `customerio/v2/util.ts`), not from groupspec's output."""

from __future__ import annotations

import pytest
from core_support import Chain, at, codes, group, identify, track, unix
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.config import parse_config
from groupspec.plugin.customerio import mapping, rudderstack
from groupspec.plugin.customerio.dates import iso_seconds
from groupspec.plugin.customerio.identifiers import is_email

RUDDERSTACK = '[customerio]\ncompat = "rudderstack"\ndevice_token_event = "Push Token Registered"\n'
RUDDERSTACK_V2 = RUDDERSTACK.replace('"rudderstack"', '"rudderstack-v2"')
BOTH_PATHS = pytest.mark.parametrize("profile", [RUDDERSTACK, RUDDERSTACK_V2], ids=["v1", "v2"])


def ops(chain: Chain, payload) -> list[dict]:
    msg = chain.one(payload)
    assert not msg.quarantined, msg.violations
    return msg.ops


def unmapped(payload, toml: str = "", field: str | None = None) -> str:
    """The reason a message got no operation: forwarded, flagged `not_mapped` (the reference sends nothing)."""
    msg = Chain(toml).one(payload)
    assert not msg.quarantined and msg.ops == [] and codes(msg) == ["not_mapped"], msg.violations
    assert field is None or msg.violations[0]["field"] == field, msg.violations
    assert msg.body["context"]["groupspec"]["violations"] == msg.violations  # the forwarded message says so
    return msg.violations[0]["message"]


def op(payload, toml: str = "") -> dict:
    (only,) = ops(Chain(toml), payload)
    return only


def device_track(user, event, days=0, token="tok-1", kind="ios", **extra):
    device = {"type": kind} if token is None else {"token": token, "type": kind}
    return track(user, event, days, context={"device": device, "app": {"version": "3.2.0"}, "os": {"name": "iOS"},
                                             "locale": "en-US"}, **extra)


# --- segment profile (the default) ----------------------------------------------------------------------------------

def test_every_default_subscription_of_segments_destination_has_a_row():
    # index.ts presets at 970a17e ("Create or Update Device" adds "Device Created or Updated") + each action's
    # defaultSubscription (reportDelivery/ContentEvent are out of scope)
    wanted = {("identify", None), ("track", None), ("page", None), ("screen", None), ("group", None),
              ("alias", None), ("track", "Application Installed"), ("track", "Application Opened"),
              ("track", "Device Created or Updated"), ("track", "Application Uninstalled"),
              ("track", "Device Deleted"), ("track", "User Deleted"),
              ("track", "User Suppressed"), ("track", "User Unsuppressed"), ("track", "Relationship Deleted"),
              ("track", "Object Deleted")}
    assert set(mapping.ROUTES) == wanted
    assert mapping.PROFILES == {"segment": mapping.ROUTES, "rudderstack": rudderstack.ROUTES_V1,
                                "rudderstack-v2": rudderstack.ROUTES_V2}


def test_identify_sends_created_at_from_createdAt_converted_and_created_at_wins():
    # createUpdatePerson mapPayload: createdAt/created_at removed, created_at = traits.created_at ?? createdAt
    out = op(identify("u1", 1, traits={"name": "Ada", "createdAt": "2026-01-15T08:30:00Z"}))
    assert out["attributes"] == {"name": "Ada", "created_at": 1768465800}
    both = op(identify("u1", 1, traits={"created_at": "2026-01-15T08:30:00Z", "createdAt": "1999-01-01T00:00:00Z"}))
    assert both["attributes"] == {"created_at": 1768465800}
    empty = op(identify("u1", 1, traits={"createdAt": ""}))  # kept only if truthy
    assert empty["attributes"] == {}


@pytest.mark.parametrize(("value", "expected"), [
    ("1990-05-01", 641520000),                       # date-only: midnight UTC
    ("2025-06-01T00:00:00Z", 1748736000),
    ("2006-01-02T15:04:05-0800", 1136243045),        # offset without colon (isIsoDate allows it)
    ("2007-01-02T18:04:07", 1167761047),             # no zone: UTC (Segment's runtime)
    ("2026-01-15T08:30:00.123456789Z", 1768465800),  # up to nine fraction digits, floored
    ("2026-11-18 10:00:00", "2026-11-18 10:00:00"),  # space: not isIsoDate, stays
    ("25 Mar 2015", "25 Mar 2015"),                  # createUpdatePerson.test.ts "only ISO-8601 strings"
    ("01/01/2019", "01/01/2019"),
    ("2018-03-04T12:08:56 PDT", "2018-03-04T12:08:56 PDT"),
    ("2026-13-01", "2026-13-01"),                    # Date.parse fails
    ("1700000000", "1700000000"),                    # numeric strings stay
    (1700000000, 1700000000),
])
def test_attribute_dates_follow_segments_convertAttributeTimestamps(value, expected):
    assert op(identify("u1", 1, traits={"t": value}))["attributes"] == {"t": expected}


def test_dates_convert_inside_objects_but_not_inside_lists():
    out = op(track("u1", "Order Completed", 1, properties={
        "delivery": {"promised_on": "2026-11-25", "deep": {"at": "2025-06-01T00:00:00Z"}},
        "history": ["2025-06-01T00:00:00Z", {"at": "2025-06-01T00:00:00Z"}]}))
    assert out["attributes"]["delivery"] == {"promised_on": 1795564800, "deep": {"at": 1748736000}}
    assert out["attributes"]["history"] == ["2025-06-01T00:00:00Z", {"at": "2025-06-01T00:00:00Z"}]


def test_iso_seconds_is_isIsoDate():
    assert iso_seconds("2026-11-20T10:00:00+02:00") == iso_seconds("2026-11-20T08:00:00Z")
    assert iso_seconds("2026-11-20T10:00+0200") == iso_seconds("2026-11-20T08:00:00Z")
    assert iso_seconds("2026-11-20t10:00:00Z") is None and iso_seconds(" 2026-11-20") is None


def test_identify_with_objectId_relates_the_person_with_object_type_id_first_and_raw_relationship_attributes():
    chain = Chain()
    (out,) = ops(chain, identify("u_dee", 1, traits={
        "email": "dee@example.com", "objectId": "acct_9", "objectTypeId": "2", "object_type_id": "4",
        "relationshipAttributes": {"role": "admin", "since": "2026-02-01T00:00:00Z"}}))
    assert out["identifiers"] == {"id": "u_dee"}
    assert out["attributes"] == {"email": "dee@example.com", "objectId": "acct_9"}  # objectId stays
    assert out["cio_relationships"] == [{"identifiers": {"object_type_id": "4", "object_id": "acct_9"},
                                         "relationship_attributes": {"role": "admin",
                                                                     "since": "2026-02-01T00:00:00Z"}}]
    # the store knows the relationship Customer.io now has: the person's next event resolves to it
    later = chain.one(track("u_dee", "Viewed", 2))
    assert later.group_id == "acct_9" and later.body["context"]["groups"] == {"4": "acct_9"}


def test_identify_with_objectId_and_no_type_uses_the_default_type():
    out = op(identify("u1", 1, traits={"objectId": "acct_9"}))
    assert out["cio_relationships"] == [{"identifiers": {"object_type_id": "1", "object_id": "acct_9"}}]
    assert out["attributes"] == {"objectId": "acct_9"}


def test_identify_by_email_with_an_anonymous_id_carries_the_anonymous_id():
    # createUpdatePerson: id = userId else traits.email; buildPayload: anonymous_id unless it is the identifier
    out = op(identify(None, 1, anon="anon-bea", traits={"email": "bea@example.com", "first_name": "Bea"}))
    assert out["identifiers"] == {"email": "bea@example.com"}
    assert out["attributes"] == {"email": "bea@example.com", "first_name": "Bea", "anonymous_id": "anon-bea"}


@pytest.mark.parametrize(("user", "expected"), [
    ("ann@exa_mple.com", {"id": "ann@exa_mple.com"}),    # underscore in the domain: not ajv's email
    ("a@localhost", {"id": "a@localhost"}),               # no dot in the domain
    ("a@-x.com", {"id": "a@-x.com"}),                     # label starts with a hyphen
    ("carl@example.com", {"email": "carl@example.com"}),
    ("Carl.O'Neil+x@Example.CO.uk", {"email": "Carl.O'Neil+x@Example.CO.uk"}),  # case-insensitive
    ("cio_03000010", {"cio_id": "03000010"}),
])
def test_person_identifiers_use_segments_strict_email_test(user, expected):
    assert op(identify(user, 1))["identifiers"] == expected
    assert op(track(user, "Viewed", 1))["identifiers"] == expected


def test_is_email_is_ajv_full_formats_email():
    assert is_email("x@a.b") and not is_email("x@a") and not is_email("x y@a.b") and not is_email("a..b@c.d")


def test_events_pages_and_screens_of_a_known_person_carry_the_anonymous_id_before_groupspecs_additions():
    chain = Chain()
    chain.run(group("u1", "acct_1", 0))
    (event,) = ops(chain, track("u1", "Order Completed", 1, anon="a1", properties={"total": 1}))
    assert list(event["attributes"]) == ["total", "anonymous_id", "group_id"]
    assert event["attributes"]["anonymous_id"] == "a1"
    (page,) = ops(chain, {"type": "page", "userId": "u1", "anonymousId": "a1", "timestamp": at(1),
                          "properties": {"url": "https://x.test/"}})
    assert page["attributes"] == {"url": "https://x.test/", "anonymous_id": "a1"}
    (screen,) = ops(chain, {"type": "screen", "userId": "u1", "anonymousId": "a1", "name": "Cart", "timestamp": at(1)})
    assert screen["attributes"] == {"anonymous_id": "a1"} and screen["name"] == "Cart"
    (anonymous,) = ops(chain, track(None, "Viewed", 1, anon="a2"))
    assert anonymous["identifiers"] == {"anonymous_id": "a2"} and "anonymous_id" not in anonymous["attributes"]


@pytest.mark.parametrize("event", ["Application Installed", "Application Opened", "Device Created or Updated"])
def test_device_events_with_a_token_add_the_device_and_send_no_event(event):
    # preset "Create or Update Device" (970a17e) subscribes all three; "Track Event" excludes them
    (device,) = ops(Chain(), device_track("u1", event, 1, properties={"build": "320", "at": at(0)}))
    # createUpdateDevice: token, platform as sent, last_used from the timestamp, properties + app_version
    assert device == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                      "device": {"token": "tok-1", "platform": "ios", "last_used": unix(1),
                                 "attributes": {"build": "320", "at": unix(0), "app_version": "3.2.0"}}}


@pytest.mark.parametrize(("payload", "field"), [
    (device_track("u1", "Application Installed", token=None), "context.device.token"),
    (device_track(None, "Device Created or Updated", anon="a1"), "userId"),
    (track("u1", "Application Opened", context={"device": {"token": "t"}}), "context.device.type"),
    (device_track("u1", "Application Uninstalled", token=None), "context.device.token"),
    (device_track(None, "Device Deleted", anon="a1"), "userId"),
])
def test_a_device_event_segment_refuses_gets_no_operation_and_is_flagged(payload, field):
    # createUpdateDevice / deleteDevice: person_id, device_id (and platform) required -> the action fails; the
    # Track Event preset excludes device events, so Segment sends nothing at all
    assert "Segment's" in unmapped(payload, field=field)


@pytest.mark.parametrize("event", ["Application Uninstalled", "Device Deleted"])
def test_device_removal_deletes_the_device_and_sends_no_event(event):
    (device,) = ops(Chain(), device_track("cio_7", event, 1))
    assert device == {"type": "person", "action": "delete_device", "identifiers": {"cio_id": "7"},
                      "device": {"token": "tok-1"}}


def test_a_device_platform_customerio_does_not_take_is_not_sent():
    # Track API v2 schema: device.platform is "ios" or "android" (the case is an allowed deviation: Segment sends
    # context.device.type as it is)
    assert op(device_track("u1", "Application Installed", kind="Android"))["device"]["platform"] == "Android"
    assert "device platform ios or android, got 'web'" in unmapped(device_track("u1", "Device Created or Updated",
                                                                                kind="web"), field="device.platform")


def test_not_mapped_may_drop_the_message_instead():
    msg = Chain('[contract.actions]\nnot_mapped = "drop"').one(device_track("u1", "Application Opened", token=None))
    assert msg.quarantined and codes(msg) == ["not_mapped"] and msg.ops == []
    with pytest.raises(ConfigError, match="not_mapped: expected flag"):
        parse_config({"contract": {"actions": {"not_mapped": "strip"}}}, "g.toml")


def test_identify_takes_no_person_attribute_from_context_traits():
    # createUpdatePerson reads $.traits (custom_attributes, email, created_at), never $.context.traits
    out = op(identify("u1", 1, anon="a1", context={"traits": {"email": "x@example.com", "createdAt": at(0)}}))
    assert out == {"type": "person", "action": "identify", "identifiers": {"id": "u1"},
                   "attributes": {"anonymous_id": "a1"}, "timestamp": unix(1)}
    # and no identifier from it either: id = userId, else traits.email
    anonymous = op(identify(None, 1, anon="a1", context={"traits": {"email": "x@example.com"}}))
    assert anonymous["identifiers"] == {"anonymous_id": "a1"} and anonymous["attributes"] == {}
    # nor a relationship: neither Customer.io nor the store relates the person to a context.traits objectId
    chain = Chain()
    (related,) = ops(chain, identify("u2", 1, context={"traits": {"objectId": "acct_9"}}))
    assert "cio_relationships" not in related and chain.one(track("u2", "Viewed", 2)).group_id is None


def test_a_screen_without_a_name_and_a_page_without_a_url_are_not_sent():
    # trackScreenView: name = $.name (required); trackPageView: url = $.properties.url (required)
    unmapped({"type": "screen", "userId": "u1", "properties": {"name": "Cart"}, "timestamp": at(1)}, field="name")
    unmapped({"type": "page", "userId": "u1", "name": "Pricing", "timestamp": at(1)}, field="properties.url")
    # groupspec's documented addition stays: the page URL from the context
    page = op({"type": "page", "userId": "u1", "timestamp": at(1), "context": {"page": {"url": "https://x.test/"}}})
    assert page["name"] == "https://x.test/"


def test_lifecycle_events_without_their_person_id_are_flagged():
    unmapped(track(None, "User Suppressed", 1, anon="a1"), field="userId")
    unmapped(track(None, "User Deleted", 1, anon="a1"), field="userId")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("erase_on", [None, []])
def test_user_deleted_deletes_the_person_and_ends_their_memberships(kind, erase_on, tmp_path):
    """By default (`[privacy] erase_on = ["User Deleted"]`, issue 23) the store forgets the person: nothing is
    known of them before the deletion either; `erase_on = []` keeps the memberships' history, ended at its time."""
    toml = "" if erase_on is None else "[privacy]\nerase_on = []\n"
    chain = Chain(toml, store_url="memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'store.db'}")
    chain.run(group("u1", "acct_1", 0), identify("u1", 0, anon="a1"), group(None, "acct_2", 0, anon="a1", objectTypeId=2))
    assert chain.one(track("u1", "Viewed", 1)).body["context"]["groups"] == {"1": "acct_1", "2": "acct_2"}
    (deleted,) = ops(chain, track("u1", "User Deleted", 2))
    assert deleted == {"type": "person", "action": "delete", "identifiers": {"id": "u1"}}
    after = chain.one(track("u1", "Viewed", 3))
    assert after.group_id is None and "groups" not in after.body["context"]
    assert chain.one(track(None, "Viewed", 3, anon="a1")).group_id is None  # the linked anonymous key too
    before = chain.one(track("u1", "Viewed", 1.5)).group_id  # a late event dated before the deletion
    assert before == (None if erase_on is None else "acct_1")


def test_user_deleted_and_unsuppressed_fall_back_to_traits_email_suppressed_needs_the_userId():
    by_email = {"traits": {"email": "ann@example.com"}}
    assert op(track(None, "User Deleted", 1, anon="a1", **by_email))["identifiers"] == {"email": "ann@example.com"}
    assert op(track(None, "User Unsuppressed", 1, anon="a1", **by_email)) == {
        "type": "person", "action": "unsuppress", "identifiers": {"email": "ann@example.com"}}
    unmapped(track(None, "User Suppressed", 1, anon="a1", **by_email), field="userId")
    assert op(track("u1", "User Suppressed", 1)) == {"type": "person", "action": "suppress",
                                                     "identifiers": {"id": "u1"}}


def test_relationship_deleted_reads_properties_object_type_id_before_objectTypeId_and_the_store_agrees():
    chain = Chain()
    chain.run(group("u1", "store_7", 0, object_type_id="4"))
    assert chain.one(track("u1", "Viewed", 1)).body["context"]["groups"] == {"4": "store_7"}
    (out,) = ops(chain, track("u1", "Relationship Deleted", 2,
                              properties={"objectId": "store_7", "object_type_id": "4", "objectTypeId": "2"}))
    assert out == {"type": "object", "action": "delete_relationships",
                   "identifiers": {"object_type_id": "4", "object_id": "store_7"},
                   "cio_relationships": [{"identifiers": {"id": "u1"}}]}
    assert chain.one(track("u1", "Viewed", 3)).group_id is None  # the real membership ended


def test_object_deleted_reads_properties_object_type_id():
    out = op(track("u1", "Object Deleted", 1, properties={"objectId": "store_7", "object_type_id": "4"}))
    assert out == {"type": "object", "action": "delete", "identifiers": {"object_type_id": "4", "object_id": "store_7"}}


def test_group_prefers_object_type_id_over_objectTypeId_in_mapping_and_store():
    chain = Chain()
    (out,) = ops(chain, group("carl@example.com", "store_7", 0, name="Store 7", objectTypeId="2", object_type_id="4"))
    assert out["identifiers"] == {"object_type_id": "4", "object_id": "store_7"}
    assert out["cio_relationships"] == [{"identifiers": {"email": "carl@example.com"}}]
    assert chain.one(track("carl@example.com", "Viewed", 1)).body["context"]["groups"] == {"4": "store_7"}


def test_an_invalid_object_type_names_the_key_it_came_from():
    msg = Chain().one(group("u1", "g1", 0, object_type_id="x"))
    assert codes(msg) == ["invalid_object_type"] and msg.violations[0]["field"] == "traits.object_type_id"


def test_anonymous_relationship_deleted_goes_out_for_the_linked_userId():
    chain = Chain()
    chain.run(identify("u_ann", 0, anon="anon-ann"), group("u_ann", "acct_1", 0))
    (out,) = ops(chain, track(None, "Relationship Deleted", 1, anon="anon-ann", properties={"objectId": "acct_1"}))
    assert out["cio_relationships"] == [{"identifiers": {"id": "u_ann"}}]
    assert chain.one(track("u_ann", "Viewed", 2)).group_id is None


def test_anonymous_relationship_deleted_linked_to_no_userId_or_several_is_quarantined():
    chain = Chain()
    chain.run(identify("u1", 0, anon="shared"), identify("u2", 0, anon="shared"))
    for anon, reason in (("nobody", "linked to no userId"), ("shared", "linked to several userIds (u1, u2)")):
        msg = chain.one(track(None, "Relationship Deleted", 1, anon=anon, properties={"objectId": "acct_1"}))
        assert msg.quarantined and codes(msg) == ["anonymous_relationship_delete"]
        assert msg.violations[0]["field"] == "anonymousId" and reason in msg.violations[0]["message"]


def test_the_anonymous_relationship_delete_code_is_drop_only():
    with pytest.raises(ConfigError, match="anonymous_relationship_delete: expected drop"):
        parse_config({"contract": {"actions": {"anonymous_relationship_delete": "flag"}}}, "g.toml")


def test_merge_resolves_both_ids_like_segment():
    out = op({"type": "alias", "userId": "cio_03000010", "previousId": "old@example.com", "timestamp": at(1)})
    assert out == {"type": "person", "action": "merge", "primary": {"cio_id": "03000010"},
                   "secondary": {"email": "old@example.com"}}


# --- rudderstack profiles: "rudderstack" (v1, transform.ts + util.ts, the default path), "rudderstack-v2" ------------

@pytest.mark.parametrize("user", ["carl@example.com", "ann@exa_mple.com", "u_77"])
def test_rudderstack_userId_is_id_on_both_paths(user):
    for profile in (RUDDERSTACK, RUDDERSTACK_V2):
        assert op(identify(user, 1), profile)["identifiers"] == {"id": user}
        assert op(track(user, "Viewed", 1), profile)["identifiers"] == {"id": user}


def test_rudderstack_v1_names_a_cio_prefixed_userId_by_cio_id_as_the_url_path_does():
    # util.ts: PUT /api/v1/customers/cio_f00d (processor test "Test 0": endpoint .../customers/cio_1234); Customer.io:
    # "when you reference people by cio_id, you must prefix the value with cio_"
    chain = Chain(RUDDERSTACK)
    for payload in (identify("cio_f00d", 1), track("cio_f00d", "Viewed", 1),
                    device_track("cio_f00d", "Application Installed", 1),
                    device_track("cio_f00d", "Application Uninstalled", 1)):
        (out,) = ops(chain, payload)
        assert out["identifiers"] == {"cio_id": "f00d"}
    # v2 buildEnvelope: userId is always id
    assert op(identify("cio_f00d", 1), RUDDERSTACK_V2)["identifiers"] == {"id": "cio_f00d"}
    # group relationships and merge are v2 bodies on both paths: email or id, no cio_ split
    assert op(group("cio_f00d", "g1", 0), RUDDERSTACK)["cio_relationships"] == [{"identifiers": {"id": "cio_f00d"}}]


def test_rudderstack_v1_email_user_id_setting_reads_an_email_shaped_userId_as_email():
    toml = RUDDERSTACK + 'email_user_id = "email"\n'
    assert op(identify("carl@example.com", 1), toml)["identifiers"] == {"email": "carl@example.com"}
    assert op(track("ann@exa_mple.com", "Viewed", 1), toml)["identifiers"] == {"id": "ann@exa_mple.com"}  # not an email
    with pytest.raises(ConfigError, match=r"g.toml: customerio.email_user_id: only with compat = \"rudderstack\""):
        parse_config({"customerio": {"compat": "rudderstack-v2", "email_user_id": "email"}}, "g.toml")


def test_rudderstack_identify_keeps_traits_as_sent_but_createdAt_and_adds_timestamp_and_anonymous_id():
    out = op(identify("u1", 1, anon="a1", traits={
        "address": {"city": "Oslo", "country": "NO"}, "name": "Ann", "createdAt": "2026-01-15T08:30:00Z",
        "birthday": "1990-05-01", "prefs": {"since": "2025-06-01T00:00:00Z"}, "userId": "u1"}), RUDDERSTACK)
    assert out["attributes"] == {"city": "Oslo", "country": "NO", "name": "Ann", "birthday": "1990-05-01",
                                 "prefs": {"since": "2025-06-01T00:00:00Z"}, "created_at": 1768465800,
                                 "_timestamp": unix(1), "anonymous_id": "a1"}


@BOTH_PATHS
@pytest.mark.parametrize(("created", "expected"), [
    (1704164645123, 1704164645),            # milliseconds: Math.floor(new Date(ms).getTime() / 1000)
    (1704164645123.9, 1704164645),
    ("2024-01-02T03:04:05.123Z", 1704164645),
    (1704164645, 1704164645),               # seconds: kept (RudderStack would read them as ms, January 1970)
])
def test_rudderstack_created_at_is_unix_seconds(profile, created, expected):
    assert op(identify("u1", 1, traits={"createdAt": created}), profile)["attributes"]["created_at"] == expected


@BOTH_PATHS
def test_rudderstack_identify_without_a_userId_or_email_is_not_sent(profile):
    # identifyResponseBuilder / buildIdentify: "userId or email is not present" -> nothing sent
    assert "userId or email" in unmapped(identify(None, 1, anon="a1", traits={"name": "x"}), profile, field="userId")


@BOTH_PATHS
def test_rudderstack_identifies_by_context_traits_email_and_events_by_properties_email(profile):
    out = op({"type": "identify", "anonymousId": "a1", "timestamp": at(1),
              "context": {"traits": {"email": "bea@example.com"}}}, profile)
    assert out["identifiers"] == {"email": "bea@example.com"}
    event = op(track(None, "Signup", 1, anon="a2", properties={"email": "fay@example.com", "at": at(0)}), profile)
    assert event["identifiers"] == {"email": "fay@example.com"}
    assert event["attributes"] == {"email": "fay@example.com", "at": at(0)}  # as sent, no anonymous_id


@BOTH_PATHS
def test_rudderstack_page_is_named_by_name_then_url(profile):
    page = op({"type": "page", "userId": "u1", "name": "Pricing", "properties": {"url": "https://x.test/p"}}, profile)
    assert (page["action"], page["name"]) == ("page", "Pricing")
    assert op({"type": "page", "userId": "u1", "properties": {"url": "https://x.test/p"}}, profile)["name"] == \
        "https://x.test/p"
    unmapped({"type": "page", "userId": "u1", "properties": {"title": "x"}}, profile, field="name")


def test_rudderstack_v1_screen_is_the_custom_event_viewed_x_screen():
    # transform.ts processSingleMessage: screen -> evType 'event', evName `Viewed ${event || properties.name} Screen`
    screen = op({"type": "screen", "userId": "u1", "name": "Top", "properties": {"name": "Cart", "items": 2}},
                RUDDERSTACK)
    assert {k: screen[k] for k in ("action", "name", "attributes")} == {
        "action": "event", "name": "Viewed Cart Screen", "attributes": {"name": "Cart", "items": 2}}
    assert op({"type": "screen", "userId": "u1", "event": "Home"}, RUDDERSTACK)["name"] == "Viewed Home Screen"
    assert "Viewed undefined Screen" in unmapped({"type": "screen", "userId": "u1", "name": "Top"}, RUDDERSTACK)


def test_rudderstack_v2_screen_is_a_screen_view():
    screen = op({"type": "screen", "userId": "u1", "name": "Top", "properties": {"name": "Cart"}}, RUDDERSTACK_V2)
    assert (screen["action"], screen["name"]) == ("screen", "Viewed Cart Screen")  # the top-level name is not read
    unmapped({"type": "screen", "userId": "u1", "name": "Top"}, RUDDERSTACK_V2, field="properties.name")


def test_rudderstack_group_reads_objectTypeId_only_and_keeps_every_trait_but_action():
    chain = Chain(RUDDERSTACK)
    (out,) = ops(chain, group("carl@example.com", "store_7", 0, name="S7", objectTypeId="2", object_type_id="4"))
    assert out == {"type": "object", "action": "identify", "identifiers": {"object_type_id": "2", "object_id": "store_7"},
                   "attributes": {"name": "S7", "objectTypeId": "2", "object_type_id": "4"},
                   "cio_relationships": [{"identifiers": {"email": "carl@example.com"}}]}
    assert chain.one(track("carl@example.com", "Viewed", 1)).body["context"]["groups"] == {"2": "store_7"}


@BOTH_PATHS
def test_rudderstack_traits_action_chooses_the_object_action_and_the_store_follows(profile):
    chain = Chain(profile)
    chain.run(group("u1", "store_7", 0, objectTypeId="2"))
    (out,) = ops(chain, group("u1", "store_7", 1, action="delete_relationships", objectTypeId="2"))
    assert out == {"type": "object", "action": "delete_relationships",
                   "identifiers": {"object_type_id": "2", "object_id": "store_7"},
                   "attributes": {"objectTypeId": "2"}, "cio_relationships": [{"identifiers": {"id": "u1"}}]}
    assert chain.one(track("u1", "Viewed", 2)).group_id is None
    (gone,) = ops(chain, group(None, "acct_old", 3, action="delete"))
    assert gone == {"type": "object", "action": "delete", "identifiers": {"object_type_id": "1", "object_id": "acct_old"},
                    "attributes": {}}
    unknown = op(group("u1", "g1", 0, action="explode"), profile)  # not an OBJECT_ACTION: identify
    assert unknown["action"] == "identify" and unknown["attributes"] == {}
    segment = op(group("u1", "g1", 0, action="delete"))  # the segment profile has no traits.action
    assert segment["action"] == "identify" and segment["attributes"] == {"action": "delete"}


def test_rudderstack_v1_device_events_add_the_device_with_the_properties_instead_of_the_event():
    # util.ts defaultResponseBuilder: PUT /customers/{id}/devices, device = {...properties, id: token, last_used,
    # platform (isAppleFamily -> ios, else lower-cased)}; no context device attributes
    chain = Chain(RUDDERSTACK)
    (out,) = ops(chain, device_track("u1", "Application Installed", 1, kind="iPadOS", properties={"build": "1"}))
    assert out == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                   "device": {"token": "tok-1", "last_used": unix(1), "platform": "ios", "attributes": {"build": "1"}}}
    (token,) = ops(chain, device_track("u1", "Push Token Registered", 1, kind="Android"))
    assert token == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                     "device": {"token": "tok-1", "last_used": unix(1), "platform": "android"}}


def test_rudderstack_v2_device_events_add_the_device_with_context_attributes_instead_of_the_event():
    chain = Chain(RUDDERSTACK_V2)
    (out,) = ops(chain, device_track("u1", "Application Installed", 1, kind="iPadOS", properties={"build": "1"}))
    assert out == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                   "device": {"token": "tok-1", "last_used": unix(1),
                              "attributes": {"device_os": "iOS", "app_version": "3.2.0", "device_locale": "en-US",
                                             "build": "1"},
                              "platform": "ios"}}
    (token,) = ops(chain, device_track("u1", "Push Token Registered", 1, kind="Android"))
    assert token["action"] == "add_device" and token["device"]["platform"] == "android"


@BOTH_PATHS
def test_rudderstack_device_events(profile):
    chain = Chain(profile)
    (plain,) = ops(chain, device_track("u1", "Application Opened", 1, token=None))  # no token: the plain event
    assert (plain["action"], plain["name"]) == ("event", "Application Opened")
    (removed,) = ops(chain, device_track("u1", "Application Uninstalled", 1))
    assert removed == {"type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
                       "device": {"token": "tok-1"}}


@BOTH_PATHS
def test_rudderstack_a_device_without_a_platform_is_not_sent(profile):
    # the Track API requires device.platform: RudderStack sends the device without one and Customer.io refuses it
    payload = track("u1", "Application Installed", 1, context={"device": {"token": "tok-1"}})
    assert "platform" in unmapped(payload, profile, field="context.device.type")
    unmapped(device_track("u1", "Application Installed", 1, kind="Windows"), profile, field="device.platform")


@BOTH_PATHS
def test_rudderstack_device_removal_without_a_token_is_not_sent(profile):
    # "userId/email or device_token not present": RudderStack sends nothing; groupspec forwards it, flagged
    unmapped(device_track("u1", "Application Uninstalled", 1, token=None), profile, field="context.device.token")


@BOTH_PATHS
def test_rudderstack_sends_lifecycle_events_as_plain_events_and_keeps_memberships(profile):
    chain = Chain(profile)
    chain.run(group("u1", "acct_1", 0))
    for event in ("User Deleted", "User Suppressed", "User Unsuppressed"):
        (out,) = ops(chain, track("u1", event, 1))
        assert (out["action"], out["name"]) == ("event", event)
    assert chain.one(track("u1", "Viewed", 2)).group_id == "acct_1"


@BOTH_PATHS
def test_rudderstack_alias_and_relationships_choose_email_or_id_by_the_email_test(profile):
    out = op({"type": "alias", "userId": "cio_03000010", "previousId": "old@example.com"}, profile)
    assert out == {"type": "person", "action": "merge", "primary": {"id": "cio_03000010"},
                   "secondary": {"email": "old@example.com"}}


# --- config ---------------------------------------------------------------------------------------------------------

def test_compat_defaults_to_segment_and_is_checked():
    assert parse_config({}).customerio.compat == "segment" and parse_config({}).contract.compat == "segment"
    with pytest.raises(ConfigError, match=r"g.toml: customerio.compat: expected segment \| rudderstack \| rudderstack-v2, "
                                          r"got 'mparticle'"):
        parse_config({"customerio": {"compat": "mparticle"}}, "g.toml")
    with pytest.raises(ConfigError, match="customerio.device_token_event: only with compat = \"rudderstack\" or "):
        parse_config({"customerio": {"device_token_event": "Push Token Registered"}}, "g.toml")


def test_every_source_contract_follows_the_configured_profile():
    cfg = parse_config({"customerio": {"compat": "rudderstack", "device_token_event": "T"},
                        "sources": {"web": {"contract": {"version": "x"}}}})
    assert cfg.contract_for("web").compat == "rudderstack" and cfg.contract_for("web").device_token_event == "T"
