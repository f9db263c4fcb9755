"""`groupspec verify`: the App API client (paging, 429, 401), the comparison, the outputs, the repair, and the
verify-drift fixture end to end against the App API and Track API stand-ins."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from appapi_standin import PERSON_KEYS, AppApiStandin
from cio_standin import CioStandin
from fake_clock import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_support import examples
from groupspec.middleware.config import CustomerIO, parse_config
from groupspec.middleware.engine import Engine
from groupspec.middleware.errors import Unauthorized
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from groupspec.plugin.verify.appapi import AppApi, AppApiError
from groupspec.plugin.verify.command import fetch
from groupspec.plugin.verify.compare import Actual, Finding, GroupResult, compare, same
from groupspec.plugin.verify.expected import GroupView, owned_attributes, view
from groupspec.plugin.verify.repair import operations

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "verify-drift"
KEY = "app-key-standin-not-a-real-secret"


def client(app: AppApiStandin, time: FakeClock | None = None, key: str = KEY, **settings) -> AppApi:
    time = time or FakeClock()
    return AppApi(CustomerIO(app_url=app.url, **settings), key, clock=time, sleep=time.sleep)


def people(n: int) -> dict:
    return {"people": [{"id": f"u{i}", "email": f"u{i}@example.com", "cio_id": f"c{i}", "attributes": {}}
                       for i in range(n)],
            "objects": [{"object_type_id": "1", "object_id": "acme", "attributes": {"plan": "pro"},
                         "relationships": [{"id": f"u{i}"} for i in range(n)]}]}


# the App API client

def test_relationships_are_read_across_pages_with_next():
    with AppApiStandin(people(5), page_size=2) as app:
        related = client(app).object_relationships("1", "acme")
    assert [r["id"] for r in related] == ["u0", "u1", "u2", "u3", "u4"]
    assert related[0] == {"id": "u0", "email": "u0@example.com", "cio_id": "c0"}
    assert [s.query.get("start") for s in app.seen] == [None, "c2", "c4"]
    assert all(s.query["id_type"] == "object_id" for s in app.seen)


def test_the_client_stays_under_ten_requests_per_second_without_sleeping_for_real():
    time = FakeClock()
    with AppApiStandin(people(1), clock=time) as app:
        api = client(app, time)
        for _ in range(40):
            assert api.object_attributes("1", "acme") == {"plan": "pro"}
    assert [s.status for s in app.seen] == [200] * 40
    at = [s.at for s in app.seen]
    assert max(sum(1 for t in at if start <= t < start + 1.0) for start in at) <= 10
    assert time.now - 1000.0 >= 39 / 10  # it waited (on the fake clock) rather than bursting


def test_the_standin_refuses_an_eleventh_request_in_one_second():
    # the rate test above has teeth: without the client's limit the App API (and the stand-in) answers 429
    time = FakeClock()
    with AppApiStandin(people(1), clock=time) as app:
        statuses = [httpx.get(f"{app.url}/v1/objects/1/acme/attributes",
                              headers={"Authorization": f"Bearer {KEY}"}).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]


def test_a_429_is_retried_after_its_retry_after():
    time = FakeClock()
    with AppApiStandin(people(1), clock=time) as app:
        app.script(429, retry_after="3")
        assert client(app, time).object_attributes("1", "acme") == {"plan": "pro"}
    assert [s.status for s in app.seen] == [429, 200]
    assert 3.0 in time.sleeps


def test_a_401_names_the_setting_and_never_the_key():
    secret = "sk-wrong-but-secret-0123456789"
    with AppApiStandin(people(1)) as app, pytest.raises(Unauthorized) as caught:
        client(app, key=secret).object_attributes("1", "acme")
    assert "[customerio] app_api_key" in str(caught.value) and secret not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_object_or_person_is_none():
    with AppApiStandin(people(1)) as app:
        api = client(app)
        assert api.object_attributes("1", "nope") is None and api.object_relationships("1", "nope") is None
        assert api.customer_attributes({"email": "u0@example.com"})["id"] == "u0"
        assert api.customer_attributes({"id": "ghost"}) is None
    assert app.seen[-2].query == {"id_type": "email"}


def test_the_app_api_host_follows_the_region_and_the_override():
    assert CustomerIO().app_base_url == "https://api.customer.io"
    assert CustomerIO(region="eu").app_base_url == "https://api-eu.customer.io"
    assert CustomerIO(region="eu", app_url="http://127.0.0.1:9/").app_base_url == "http://127.0.0.1:9"


# the comparison (plain data)

GROUP = GroupView("1", "acme", {"plan": "pro", "seats": 5}, {"plan": "pro", "seats": 5},
                  [{"id": "ann"}, {"email": "bo@example.com"}], [])


def test_a_missing_object_is_one_drift():
    assert compare(GROUP, Actual(None, []), set()) == [Finding("missing_object")]


def test_attribute_values_compare_as_the_app_api_shows_them():
    actual = Actual({"plan": "basic", "seats": "5"}, [{"id": "ann"}, {"email": "bo@example.com", "id": None}])
    assert compare(GROUP, actual, set()) == [Finding("attribute_differs", "plan", expected="pro", actual="basic")]
    assert compare(GROUP, Actual({"seats": 5}, actual.relationships), set()) == [
        Finding("attribute_differs", "plan", expected="pro", actual=None)]
    assert same(True, "true") and same(1.0, "1") and not same("pro", "Pro") and not same(5, "5.5")


def test_relationships_missing_extra_and_unknown():
    group = replace(GROUP, left=[{"id": "zed"}])  # the store holds that zed left
    actual = Actual({"plan": "pro", "seats": 5}, [{"id": "ann", "cio_id": "c1"}, {"id": "zed", "cio_id": "c9"},
                                                  {"cio_id": "c7", "id": None, "email": None}])
    assert compare(group, actual, set()) == [
        Finding("relationship_missing", person={"email": "bo@example.com"}),
        Finding("relationship_extra", person={"id": "zed"}),
        Finding("relationship_unknown", person={"cio_id": "c7"}),
    ]


def test_a_group_attribute_on_a_member_is_drift():
    actual = Actual({"plan": "pro", "seats": 5}, [{"id": "ann"}, {"email": "bo@example.com"}],
                    [({"id": "ann"}, {"plan": "pro", "first_name": "Ann"}), ({"email": "bo@example.com"}, None)])
    assert compare(GROUP, actual, {"plan", "seats"}) == [
        Finding("attribute_on_person", "plan", person={"id": "ann"}, actual="pro")]


def test_the_store_view_uses_the_mapping_and_resolves_anonymous_members():
    config = parse_config({"contract": {"group_traits": {"plan": {}}},
                           "sources": {"web": {"contract": {"group_traits": {"tier": {}}}}}})
    store = MemoryStore()
    store.apply_traits("1", "acme", {"plan": "pro", "since": "2025-03-02T00:00:00Z", "gone": None}, 1.0, "m1")
    for person in ("u:ann", "a:anon-bo", "a:anon-cy"):
        store.record_membership(person, "1", "acme", 1.0, True)
    store.link("a:anon-bo", "u:bo@example.com")
    got = view(store, config, "1", "acme")
    assert got.attributes == {"plan": "pro", "since": 1740873600}
    assert got.members == [{"email": "bo@example.com"}, {"id": "ann"}] and got.anonymous == ["anon-cy"]
    assert owned_attributes(config) == {"plan", "tier"}


def test_a_deleted_object_is_expected_gone_and_a_group_call_since_creates_it_anew():
    config = parse_config({})
    store = MemoryStore()
    store.apply_traits("1", "acme", {"plan": "pro", "seats": 5}, 1.0, "m1")
    store.record_membership("u:ann", "1", "acme", 1.0, True)
    store.record_object_deleted("1", "acme", 2.0)  # Object Deleted
    gone = view(store, config, "1", "acme")
    assert gone.deleted and gone.members == [] and gone.attributes == {}
    assert compare(gone, Actual({"plan": "pro"}, []), set()) == [Finding("deleted_object_exists")]
    assert compare(gone, Actual(None, []), set()) == []  # deleted in both: no drift, nothing re-created
    assert operations(GroupResult(gone, [Finding("deleted_object_exists")])) == [
        {"type": "object", "action": "delete", "identifiers": {"object_type_id": "1", "object_id": "acme"}}]
    store.apply_traits("1", "acme", {"plan": "basic"}, 3.0, "m2")  # a group call re-creates it: only new attributes
    anew = view(store, config, "1", "acme")
    assert not anew.deleted and anew.attributes == {"plan": "basic"}


def test_repair_resends_the_object_and_removes_what_should_not_be_there():
    findings = [Finding("relationship_missing", person={"id": "bo"}), Finding("relationship_extra", person={"id": "zed"}),
                Finding("attribute_on_person", "plan", person={"id": "ann"}, actual="pro"),
                Finding("attribute_on_person", "seats", person={"id": "ann"}, actual="5")]
    ops = operations(GroupResult(GROUP, findings))
    assert ops == [
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"},
         "attributes": {"plan": "pro", "seats": 5},
         "cio_relationships": [{"identifiers": {"id": "ann"}}, {"identifiers": {"email": "bo@example.com"}}]},
        {"type": "object", "action": "delete_relationships", "identifiers": {"object_type_id": "1", "object_id": "acme"},
         "cio_relationships": [{"identifiers": {"id": "zed"}}]},
        {"type": "person", "action": "identify", "identifiers": {"id": "ann"}, "attributes": {"plan": None, "seats": None}},
    ]
    assert operations(GroupResult(GROUP, [])) == []


# the command

@pytest.fixture
def drift(tmp_path, monkeypatch):
    """The verify-drift fixture replayed into a SQLite store; the stand-ins serving its Customer.io state;
    `run(*args)` runs `groupspec verify` against them."""
    monkeypatch.setenv("CIO_SITE_ID", "site-standin")
    monkeypatch.setenv("CIO_API_KEY", "key-standin-not-a-real-secret")
    monkeypatch.setenv("CIO_APP_API_KEY", KEY)
    store = f"sqlite:///{tmp_path / 'groupspec.db'}"
    with AppApiStandin(json.loads((FIXTURE / "customerio.json").read_text())) as app, CioStandin() as track:
        config = tmp_path / "groupspec.toml"
        config.write_text((FIXTURE / "groupspec.toml").read_text().replace(
            "[customerio]\n", f'[customerio]\nurl = "{track.url}"\napp_url = "{app.url}"\n'
                              f'dead_letter = "{tmp_path / "dead.jsonl"}"\n'))
        assert main(["replay", str(FIXTURE / "input.jsonl"), "--config", str(config), "--out",
                     str(tmp_path / "replay"), "--store", store]) == 0

        def run(*args: str) -> int:
            return main(["verify", "--config", str(config), "--store", store, *args])

        run.app, run.track, run.tmp = app, track, tmp_path
        yield run


def test_the_fixture_drifts_are_found_exactly(drift, capsys):
    out = drift.tmp / "verify.json"
    assert drift("--json", str(out)) == 1
    assert json.loads(out.read_text()) == json.loads((FIXTURE / "expected" / "verify.json").read_text())
    printed = capsys.readouterr().out
    assert "2 groups checked, 2 with drift, 3 drifts" in printed
    assert all(kind in printed for kind in ("attribute_differs", "relationship_missing", "attribute_on_person"))
    assert drift.track.accepted == []


def test_repair_dry_run_lists_the_operations_and_sends_nothing(drift):
    out = drift.tmp / "verify.json"
    assert drift("--repair", "--dry-run", "--json", str(out)) == 1
    expected = [json.loads(line) for line in (FIXTURE / "expected" / "repair.jsonl").read_text().splitlines()]
    assert json.loads(out.read_text())["repair"] == expected
    assert drift.track.accepted == [] and drift.track.requests == []


def test_repair_makes_a_second_verify_clean(drift, capsys):
    assert drift("--repair") == 1
    expected = [json.loads(line) for line in (FIXTURE / "expected" / "repair.jsonl").read_text().splitlines()]
    assert drift.track.accepted == expected  # through the Track API delivery: Basic auth, /api/v2/batch
    assert {r.path for r in drift.track.requests} == {"/api/v2/batch"}
    drift.app.apply(drift.track.accepted)  # what Customer.io does with them
    out = drift.tmp / "again.json"
    assert drift("--json", str(out)) == 0
    again = json.loads(out.read_text())
    assert again["drifts"] == 0 and [g["status"] for g in again["groups"]] == ["ok", "ok"]
    assert "0 drifts" in capsys.readouterr().out


def test_group_checks_only_the_named_groups(drift):
    out = drift.tmp / "one.json"
    assert drift("--group", "1:hh_birch", "--json", str(out)) == 1
    doc = json.loads(out.read_text())
    assert [g["group_id"] for g in doc["groups"]] == ["hh_birch"] and doc["drifts"] == 1
    assert {s.path for s in drift.app.seen} == {"/v1/objects/1/hh_birch/attributes",
                                                "/v1/objects/1/hh_birch/relationships",
                                                "/v1/customers/user_lee/attributes", "/v1/customers/user_sam/attributes"}


@pytest.mark.parametrize("bad", ["hh_birch", "x:hh_birch", "0:hh_birch", "1:"])
def test_a_bad_group_argument_is_a_usage_error(drift, capsys, bad):
    with pytest.raises(SystemExit) as stopped:
        drift("--group", bad)
    assert stopped.value.code == 2 and "expected TYPE:ID" in capsys.readouterr().err


def test_an_unknown_group_is_a_usage_error(drift, capsys):
    assert drift("--group", "1:hh_oak") == 2
    assert "1:hh_oak" in capsys.readouterr().err and drift.app.seen == []


def test_sample_checks_that_many_groups(drift):
    out = drift.tmp / "sample.json"
    drift("--sample", "1", "--json", str(out))
    assert json.loads(out.read_text())["groups_checked"] == 1
    drift("--sample", "5", "--json", str(out))
    assert json.loads(out.read_text())["groups_checked"] == 2


def test_a_refused_app_api_key_is_a_config_error_without_the_key(drift, capsys, monkeypatch):
    monkeypatch.setenv("CIO_APP_API_KEY", "sk-live-secret-9f8e7d")
    assert drift() == 2
    err = capsys.readouterr().err
    assert "[customerio] app_api_key" in err and "sk-live-secret-9f8e7d" not in err


def test_dry_run_needs_repair(drift, capsys):
    assert drift("--dry-run") == 2 and "--dry-run goes with --repair" in capsys.readouterr().err


def test_json_schema(drift):
    out = drift.tmp / "v.json"
    drift("--json", str(out))
    doc = json.loads(out.read_text())
    assert set(doc) == {"schema", "groups_checked", "groups_with_drift", "drifts", "groups"}
    assert doc["schema"] == "groupspec.verify/1"
    for group in doc["groups"]:
        assert set(group) == {"object_type_id", "group_id", "status", "members", "unchecked_anonymous_members",
                              "findings"}
        for finding in group["findings"]:
            assert set(finding) == {"kind", "attribute", "person", "expected", "actual"}


def test_html_is_one_self_contained_page(drift):
    page = drift.tmp / "verify.html"
    drift("--html", str(page))
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<script" not in text
    assert not re.search(r'(src|href)=', text)
    assert text.count("class=drift>") == 3 and "hh_maple" in text and "relationship_missing" in text


def test_the_app_api_key_may_come_from_an_unset_variable_until_verify_needs_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CIO_APP_API_KEY_UNSET", raising=False)
    config = parse_config({"customerio": {"app_api_key": "${CIO_APP_API_KEY_UNSET}"}}, "g.toml")
    with pytest.raises(Exception) as caught:
        AppApi.from_config(config)
    assert str(caught.value) == "g.toml: customerio.app_api_key: environment variable CIO_APP_API_KEY_UNSET is not set"
    with pytest.raises(Exception, match="customerio.app_url: expected an http"):
        parse_config({"customerio": {"app_url": "https://user:pw@api.customer.io"}})


# a delete needs positive evidence (issue 17 item 2)

def test_an_alias_names_the_member_as_customerio_does_after_the_merge():
    store = MemoryStore()
    store.record_membership("u:old", "1", "acme", 1.0, True)  # a group call as `old`
    for prev, new in (("old", "mid"), ("mid", "new")):  # alias old -> mid, then mid -> new (learn's links)
        store.link("u:" + prev, "u:" + new)
        store.link("a:" + prev, "u:" + new)
    store.link("a:device", "u:new")  # an identify is no merge
    got = view(store, parse_config({}), "1", "acme")
    assert got.members == [{"id": "new"}] and got.earlier == [[{"id": "old"}, {"id": "mid"}]]
    for related in ("new", "old"):  # the merge done, or not yet (its primary did not exist then)
        assert compare(got, Actual({}, [{"id": related, "cio_id": "c1"}]), set()) == []
    assert compare(got, Actual({}, []), set()) == [Finding("relationship_missing", person={"id": "new"})]


def test_an_anonymous_member_identified_as_two_users_is_unchecked_and_neither_is_deleted():
    store = MemoryStore()
    store.record_membership("a:tablet", "1", "acme", 1.0, True)
    store.link("a:tablet", "u:pat")  # a shared device: two people signed in on it
    store.link("a:tablet", "u:quinn")
    got = view(store, parse_config({}), "1", "acme")
    assert got.members == [] and got.anonymous == ["tablet"] and got.unsure == [{"id": "pat"}, {"id": "quinn"}]
    assert compare(got, Actual({}, [{"id": "quinn", "cio_id": "c2"}]), set()) == []


def test_a_person_the_store_never_saw_in_the_group_is_reported_and_deleted_only_when_asked():
    store = MemoryStore()
    store.record_membership("a:anon-1", "1", "acme", 1.0, True)  # an anonymous member...
    store.record_membership("u:ann", "1", "acme", 1.0, True)
    store.record_membership("u:zed", "1", "acme", 1.0, True)
    store.record_membership("u:zed", "1", "acme", 2.0, False)  # ...and one who left
    got = view(store, parse_config({}), "1", "acme")
    assert got.left == [{"id": "zed"}]
    # ...identified in Customer.io as `lee` by a message the store never saw: the App API shows an id and a cio_id
    actual = Actual({}, [{"id": "ann", "cio_id": "c1"}, {"id": "lee", "email": None, "cio_id": "c5"},
                         {"id": "zed", "cio_id": "c9"}, {"cio_id": "c7", "id": None}])
    findings = compare(got, actual, set())
    assert findings == [Finding("relationship_unknown", person={"id": "lee"}),
                        Finding("relationship_extra", person={"id": "zed"})]  # c7 alone may be the anonymous one
    deletes = [op["cio_relationships"] for op in operations(GroupResult(got, findings))
               if op["action"] == "delete_relationships"]
    assert deletes == [[{"identifiers": {"id": "zed"}}]]  # positive evidence only
    deletes = [op["cio_relationships"] for op in operations(GroupResult(got, findings), delete_unknown=True)
               if op["action"] == "delete_relationships"]
    assert deletes == [[{"identifiers": {"id": "lee"}}, {"identifiers": {"id": "zed"}}]]


def test_an_incomplete_group_is_never_repaired():
    findings = compare(GROUP, Actual(None, [], incomplete="HTTP 500 on page 3"), {"plan"})
    assert findings == [Finding("incomplete", actual="HTTP 500 on page 3")]
    assert operations(GroupResult(GROUP, findings), delete_unknown=True) == []


USERS = ["ann", "bo"]
STEPS = st.tuples(st.sampled_from(["join", "leave", "alias", "identify"]), st.sampled_from(USERS),
                  st.sampled_from(USERS))  # the second user: an alias's new id


def message(index: int, step: tuple, group: str = "acme") -> dict:
    kind, user, new = step
    ts = f"2026-11-20T09:{index:02d}:00Z"
    body = {"messageId": f"m{index}", "timestamp": ts, "userId": user}
    if kind == "identify":
        return body | {"type": "identify", "traits": {"first_name": user}}
    if kind == "join":
        return body | {"type": "group", "groupId": group, "traits": {"plan": "pro"}}
    if kind == "leave":
        return body | {"type": "track", "event": "Relationship Deleted",
                       "properties": {"objectId": group, "objectTypeId": "1"}}
    return body | {"type": "alias", "userId": new, "previousId": user}


def related_now(app: AppApiStandin) -> list[dict]:
    record = app.objects.get(("1", "acme"), {"people": []})
    return [{key: person[key] for key in PERSON_KEYS} for person in record["people"]]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(STEPS, min_size=2, max_size=10), st.lists(st.sampled_from([False, False, True]), min_size=10,
                                                         max_size=10))
def test_repair_deletes_only_people_who_left_and_converges(steps, lost):
    # the pipeline's operations played on the stand-in (merges included), those of `lost` steps lost on the way;
    # whatever the history of identifies, joins, leaves and aliases, a repair never deletes a person who is a
    # member now (under any id), deletes only people the history shows leaving, and after it a second verify
    # finds no relationship drift
    config = parse_config({})
    store, app = MemoryStore(), AppApiStandin()
    engine = Engine(config, store, destination=CUSTOMERIO)
    into: dict[str, str] = {}  # user id -> the id it was merged into in Customer.io (both existed)
    member: dict[str, bool] = {}  # user id -> a member after its latest join or leave
    for index, step in enumerate(steps):
        kind, user, new = step
        if kind in ("join", "leave"):
            member[user] = kind == "join"
        ops = engine.process(message(index, step), None).ops
        if lost[index]:
            continue
        if kind == "alias" and user != new and all(app.person({"id": u}, create=False) for u in (user, new)):
            into[user] = new
        app.apply(ops)

    def now(user: str) -> str:  # the id Customer.io knows `user` by now
        seen = [user]
        while seen[-1] in into and into[seen[-1]] not in seen:
            seen.append(into[seen[-1]])
        return seen[-1]

    group = view(store, config, "1", "acme")
    ops = operations(GroupResult(group, compare(group, Actual({}, related_now(app)), set())))
    for op in ops:
        if op["action"] == "delete_relationships":
            for link in op["cio_relationships"]:
                gone = link["identifiers"]["id"]
                assert not any(now(user) == gone for user, joined in member.items() if joined)
                assert any(gone in (user, now(user)) for user, joined in member.items() if not joined)
    app.apply(ops)
    again = compare(group, Actual({}, related_now(app)), set())
    assert [f for f in again if f.kind.startswith("relationship")] == []


# end to end: the alias, the leaver, the stranger

CONFIG = """[contract]
default_object_type_id = "1"

[customerio]
site_id = "${CIO_SITE_ID}"
api_key = "${CIO_API_KEY}"
app_api_key = "${CIO_APP_API_KEY}"
"""


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """`pipeline(messages, lose=ACTION, settings=TOML)`: the messages replayed into a SQLite store, their
    operations (but those of action `lose`) played on the App API stand-in: Customer.io as the pipeline left it;
    the `run(*args)` it returns runs `groupspec verify --json` against them (`settings`: more `[customerio]`
    lines) and gives the report (`run.code` the exit code)."""
    monkeypatch.setenv("CIO_SITE_ID", "site-standin")
    monkeypatch.setenv("CIO_API_KEY", "key-standin-not-a-real-secret")
    monkeypatch.setenv("CIO_APP_API_KEY", KEY)
    store = f"sqlite:///{tmp_path / 'groupspec.db'}"
    with AppApiStandin() as app, CioStandin() as track:
        config = tmp_path / "groupspec.toml"
        config.write_text(CONFIG.replace("[customerio]\n", f'[customerio]\nurl = "{track.url}"\napp_url = "{app.url}"\n'
                                                           f'dead_letter = "{tmp_path / "dead.jsonl"}"\n'))

        def replayed(messages: list[dict], lose: str | None = None, settings: str = ""):
            config.write_text(config.read_text() + settings)
            (tmp_path / "input.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages))
            assert main(["replay", str(tmp_path / "input.jsonl"), "--config", str(config), "--out",
                         str(tmp_path / "replay"), "--store", store]) == 0
            ops = (tmp_path / "replay" / "customerio.jsonl").read_text().splitlines()
            app.apply([op for op in map(json.loads, ops) if op["action"] != lose])

            def run(*args: str) -> dict:
                out = tmp_path / "verify.json"
                out.unlink(missing_ok=True)
                run.code = main(["verify", "--config", str(config), "--store", store, "--json", str(out), *args])
                return json.loads(out.read_text())

            run.app, run.track = app, track
            return run

        yield replayed


def test_after_an_alias_verify_finds_no_drift_and_repair_deletes_nothing(pipeline):
    run = pipeline([message(1, ("identify", "user_new", "")), message(2, ("join", "user_old", "")),
                    message(3, ("alias", "user_old", "user_new"))])
    assert related_now(run.app) == [{"id": "user_new", "email": None, "cio_id": "cio0001"}]  # merged into user_new
    doc = run("--repair")
    assert run.code == 0 and doc["drifts"] == 0 and doc["repair"] == []
    assert run.track.accepted == []


def test_a_member_who_left_is_deleted_and_a_stranger_only_when_asked(pipeline):
    run = pipeline([message(1, ("join", "user_ann", "")), message(2, ("join", "user_bo", "")),
                    message(3, ("leave", "user_bo", ""))],
                   lose="delete_relationships")  # the pipeline saw bo leave; Customer.io missed the delete
    run.app.apply([{"type": "object", "action": "identify",  # related by someone else
                    "identifiers": {"object_type_id": "1", "object_id": "acme"},
                    "cio_relationships": [{"identifiers": {"id": "user_zed"}}]}])
    delete = {"type": "object", "action": "delete_relationships",
              "identifiers": {"object_type_id": "1", "object_id": "acme"}}
    doc = run("--repair", "--dry-run")
    assert [(f["kind"], f["person"]) for g in doc["groups"] for f in g["findings"]] == [
        ("relationship_extra", {"id": "user_bo"}), ("relationship_unknown", {"id": "user_zed"})]
    assert doc["repair"] == [delete | {"cio_relationships": [{"identifiers": {"id": "user_bo"}}]}]
    doc = run("--repair", "--delete-unknown", "--dry-run")
    assert doc["repair"] == [delete | {"cio_relationships": [{"identifiers": {"id": "user_bo"}},
                                                             {"identifiers": {"id": "user_zed"}}]}]
    run("--repair")
    assert run.track.accepted == [delete | {"cio_relationships": [{"identifiers": {"id": "user_bo"}}]}]


def test_delete_unknown_goes_with_repair(drift, capsys):
    assert drift("--delete-unknown") == 2 and "--delete-unknown goes with --repair" in capsys.readouterr().err


# verify always ends, and a group read cut short is `incomplete`, never repaired (issue 17 items 2 and 7)

def test_a_404_mid_paging_is_an_error_not_a_shorter_list():
    with AppApiStandin(people(5), page_size=2) as app:
        app.script_page(1, 404)  # the object went away between two pages
        with pytest.raises(AppApiError, match="HTTP 404 on page 2, after 2 relationships"):
            client(app).object_relationships("1", "acme")


def test_an_object_gone_between_its_attributes_and_its_relationships_is_incomplete():
    with AppApiStandin(people(5), page_size=2) as app:
        app.script_page(0, 404)
        actual = fetch(client(app), GROUP, set())
    assert actual.incomplete == ("Customer.io App API: the object's attributes were read, then its relationships "
                                 "answered HTTP 404")
    assert compare(GROUP, actual, set()) == [Finding("incomplete", actual=actual.incomplete)]


def test_a_repeated_cursor_is_an_error():
    with AppApiStandin(people(5), page_size=2) as app:
        app.cursors = ["c2", "c4", "c2"]
        with pytest.raises(AppApiError, match="page 3 answers the cursor 'c2' again"):
            client(app).object_relationships("1", "acme")


def test_a_cursor_that_never_ends_stops_at_the_page_limit():
    assert CustomerIO().verify_max_pages == 1000 and CustomerIO().verify_time_limit == "30m"
    time = FakeClock()
    with AppApiStandin(people(1), page_size=2, clock=time) as app:
        app.endless = 60  # a new `next` every time, to the same person
        with pytest.raises(AppApiError, match=r"more than 50 pages \(customerio.verify_max_pages\)"):
            client(app, time, verify_max_pages=50).object_relationships("1", "acme")
    assert len(app.seen) == 50


def test_the_run_time_limit_ends_an_endless_read_and_every_read_after_it():
    time = FakeClock()
    with AppApiStandin(people(1), page_size=2, clock=time) as app:
        app.endless = 10_000
        api = client(app, time, verify_time_limit="10s")
        with pytest.raises(AppApiError, match=r"time limit of 10s \(customerio.verify_time_limit\) is reached"):
            api.object_relationships("1", "acme")
        read = len(app.seen)
        assert 80 <= read <= 95 and time.now - 1000.0 <= 10.0  # 9 requests a second, for 10 (fake) seconds
        with pytest.raises(AppApiError, match="time limit"):
            api.object_attributes("1", "acme")
        assert len(app.seen) == read  # nothing more is asked


def test_a_retry_that_would_pass_the_time_limit_is_not_waited_for():
    time = FakeClock()
    with AppApiStandin(people(1), clock=time) as app:
        app.script(429, retry_after="60")
        with pytest.raises(AppApiError, match="HTTP 429, and a retry in 60s would pass the limit"):
            client(app, time, verify_time_limit="30s", retry_cap=120).object_attributes("1", "acme")
    assert 60 not in time.sleeps


def test_a_group_cut_short_mid_paging_is_incomplete_and_the_others_are_checked(pipeline):
    run = pipeline([*(message(i, ("join", f"user_{i}", "")) for i in range(5)),
                    message(5, ("join", "user_v", ""), "beta")], settings="max_retries = 1\n")
    run.app.objects[("1", "acme")]["people"].pop()  # a real drift: user_4 is not related...
    run.app.script_page(1, 500, count=2)  # ...but acme's second page fails, still after a retry
    doc = run("--repair")
    assert run.code == 1 and [g["status"] for g in doc["groups"]] == ["incomplete", "ok"]
    finding, = doc["groups"][0]["findings"]
    assert finding["kind"] == "incomplete" and "HTTP 500, still after 1 retries" in finding["actual"]
    assert doc["repair"] == [] and run.track.accepted == []  # never repaired
    missing = {"kind": "relationship_missing", "attribute": None, "person": {"id": "user_4"}, "expected": None,
               "actual": None}
    assert run("--repair", "--dry-run")["groups"][0]["findings"] == [missing]  # read whole: the drift shows


def test_the_page_limit_and_the_time_limit_end_verify(pipeline, capsys):
    run = pipeline([message(0, ("join", "user_a", "")), message(1, ("join", "user_b", ""), "beta")],
                   settings="verify_max_pages = 3\n")
    run.app.endless = 3
    doc = run("--repair")
    assert run.code == 1 and [g["status"] for g in doc["groups"]] == ["incomplete", "ok"]
    assert "more than 3 pages (customerio.verify_max_pages)" in doc["groups"][0]["findings"][0]["actual"]
    assert doc["repair"] == [] and "(1 read incomplete: not compared, not repaired)" in capsys.readouterr().out
    run.app.endless = 10**9  # every object's cursor never ends: the run's time limit ends it
    doc = run("--max-pages", "100000", "--time-limit", "1s", "--repair")
    assert run.code == 1 and [g["status"] for g in doc["groups"]] == ["incomplete", "incomplete"]
    assert all("time limit of 1s" in g["findings"][0]["actual"] for g in doc["groups"])
    assert doc["repair"] == [] and run.track.accepted == []


@pytest.mark.parametrize("flag, value", [("--max-pages", "0"), ("--time-limit", "30 min")])
def test_a_bad_limit_flag_is_a_usage_error(drift, capsys, flag, value):
    with pytest.raises(SystemExit) as stopped:
        drift(flag, value)
    assert stopped.value.code == 2 and "expected" in capsys.readouterr().err
