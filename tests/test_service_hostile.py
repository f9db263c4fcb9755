"""Hostile and broken clients against the real service on loopback (issue #9): slow and stalled clients, huge
headers and bodies, keys checked before bodies are read, and gzip as RFC 1952 defines it (a series of members)."""

from __future__ import annotations

import base64
import gzip
import select
import socket
import sqlite3
import zlib

import httpx
import orjson
import pytest
from groupspec.plugin.service.intake import Rejected, decompress
from service_harness import WRITE_KEYS, ThreadService, metrics, wait_for, write_config

WEB = (WRITE_KEYS["web"], "")
BASIC = b"Basic " + base64.b64encode(WRITE_KEYS["web"].encode() + b":")
BATCH_LIMIT = 500 * 1024  # Segment's HTTP Tracking API: a batch request is at most 500 KB


def track(i: int) -> dict:
    return {"type": "track", "userId": f"user_{i}", "event": "Product Viewed", "messageId": f"m{i}",
            "timestamp": "2026-11-01T10:00:00Z", "properties": {"sku": f"sku_{i}"}}


@pytest.fixture
def quick(tmp_path, cio):
    """A service that gives a request's headers, and then its body, one second each."""
    with ThreadService(write_config(tmp_path, cio, service={"read_timeout": 1})) as svc:
        yield svc


@pytest.fixture
def patient(tmp_path, cio):
    """A service that waits long for bodies: an answer before the body is sent came without reading one."""
    with ThreadService(write_config(tmp_path, cio, service={"read_timeout": 60})) as svc:
        yield svc


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def head(path: str = "/v1/batch", length: int | None = None, auth: bytes | None = BASIC, extra: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: groupspec", b"Content-Type: application/json"]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    if auth is not None:
        lines.append(b"Authorization: " + auth)
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def status_of(sock: socket.socket) -> int | None:
    """The status code of the response on `sock`; None when the server closed (or reset) it without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else None


def closed(sock: socket.socket) -> bool:
    """Read to the end: True once the server has closed the connection."""
    try:
        for _ in range(1000):  # the rest of one small response, then end of file
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    return False


def spooled(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "spool.db") as db:
        return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]


# --- slow and stalled clients ----------------------------------------------------------------------------------

def test_a_body_that_stalls_half_way_is_answered_408_and_the_connection_closed(quick, tmp_path):
    body = orjson.dumps({"batch": [track(1)]})
    with connect(quick.url) as sock:
        sock.sendall(head(length=len(body)) + body[: len(body) // 2])
        assert status_of(sock) == 408
        assert closed(sock)
    assert spooled(tmp_path) == 0


def test_headers_that_never_end_are_answered_408(quick):
    with connect(quick.url) as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: groupspec\r\nContent-Type: appl")
        assert status_of(sock) == 408
        assert closed(sock)
    assert metrics(quick.url).get('groupspec_requests_total{status="408"}') == 1


def test_fifty_stalled_clients_do_not_stop_others_being_served(quick, cio):
    body = orjson.dumps({"batch": [track(1)]})
    stalled = [connect(quick.url) for _ in range(50)]
    try:
        for i, sock in enumerate(stalled):  # half of them stall in the body, half in the headers
            sock.sendall(head(length=len(body)) + body[:10] if i % 2 else head(length=len(body))[:30])
        response = httpx.post(quick.url + "/v1/batch", json={"batch": [track(2)]}, auth=WEB, timeout=20)
        assert response.status_code == 200
        wait_for(lambda: cio.accepted)
        assert [op["attributes"]["sku"] for op in cio.accepted] == ["sku_2"]
        assert [status_of(sock) for sock in stalled] == [408] * 50  # and each of them is let go
    finally:
        for sock in stalled:
            sock.close()


def test_a_huge_header_is_refused_without_being_read(patient):
    """64 MB of header: the service answers 431 (or just closes) once its limit is passed, long before the end."""
    chunk, total, sent = b"a" * 65536, 64 * 1024 * 1024, 0
    with connect(patient.url) as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: groupspec\r\nX-Padding: ")
        try:
            while sent < total:
                sent += sock.send(chunk)
                if select.select([sock], [], [], 0)[0]:  # the server has answered (or closed): stop sending
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < total
        assert status_of(sock) in (431, None)
        assert closed(sock)


def test_an_unknown_basic_auth_key_is_refused_before_the_body_is_read(patient, tmp_path):
    with connect(patient.url) as sock:
        sock.sendall(head(length=400_000, auth=b"Basic " + base64.b64encode(b"wk_nope:")))  # no body follows
        assert status_of(sock) == 401
        assert closed(sock)
    assert spooled(tmp_path) == 0


def test_a_declared_body_over_the_limit_is_refused_413_unread(patient):
    with connect(patient.url) as sock:
        sock.sendall(head(length=64 * 1024 * 1024))  # no body follows
        assert status_of(sock) == 413
        assert closed(sock)
    with connect(patient.url) as sock:
        sock.sendall(head(path="/v1/track", length=33 * 1024))  # a single message: 32 KB
        assert status_of(sock) == 413


def test_a_streamed_body_is_refused_413_once_past_the_limit(patient):
    """Chunked: no length is declared, so the service reads up to the limit and no further."""
    chunk = b"x" * 65536
    with connect(patient.url) as sock:
        sock.sendall(head(extra=b"Transfer-Encoding: chunked\r\n"))
        for _ in range(BATCH_LIMIT // len(chunk) + 2):  # just past 500 KB, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert status_of(sock) == 413


def test_a_key_in_the_body_still_works_without_auth_headers(patient, cio):
    body = orjson.dumps({"batch": [track(3)], "writeKey": WRITE_KEYS["web"]})
    with connect(patient.url) as sock:
        sock.sendall(head(length=len(body), auth=None) + body)
        assert status_of(sock) == 200
    wait_for(lambda: cio.accepted)


# --- gzip: a series of members (RFC 1952, section 2.2) ----------------------------------------------------------

def test_a_body_of_two_gzip_members_is_the_concatenation_of_both(patient, cio):
    first, second = b'{"batch": [' + orjson.dumps(track(1)) + b", ", orjson.dumps(track(2)) + b"]}"
    body = gzip.compress(first) + gzip.compress(second)
    response = httpx.post(patient.url + "/v1/batch", content=body, auth=WEB, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    wait_for(lambda: len(cio.accepted) == 2)
    assert [op["attributes"]["sku"] for op in cio.accepted] == ["sku_1", "sku_2"]


def test_gzip_with_trailing_garbage_is_refused(patient, tmp_path):
    body = gzip.compress(orjson.dumps({"batch": [track(1)]})) + b"trailing garbage"
    response = httpx.post(patient.url + "/v1/batch", content=body, auth=WEB, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert spooled(tmp_path) == 0


def test_decompress_reads_every_member_and_nothing_else():
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"") + gzip.compress(b"cd"), b"gzip", 100) == b"abcd"
    for bad in (gzip.compress(b"ab") + b"\x00\x00",  # padding is not a member
                gzip.compress(b"ab") + b"\x1f\x8b\x08",  # the start of a member that never comes
                gzip.compress(b"abcd")[:-4],  # truncated: the member's CRC32/ISIZE trailer is missing
                zlib.compress(b"ab") + zlib.compress(b"cd")):  # deflate (zlib) is one stream
        with pytest.raises(Rejected) as refused:
            decompress(bad, b"gzip" if bad[:2] == b"\x1f\x8b" else b"deflate", 100)
        assert refused.value.status == 400


def test_the_decompressed_limit_holds_across_members_and_bombs():
    members = gzip.compress(b" " * 60) + gzip.compress(b" " * 60)  # each within 100 bytes, together over
    with pytest.raises(Rejected) as refused:
        decompress(members, b"gzip", 100)
    assert refused.value.status == 413
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)  # 64 MB in about 64 KB
    assert len(bomb) < BATCH_LIMIT
    with pytest.raises(Rejected) as refused:
        decompress(bomb + bomb, b"gzip", BATCH_LIMIT)
    assert refused.value.status == 413
