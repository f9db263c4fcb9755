"""`install(client, config)` on the three real SDK clients with `send=False`: what `_enqueue` returns, what the
quarantine gets, user steps, failures, and the caller's dicts left untouched."""

from __future__ import annotations

import copy
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from unittest.mock import Mock

import customerio.analytics
import pytest
import rudderstack.analytics
import segment.analytics
from groupspec.middleware import install
from groupspec.middleware.config import ConfigError, parse_config
from groupspec.middleware.stores import StoreError
from groupspec.middleware.stores.memory import MemoryStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sdk_support import CONTRACT, SDKS, make_config, quarantined


@pytest.fixture(params=sorted(SDKS))
def sdk(request):
    return SDKS[request.param]


@pytest.fixture
def client(sdk, tmp_path):
    return install(sdk.Client("wk_test", send=False), make_config(tmp_path), store="memory://", mode="inline")


def owned_config(tmp_path):
    """Two sources; billing owns `credit`."""
    contract = {**CONTRACT, "group_traits": {**CONTRACT["group_traits"], "credit": {"type": "number", "owner": "billing"}}}
    return parse_config({"contract": contract, "quarantine": {"path": str(tmp_path / "quarantine.jsonl")},
                         "sources": {"web": {"write_key": "wk_web"}, "billing": {"write_key": "wk_billing"}}})


def test_the_source_is_the_one_whose_write_key_is_the_clients(sdk, tmp_path):
    """Issue 18: a client built with billing's write key keeps billing's owned writes (the old default,
    source="web", stripped them as `not_attribute_owner`)."""
    client = install(sdk.Client("wk_billing", send=False), owned_config(tmp_path), store="memory://", mode="inline")
    ok, msg = client.group("u1", "hh_1", {"credit": 12.5})
    assert ok and msg["traits"] == {"credit": 12.5} and msg["context"]["groupspec"]["violations"] == []
    ok, msg = install(sdk.Client("wk_web", send=False), owned_config(tmp_path), store="memory://",
                      mode="inline").group("u1", "hh_1", {"credit": 12.5})
    assert ok and "credit" not in msg["traits"]
    assert [v["code"] for v in msg["context"]["groupspec"]["violations"]] == ["not_attribute_owner"]


@pytest.mark.parametrize(("key", "source", "refusal"), [
    ("wk_web", "backend", "install(source='backend'): no such source in [sources] (have: web, billing)"),
    ("wk_web", "biling", "(did you mean `billing`?)"),
    ("wk_unknown", None, "the client's write key is not the write_key of any of [sources] (web, billing)"),
    ("wk_billing", "web", "the client's write key is sources.billing.write_key"),
])
def test_a_source_or_a_client_key_the_config_does_not_know_is_refused(tmp_path, key, source, refusal):
    with pytest.raises(ConfigError) as caught:
        install(segment.analytics.Client(key, send=False), owned_config(tmp_path), source, store="memory://")
    assert refusal in str(caught.value) and key not in str(caught.value)


def test_with_no_sources_declared_the_base_contract_applies(tmp_path):
    client = install(segment.analytics.Client("any_key", send=False), make_config(tmp_path), store="memory://",
                     mode="inline")
    ok, msg = client.identify("u1", {"plan_type": "family"})
    assert ok and [v["code"] for v in msg["context"]["groupspec"]["violations"]] == ["group_trait_on_person"]
    assert install(segment.analytics.Client("k2", send=False), owned_config(tmp_path), "web",
                   store="memory://")  # a key the config does not know, with its source named: allowed


def test_install_returns_the_client_and_exports(tmp_path):
    from groupspec import middleware

    client = segment.analytics.Client("wk", send=False)
    assert middleware.install(client, make_config(tmp_path), store="memory://") is client
    assert "install" in middleware.__all__


def test_track_is_enriched_from_membership(client):
    ok, group = client.group("u1", "hh_1", {"plan_type": "family"})
    assert ok and group["context"]["groupspec"]["resolution"] == "explicit"
    ok, msg = client.track("u1", "Order Placed", {"total": 12})
    assert ok
    assert msg["context"]["groupId"] == "hh_1"
    assert msg["context"]["groups"] == {"1": "hh_1"}
    assert msg["context"]["groupspec"] == {"resolution": "membership", "contract": "2026-11", "violations": []}
    assert msg["context"]["library"]["name"] == "analytics-python"  # the SDK's own work still happens
    assert msg["properties"] == {"total": 12} and msg["event"] == "Order Placed"


def test_sdk_fills_ids_and_times_once(client):
    ok, first = client.track("u1", "Viewed")
    _, second = client.track("u1", "Viewed")
    assert first["messageId"] != second["messageId"]
    assert datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    at = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    _, given_ids = client.track("u1", "Viewed", timestamp=at, message_id=42)
    assert given_ids["messageId"] == "42"
    assert datetime.fromisoformat(given_ids["timestamp"]) == at


def test_timestamp_format_is_the_sdks_own(sdk, tmp_path):
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    bare = sdk.Client("wk", send=False).track("u1", "Viewed", timestamp=at)[1]
    hooked = install(sdk.Client("wk", send=False), make_config(tmp_path), store="memory://", mode="inline")
    assert hooked.track("u1", "Viewed", timestamp=at)[1]["timestamp"] == bare["timestamp"]


def test_resolution_is_at_the_messages_own_time(client):
    joined = datetime(2026, 3, 1, tzinfo=timezone.utc)
    client.group("u1", "hh_1", timestamp=joined)
    _, before = client.track("u1", "Viewed", timestamp=joined - timedelta(days=1))
    _, after = client.track("u1", "Viewed", timestamp=datetime(2026, 3, 2))  # naive, long ago: UTC
    assert before["context"]["groupspec"]["resolution"] == "unresolved" and "groupId" not in before["context"]
    assert after["context"]["groupId"] == "hh_1"


def test_drop_is_not_queued_and_lands_in_quarantine(sdk, tmp_path):
    config = make_config(tmp_path, sources={"web": {"write_key": "wk"}})  # the client's key selects the source
    client = install(sdk.Client("wk", upload_interval=0.01), config, store="memory://", mode="inline")
    client.join()  # no consumer thread takes from the queue: it shows what was queued
    ok, msg = client.track("u1", "Order Placed", {"total": 3}, context={"groupId": "jane@example.com"})
    assert ok is False
    assert msg["context"]["groupId"] == "jane@example.com" and "groupspec" not in msg["context"]
    assert client.queue.qsize() == 0
    [record] = quarantined(tmp_path)
    assert record["source"] == "web"
    assert record["message"]["properties"] == {"total": 3} and record["message"]["messageId"]
    assert [v["code"] for v in record["violations"]] == ["invalid_group_id"]
    assert client.track("u1", "Viewed")[0] is True and client.queue.qsize() == 1


def test_flag_and_strip_are_forwarded(client):
    ok, flagged = client.track("u9", "Order Placed")
    assert ok and [v["code"] for v in flagged["context"]["groupspec"]["violations"]] == ["missing_group_id"]
    ok, stripped = client.identify("u9", {"plan_type": "family", "email": "u9@example.com"})
    assert ok and [v["code"] for v in stripped["context"]["groupspec"]["violations"]] == ["group_trait_on_person"]
    traits = stripped.get("traits") or stripped["context"]["traits"]  # RudderStack: context.traits
    assert traits == {"email": "u9@example.com"}


def test_rudderstack_identify_traits_and_channel(tmp_path):
    client = install(rudderstack.analytics.Client("wk", send=False), make_config(tmp_path), store="memory://", mode="inline")
    ok, msg = client.identify("u1", {"plan_type": "basic", "name": "Ann"}, anonymous_id="a1")
    assert ok and "traits" not in msg
    assert msg["context"]["traits"] == {"name": "Ann"}
    assert msg["channel"] == "server" and msg["integrations"] == {"All": True}
    assert msg["context"]["groupspec"]["violations"][0]["field"] == "context.traits.plan_type"


def test_customerio_group_without_user_id(tmp_path):
    client = install(customerio.analytics.Client("wk", send=False), make_config(tmp_path), store="memory://", mode="inline")
    ok, msg = client.group(anonymous_id="anon-1", group_id="hh_2", traits={"plan_type": "basic"})
    assert ok and msg["userId"] is None and msg["groupId"] == "hh_2"
    assert client.track(anonymous_id="anon-1", event="Viewed")[1]["context"]["groupId"] == "hh_2"
    # no person at all: an object-only update, forwarded as Customer.io's Pipelines API accepts it
    ok, msg = client.group(group_id="hh_3", traits={"name": "The Lees"})
    assert ok is True and msg["groupId"] == "hh_3" and msg["context"]["groupspec"]["violations"] == []


def test_values_json_lacks_are_converted_as_the_sdks_do(sdk, client):
    def properties():
        return {"price": Decimal("9.5"), "tags": {"a"}, "raw": b"x", "at": datetime(2026, 1, 2, tzinfo=timezone.utc)}

    bare = sdk.Client("wk", send=False).track("u1", "Viewed", properties())[1]["properties"]
    ok, msg = client.track("u1", "Viewed", properties())
    assert ok and "groupspec" in msg["context"]
    assert msg["properties"] == bare and [type(v) for v in msg["properties"].values()] == [type(v) for v in bare.values()]


def test_user_steps_run_around_groupspec(client, tmp_path):
    seen = []

    def tag(msg):
        msg.setdefault("context", {})["groupId"] = "hh_7"  # a user rule: the household from elsewhere
        return msg

    def probe(msg):
        seen.append(msg["context"]["groupspec"]["resolution"])
        msg["properties"]["checked"] = True
        return msg

    hooked = install(client, make_config(tmp_path), before=[tag], after=[probe], store="memory://", mode="inline")
    ok, msg = hooked.track("u1", "Order Placed", {"total": 1})
    assert ok and msg["context"]["groupId"] == "hh_7" and msg["properties"]["checked"] is True
    assert seen == ["explicit"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_user_drop_is_quarantined_as_dropped_by_user(client, tmp_path, where):
    def internal_only(msg):
        return None if msg["userId"].startswith("test_") else msg

    hooked = install(client, make_config(tmp_path), store="memory://", **{where: [internal_only]}, mode="inline")
    ok, msg = hooked.track("test_1", "Viewed", {"x": 1})
    assert ok is False and msg["properties"] == {"x": 1}
    [record] = quarantined(tmp_path)
    assert record["violations"][-1] == {"code": "dropped_by_user", "field": "",
                                        "message": f"{where} step internal_only returned None"}
    assert record["message"]["userId"] == "test_1"
    assert hooked.track("u1", "Viewed")[0] is True


def test_a_message_the_user_drops_teaches_the_store_nothing(client, tmp_path):
    def no_groups(msg):
        msg["traits"] = {"edited": True}  # edits of a copy: the quarantine keeps the original
        return None if msg["type"] == "group" else msg

    hooked = install(client, make_config(tmp_path), after=[no_groups], store="memory://", mode="inline")
    assert hooked.group("u1", "hh_1", {"plan_type": "basic"})[0] is False
    assert "groupId" not in hooked.track("u1", "Viewed")[1]["context"]
    assert quarantined(tmp_path)[0]["message"]["traits"] == {"plan_type": "basic"}


def test_install_again_replaces_the_hook(client, tmp_path):
    calls = []
    install(client, make_config(tmp_path), after=[lambda m: calls.append(1) or m], store="memory://", mode="inline")
    install(client, make_config(tmp_path), after=[lambda m: calls.append(2) or m], store="memory://", mode="inline")
    assert client.track("u1", "Viewed")[0] and calls == [2]


def test_install_rejects_what_is_not_an_sdk_client(tmp_path):
    with pytest.raises(TypeError, match="analytics Client or module"):
        install(object(), make_config(tmp_path), store="memory://")
    with pytest.raises(TypeError, match="analytics module"):
        install(logging, make_config(tmp_path), store="memory://")


def test_config_path_and_default_store(tmp_path, monkeypatch):
    path = tmp_path / "groupspec.toml"
    path.write_text(f'[contract]\nversion = "v9"\n[quarantine]\npath = "{tmp_path / "q.jsonl"}"\n')
    monkeypatch.chdir(tmp_path)
    client = install(segment.analytics.Client("wk", send=False), path, mode="inline")
    assert client.track("u1", "Viewed")[1]["context"]["groupspec"]["contract"] == "v9"
    assert (tmp_path / "groupspec.db").exists()  # without [store]: sqlite:///groupspec.db
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "other.db"}"\n')
    install(segment.analytics.Client("wk", send=False), str(path), mode="inline").group("u1", "hh_1")
    assert (tmp_path / "other.db").exists()


class BrokenStore(MemoryStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def memberships_at(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("bug"), StoreError("redis at 127.0.0.1:1 is unavailable")])
def test_failure_passes_the_message_through_and_logs_once(sdk, tmp_path, caplog, error):
    client = install(sdk.Client("wk", send=False), make_config(tmp_path), store=BrokenStore(error), mode="inline")
    with caplog.at_level(logging.ERROR, logger="groupspec.sdk"):
        results = [client.track("u1", "Order Placed", {"n": n}) for n in range(3)]
    assert all(ok for ok, _ in results)
    assert [msg["properties"]["n"] for _, msg in results] == [0, 1, 2]
    assert all("groupspec" not in msg["context"] for _, msg in results)  # unchanged: not enriched
    assert len([r for r in caplog.records if r.name == "groupspec.sdk"]) == 1
    assert quarantined(tmp_path) == []


def test_fail_closed_quarantines_instead(sdk, tmp_path):
    client = install(sdk.Client("wk", send=False), make_config(tmp_path), store=BrokenStore(RuntimeError("bug")), mode="inline",
                     fail_closed=True)
    ok, msg = client.track("u1", "Viewed", {"n": 1})
    assert ok is False and msg["properties"] == {"n": 1}
    [record] = quarantined(tmp_path)
    assert record["violations"][0]["code"] == "internal_error"


def test_failing_user_step_and_unserialisable_value_pass_through(client, tmp_path, caplog):
    def broken(msg):
        raise ValueError("oops")

    with caplog.at_level(logging.ERROR, logger="groupspec.sdk"):
        hooked = install(client, make_config(tmp_path), after=[broken], store="memory://", mode="inline")
        ok, msg = hooked.track("u1", "Viewed")
        assert ok and "groupspec" not in msg["context"]
        hooked = install(client, make_config(tmp_path), after=[broken], store="memory://", fail_closed=True,
                         mode="inline")
        ok, msg = hooked.track("u1", "Viewed", {"thing": 1})
    assert ok is False
    messages = [r.getMessage() for r in caplog.records if r.name == "groupspec.sdk"]
    assert "after step broken" in messages[0] and len(messages) == 1  # fail closed: quarantined, not logged
    [record] = quarantined(tmp_path)
    assert record["violations"][-1]["code"] == "internal_error"
    assert record["message"]["properties"]["thing"] == 1


def test_the_sdks_own_errors_stay_its_own(client):
    with pytest.raises(AssertionError):
        client.track("u1", "Viewed", timestamp="2026-01-01")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["track", "identify", "group", "page"]),
       payload=st.dictionaries(st.text(max_size=8), _json, max_size=4),
       context=st.dictionaries(st.sampled_from(["ip", "groupId", "traits", "page"]), _json, max_size=3))
def test_callers_dicts_change_only_as_the_bare_sdk_changes_them(sdk, client, kind, payload, context):
    payload = {**payload, "plan_type": "family", "group_id": "hh_9"}  # strip and property resolution paths
    if isinstance(context.get("traits"), dict):
        context["traits"]["plan_type"] = "basic"
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    msg = {"integrations": {"x": {"y": 1}}, "anonymousId": "a1", "timestamp": at, "context": context,
           "userId": "u1", "type": kind, "messageId": "m1", "event": "Order Placed", "groupId": "hh_1",
           "properties" if kind in ("track", "page") else "traits": payload}
    bare_msg = copy.deepcopy(msg)
    sdk.Client("wk", send=False)._enqueue(bare_msg)  # the SDK itself writes some of the caller's dicts
    ok, out = client._enqueue(msg)
    assert msg == bare_msg
    if ok:
        assert out is not msg and out["context"] is not context


def test_unexpected_errors_and_unwritable_quarantine_never_reach_the_caller(client, tmp_path, caplog, monkeypatch):
    (tmp_path / "a-file").write_text("")  # a missing folder would be made: a file in the way cannot be
    blocked = tmp_path / "a-file" / "quarantine.jsonl"
    config = parse_config({"contract": CONTRACT, "quarantine": {"path": str(blocked)}})
    with caplog.at_level(logging.ERROR, logger="groupspec.sdk"):
        hooked = install(client, config, store="memory://", fail_closed=True, mode="inline")
        assert hooked.track("u1", "Order Placed", context={"groupId": "not stable"})[0] is False  # cannot record
        hooked = install(client, config, store="memory://", mode="inline")
        ok, msg = hooked.track("u1", "Order Placed", context={"groupId": "not stable"})
        assert ok is True and msg["context"]["groupId"] == "not stable"  # passed through rather than lost
        monkeypatch.setattr("groupspec.middleware.sdk._json_copy", Mock(side_effect=OSError("no entropy")))
        ok, msg = hooked.track("u1", "Viewed")
    assert ok is True and msg["messageId"] and "groupspec" not in msg["context"]
    kinds = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "groupspec.sdk"]
    assert kinds == ["groupspec failed in quarantine (NotADirectoryError)"] * 2 + ["groupspec failed in hook (OSError)"]


def test_the_hooks_counts_read_as_totals(tmp_path):
    from groupspec.middleware.sdk import hook_of

    client = install(segment.analytics.Client("wk", send=False), make_config(tmp_path), store="memory://", mode="inline")
    client.track("u1", "Order Placed", context={"groupId": "hh_1"})
    client.track("u1", "Order Placed", context={"groupId": "not an id"})
    assert repr(hook_of(client).counts) == (
        "Counts(received=2, forwarded=1, quarantined=1, violations={'invalid_group_id': 1}, "
        "resolution={'explicit': 1, 'property': 0, 'membership': 0, 'unresolved': 0})")
