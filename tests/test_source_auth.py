"""The authenticated source wins (issue 17, item 4): a request authenticated as one source (Basic auth, a signed
webhook path, else the body's own `writeKey`) whose body or members carry another source's `writeKey` is refused
(401), never processed as that source. Replay keeps selecting by each message's `writeKey` (recorded streams)."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3

import httpx
import orjson
import pytest
from core_support import Chain
from service_harness import WRITE_KEYS, ThreadService, wait_for, write_config

SECRET = "whsec-auth-3c9e"
#: the issue's case: billing owns `store_credit_balance`; a hooks source posts signed webhooks
EXTRA = ('[contract.group_traits.store_credit_balance]\ntype = "number"\nowner = "billing"\n'
         f'[sources.hooks]\nwebhook_secret = "{SECRET}"\n')
WEB, BILLING = WRITE_KEYS["web"], WRITE_KEYS["billing"]


def credit(**extra) -> dict:
    return {"type": "group", "userId": "u1", "groupId": "hh_1", "messageId": "g-credit",
            "timestamp": "2026-11-01T10:00:00Z", "traits": {"store_credit_balance": 1000000}, **extra}


def signed(body: bytes) -> dict[str, str]:
    return {"X-Signature": hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
            "Content-Type": "application/json"}


@pytest.fixture
def service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio, extra=EXTRA)) as svc:
        yield svc


@pytest.mark.parametrize("case", ["basic + body key", "basic + member key", "envelope + member key",
                                  "webhook + body key", "webhook + member key", "basic + key not a string"])
def test_a_key_in_the_body_never_overrides_the_requests_credential(service, cio, tmp_path, case):
    path, body, headers, auth = "/v1/batch", None, {}, None
    if case == "basic + body key":
        path, body, auth = "/v1/group", credit(writeKey=BILLING), (WEB, "")
    elif case == "basic + member key":
        body, auth = {"batch": [credit(writeKey=BILLING)]}, (WEB, "")
    elif case == "envelope + member key":
        body = {"batch": [credit(writeKey=BILLING)], "writeKey": WEB}
    elif case == "basic + key not a string":
        body, auth = {"batch": [credit(writeKey=["wk"])]}, (WEB, "")
    else:
        path = "/v1/webhook/hooks"
        body = credit(writeKey=BILLING) if case == "webhook + body key" else [credit(writeKey=BILLING)]
    content = orjson.dumps(body)
    if path.startswith("/v1/webhook/"):
        headers = signed(content)
    response = httpx.post(service.url + path, content=content, headers=headers, auth=auth)
    assert response.status_code == 401
    assert "writeKey" in response.json()["message"]
    assert BILLING not in response.text and WEB not in response.text
    with sqlite3.connect(tmp_path / "spool.db") as db:
        assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0
    assert cio.accepted == []


def test_the_same_key_in_the_header_and_the_body_is_one_credential(service, cio):
    """analytics-python sends its key both as Basic auth and as the body's writeKey; members may repeat it."""
    body = {"batch": [credit(writeKey=BILLING)], "writeKey": BILLING}
    assert httpx.post(service.url + "/v1/batch", json=body, auth=(BILLING, "")).status_code == 200
    wait_for(lambda: cio.accepted)
    assert cio.accepted[0]["attributes"]["store_credit_balance"] == 1000000  # billing owns it


def test_a_body_key_alone_selects_its_source(service, cio):
    assert httpx.post(service.url + "/v1/batch", json={"batch": [credit()], "writeKey": BILLING}).status_code == 200
    wait_for(lambda: cio.accepted)
    assert cio.accepted[0]["attributes"]["store_credit_balance"] == 1000000


def test_the_worker_processes_a_spooled_request_as_its_authenticated_source():
    """A request spooled as `web` (e.g. accepted before this check existed) is processed as `web` whatever keys
    its messages carry; replay, reading a recorded stream, selects by them."""
    chain = Chain(f'[sources.web]\nwrite_key = "{WEB}"\n[sources.billing]\nwrite_key = "{BILLING}"\n' + EXTRA)
    (live,) = chain.pipeline.run(credit(writeKey=BILLING), "web", received_at=1.8e9, authenticated=True)
    (replayed,) = chain.pipeline.run(credit(writeKey=BILLING), "web")
    assert live.source == "web" and replayed.source == "billing"
    assert [v["code"] for v in live.violations] == ["not_attribute_owner"]
    assert "store_credit_balance" not in live.ops[0]["attributes"]
    assert replayed.ops[0]["attributes"]["store_credit_balance"] == 1000000
