"""`groupspec serve` end to end: the service in a thread of the test process, the stand-in Customer.io, the real
Segment and RudderStack SDKs, a local upstream."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import socket
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from groupspec.middleware.config import ConfigError, load_config
from groupspec.plugin.report.collect import Coverage
from groupspec.plugin.service.serve import check_delivery
from service_harness import (
    OPERATOR,
    OPERATOR_TOKEN,
    WRITE_KEYS,
    ThreadService,
    metrics,
    track_id,
    wait_for,
    write_config,
)

WEB = (WRITE_KEYS["web"], "")


def track(i: int, **extra) -> dict:
    return {"type": "track", "userId": f"user_{i}", "event": "Product Viewed", "messageId": f"m{i}",
            "timestamp": "2026-11-01T10:00:00Z", "properties": {"sku": f"sku_{i}"}, **extra}


def ids(ops: list[dict]) -> set[str]:
    return {op["id"] for op in ops if "id" in op}


@pytest.fixture
def service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN})) as svc:
        yield svc


@pytest.mark.parametrize("kind,body", [
    ("identify", {"userId": "u1", "traits": {"name": "Ann"}}),
    ("track", {"userId": "u1", "event": "Product Viewed", "messageId": "t1"}),
    ("page", {"userId": "u1", "name": "Home", "properties": {"url": "https://shop.example/"}, "messageId": "p1"}),
    ("screen", {"userId": "u1", "name": "Cart", "messageId": "s1"}),
    ("group", {"userId": "u1", "groupId": "hh_1", "traits": {"plan": "pro"}}),
    ("alias", {"userId": "u1", "previousId": "anon_1"}),
])
def test_each_single_type_endpoint_sets_the_type_and_delivers(service, cio, kind, body):
    response = httpx.post(f"{service.url}/v1/{kind}", json=body, auth=WEB)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    wait_for(lambda: cio.accepted)
    expected = {"identify": ("person", "identify"), "track": ("person", "event"), "page": ("person", "page"),
                "screen": ("person", "screen"), "group": ("object", "identify"), "alias": ("person", "merge")}[kind]
    assert (cio.accepted[0]["type"], cio.accepted[0]["action"]) == expected


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b"])
def test_batch_with_basic_auth_delivers_every_message_in_order(service, cio, path):
    batch = [track(i) for i in range(30)]
    assert httpx.post(service.url + path, json={"batch": batch}, auth=WEB).status_code == 200
    wait_for(lambda: len(cio.accepted) == 30)
    assert [op["id"] for op in cio.accepted] == [track_id(f"user_{i}", f"m{i}", "2026-11-01T10:00:00Z")
                                                 for i in range(30)]


def test_write_key_in_the_body_selects_the_source(service, cio, tmp_path):
    body = {"batch": [{"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}], "writeKey": WRITE_KEYS["billing"]}
    assert httpx.post(service.url + "/v1/batch", json=body).status_code == 200
    wait_for(lambda: cio.accepted)
    report = httpx.get(service.url + "/report.json", headers=OPERATOR).json()
    assert report["violations"] == [{"code": "group_trait_on_person", "source": "billing", "forwarded": 1,
                                     "quarantined": 0}]


def test_one_message_of_any_type_is_accepted_at_any_endpoint_as_a_webhook_posts_it(service, cio):
    identify = {"type": "identify", "userId": "u1", "traits": {"name": "Ann"}}
    assert httpx.post(service.url + "/v1/track", json=identify, auth=WEB).status_code == 200
    assert httpx.post(service.url + "/v1/batch", json=track(2), auth=WEB).status_code == 200
    wait_for(lambda: len(cio.accepted) == 2)
    assert [op["action"] for op in cio.accepted] == ["identify", "event"]


def test_gzip_bodies_are_accepted(service, cio):
    body = gzip.compress(orjson.dumps({"batch": [track(1)]}))
    response = httpx.post(service.url + "/v1/batch", content=body, auth=WEB,
                          headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 200
    wait_for(lambda: cio.accepted)


@pytest.mark.parametrize("case,status", [
    ("unknown key", 401), ("no key", 401), ("bearer", 401), ("bad json", 400), ("not an object", 400),
    ("batch not a list", 400), ("unknown type", 400), ("type not a string", 400), ("oversize message", 413), ("oversize batch", 413),
    ("oversize member", 413), ("bad gzip", 400), ("get", 405), ("unknown path", 404),
])
def test_bad_requests_are_refused_and_nothing_is_spooled(service, cio, tmp_path, case, status):
    big = "x" * (33 * 1024)
    request = {
        "unknown key": dict(json={"batch": [track(1)]}, auth=("wk_nope", "")),
        "no key": dict(json={"batch": [track(1)]}),
        "bearer": dict(json={"batch": [track(1)]}, headers={"Authorization": "Bearer " + WRITE_KEYS["web"]}),
        "bad json": dict(content=b'{"batch": [', auth=WEB),
        "not an object": dict(content=b"[1, 2]", auth=WEB),
        "batch not a list": dict(json={"batch": {"type": "track"}}, auth=WEB),
        "unknown type": dict(json={"type": "purchase", "userId": "u1"}, auth=WEB, path="/v1/track"),
        "type not a string": dict(json={"type": 5, "userId": "u1"}, auth=WEB),
        "oversize message": dict(json={**track(1), "properties": {"x": big}}, auth=WEB, path="/v1/track"),
        "oversize batch": dict(json={"batch": [track(i, properties={"x": "y" * 20_000}) for i in range(30)]},
                               auth=WEB),
        "oversize member": dict(json={"batch": [track(1), track(2, properties={"x": big})]}, auth=WEB),
        "bad gzip": dict(content=b"not gzip at all", auth=WEB, headers={"Content-Encoding": "gzip"}),
        "get": dict(method="GET"),
        "unknown path": dict(json={}, auth=WEB, path="/v2/track"),
    }[case]
    method, path = request.pop("method", "POST"), request.pop("path", "/v1/batch")
    response = httpx.request(method, service.url + path, **request)
    assert response.status_code == status
    assert response.json()["success"] is False
    assert WRITE_KEYS["web"] not in response.text
    with sqlite3.connect(tmp_path / "spool.db") as db:
        assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0
    if path in ("/v1/batch", "/v1/track") and method == "POST":  # intake answers are counted by status
        assert metrics(service.url).get(f'groupspec_requests_total{{status="{status}"}}') == 1


def test_a_200_means_the_request_is_in_the_spool_file(tmp_path, cio):
    cio.script(503, count=1000)  # nothing gets delivered, so the spool keeps every accepted request
    with ThreadService(write_config(tmp_path, cio)) as svc:
        for i in range(5):
            assert httpx.post(svc.url + "/v1/track", json=track(i), auth=WEB).status_code == 200
            with sqlite3.connect(tmp_path / "spool.db") as db:  # a second reader of the file sees it at once
                payloads = [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM spool ORDER BY seq")]
            assert payloads[-1]["messageId"] == f"m{i}"
        assert metrics(svc.url).get("groupspec_spool_depth") == 5


def test_malformed_members_of_a_batch_are_quarantined_and_counted(service, cio, tmp_path):
    batch = [track(1), {"type": "track", "userId": "u2"}, {"type": "bogus", "userId": "u3"},
             track(4, properties={"group_id": "NOT A GROUP"})]
    assert httpx.post(service.url + "/v1/batch", json={"batch": batch}, auth=WEB).status_code == 200
    wait_for(lambda: metrics(service.url).get("groupspec_forwarded_total") == 1)
    records = [orjson.loads(line) for line in (tmp_path / "quarantine.jsonl").read_bytes().splitlines()]
    assert [r["violations"][-1]["code"] for r in records] == ["malformed", "malformed", "invalid_group_id"]
    assert all(r["source"] == "web" for r in records)
    wait_for(lambda: metrics(service.url).get("groupspec_delivered_total") == 1)
    shown = metrics(service.url)
    assert shown['groupspec_quarantined_total{code="malformed"}'] == 2
    assert shown['groupspec_quarantined_total{code="invalid_group_id"}'] == 1
    assert shown["groupspec_received_total"] == shown["groupspec_accepted_total"] == 4


def test_metrics_and_report(service, cio):
    batch = [track(1, properties={"group_id": "hh_1"}), track(2, event="Order Placed")]
    assert httpx.post(service.url + "/v1/batch", json={"batch": batch}, auth=WEB).status_code == 200
    wait_for(lambda: len(cio.accepted) == 2)
    wait_for(lambda: metrics(service.url).get("groupspec_spool_depth") == 0)
    assert httpx.get(service.url + "/metrics", headers=OPERATOR).headers["content-type"].startswith("text/plain")
    shown = metrics(service.url)
    for name, value in [("groupspec_received_total", 2), ("groupspec_forwarded_total", 2),
                        ("groupspec_delivered_total", 2), ("groupspec_delivery_requests_total", 1),
                        ("groupspec_delivery_latency_seconds_count", 1),
                        ('groupspec_delivery_latency_seconds_bucket{le="+Inf"}', 1), ("groupspec_healthy", 1)]:
        assert shown[name] == value, name
    report = Coverage.model_validate_json(httpx.get(service.url + "/report.json", headers=OPERATOR).content)  # `groupspec report`
    assert (report.received, report.forwarded, report.quarantined) == (2, 2, 0)
    rows = {row.event: row for row in report.events}
    assert rows["Product Viewed"].resolution["property"] == 1
    assert rows["Order Placed"].resolution["unresolved"] == 1
    assert [(v.code, v.source, v.forwarded) for v in report.violations] == [("missing_group_id", "web", 1)]


def test_an_operation_over_customerio_limits_is_quarantined_not_sent(service, cio, tmp_path):
    batch = [track(1), {"type": "identify", "userId": "u" * 200}, track(3)]  # ids are at most 150 bytes
    assert httpx.post(service.url + "/v1/batch", json={"batch": batch}, auth=WEB).status_code == 200
    wait_for(lambda: metrics(service.url).get("groupspec_spool_depth") == 0)
    assert ids(cio.accepted) == {track_id(f"user_{i}", f"m{i}", "2026-11-01T10:00:00Z") for i in (1, 3)}
    assert len(cio.accepted) == 2
    (record,) = [orjson.loads(line) for line in (tmp_path / "quarantine.jsonl").read_bytes().splitlines()]
    assert record["violations"][-1]["code"] == "customerio_limit"
    assert metrics(service.url).get('groupspec_quarantined_total{code="customerio_limit"}') == 1


def test_a_scripted_207_goes_to_the_dead_letter(service, cio, tmp_path):
    cio.script(207, count=2)  # 207 with no batch_index: every op of the batch is dead-lettered (one request or two)
    assert httpx.post(service.url + "/v1/batch", json={"batch": [track(1), track(2)]}, auth=WEB).status_code == 200
    letter = tmp_path / "dead-letter.jsonl"  # a loaded worker may send the two in two requests: wait for both
    wait_for(lambda: letter.exists() and len(letter.read_bytes().splitlines()) >= 2)
    dead = [orjson.loads(line) for line in letter.read_bytes().splitlines()]
    assert [d["operation"]["id"] for d in dead] == [track_id(f"user_{i}", f"m{i}", "2026-11-01T10:00:00Z")
                                                    for i in (1, 2)]
    wait_for(lambda: metrics(service.url).get("groupspec_dead_lettered_total") == 2)


def test_retries_on_503_then_delivers(service, cio):
    cio.script(503, count=2)
    assert httpx.post(service.url + "/v1/track", json=track(1), auth=WEB).status_code == 200
    wait_for(lambda: cio.accepted)
    wait_for(lambda: metrics(service.url).get("groupspec_delivery_retries_total") == 2)


def test_401_from_customerio_makes_health_unhealthy_and_loses_nothing(tmp_path, cio):
    wrong = write_config(tmp_path, cio, customerio={"api_key": "wrong-key-for-the-test"})
    with ThreadService(wrong) as svc:
        assert httpx.get(svc.url + "/health").status_code == 200
        for i in range(3):
            assert httpx.post(svc.url + "/v1/track", json=track(i), auth=WEB).status_code == 200
        health = wait_for(lambda: (r := httpx.get(svc.url + "/health")).status_code == 503 and r)
        assert health.json()["status"] == "unhealthy"
        assert "customerio.api_key" in health.json()["problems"][0]
        assert "wrong-key-for-the-test" not in health.text
        assert metrics(svc.url).get("groupspec_healthy") == 0
        assert httpx.post(svc.url + "/v1/track", json=track(3), auth=WEB).status_code == 200  # still accepting
    assert cio.accepted == []
    with ThreadService(write_config(tmp_path, cio)) as svc:  # fixed credentials, same spool
        wait_for(lambda: len(cio.accepted) == 4)
        assert httpx.get(svc.url + "/health").status_code == 200
    assert ids(cio.accepted) == {track_id(f"user_{i}", f"m{i}", "2026-11-01T10:00:00Z") for i in range(4)}


def test_a_spool_over_its_limit_makes_health_unhealthy(tmp_path, cio):
    cio.script(503, count=1000)
    with ThreadService(write_config(tmp_path, cio, service={"max_spool_depth": 3})) as svc:
        assert httpx.post(svc.url + "/v1/batch", json={"batch": [track(i) for i in range(4)]}, auth=WEB).status_code == 200
        health = httpx.get(svc.url + "/health")
        assert health.status_code == 503
        assert "max_spool_depth" in health.json()["problems"][0]


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict]] = []
        self.fail = 0
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Upstream

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 200
        if self.server.fail:
            self.server.fail -= 1
            status = 500
        else:
            self.server.received.append((self.path, self.headers["Authorization"], orjson.loads(body)))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def upstream():
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_enriched_messages_are_forwarded_upstream_with_its_write_key(tmp_path, cio, upstream):
    upstream.fail = 1  # one 500 first: retried
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    config = write_config(tmp_path, cio, upstream={"url": url, "write_key": "wk_upstream_secret"})
    with ThreadService(config) as svc:
        batch = [track(1, properties={"group_id": "hh_1"}), {"type": "track", "userId": "u9"}]
        assert httpx.post(svc.url + "/v1/batch", json={"batch": batch}, auth=WEB).status_code == 200
        wait_for(lambda: upstream.received)
        wait_for(lambda: metrics(svc.url).get("groupspec_upstream_forwarded_total") == 1)
    (path, auth, body), = upstream.received
    assert path == "/v1/batch"
    assert auth == basic(WRITE_KEYS["web"])  # the key it arrived with; upstream.write_key is for sources without one
    (message,) = body["batch"]  # the malformed one is quarantined, not forwarded
    assert message["context"]["groupId"] == "hh_1"
    assert message["context"]["groupspec"]["resolution"] == "property"
    assert len(cio.accepted) == 1


def basic(write_key: str) -> str:
    """HTTP Basic auth with the write key as the username, as the Segment SDKs and Segment's HTTP API use it."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def test_each_source_reaches_its_own_upstream_source(tmp_path, cio, upstream):
    """Issue 18: every message goes upstream under its source's write key: the key it arrived with, a source's
    `upstream_write_key` override, or (a webhook-fed source, which has no key) `upstream.write_key`."""
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    secret = "whsec-hooks"
    config = write_config(tmp_path, cio, upstream={"url": url, "write_key": "seg_default"},
                          extra=f'[sources.hooks]\nwebhook_secret = "{secret}"\n')
    config.write_text(config.read_text().replace("[sources.billing]\n", '[sources.billing]\nupstream_write_key = "seg_billing"\n'))
    with ThreadService(config) as svc:
        web = [track(1), track(2)]
        assert httpx.post(svc.url + "/v1/batch", json={"batch": web}, auth=WEB).status_code == 200
        billing = {**track(3), "writeKey": WRITE_KEYS["billing"]}  # the key in the body, as analytics.js sends it
        assert httpx.post(svc.url + "/v1/track", json=billing).status_code == 200
        hooked = orjson.dumps(track(4))
        signature = hmac.new(secret.encode(), hooked, hashlib.sha1).hexdigest()
        assert httpx.post(svc.url + "/v1/webhook/hooks", content=hooked,
                          headers={"X-Signature": signature, "Content-Type": "application/json"}).status_code == 200
        wait_for(lambda: sum(len(body["batch"]) for _, _, body in upstream.received) == 4)
    by_key: dict[str, list[str]] = {}
    for _, auth, body in upstream.received:
        by_key.setdefault(auth, []).extend(message["messageId"] for message in body["batch"])
    assert by_key == {basic(WRITE_KEYS["web"]): ["m1", "m2"], basic("seg_billing"): ["m3"],
                      basic("seg_default"): ["m4"]}
    sent = {message["messageId"]: message for _, _, body in upstream.received for message in body["batch"]}
    assert sent["m3"]["writeKey"] == "seg_billing"  # Segment reads a body's writeKey first: it names the same source
    assert "writeKey" not in sent["m1"]


def test_upstream_write_key_is_needed_only_by_a_source_without_a_key(tmp_path, upstream):
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    assert check_delivery(load_config(write_config(tmp_path, upstream={"url": url}))) is None  # both have keys
    hooked = write_config(tmp_path, upstream={"url": url}, extra='[sources.hooks]\nwebhook_secret = "s"\n')
    with pytest.raises(ConfigError, match="upstream.write_key: expected a value"):
        check_delivery(load_config(hooked))


def test_upstream_only_service_needs_no_customerio(tmp_path, upstream):
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    with ThreadService(write_config(tmp_path, upstream={"url": url, "write_key": "wk_up"})) as svc:
        assert httpx.post(svc.url + "/v1/track", json=track(1), auth=WEB).status_code == 200
        wait_for(lambda: upstream.received)


def test_segment_sdk_pointed_at_the_service(service, cio):
    from segment.analytics.client import Client

    client = Client(WRITE_KEYS["web"], host=service.url, sync_mode=True, max_retries=0)
    client.identify("sdk_user", {"email": "sdk@example.com"})
    client.group("sdk_user", "hh_sdk", {"plan": "pro"})
    client.track("sdk_user", "Order Placed", {"total": 12.5})
    client.page("sdk_user", name="Home", properties={"url": "https://shop.example/"})
    client.screen("sdk_user", name="Cart")
    client.alias("sdk_user", "old_id")
    wait_for(lambda: len(cio.accepted) == 6)
    event = next(op for op in cio.accepted if op["action"] == "event")
    assert event["attributes"]["group_id"] == "hh_sdk"  # resolved from the membership the group call taught


def test_rudderstack_sdk_pointed_at_the_service(service, cio):
    from rudderstack.analytics.client import Client

    client = Client(WRITE_KEYS["web"], host=service.url, sync_mode=True, max_retries=0)  # gzip by default
    client.identify("rs_user", {"email": "rs@example.com"})
    client.track("rs_user", "Product Viewed", {"sku": "a"})
    wait_for(lambda: len(cio.accepted) == 2)
    assert {op["action"] for op in cio.accepted} == {"identify", "event"}


def test_a_spool_that_cannot_be_written_answers_503_and_accepts_nothing(service, cio):
    service.service.spool._intake.close()  # the disk is gone, as far as the intake can tell
    response = httpx.post(service.url + "/v1/track", json=track(1), auth=WEB)
    assert response.status_code == 503
    assert response.json()["success"] is False
    assert metrics(service.url).get("groupspec_accepted_total") == 0
    health = httpx.get(service.url + "/health")  # a full disk is a problem the operator must see
    assert health.status_code == 503 and "cannot write the spool" in health.json()["problems"][0]


def test_health_shows_a_store_that_does_not_answer(tmp_path, cio):
    with socket.socket() as probe:  # a port nobody listens on: the Redis store cannot answer
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ThreadService(write_config(tmp_path, cio, store=f"redis://127.0.0.1:{port}/0")) as svc:
        assert httpx.post(svc.url + "/v1/track", json=track(1), auth=WEB).status_code == 200
        health = wait_for(lambda: (r := httpx.get(svc.url + "/health")).status_code == 503 and r, timeout=30)
        assert any("store_unavailable" in problem for problem in health.json()["problems"])


def test_a_second_service_on_the_same_spool_refuses_to_start(service, tmp_path, cio):
    from groupspec.middleware.config import load_config
    from groupspec.plugin.service.serve import Service
    from groupspec.plugin.spool import SpoolError

    with pytest.raises(SpoolError, match="in use"):
        Service(load_config(tmp_path / "groupspec.toml"))
