"""The input limits (docs/limits.md) at the running service (issue #9): depth, 64-bit integers and batch members are
refused at intake (400, nothing spooled); times at the edges and dates in the future are quarantined without
harming the service; a `Retry-After` of a day waits at most `retry_cap` and shows as throttled; event names are
bounded in `/report.json`; and a bounded fuzz of random requests never gets a 5xx and counts every message."""

from __future__ import annotations

import base64
import gzip
import time
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hostile_support import JSON, MEMBER, deep_body, dumps, nested
from service_harness import OPERATOR, OPERATOR_TOKEN, WRITE_KEYS, ThreadService, metrics, wait_for, write_config

WEB = (WRITE_KEYS["web"], "")
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture
def service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN})) as svc:
        yield svc


def post(svc, path: str, body: bytes) -> httpx.Response:
    return httpx.post(svc.url + path, content=body, headers=JSON_TYPE, auth=WEB, timeout=20)


def track(i: int, **extra) -> dict:
    return {"type": "track", "userId": f"user_{i}", "event": "Product Viewed", "messageId": f"m{i}",
            "timestamp": "2026-11-01T10:00:00Z", "properties": {"sku": f"sku_{i}"}, **extra}


def drained(svc) -> dict[str, float]:
    return wait_for(lambda: (m := metrics(svc.url)).get("groupspec_spool_depth") == 0 and m, 20)


def quarantine(tmp_path) -> list[dict]:
    path = tmp_path / "quarantine.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def nothing_spooled(svc) -> None:
    shown = metrics(svc.url)
    assert shown.get("groupspec_accepted_total", 0) == 0 and shown["groupspec_spool_depth"] == 0


# -- depth ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [65, 255, 1000])
def test_a_message_nested_deeper_than_64_levels_is_refused_400(service, levels):
    assert post(service, "/v1/track", deep_body(levels)).status_code == 400
    assert post(service, "/v1/batch", deep_body(levels, track(1))).status_code == 400
    nothing_spooled(service)


def test_a_batch_over_32_kb_with_one_deep_member_is_refused_400(service):
    body = deep_body(300, *[track(i) for i in range(300)])
    assert len(body) > 32 * 1024
    answer = post(service, "/v1/batch", body)
    assert answer.status_code == 400 and "nested deeper than 64 levels" in answer.text
    nothing_spooled(service)


def test_a_message_nested_64_levels_is_accepted_and_delivered(service, cio):
    assert deep_body(64) == dumps(nested(64))
    assert post(service, "/v1/track", deep_body(64)).status_code == 200
    (op,) = wait_for(lambda: cio.accepted)
    assert op["name"] == "Deep"


# -- times -----------------------------------------------------------------------------------------------------

def test_a_time_in_utc_year_10000_is_quarantined_and_report_keeps_answering(service, tmp_path):
    edge = {**track(1), "timestamp": "9999-12-31T23:59:59-14:00"}
    assert post(service, "/v1/track", dumps(edge)).status_code == 200
    assert post(service, "/v1/batch", dumps({"batch": [{"type": "track", "userId": "u2"}]})).status_code == 200
    shown = drained(service)
    assert shown['groupspec_quarantined_total{code="malformed"}'] == 2
    assert [r["violations"][0]["code"] for r in quarantine(tmp_path)] == ["malformed", "malformed"]
    for _ in range(3):
        answer = httpx.get(service.url + "/report.json", headers=OPERATOR)
        assert answer.status_code == 200 and answer.json()["quarantined"] == 2


def test_a_group_call_dated_2099_is_future_timestamp_and_freezes_no_trait(service, cio, tmp_path):
    now = datetime.now(timezone.utc)
    ahead = {"type": "group", "userId": "ann", "groupId": "hh_1", "messageId": "g1",
             "timestamp": "2099-01-01T00:00:00Z", "traits": {"plan": "pro"}}
    later = {**ahead, "messageId": "g2", "timestamp": (now - timedelta(minutes=1)).isoformat(),
             "traits": {"plan": "basic"}}
    assert post(service, "/v1/group", dumps(ahead)).status_code == 200
    wait_for(lambda: quarantine(tmp_path))
    assert post(service, "/v1/group", dumps(later)).status_code == 200
    (op,) = wait_for(lambda: cio.accepted)
    assert op["attributes"]["plan"] == "basic"
    shown = drained(service)
    assert shown['groupspec_quarantined_total{code="future_timestamp"}'] == 1
    assert [r["violations"][0]["code"] for r in quarantine(tmp_path)] == ["future_timestamp"]
    report = httpx.get(service.url + "/report.json", headers=OPERATOR).json()
    assert "stale_group_update" not in [row["code"] for row in report["violations"]]


# -- Retry-After -------------------------------------------------------------------------------------------------

def test_a_retry_after_of_a_day_waits_at_most_retry_cap_and_shows_throttled(tmp_path, cio):
    cap = 2.0
    config = write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN},
                          customerio={"retry_cap": cap, "max_retries": 3})
    cio.script(429, retry_after=86400)
    with ThreadService(config) as svc:
        assert post(svc, "/v1/track", dumps(track(1))).status_code == 200
        wait_for(lambda: cio.requests)  # the 429
        refused = time.monotonic()
        wait_for(lambda: metrics(svc.url).get("groupspec_delivery_throttled") == 1, cap)
        health = httpx.get(svc.url + "/health")
        assert health.status_code == 200 and health.json()["throttled"] is True
        wait_for(lambda: cio.accepted, cap + 5)
        assert time.monotonic() - refused < cap + 5
        wait_for(lambda: metrics(svc.url).get("groupspec_delivery_throttled") == 0)
        assert "throttled" not in httpx.get(svc.url + "/health").json()


# -- metric cardinality ------------------------------------------------------------------------------------------

def test_event_names_are_bounded_to_500_rows_and_other(service):
    batch = [{**track(i), "event": f"Event {i:04d}"} for i in range(600)]
    assert post(service, "/v1/batch", dumps({"batch": batch})).status_code == 200
    drained(service)
    events = httpx.get(service.url + "/report.json", headers=OPERATOR).json()["events"]
    named = [row for row in events if row["event"] != "(other)"]
    (other,) = [row for row in events if row["event"] == "(other)"]
    assert len(named) == 500 and other["received"] == 100
    assert sum(row["received"] for row in events) == 600
    text = httpx.get(service.url + "/metrics", headers=OPERATOR).text
    assert "Event 0" not in text and len(text) < 20_000


# -- amplification ---------------------------------------------------------------------------------------------

def test_a_510_kb_batch_of_zeros_is_refused_400_without_spooling(service, tmp_path):
    body = b'{"batch":[' + b",".join([b"0"] * 255_000) + b"]}"
    assert 500_000 < len(body) < 500 * 1024
    assert post(service, "/v1/batch", body).status_code == 400
    nothing_spooled(service)
    assert quarantine(tmp_path) == []


def test_a_batch_key_at_a_single_type_endpoint_is_one_message(service, tmp_path):
    """The path makes the body one message (docs/service.md: the path sets `type` when the body has none)."""
    body = dumps({"batch": [track(1), track(2), [], 0]})
    assert post(service, "/v1/track", body).status_code == 200
    shown = drained(service)
    assert shown["groupspec_accepted_total"] == shown["groupspec_received_total"] == 1
    (record,) = quarantine(tmp_path)
    assert record["violations"][0]["code"] == "malformed"


# -- numbers -----------------------------------------------------------------------------------------------------

def test_an_integer_beyond_64_bits_is_refused_400(service):
    answer = post(service, "/v1/track", dumps(track(1, properties={"n": 2**70})))
    assert answer.status_code == 400 and "64 bits" in answer.text
    nothing_spooled(service)


def test_integers_up_to_64_bits_are_delivered_exactly(service, cio):
    for i, n in enumerate([2**63, 2**64 - 1]):
        assert post(service, "/v1/track", dumps(track(i, properties={"n": n}))).status_code == 200
    ops = wait_for(lambda: len(cio.accepted) == 2 and cio.accepted)
    assert sorted(op["attributes"]["n"] for op in ops) == [2**63, 2**64 - 1]


# -- fuzz ----------------------------------------------------------------------------------------------------------

BODY = st.one_of(
    st.binary(max_size=200),
    JSON.map(dumps),
    MEMBER.map(dumps),
    st.lists(MEMBER | JSON, max_size=6).map(lambda members: dumps({"batch": members})),
    st.integers(min_value=2, max_value=300).map(lambda n: dumps(nested(n))),
    st.integers(min_value=2**63, max_value=2**80).map(lambda n: dumps(track(1, properties={"n": n}))),
    st.tuples(st.integers(min_value=2, max_value=300), st.integers(min_value=0, max_value=400)).map(  # to 60 KB
        lambda sizes: deep_body(sizes[0], *[track(i) for i in range(sizes[1])])),
)
ENCODED = st.one_of(
    BODY.map(lambda body: (body, {})),
    BODY.map(lambda body: (gzip.compress(body), {"content-encoding": "gzip"})),
    st.tuples(BODY, st.binary(min_size=1, max_size=20)).map(
        lambda pair: (gzip.compress(pair[0]) + pair[1], {"content-encoding": "gzip"})),
    st.binary(max_size=100).map(lambda junk: (junk, {"content-encoding": "gzip"})),
)
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEYS['web']}:".encode()).decode()
HEADERS = st.fixed_dictionaries({}, optional={
    "authorization": st.sampled_from([BASIC, "Basic bm9wZTo=", "Bearer x", "Basic !!!"]),
    "content-type": st.sampled_from(["application/json", "text/plain", "x" * 300]),
    "x-junk": st.integers(min_value=0, max_value=40_000).map(lambda n: "j" * n),
    "content-encoding": st.sampled_from(["gzip", "deflate", "br", "identity"]),
})
PATHS = st.sampled_from(["/v1/batch", "/v1/b", "/v1/track", "/v1/identify", "/v1/group", "/v1/alias", "/v1/page",
                         "/v1/webhook/web", "/v1/nope", "/health"])
KNOWN = st.sampled_from([  # the batches issue #9 found, so that every run meets them among the random ones
    deep_body(300, *[track(i) for i in range(300)]),  # over 32 KB with a deep member
    dumps({"batch": [track(1, timestamp="9999-12-31T23:59:59-14:00"), {"type": "track"}]}),
    dumps({"batch": [track(2, timestamp="2026-01-01t10:00:00z"), track(3, timestamp="1969-12-31T23:59:59Z")]}),
    dumps({"batch": [{}] * 3000}),
])
REQUEST = st.one_of(st.tuples(PATHS, ENCODED, HEADERS),
                    st.tuples(st.just("/v1/batch"), KNOWN.map(lambda body: (body, {})), st.just({})))


def test_fuzz_the_intake_never_answers_5xx_and_counts_every_message(tmp_path, cio):
    statuses: list[int] = []
    with ThreadService(write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN})) as svc, \
            httpx.Client(base_url=svc.url, timeout=20) as client:

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(REQUEST, min_size=1, max_size=3))
        def requests(batch):
            for path, (body, encoding), headers in batch:
                request(path, body, {"authorization": BASIC, **headers, **encoding})

        def request(path, body, headers):
            try:
                answer = client.post(path, content=body, headers=headers)
            except httpx.TransportError:  # refused unread (431) and closed: the only way a request may fail
                assert len(headers.get("x-junk", "")) > 16_000
                return
            statuses.append(answer.status_code)
            assert answer.status_code < 500, (answer.status_code, answer.text)

        requests()
        shown = drained(svc)
        assert httpx.get(svc.url + "/health").status_code == 200
        assert httpx.get(svc.url + "/report.json", headers=OPERATOR).status_code == 200
    assert 200 in statuses
    quarantined = sum(v for k, v in shown.items() if k.startswith("groupspec_quarantined_total{"))
    assert shown["groupspec_received_total"] == shown["groupspec_forwarded_total"] + quarantined
    assert shown["groupspec_received_total"] == shown["groupspec_accepted_total"]
