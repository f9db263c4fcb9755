"""Browser sources: what analytics.js (analytics-next) sends, accepted as it sends it, and CORS for the pages in
`[service] cors_origins`.

The requests are built the way analytics-next 1.x builds them (dist/pkg/plugins/segmentio/): `fetch-dispatcher.js`
posts each event to `<protocol>://<apiHost>/<first letter of its type>` with `Content-Type: text/plain` and
`Authorization: Basic base64(writeKey + ":")`; `normalize.js` puts `writeKey`, `sentAt` and `_metadata` in the
body; `batched-dispatcher.js` posts `{writeKey, batch, sentAt}` to `/b`, `X-Retry-Count` on a retry. Versions
before the Authorization header carried the write key in the body alone.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections import Counter

import httpx
import orjson
import pytest
from groupspec.middleware import ConfigError, load_config
from groupspec.plugin.service.cors import browser_access
from groupspec.plugin.service.intake import ENDPOINTS
from hypothesis import given, settings
from hypothesis import strategies as st
from service_harness import WRITE_KEYS, ThreadService, metrics, wait_for, write_config

SHOP = "https://shop.example"
OTHER = "https://evil.example"
WRITE_KEY = WRITE_KEYS["web"]


def ajs_event(kind: str, **fields) -> dict:
    """One event as analytics-next's `normalize` leaves it (the Segment.io destination's body)."""
    return {"type": kind, "messageId": f"ajs-next-{kind}-1", "anonymousId": "anon-1", "userId": "u1",
            "timestamp": "2026-11-01T10:00:00.000Z", "sentAt": "2026-11-01T10:00:00.050Z", "writeKey": WRITE_KEY,
            "context": {"library": {"name": "analytics.js", "version": "next-1.84.3"}, "page": {"url": SHOP + "/"}},
            "integrations": {}, "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
            **fields}


def ajs_headers(write_key: str | None = WRITE_KEY, origin: str | None = SHOP) -> dict[str, str]:
    headers = {"Content-Type": "text/plain"}
    if write_key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    if origin is not None:
        headers["Origin"] = origin
    return headers


def post(url: str, path: str, body: dict | bytes, **headers) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url + path, content=content, headers=ajs_headers(**headers))


def spooled(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "spool.db") as db:
        return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]


@pytest.fixture
def service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio, service={"cors_origins": [SHOP, "http://127.0.0.1:8080"]})) as svc:
        yield svc


EVENTS = {
    "i": ajs_event("identify", traits={"name": "Ann"}),
    "t": ajs_event("track", event="Product Viewed", properties={"sku": "s1"}),
    "p": ajs_event("page", name="Home", properties={"url": SHOP + "/"}),
    "s": ajs_event("screen", name="Cart"),
    "g": ajs_event("group", groupId="hh_1", traits={"plan": "pro"}),
    "a": ajs_event("alias", previousId="anon-1"),
}
EXPECTED = {"i": ("person", "identify"), "t": ("person", "event"), "p": ("person", "page"),
            "s": ("person", "screen"), "g": ("object", "identify"), "a": ("person", "merge")}


@pytest.mark.parametrize("letter", list(EVENTS))
def test_analytics_js_short_paths_take_each_type(service, cio, letter):
    body = dict(EVENTS[letter])
    del body["type"]  # the path alone says the type
    response = post(service.url, f"/v1/{letter}", body)
    assert response.status_code == 200, response.text
    wait_for(lambda: cio.accepted)
    assert (cio.accepted[0]["type"], cio.accepted[0]["action"]) == EXPECTED[letter]


def test_write_key_only_in_the_text_plain_body_selects_the_source(service, cio):
    assert post(service.url, "/v1/t", EVENTS["t"], write_key=None).status_code == 200
    wait_for(lambda: cio.accepted)
    assert cio.accepted[0]["name"] == "Product Viewed"


@pytest.mark.parametrize("case,status", [
    ("unknown writeKey in the body", 401), ("unknown Basic write key", 401), ("no write key", 401),
    ("oversize message", 413), ("too deep", 400), ("not JSON", 400),
])
def test_short_paths_keep_every_intake_check(service, tmp_path, case, status):
    headers = {"write_key": None} if case != "unknown Basic write key" else {"write_key": "wk_nope"}
    body = {
        "unknown writeKey in the body": {**EVENTS["t"], "writeKey": "wk_nope"},
        "unknown Basic write key": EVENTS["t"],
        "no write key": {k: v for k, v in EVENTS["t"].items() if k != "writeKey"},
        "oversize message": {**EVENTS["t"], "properties": {"x": "y" * 33 * 1024}},
        "too deep": {**EVENTS["t"], "properties": orjson.loads("[" * 200 + "]" * 200)},
        "not JSON": b'{"type": "track",',
    }[case]
    response = post(service.url, "/v1/t", body, **headers)
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == SHOP  # the page can read why
    assert spooled(tmp_path) == 0


def test_a_batch_as_the_batching_strategy_sends_it(service, cio):
    members = [{k: v for k, v in ajs_event("track", event=f"E{i}", messageId=f"ajs-next-{i}").items()
                if k != "sentAt"} for i in range(3)]
    body = {"writeKey": WRITE_KEY, "batch": members, "sentAt": "2026-11-01T10:00:01.000Z"}
    response = httpx.post(service.url + "/v1/b", content=orjson.dumps(body),
                          headers={**ajs_headers(), "X-Retry-Count": "1"})
    assert response.status_code == 200
    wait_for(lambda: len(cio.accepted) == 3)
    assert [op["name"] for op in cio.accepted] == ["E0", "E1", "E2"]


def test_preflight_from_an_allowed_origin_is_answered(service):
    response = httpx.options(service.url + "/v1/t", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-retry-count"})
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-retry-count"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origin,method,headers", [
    (OTHER, "POST", "authorization,content-type"),
    ("https://shop.example.evil.example", "POST", "content-type"),
    ("http://shop.example", "POST", "content-type"),  # another scheme is another origin
    ("null", "POST", "content-type"),
    (SHOP, "DELETE", "content-type"),
    (SHOP, "POST", "x-custom"),
])
def test_preflight_refused_carries_no_cors_header(service, origin, method, headers):
    response = httpx.options(service.url + "/v1/t", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})
    assert response.status_code == 403
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert "Origin" in response.headers["vary"]


def test_a_post_from_an_allowed_origin_echoes_it_and_never_allows_credentials(service, cio):
    response = post(service.url, "/v1/t", EVENTS["t"])
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers
    wait_for(lambda: cio.accepted)


def test_a_post_from_another_origin_is_refused_and_not_spooled(service, tmp_path):
    response = post(service.url, "/v1/t", EVENTS["t"], origin=OTHER, write_key=None)  # a simple request
    assert response.status_code == 403
    assert "service.cors_origins" in response.json()["message"]
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert spooled(tmp_path) == 0
    assert metrics(service.url).get('groupspec_requests_total{status="403"}') == 1


def test_server_side_clients_send_no_origin_and_are_unaffected(service, cio):
    response = post(service.url, "/v1/track", EVENTS["t"], origin=None)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    wait_for(lambda: cio.accepted)


def test_no_cors_origins_refuses_every_web_page(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio)) as svc:
        preflight = httpx.options(svc.url + "/v1/t", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403
        assert post(svc.url, "/v1/t", EVENTS["t"]).status_code == 403
        assert spooled(tmp_path) == 0


@pytest.mark.parametrize("path", ["/health", "/metrics", "/report.json"])
def test_operator_pages_get_no_cors(service, path):
    response = httpx.get(service.url + path, headers={"Origin": SHOP})
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(service.url + path, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("origin", [
    "https://shop.example/", "https://shop.example/app", "shop.example", "ftp://shop.example", "*",
    "https://Shop.Example", "https://shop.example:443", "http://shop.example:80", "null",
])
def test_a_bad_origin_in_the_config_names_file_key_and_form(tmp_path, origin):
    path = write_config(tmp_path, service={"cors_origins": [SHOP, origin]})
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: service.cors_origins: expected ")
    assert "scheme://host[:port]" in message and repr(origin) in message


def test_good_origins_load(tmp_path):
    origins = [SHOP, "http://127.0.0.1:8080", "http://localhost:3000", "https://[::1]:8443"]
    assert load_config(write_config(tmp_path, service={"cors_origins": origins})).service.cors_origins == origins


async def _answer(app, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}


ALLOWED = [SHOP, "http://127.0.0.1:8080"]
ORIGINS = st.one_of(st.sampled_from([*ALLOWED, OTHER, "null", "https://shop.example:8443", "HTTPS://SHOP.EXAMPLE"]),
                    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40))


@settings(max_examples=300, deadline=None)
@given(origin=ORIGINS, method=st.sampled_from(["POST", "OPTIONS", "GET", "PUT"]),
       requested=st.sampled_from([None, "POST", "DELETE", "*"]),
       path=st.sampled_from(["/v1/t", "/v1/batch", "/v1/b", "/health", "/metrics", "/v1/webhook/web", "/nope"]))
def test_allow_origin_is_only_ever_an_allowed_origin_echoed(origin, method, requested, path):
    async def app(scope, receive, send):  # the service behind: a plain 200
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    headers = {"Origin": origin, **({"Access-Control-Request-Method": requested} if requested else {})}
    status, answer = asyncio.run(_answer(browser_access(app, ALLOWED, Counter()), method, path, headers))
    cors = {k for k in answer if k.startswith("access-control-")}
    assert "access-control-allow-credentials" not in cors
    if origin in ALLOWED and path in ENDPOINTS:
        if method == "OPTIONS" and requested is not None:
            assert status == (204 if requested == "POST" else 403)
        assert answer.get("access-control-allow-origin", origin) == origin
        assert "Origin" in answer["vary"]
    else:
        assert not cors  # never `*`, never another origin
        if path in ENDPOINTS:
            assert "Origin" in answer["vary"] and status == 403
