"""Group resolution: explicit -> property -> membership -> unresolved, point-in-time, several object types,
and the person followed across identify/alias links."""

from __future__ import annotations

import pytest
from core_support import Chain, at, deleted, group, identify, left, track


def resolved(msg) -> tuple[str, str | None]:
    return msg.resolution, msg.body["context"].get("groupId")


# --- order -------------------------------------------------------------------------------------------------------

#: resolution order alone: a named group the person is not a member of stays named (`group_id_conflict` flags it)
FLAG_CONFLICTS = '[contract.actions]\ngroup_id_conflict = "flag"'


def test_explicit_context_group_id_comes_first():
    chain = Chain(FLAG_CONFLICTS)
    chain.run(group("u", "hh_member", 0))
    msg = chain.one(track("u", days=1, context={"groupId": "hh_explicit"}, properties={"group_id": "hh_prop"}))
    assert resolved(msg) == ("explicit", "hh_explicit")
    assert msg.body["context"]["groupspec"]["resolution"] == "explicit"


@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_a_property_comes_before_membership_on_events(kind):
    chain = Chain(FLAG_CONFLICTS)
    chain.run(group("u", "hh_member", 0))
    body = {"type": kind, "userId": "u", "event": "E", "name": "N", "timestamp": at(1),
            "properties": {"group_id": "hh_prop"}}
    assert resolved(chain.one(body)) == ("property", "hh_prop")


def test_identify_reads_the_group_key_from_traits_not_properties():
    chain = Chain()
    assert resolved(chain.one(identify("u", 1, traits={"group_id": "hh_t"}))) == ("property", "hh_t")
    msg = chain.one(identify("v", 1, properties={"group_id": "hh_p"}))
    assert resolved(msg) == ("unresolved", None)


def test_track_does_not_read_the_group_key_from_traits():
    msg = Chain().one(track("u", days=1, traits={"group_id": "hh_t"}))
    assert resolved(msg) == ("unresolved", None)


def test_the_configured_group_key_is_the_one_read():
    chain = Chain('[contract]\ngroup_key = "household"')
    assert resolved(chain.one(track("u", days=1, properties={"household": "hh_9"}))) == ("property", "hh_9")
    assert resolved(chain.one(track("u", days=1, properties={"group_id": "hh_9"}))) == ("unresolved", None)


def test_empty_explicit_and_property_ids_fall_through_to_membership():
    chain = Chain()
    chain.run(group("u", "hh_m", 0))
    msg = chain.one(track("u", days=1, context={"groupId": ""}, properties={"group_id": None}))
    assert resolved(msg) == ("membership", "hh_m")


def test_membership_then_unresolved():
    chain = Chain()
    chain.run(group("u", "hh_1", 0))
    assert resolved(chain.one(track("u", days=1))) == ("membership", "hh_1")
    assert resolved(chain.one(track("stranger", days=1))) == ("unresolved", None)


def test_an_unresolved_message_carries_no_group_keys():
    msg = Chain().one(track("nobody", days=1))
    context = msg.body["context"]
    assert "groupId" not in context and "groups" not in context
    assert context["groupspec"]["resolution"] == "unresolved"


# --- point in time -----------------------------------------------------------------------------------------------

def test_before_join_the_person_has_no_group():
    chain = Chain()
    chain.run(group("u", "hh_1", 5))
    assert resolved(chain.one(track("u", days=4))) == ("unresolved", None)
    assert resolved(chain.one(track("u", days=5))) == ("membership", "hh_1")  # the join's own time counts


def test_after_leaving_the_person_has_no_group():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), left("u", "hh_1", 5))
    assert resolved(chain.one(track("u", days=3))) == ("membership", "hh_1")
    assert resolved(chain.one(track("u", days=6))) == ("unresolved", None)


def test_after_the_object_is_deleted_no_member_has_it():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), group("v", "hh_1", 1), deleted("u", "hh_1", 5))
    assert resolved(chain.one(track("v", days=4))) == ("membership", "hh_1")
    assert resolved(chain.one(track("v", days=6))) == ("unresolved", None)
    assert resolved(chain.one(track("u", days=6))) == ("unresolved", None)


def test_a_join_after_the_object_was_deleted_counts_from_its_time():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), deleted("u", "hh_1", 3), group("u", "hh_1", 5))
    assert [resolved(chain.one(track("u", days=d)))[1] for d in (2, 4, 6)] == ["hh_1", None, "hh_1"]


def test_a_late_object_deletion_applies_at_its_own_time():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), track("u", days=6))
    chain.run(deleted("u", "hh_1", 4))
    assert resolved(chain.one(track("u", days=5))) == ("unresolved", None)
    assert resolved(chain.one(track("u", days=3))) == ("membership", "hh_1")


def test_a_rejoin_restores_the_group_from_its_time():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), left("u", "hh_1", 3), group("u", "hh_1", 5))
    assert [resolved(chain.one(track("u", days=d)))[1] for d in (2, 4, 6)] == ["hh_1", None, "hh_1"]


def test_a_late_event_gets_the_group_of_its_own_time():
    chain = Chain()
    chain.run(group("u", "hh_old", 1), left("u", "hh_old", 5), group("u", "hh_new", 6))
    assert resolved(chain.one(track("u", days=10))) == ("membership", "hh_new")
    assert resolved(chain.one(track("u", days=2))) == ("membership", "hh_old")  # arrives late


def test_a_late_leave_still_ends_the_membership_at_its_time():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), track("u", days=7))
    chain.run(left("u", "hh_1", 5))  # recorded after a later event
    assert resolved(chain.one(track("u", days=6))) == ("unresolved", None)
    assert resolved(chain.one(track("u", days=4))) == ("membership", "hh_1")


def test_a_late_join_counts_for_events_after_it():
    chain = Chain()
    chain.run(group("u", "hh_b", 5))
    chain.run(group("u", "hh_a", 3))  # an older join arrives later
    assert resolved(chain.one(track("u", days=4))) == ("membership", "hh_a")
    assert resolved(chain.one(track("u", days=6))) == ("membership", "hh_b")  # the latest join wins


# --- several object types ----------------------------------------------------------------------------------------

def test_every_type_is_listed_and_group_id_is_the_default_types_latest():
    chain = Chain('[contract]\ndefault_object_type_id = "1"')
    chain.run(group("u", "hh_1", 1), group("u", "acct_1", 2, objectTypeId="2"), group("u", "hh_2", 3),
              group("u", "team_1", 4, objectTypeId=3))
    msg = chain.one(track("u", days=5))
    assert msg.body["context"]["groups"] == {"1": "hh_2", "2": "acct_1", "3": "team_1"}
    assert resolved(msg) == ("membership", "hh_2")  # default type, even though team_1 joined later


def test_without_a_default_type_membership_the_latest_join_of_any_type_wins():
    chain = Chain()
    chain.run(group("u", "acct_1", 1, objectTypeId="2"), group("u", "team_1", 2, object_type_id="3"))
    msg = chain.one(track("u", days=3))
    assert resolved(msg) == ("membership", "team_1")
    assert msg.body["context"]["groups"] == {"2": "acct_1", "3": "team_1"}


def test_the_default_type_is_per_contract():
    chain = Chain('[contract]\ndefault_object_type_id = "2"')
    chain.run(group("u", "hh_1", 1, objectTypeId="1"), group("u", "acct_1", 2))  # acct_1 is of type 2
    chain.run(group("u", "hh_2", 3, objectTypeId="1"))
    assert resolved(chain.one(track("u", days=4))) == ("membership", "acct_1")


def test_an_explicit_id_is_listed_under_the_default_type_next_to_known_memberships():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), group("u", "acct_1", 1, objectTypeId="2"))
    msg = chain.one(track("u", days=2, context={"groupId": "hh_1"}))
    assert msg.body["context"]["groups"] == {"1": "hh_1", "2": "acct_1"}


def test_an_explicit_id_of_a_known_group_keeps_that_groups_type():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), group("u", "acct_1", 1, objectTypeId="2"))
    msg = chain.one(track("u", days=2, context={"groupId": "acct_1"}))
    assert msg.body["context"]["groupId"] == "acct_1"
    assert msg.body["context"]["groups"] == {"1": "hh_1", "2": "acct_1"}


def test_leaving_one_type_keeps_the_others():
    chain = Chain()
    chain.run(group("u", "hh_1", 1), group("u", "acct_1", 1, objectTypeId="2"), left("u", "hh_1", 2, type_id="1"))
    msg = chain.one(track("u", days=3))
    assert resolved(msg) == ("membership", "acct_1")
    assert msg.body["context"]["groups"] == {"2": "acct_1"}


def test_leaving_a_group_of_another_type_needs_its_type_id():
    chain = Chain()
    chain.run(group("u", "acct_1", 1, objectTypeId="2"), left("u", "acct_1", 2))  # default type 1: not this one
    assert resolved(chain.one(track("u", days=3))) == ("membership", "acct_1")
    chain.run(left("u", "acct_1", 2, type_id="2"))
    assert resolved(chain.one(track("u", days=3))) == ("unresolved", None)


# --- identities ----------------------------------------------------------------------------------------------------

def test_an_identify_with_both_ids_links_them_both_ways():
    chain = Chain()
    chain.run(group(None, "hh_anon", 1, anon="a1"), group("u1", "acct_u", 1, objectTypeId="2"))
    chain.run(identify("u1", 2, anon="a1"))
    assert resolved(chain.one(track("u1", days=3))) == ("membership", "hh_anon")
    assert chain.one(track(None, days=3, anon="a1")).body["context"]["groups"] == {"1": "hh_anon", "2": "acct_u"}


def test_an_alias_links_the_previous_id_to_the_user():
    chain = Chain()
    chain.run(group(None, "hh_1", 1, anon="a1"), {"type": "alias", "userId": "u1", "previousId": "a1",
                                                    "timestamp": at(2)})
    assert resolved(chain.one(track("u1", days=3))) == ("membership", "hh_1")


def test_an_alias_of_an_old_user_id_carries_its_groups():
    chain = Chain()
    chain.run(group("old", "hh_1", 1), {"type": "alias", "userId": "new", "previousId": "old", "timestamp": at(2)})
    assert resolved(chain.one(track("new", days=3))) == ("membership", "hh_1")


def test_links_are_followed_transitively():
    chain = Chain()
    chain.run(group(None, "hh_1", 1, anon="a1"), identify("u1", 2, anon="a1"),
              {"type": "alias", "userId": "u2", "previousId": "u1", "timestamp": at(3)})
    assert resolved(chain.one(track("u2", days=4))) == ("membership", "hh_1")


def test_an_anonymous_visitor_who_joins_and_signs_up_keeps_the_household():
    chain = Chain()
    chain.run(group(None, "hh_1", 1, anon="visitor"), track(None, days=1.5, anon="visitor"))
    signup = chain.one(track("u1", "Signed Up", days=2, anon="visitor"))  # an event with both ids
    assert resolved(signup) == ("membership", "hh_1")
    chain.run(identify("u1", 2, anon="visitor"))
    assert resolved(chain.one(track("u1", days=3))) == ("membership", "hh_1")  # only the userId from now on


def test_unlinked_people_do_not_share_groups():
    chain = Chain()
    chain.run(group(None, "hh_1", 1, anon="a1"), identify("u2", 2, anon="a2"))
    assert resolved(chain.one(track("u2", days=3))) == ("unresolved", None)


# --- messageId collisions (issue 9, item 4) -----------------------------------------------------------------------

COLLIDING = """
[sources.web]
write_key = "wk_web"
[sources.app]
write_key = "wk_app"
"""


def test_another_sources_message_with_the_same_message_id_is_another_message():
    chain = Chain(COLLIDING, store_url="sqlite:///:memory:")
    chain.run({**group("ann", "hh_1", 1), "messageId": "m1", "writeKey": "wk_web"})
    web = chain.one({**track("bob", "Order Placed", 2), "messageId": "m7", "writeKey": "wk_web"})
    app = chain.one({**track("cat", "Order Placed", 2), "messageId": "m7", "writeKey": "wk_app"})
    (web_op,), (app_op,) = web.ops, app.ops
    assert web_op["id"] != app_op["id"]  # Customer.io would drop the second as a duplicate of the first
    assert (web.arrival, app.arrival) == (2, 3)  # neither reads the store as of the other's arrival


def test_a_true_resend_is_the_same_message():
    chain = Chain(COLLIDING, store_url="sqlite:///:memory:")
    first = chain.one({**track("bob", "Order Placed", 2), "messageId": "m7", "writeKey": "wk_web"})
    again = chain.one({**track("bob", "Order Placed", 2), "messageId": "m7", "writeKey": "wk_web"})
    assert first.ops[0]["id"] == again.ops[0]["id"] and first.arrival == again.arrival


def test_two_people_of_one_source_with_the_same_message_id_get_two_event_ids():
    chain = Chain()
    ann = chain.one({**track("ann", "Order Placed", 2), "messageId": "m7"})
    bob = chain.one({**track("bob", "Order Placed", 2), "messageId": "m7"})
    assert ann.ops[0]["id"] != bob.ops[0]["id"]
