"""Fix-and-replay for every door (issue 18, item 1): a quarantine record carries what its door supplied (the
endpoint's type, the batch envelope, the receipt time), so `groupspec quarantine replay` takes back exactly the
message that was refused; files written by the earlier release still replay."""

from __future__ import annotations

import time

import httpx
import orjson
from groupspec.middleware.message import parse_time
from groupspec.plugin.cli import main
from service_harness import WRITE_KEYS, ThreadService, wait_for, write_config

WEB = (WRITE_KEYS["web"], "")
FIXED = ('group_id_pattern = "^hh_[a-z0-9]+$"', 'group_id_pattern = "^(hh|acct)_[a-z0-9]+$"')


def lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_a_message_the_path_typed_and_the_service_timed_replays_as_it_came(tmp_path, cio, capsys):
    config = write_config(tmp_path, cio)
    before = time.time()
    with ThreadService(config) as svc:
        # no type (the path gives it), no timestamp (the receipt gives it); acct_9 breaks group_id_pattern: dropped
        typeless = {"userId": "u1", "event": "Order Placed", "properties": {"group_id": "acct_9"}, "messageId": "a"}
        assert httpx.post(svc.url + "/v1/track", json=typeless, auth=WEB).status_code == 200
        member = {"type": "track", "userId": "u2", "event": "Order Placed", "properties": {"group_id": "acct_9"},
                  "messageId": "b"}
        batch = {"batch": [member], "context": {"library": {"name": "analytics.js", "version": "4.1.0"}}}
        assert httpx.post(svc.url + "/v1/batch", json=batch, auth=WEB).status_code == 200
        wait_for(lambda: (tmp_path / "quarantine.jsonl").exists()
                 and len((tmp_path / "quarantine.jsonl").read_text().splitlines()) == 2)
    after = time.time()
    first, second = lines(tmp_path / "quarantine.jsonl")
    assert first["message"] == typeless and first["type"] == "track" and first["receipt"] is True
    assert second["message"] == member and second["envelope"] == {"context": batch["context"]}
    assert "type" not in second  # /v1/batch supplies no type
    received = {rec["message"]["messageId"]: parse_time(rec["received_at"]) for rec in (first, second)}
    assert all(before - 1 <= t <= after + 1 for t in received.values())

    config.write_text(config.read_text().replace(*FIXED))  # the contract fixed: acct_ ids are fine
    out = tmp_path / "replayed"
    assert main(["quarantine", "replay", str(tmp_path / "quarantine.jsonl"), "--config", str(config),
                 "--out", str(out), "--deliver"]) == 0
    summary = orjson.loads(capsys.readouterr().out.splitlines()[0])
    assert (summary["forwarded"], summary["quarantined"]) == (2, 0)
    forwarded = {body["messageId"]: body for body in lines(out / "forwarded.jsonl")}
    assert forwarded["a"]["type"] == "track"
    assert forwarded["b"]["context"]["library"] == batch["context"]["library"]  # the envelope merged in again
    events = {op["identifiers"]["id"]: op for op in cio.accepted}
    assert set(events) == {"u1", "u2"}
    for user, message_id in (("u1", "a"), ("u2", "b")):  # dated when the service received them, not 1970
        assert events[user]["name"] == "Order Placed"
        assert events[user]["timestamp"] == int(received[message_id])
        assert events[user]["attributes"]["group_id"] == "acct_9"


def test_a_file_in_the_earlier_format_still_replays_with_its_received_at(tmp_path, capsys):
    """Records as the earlier release wrote them: message, source, violations, received_at, nothing more."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(*FIXED))
    old = [
        {"message": {"type": "track", "userId": "u1", "event": "Order Placed", "properties": {"group_id": "acct_9"},
                     "messageId": "m1"},
         "source": "web", "violations": [{"code": "invalid_group_id", "field": "properties.group_id",
                                          "message": "group id 'acct_9' does not match ^hh_[a-z0-9]+$"}],
         "received_at": "2026-11-03T08:15:30.250Z"},
        {"message": {"type": "identify", "userId": "u1", "traits": {"plan": "pro"},
                     "timestamp": "2026-11-03T08:00:00Z", "messageId": "m2"},
         "source": "web", "violations": [{"code": "group_trait_on_person", "field": "traits.plan", "message": "x"}],
         "received_at": "2026-11-03T08:20:00.000Z"},
    ]
    path = tmp_path / "old-quarantine.jsonl"
    path.write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in old))
    out = tmp_path / "out"
    assert main(["quarantine", "replay", str(path), "--config", str(config), "--out", str(out)]) == 0
    event, identify = lines(out / "customerio.jsonl")
    assert event["action"] == "event" and event["timestamp"] == 1793693730  # 2026-11-03T08:15:30Z, not 0
    assert identify["action"] == "identify" and identify["timestamp"] == 1793692800  # its own time
    assert lines(out / "quarantine.jsonl") == []


def test_a_record_quarantined_again_keeps_the_time_it_was_received(tmp_path, capsys):
    """Replayed and refused again (the contract not yet fixed), the record keeps its `received_at`: a later
    replay still dates the message when it was received."""
    config = write_config(tmp_path)
    rec = {"message": {"userId": "u1", "event": "Order Placed", "properties": {"group_id": "acct_9"},
                       "messageId": "m1"},
           "source": "web", "violations": [], "received_at": "2026-11-03T08:15:30.250Z", "type": "track",
           "receipt": True}
    path = tmp_path / "q.jsonl"
    path.write_bytes(orjson.dumps(rec) + b"\n")
    out = tmp_path / "out"
    assert main(["quarantine", "replay", str(path), "--config", str(config), "--out", str(out)]) == 0
    (again,) = lines(out / "quarantine.jsonl")
    assert again["violations"][0]["code"] == "invalid_group_id"  # not `malformed: unknown message type None`
    assert {k: again[k] for k in ("message", "source", "received_at", "type", "receipt")} == \
        {k: rec[k] for k in ("message", "source", "received_at", "type", "receipt")}
