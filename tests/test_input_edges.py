"""Input at the edges of its ranges (issue 17, items 5, 6 and 8), by replay and by the service: a time corrected
for clock skew stays in 1970..9999, integers are 64 bits in both signs, and a body that is both one message and
a batch is refused."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson
import pytest
from core_support import Chain
from groupspec.middleware.message import MAX_TIME, MIN_TIME, input_problem
from groupspec.plugin.cli import main
from hypothesis import given, settings
from hypothesis import strategies as st
from service_harness import WRITE_KEYS, ThreadService, wait_for, write_config

WEB = (WRITE_KEYS["web"], "")
CONFIG = '[contract]\nversion = "edges-1"\n[sources.web]\nwrite_key = "wk_web"\n'


def track(**extra) -> dict:
    return {"type": "track", "userId": "ann", "event": "Viewed", "messageId": "m1",
            "timestamp": "2026-12-06T10:00:00Z", **extra}


def replay(tmp_path: Path, lines: list) -> Path:
    stream, cfg, out = tmp_path / "in.jsonl", tmp_path / "groupspec.toml", tmp_path / "out"
    stream.write_bytes(b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines) + b"\n")
    cfg.write_text(CONFIG)
    assert main(["replay", str(stream), "--config", str(cfg), "--out", str(out), "--source", "web"]) == 0
    return out


def jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


@pytest.fixture
def service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio)) as svc:
        yield svc


def spooled(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "spool.db") as db:
        return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]


# --- item 5: times stay in range after skew correction ------------------------------------------------------------

@pytest.mark.parametrize("original,sent", [
    ("2026-12-06T10:00:00Z", "9999-12-31T23:59:59Z"),  # the issue's: moved to the year -5,900
    ("9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z"),  # moved past 9999
])
def test_a_time_corrected_out_of_range_is_malformed_sent_at(tmp_path, original, sent):
    recorded = {**track(), "originalTimestamp": original, "sentAt": sent, "receivedAt": "2026-12-06T10:00:01Z"}
    del recorded["timestamp"]
    out = replay(tmp_path, [recorded])
    assert jsonl(out / "customerio.jsonl") == [] and jsonl(out / "forwarded.jsonl") == []
    (record,) = jsonl(out / "quarantine.jsonl")
    (violation,) = record["violations"]
    assert (violation["code"], violation["field"]) == ("malformed", "sentAt")
    assert "outside 1970-01-01 to 9999-12-31" in violation["message"]


def test_the_service_quarantines_a_time_corrected_out_of_range(service, cio, tmp_path):
    body = {"batch": [track(sentAt="9999-12-31T23:59:59Z", messageId="far"), track(messageId="near")]}
    assert httpx.post(service.url + "/v1/batch", json=body, auth=WEB).status_code == 200
    wait_for(lambda: cio.accepted and jsonl(tmp_path / "quarantine.jsonl"))
    (record,) = jsonl(tmp_path / "quarantine.jsonl")
    assert [(v["code"], v["field"]) for v in record["violations"]] == [("malformed", "sentAt")]
    assert all(MIN_TIME <= op["timestamp"] <= MAX_TIME for op in cio.accepted)


_TIMES = st.floats(MIN_TIME, MAX_TIME).map(lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat())


@settings(max_examples=80, deadline=None)
@given(original=_TIMES, sent=_TIMES, received=_TIMES)
def test_no_operation_is_ever_dated_outside_1970_to_9999(original, sent, received):
    (msg,) = Chain().run({**track(), "originalTimestamp": original, "sentAt": sent, "receivedAt": received})
    if msg.quarantined:  # corrected out of range, or (received long before it was sent) dated in the future
        assert {(v["code"], v["field"]) for v in msg.violations} <= {("malformed", "sentAt"),
                                                                     ("future_timestamp", "timestamp")}
    assert all(MIN_TIME <= op["timestamp"] <= MAX_TIME for op in msg.ops)


# --- item 6: integers of 64 bits in both signs --------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n=st.one_of(st.integers(), st.integers(-(2**64), -(2**62)), st.integers(2**62, 2**65)))
def test_an_integer_outside_int64_and_uint64_is_refused_and_one_inside_is_not(n):
    raw = b'{"type": "track", "properties": {"n": %d}}' % n
    problem = input_problem(orjson.loads(raw), raw)
    if -(2**63) <= n < 2**64:
        assert problem is None
    else:
        assert problem is not None and str(n) in problem and "64 bits" in problem


def test_replay_refuses_a_negative_integer_beyond_64_bits(tmp_path):
    out = replay(tmp_path, [b'{"type": "track", "userId": "ann", "event": "Viewed", "messageId": "neg", '
                            b'"timestamp": "2026-01-01T00:00:00Z", "properties": {"n": -9300000000000000001}}',
                            track(properties={"n": -(2**63)})])
    (record,) = jsonl(out / "quarantine.jsonl")
    (violation,) = record["violations"]
    assert violation["code"] == "malformed" and "-9300000000000000001" in violation["message"]
    (op,) = jsonl(out / "customerio.jsonl")
    assert op["attributes"]["n"] == -(2**63)  # the lowest int64 goes out exactly


def test_the_service_refuses_a_negative_integer_beyond_64_bits(service, tmp_path):
    body = (b'{"batch": [{"type": "track", "userId": "ann", "event": "Viewed", '
            b'"properties": {"n": -9300000000000000001}}]}')
    response = httpx.post(service.url + "/v1/batch", content=body, auth=WEB)
    assert response.status_code == 400 and "64 bits" in response.json()["message"]
    assert spooled(tmp_path) == 0


# --- item 8: a body that is both one message and a batch ----------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b"])
def test_the_service_refuses_a_body_with_a_type_and_a_batch_list(service, tmp_path, path):
    body = {**track(messageId="outer"), "batch": [track(messageId="inner")]}
    response = httpx.post(service.url + path, json=body, auth=WEB)
    assert response.status_code == 400
    assert "both a type and a batch" in response.json()["message"]
    assert spooled(tmp_path) == 0


def test_replay_quarantines_a_body_with_a_type_and_a_batch_list(tmp_path):
    out = replay(tmp_path, [{**track(messageId="outer"), "batch": [track(messageId="inner")]}])
    assert jsonl(out / "forwarded.jsonl") == []
    (record,) = jsonl(out / "quarantine.jsonl")
    assert record["violations"][0]["code"] == "malformed"
    assert "both a type and a batch" in record["violations"][0]["message"]
