"""A re-sent message keeps its Customer.io event `id` (issue 17, item 1).

The rule, as the expected ids below are made from it (with python-ulid, not groupspec's code): a ULID whose time
part is the message's `originalTimestamp`, else its `timestamp`, as sent (never `sentAt`, never the time corrected
for clock skew), else the time of the message's first arrival from the store's arrival record; whose other 80 bits
are the first 10 bytes of sha256(source US person US type US messageId)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import tomllib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import ulid
from core_support import Chain, at, config, track, unix
from groupspec.middleware import Engine
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from hypothesis import given, settings
from hypothesis import strategies as st
from service_harness import WRITE_KEYS, ThreadService, wait_for, write_config
from store_support import reopen, sandbox_of  # noqa: F401  (the store suite's fixture: every store kind)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def seconds(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rule_id(source: str | None, person: str, kind: str, message_id: str, when: float) -> str:
    """The event id the rule gives: `when` (unix seconds) in the time part, the message key's hash in the rest."""
    key = "\x1f".join((source or "", person, kind, message_id)).encode()
    return str(ulid.ULID.from_bytes(int(when * 1000).to_bytes(6, "big") + hashlib.sha256(key).digest()[:10]))


def event_op(msg) -> dict:
    assert not msg.quarantined, msg.violations
    (op,) = [op for op in msg.ops if "id" in op]
    return op


# --- a retry with a new sentAt ------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(skew=st.floats(-86400, 86400),
       attempts=st.lists(st.tuples(st.floats(0.001, 600), st.floats(0, 5)), min_size=2, max_size=5))
def test_every_retry_with_a_new_sent_at_keeps_the_event_id(skew, attempts):
    """An SDK stamps `sentAt` on every attempt; the device clock is `skew` seconds off, an attempt goes out
    `delay` seconds after the previous one and spends `latency` seconds on the wire: whatever the service's
    receipt times, the id is the one of `timestamp` as sent."""
    pipeline = Chain().pipeline
    body = {**track("ann", "Viewed", days=1), "messageId": "m-retry"}
    sent, ids = unix(1) + skew, set()
    for delay, latency in attempts:
        sent += delay
        stamp = datetime.fromtimestamp(sent, timezone.utc).isoformat()
        (msg,) = pipeline.run({**body, "sentAt": stamp}, received_at=sent - skew + latency)
        ids.add(event_op(msg)["id"])
    assert ids == {rule_id(None, "u:ann", "track", "m-retry", unix(1))}


def test_a_replay_of_sdk_traffic_gives_the_live_runs_ids():
    """Live, the service corrects the device clock (receipt - sentAt); a replay of the same bodies has no receipt
    time: the ids agree all the same."""
    body = {**track("ann", "Viewed", days=1), "messageId": "m-live", "sentAt": at(1, hours=2)}
    (live,) = Chain().pipeline.run(body, received_at=unix(1) + 3.25)
    (replayed,) = Chain().run(body)
    assert live.ts != replayed.ts  # the correction moved the live one
    assert event_op(live)["id"] == event_op(replayed)["id"] == rule_id(None, "u:ann", "track", "m-live", unix(1))


def test_a_recorded_segment_message_takes_its_id_from_original_timestamp():
    """Segment records what the device sent as `originalTimestamp` and the corrected time as `timestamp`."""
    recorded = {"type": "track", "userId": "ann", "event": "Viewed", "messageId": "m-rec",
                "originalTimestamp": "2026-01-02T10:00:00.000Z", "sentAt": "2026-01-02T10:05:00.000Z",
                "receivedAt": "2026-01-02T10:00:30.000Z", "timestamp": "2026-01-02T09:55:30.000Z"}
    op = event_op(Chain().one(recorded))
    assert op["timestamp"] == int(seconds("2026-01-02T09:55:30Z"))  # the event time is corrected
    assert op["id"] == rule_id(None, "u:ann", "track", "m-rec", seconds("2026-01-02T10:00:00Z"))


# --- a message without a time of its own ----------------------------------------------------------------------------

def engine_at(store, clock: list[float]) -> Engine:
    return Engine(config(), store, destination=CUSTOMERIO, clock=lambda: clock[0])


def test_a_re_sent_message_without_a_time_takes_its_first_arrivals(reopen):
    """The store's arrival record gives the re-send the first arrival's time: its event id and its time."""
    clock = [float(unix(1))]
    engine = engine_at(reopen(), clock)
    body = {"type": "track", "userId": "ann", "event": "Viewed", "messageId": "m-none"}
    (first,) = engine.run(body)
    clock[0] += 90.5
    (again,) = engine.run(body)
    (sent_at_only,) = engine.run({**body, "messageId": "m-sent", "sentAt": at(1, hours=1)})
    clock[0] += 10
    (retried,) = engine.run({**body, "messageId": "m-sent", "sentAt": at(1, hours=1.5)},
                            received_at=clock[0])
    expected = rule_id(None, "u:ann", "track", "m-none", unix(1))
    assert event_op(first)["id"] == event_op(again)["id"] == expected
    assert again.ts == first.ts == unix(1)
    assert event_op(sent_at_only)["id"] == event_op(retried)["id"] == rule_id(
        None, "u:ann", "track", "m-sent", unix(1, hours=1))


def test_the_arrival_record_keeps_the_first_arrivals_time(reopen):
    store = reopen()
    assert store.arrive("m1", 100.5, timeless=True)[1] == 100.5
    again = store.arrive("m1", 200.0, timeless=True)
    assert again[1] == 100.5 and again[0] == store.admit("m1", 300.0)
    assert store.lookup("m1", ["u:1"], 300.0, event_ts=300.0, timeless=True).first_ts == 100.5
    if store.admit("m2") is not None:  # a store with arrival records keeps every message's first time
        store.arrive("m3", 50.25)
        assert store.lookup("m3", ["u:1"], 70.0).first_ts == 50.25


# --- end to end: a real SDK whose first post times out after the service took it ---------------------------------

class _SlowFirstAnswer(ThreadingHTTPServer):
    """Between the SDK and the service: the first post is passed on at once but answered only after the SDK gave
    up on it; later ones are passed on after `lag` seconds (a slow network), answered at once."""

    daemon_threads = True

    def __init__(self, target: str, hold: float, lag: float) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.target, self.hold, self.lag = target, hold, lag
        self.bodies: list[dict] = []
        self.lock = threading.Lock()


class _Relay(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            attempt = len(self.server.bodies)
            self.server.bodies.append(json.loads(body))
        if attempt:
            time.sleep(self.server.lag)
        answer = httpx.post(self.server.target + self.path, content=body, timeout=10, headers={
            k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")})
        if not attempt:
            time.sleep(self.server.hold)
        try:
            self.send_response(answer.status_code)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)
        except OSError:  # the SDK stopped waiting
            pass

    def log_message(self, *args) -> None:
        pass


def test_segment_sdk_retry_after_a_timeout_reaches_customerio_with_one_id(tmp_path, cio):
    from segment.analytics.client import Client

    with ThreadService(write_config(tmp_path, cio)) as service:
        relay = _SlowFirstAnswer(service.url, hold=1.5, lag=0.3)
        threading.Thread(target=relay.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            client = Client(WRITE_KEYS["web"], host=f"http://127.0.0.1:{relay.server_port}", timeout=1,
                            max_retries=3, upload_interval=0.05)
            client.track("sdk_ann", "Product Viewed", {"sku": "a"})
            client.shutdown()  # flushes: the first attempt times out, the retry is answered
            wait_for(lambda: len(cio.accepted) == 2)  # the service took both attempts
        finally:
            relay.shutdown()
            relay.server_close()
    first, retry = relay.bodies
    assert first["sentAt"] != retry["sentAt"] and first["batch"] == retry["batch"]
    (message,) = first["batch"]
    expected = rule_id("web", "u:sdk_ann", "track", message["messageId"], seconds(message["timestamp"]))
    assert [op["id"] for op in cio.accepted] == [expected, expected]


# --- the bundled fixtures follow the rule ---------------------------------------------------------------------------

def _messages(line: str):
    try:
        obj = json.loads(line)
    except ValueError:
        return
    if isinstance(obj, dict) and isinstance(obj.get("batch"), list) and "type" not in obj:
        for member in obj["batch"]:
            if isinstance(member, dict):
                yield {"writeKey": obj.get("writeKey"), **member}
    elif isinstance(obj, dict):
        yield obj


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in FIXTURES.glob("*/stream.jsonl")))
def test_every_fixture_event_id_is_the_rules(folder):
    """Each `id` in a fixture's expected `customerio.jsonl` is the rule's for one message of its stream (the
    message is found by the key's hash, the time part then checked)."""
    root = FIXTURES / folder
    config = tomllib.loads((root / "groupspec.toml").read_text())
    by_key = {src["write_key"]: name for name, src in config.get("sources", {}).items() if "write_key" in src}
    derived = {}
    for line in (root / "stream.jsonl").read_text().splitlines():
        for msg in _messages(line):
            when = msg.get("originalTimestamp") or msg.get("timestamp")
            ids = [str(msg[k]) for k in ("userId", "anonymousId") if msg.get(k) not in (None, "")]
            if not isinstance(when, str) or seconds(when) is None or not ids or not isinstance(msg.get("type"), str):
                continue
            person = ("u:" if msg.get("userId") not in (None, "") else "a:") + ids[0]
            source = by_key.get(msg.get("writeKey"))
            made = rule_id(source, person, msg["type"].lower(), str(msg.get("messageId")), seconds(when))
            derived[made[10:]] = made
    ops = [json.loads(line) for line in (root / "expected" / "customerio.jsonl").read_text().splitlines()]
    expected = [op["id"] for op in ops if "id" in op]
    assert expected and [derived.get(one[10:]) for one in expected] == expected
