"""Customer.io parity (issue #10): each rule of docs/parity-reference.md, with the expected values taken from the
reference destinations' code (Segment's action-destinations `customerio/`, RudderStack's rudder-transformer
`customerio/v2/util.ts`), not from groupspec's output."""

from __future__ import annotations

import pytest
from core_support import Chain, at, codes, group, identify, track, unix
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.config import parse_config
from groupspec.plugin.customerio import mapping, rudderstack
from groupspec.plugin.customerio.dates import iso_seconds
from groupspec.plugin.customerio.identifiers import is_email

RUDDERSTACK = '[customerio]\ncompat = "rudderstack"\ndevice_token_event = "Push Token Registered"\n'


def ops(chain: Chain, payload) -> list[dict]:
    msg = chain.one(payload)
    assert not msg.quarantined, msg.violations
    return msg.ops


def op(payload, toml: str = "") -> dict:
    (only,) = ops(Chain(toml), payload)
    return only


def device_track(user, event, days=0, token="tok-1", kind="ios", **extra):
    device = {"type": kind} if token is None else {"token": token, "type": kind}
    return track(user, event, days, context={"device": device, "app": {"version": "3.2.0"}, "os": {"name": "iOS"},
                                             "locale": "en-US"}, **extra)


# --- segment profile (the default) ----------------------------------------------------------------------------------

def test_every_default_subscription_of_segments_destination_has_a_row():
    # index.ts presets + each action's defaultSubscription (reportDelivery/ContentEvent are out of scope)
    wanted = {("identify", None), ("track", None), ("page", None), ("screen", None), ("group", None),
              ("alias", None), ("track", "Application Installed"), ("track", "Application Opened"),
              ("track", "Application Uninstalled"), ("track", "Device Deleted"), ("track", "User Deleted"),
              ("track", "User Suppressed"), ("track", "User Unsuppressed"), ("track", "Relationship Deleted"),
              ("track", "Object Deleted")}
    assert set(mapping.ROUTES) == wanted
    assert mapping.PROFILES["segment"] is mapping.ROUTES and mapping.PROFILES["rudderstack"] is rudderstack.ROUTES


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


@pytest.mark.parametrize("event", ["Application Installed", "Application Opened"])
def test_device_events_with_a_token_add_the_device_then_send_the_event(event):
    chain = Chain()
    device, tracked = ops(chain, device_track("u1", event, 1, properties={"build": "320", "at": at(0)}))
    # createUpdateDevice: token, platform as sent, last_used from the timestamp, properties + app_version
    assert device == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                      "device": {"token": "tok-1", "platform": "ios", "last_used": unix(1),
                                 "attributes": {"build": "320", "at": unix(0), "app_version": "3.2.0"}}}
    assert (tracked["action"], tracked["name"]) == ("event", event)


def test_a_device_event_without_token_userId_or_platform_sends_only_the_event():
    for payload in (device_track("u1", "Application Installed", token=None),
                    device_track(None, "Application Installed", anon="a1"),
                    track("u1", "Application Opened", context={"device": {"token": "t"}})):
        (only,) = ops(Chain(), payload)
        assert only["action"] == "event"


@pytest.mark.parametrize("event", ["Application Uninstalled", "Device Deleted"])
def test_device_removal_deletes_the_device_then_sends_the_event(event):
    device, tracked = ops(Chain(), device_track("cio_7", event, 1))
    assert device == {"type": "person", "action": "delete_device", "identifiers": {"cio_id": "7"},
                      "device": {"token": "tok-1"}}
    assert tracked["name"] == event


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_user_deleted_deletes_the_person_and_ends_their_memberships(kind, tmp_path):
    chain = Chain(store_url="memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'store.db'}")
    chain.run(group("u1", "acct_1", 0), identify("u1", 0, anon="a1"), group(None, "acct_2", 0, anon="a1", objectTypeId=2))
    assert chain.one(track("u1", "Viewed", 1)).body["context"]["groups"] == {"1": "acct_1", "2": "acct_2"}
    (deleted,) = ops(chain, track("u1", "User Deleted", 2))
    assert deleted == {"type": "person", "action": "delete", "identifiers": {"id": "u1"}}
    after = chain.one(track("u1", "Viewed", 3))
    assert after.group_id is None and "groups" not in after.body["context"]
    assert chain.one(track(None, "Viewed", 3, anon="a1")).group_id is None  # the linked anonymous key too
    assert chain.one(track("u1", "Viewed", 1.5)).group_id == "acct_1"  # still a member before the deletion


def test_user_deleted_and_unsuppressed_fall_back_to_traits_email_suppressed_needs_the_userId():
    by_email = {"traits": {"email": "ann@example.com"}}
    assert op(track(None, "User Deleted", 1, anon="a1", **by_email))["identifiers"] == {"email": "ann@example.com"}
    assert op(track(None, "User Unsuppressed", 1, anon="a1", **by_email)) == {
        "type": "person", "action": "unsuppress", "identifiers": {"email": "ann@example.com"}}
    assert ops(Chain(), track(None, "User Suppressed", 1, anon="a1", **by_email)) == []
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


# --- rudderstack profile --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user", ["carl@example.com", "cio_03000010", "ann@exa_mple.com"])
def test_rudderstack_userId_is_always_id(user):
    assert op(identify(user, 1), RUDDERSTACK)["identifiers"] == {"id": user}
    assert op(track(user, "Viewed", 1), RUDDERSTACK)["identifiers"] == {"id": user}


def test_rudderstack_identify_keeps_traits_as_sent_but_createdAt_and_adds_timestamp_and_anonymous_id():
    out = op(identify("u1", 1, anon="a1", traits={
        "address": {"city": "Oslo", "country": "NO"}, "name": "Ann", "createdAt": "2026-01-15T08:30:00Z",
        "birthday": "1990-05-01", "prefs": {"since": "2025-06-01T00:00:00Z"}, "userId": "u1"}), RUDDERSTACK)
    assert out["attributes"] == {"city": "Oslo", "country": "NO", "name": "Ann", "birthday": "1990-05-01",
                                 "prefs": {"since": "2025-06-01T00:00:00Z"}, "created_at": 1768465800,
                                 "_timestamp": unix(1), "anonymous_id": "a1"}


def test_rudderstack_identifies_by_context_traits_email_and_events_by_properties_email():
    out = op({"type": "identify", "anonymousId": "a1", "timestamp": at(1),
              "context": {"traits": {"email": "bea@example.com"}}}, RUDDERSTACK)
    assert out["identifiers"] == {"email": "bea@example.com"}
    event = op(track(None, "Signup", 1, anon="a2", properties={"email": "fay@example.com", "at": at(0)}), RUDDERSTACK)
    assert event["identifiers"] == {"email": "fay@example.com"}
    assert event["attributes"] == {"email": "fay@example.com", "at": at(0)}  # as sent, no anonymous_id


def test_rudderstack_page_is_named_by_name_then_url_and_screen_is_viewed_x_screen():
    page = op({"type": "page", "userId": "u1", "name": "Pricing", "properties": {"url": "https://x.test/p"}}, RUDDERSTACK)
    assert page["name"] == "Pricing"
    assert op({"type": "page", "userId": "u1", "properties": {"url": "https://x.test/p"}}, RUDDERSTACK)["name"] == \
        "https://x.test/p"
    screen = op({"type": "screen", "userId": "u1", "name": "Top", "properties": {"name": "Cart"}}, RUDDERSTACK)
    assert screen["name"] == "Viewed Cart Screen"  # the top-level name is not read
    assert op({"type": "screen", "userId": "u1", "event": "Home"}, RUDDERSTACK)["name"] == "Viewed Home Screen"


def test_rudderstack_group_reads_objectTypeId_only_and_keeps_every_trait_but_action():
    chain = Chain(RUDDERSTACK)
    (out,) = ops(chain, group("carl@example.com", "store_7", 0, name="S7", objectTypeId="2", object_type_id="4"))
    assert out == {"type": "object", "action": "identify", "identifiers": {"object_type_id": "2", "object_id": "store_7"},
                   "attributes": {"name": "S7", "objectTypeId": "2", "object_type_id": "4"},
                   "cio_relationships": [{"identifiers": {"email": "carl@example.com"}}]}
    assert chain.one(track("carl@example.com", "Viewed", 1)).body["context"]["groups"] == {"2": "store_7"}


def test_rudderstack_traits_action_chooses_the_object_action_and_the_store_follows():
    chain = Chain(RUDDERSTACK)
    chain.run(group("u1", "store_7", 0, objectTypeId="2"))
    (out,) = ops(chain, group("u1", "store_7", 1, action="delete_relationships", objectTypeId="2"))
    assert out == {"type": "object", "action": "delete_relationships",
                   "identifiers": {"object_type_id": "2", "object_id": "store_7"},
                   "attributes": {"objectTypeId": "2"}, "cio_relationships": [{"identifiers": {"id": "u1"}}]}
    assert chain.one(track("u1", "Viewed", 2)).group_id is None
    (gone,) = ops(chain, group(None, "acct_old", 3, action="delete"))
    assert gone == {"type": "object", "action": "delete", "identifiers": {"object_type_id": "1", "object_id": "acct_old"},
                    "attributes": {}}
    unknown = op(group("u1", "g1", 0, action="explode"), RUDDERSTACK)  # not an OBJECT_ACTION: identify
    assert unknown["action"] == "identify" and unknown["attributes"] == {}
    segment = op(group("u1", "g1", 0, action="delete"))  # the segment profile has no traits.action
    assert segment["action"] == "identify" and segment["attributes"] == {"action": "delete"}


def test_rudderstack_device_events_add_the_device_instead_of_the_event():
    chain = Chain(RUDDERSTACK)
    (out,) = ops(chain, device_track("u1", "Application Installed", 1, kind="iPadOS", properties={"build": "1"}))
    assert out == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                   "device": {"token": "tok-1", "last_used": unix(1),
                              "attributes": {"device_os": "iOS", "app_version": "3.2.0", "device_locale": "en-US",
                                             "build": "1"},
                              "platform": "ios"}}
    (token,) = ops(chain, device_track("u1", "Push Token Registered", 1, kind="Android"))
    assert token["action"] == "add_device" and token["device"]["platform"] == "android"
    (plain,) = ops(chain, device_track("u1", "Application Opened", 1, token=None))
    assert plain["action"] == "event"
    (removed,) = ops(chain, device_track("u1", "Application Uninstalled", 1))
    assert removed == {"type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
                       "device": {"token": "tok-1"}}


def test_rudderstack_device_removal_without_a_token_is_malformed():
    msg = Chain(RUDDERSTACK).one(device_track("u1", "Application Uninstalled", 1, token=None))
    assert msg.quarantined and codes(msg) == ["malformed"] and msg.violations[0]["field"] == "context.device.token"


def test_rudderstack_sends_lifecycle_events_as_plain_events_and_keeps_memberships():
    chain = Chain(RUDDERSTACK)
    chain.run(group("u1", "acct_1", 0))
    for event in ("User Deleted", "User Suppressed", "User Unsuppressed"):
        (out,) = ops(chain, track("u1", event, 1))
        assert (out["action"], out["name"]) == ("event", event)
    assert chain.one(track("u1", "Viewed", 2)).group_id == "acct_1"


def test_rudderstack_alias_and_relationships_choose_email_or_id_by_the_email_test():
    out = op({"type": "alias", "userId": "cio_03000010", "previousId": "old@example.com"}, RUDDERSTACK)
    assert out == {"type": "person", "action": "merge", "primary": {"id": "cio_03000010"},
                   "secondary": {"email": "old@example.com"}}


# --- config ---------------------------------------------------------------------------------------------------------

def test_compat_defaults_to_segment_and_is_checked():
    assert parse_config({}).customerio.compat == "segment" and parse_config({}).contract.compat == "segment"
    with pytest.raises(ConfigError, match=r"g.toml: customerio.compat: expected segment \| rudderstack, got 'mparticle'"):
        parse_config({"customerio": {"compat": "mparticle"}}, "g.toml")
    with pytest.raises(ConfigError, match="customerio.device_token_event: only with compat = \"rudderstack\""):
        parse_config({"customerio": {"device_token_event": "Push Token Registered"}}, "g.toml")


def test_every_source_contract_follows_the_configured_profile():
    cfg = parse_config({"customerio": {"compat": "rudderstack", "device_token_event": "T"},
                        "sources": {"web": {"contract": {"version": "x"}}}})
    assert cfg.contract_for("web").compat == "rudderstack" and cfg.contract_for("web").device_token_event == "T"
