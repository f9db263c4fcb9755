"""The Customer.io stand-in itself: auth, limits, per-operation validation, gzip, scripted faults."""

from __future__ import annotations

import gzip
import time

import httpx
import orjson
import pytest
from cio_standin import CioStandin

EVENT = {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "Played"}


def post(cio, path, body, *, auth=None, headers=None, timeout=5.0):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(cio.url + path, content=content, auth=auth or (cio.site_id, cio.api_key),
                      headers=headers or {}, timeout=timeout)


def test_auth_is_checked(cio):
    assert httpx.get(cio.url + "/auth", auth=(cio.site_id, cio.api_key)).status_code == 200
    assert httpx.get(cio.url + "/auth", auth=(cio.site_id, "wrong")).status_code == 401
    assert httpx.get(cio.url + "/auth").status_code == 401
    assert post(cio, "/api/v2/batch", {"batch": [EVENT]}, auth=("other", cio.api_key)).status_code == 401
    assert cio.accepted == []


def test_valid_batch_and_entity_are_accepted_in_order(cio):
    second = {**EVENT, "identifiers": {"email": "a@example.com"}}
    assert post(cio, "/api/v2/batch", {"batch": [EVENT, second]}).json() == {}
    assert post(cio, "/api/v2/entity", second).status_code == 200
    assert cio.accepted == [EVENT, second, second]
    assert [(r.path, r.status, r.ops) for r in cio.requests] == [("/api/v2/batch", 200, 2), ("/api/v2/entity", 200, 1)]


def test_gzip_bodies_are_accepted(cio):
    response = post(cio, "/api/v2/batch", gzip.compress(orjson.dumps({"batch": [EVENT]})),
                    headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert cio.accepted == [EVENT]
    assert cio.requests[0].gzip


def test_sizes_are_limited_after_gzip_decoding(cio):
    big = {"batch": [{**EVENT, "attributes": {"pad": "x" * 30_000}} for _ in range(20)]}  # ~600 KB, gzips small
    response = post(cio, "/api/v2/batch", gzip.compress(orjson.dumps(big)), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["reason"] == "too_large"
    assert post(cio, "/api/v2/batch", b"not gzip", headers={"Content-Encoding": "gzip"}).status_code == 400


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v2/batch", {"batch": [{**EVENT, "attributes": {"pad": "x" * 20_000}} for _ in range(26)]}),  # >= 500 KB
    ("/api/v2/batch", {"batch": [EVENT, {**EVENT, "attributes": {"pad": "x" * 33_000}}]}),  # one op over 32 KB
    ("/api/v2/entity", {**EVENT, "attributes": {"pad": "x" * 33_000}}),  # entity request >= 32 KB
])
def test_oversize_requests_are_refused_whole(cio, path, body):
    response = post(cio, path, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["reason"] == "too_large"
    assert cio.accepted == []


@pytest.mark.parametrize(("op", "field"), [
    ({**EVENT, "type": "account"}, "type"),
    ({**EVENT, "action": "track"}, "action"),
    ({**EVENT, "identifiers": {"id": "u1", "email": "a@example.com"}}, "identifiers"),
    ({**EVENT, "identifiers": {"user_id": "u1"}}, "identifiers"),
    ({k: v for k, v in EVENT.items() if k != "identifiers"}, "identifiers"),
    ({**EVENT, "identifiers": {"id": "u" * 151}}, "identifiers.id"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": 1, "object_id": "acme"}},
     "identifiers.object_type_id"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "one", "object_id": "acme"}},
     "identifiers.object_type_id"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1"}}, "identifiers"),
    ({"type": "person", "action": "add_relationships", "identifiers": {"id": "u1"},
      "cio_relationships": [{"identifiers": {"id": "acme"}}]}, "cio_relationships[0].identifiers"),
    ({"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {}}, "secondary"),
])
def test_invalid_operations_get_207_and_the_rest_is_accepted(cio, op, field):
    response = post(cio, "/api/v2/batch", {"batch": [EVENT, op, EVENT]})
    assert response.status_code == 207
    (error,) = response.json()["errors"]
    assert error["batch_index"] == 1
    assert error["field"] == field
    assert error["reason"] and error["message"]
    assert cio.accepted == [EVENT, EVENT]


def test_valid_shapes_of_every_kind_are_accepted(cio):
    ops = [
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"},
         "attributes": {"plan": "pro"}, "cio_relationships": [{"identifiers": {"id": "u1"}}]},
        {"type": "object", "action": "identify_anonymous", "identifiers": {"object_type_id": "2", "object_id": "h"},
         "cio_relationships": [{"identifiers": {"anonymous_id": "anon"}}]},
        {"type": "person", "action": "add_relationships", "identifiers": {"cio_id": "c1"},
         "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]},
        {"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {"email": "b@example.com"}},
        {"type": "person", "action": "page", "identifiers": {"anonymous_id": "anon"}, "name": "/"},
    ]
    assert post(cio, "/api/v2/batch", {"batch": ops}).status_code == 200
    assert cio.accepted == ops


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/v2/batch", b"{not json", 400),
    ("/api/v2/batch", {"ops": []}, 400),
    ("/api/v2/entity", {**EVENT, "type": "account"}, 400),
    ("/api/v1/customers", {}, 404),
])
def test_bad_requests(cio, path, body, status):
    assert post(cio, path, body).status_code == status


def test_scripted_faults_play_in_order_then_normal_service(cio):
    cio.script(429, retry_after=1)
    cio.script(503, count=2)
    cio.script(200)
    cio.script(401)
    answers = [post(cio, "/api/v2/batch", {"batch": [EVENT]}) for _ in range(6)]
    assert [a.status_code for a in answers] == [429, 503, 503, 200, 401, 200]
    assert answers[0].headers["Retry-After"] == "1"
    assert "Retry-After" not in answers[1].headers
    assert len(cio.accepted) == 2
    assert [r.ops for r in cio.requests] == [1] * 6


def test_a_hang_outlasts_the_client_and_stop_ends_it(cio):
    cio.script(503, hang=30)
    with pytest.raises(httpx.ReadTimeout):
        post(cio, "/api/v2/batch", {"batch": [EVENT]}, timeout=0.2)
    started = time.monotonic()
    cio.stop()
    assert time.monotonic() - started < 3
    assert cio.accepted == []


def test_reset_forgets_everything(cio):
    post(cio, "/api/v2/batch", {"batch": [EVENT]})
    cio.script(503)
    cio.reset()
    assert cio.accepted == [] and cio.requests == []
    assert post(cio, "/api/v2/batch", {"batch": [EVENT]}).status_code == 200


def test_usable_without_pytest():
    with CioStandin(site_id="s", api_key="k") as standin:
        assert httpx.get(standin.url + "/auth", auth=("s", "k")).status_code == 200
        assert standin.customerio().base_url == standin.url
