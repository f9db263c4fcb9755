"""`groupspec verify`: the App API client (paging, 429, 401), the comparison, the outputs, the repair, and the
verify-drift fixture end to end against the App API and Track API stand-ins."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from appapi_standin import AppApiStandin
from cio_standin import CioStandin
from fake_clock import FakeClock
from groupspec.middleware.config import CustomerIO, parse_config
from groupspec.middleware.errors import Unauthorized
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.plugin.cli import main
from groupspec.plugin.verify.appapi import AppApi
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


def test_relationships_missing_and_extra():
    actual = Actual({"plan": "pro", "seats": 5}, [{"id": "ann", "cio_id": "c1"}, {"id": "zed", "cio_id": "c9"},
                                                  {"cio_id": "c7", "id": None, "email": None}])
    assert compare(GROUP, actual, set()) == [
        Finding("relationship_missing", person={"email": "bo@example.com"}),
        Finding("relationship_extra", person={"id": "zed"}),
        Finding("relationship_extra", person={"cio_id": "c7"}),
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
