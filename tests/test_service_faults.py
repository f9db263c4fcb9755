"""Regression tests for the service's defects of issue #8: a message that cannot be written out must not stall
delivery; a chunk's quarantine records and counters are committed once, across kills and restarts of the delivery
process and of the whole service. Each failed before the engine refactor."""

from __future__ import annotations

import os
import signal
import time

import httpx
import orjson
from service_harness import (
    OPERATOR,
    OPERATOR_TOKEN,
    WRITE_KEYS,
    ServiceProcess,
    ThreadService,
    free_port,
    metrics,
    track_id,
    wait_for,
    write_config,
)

WEB = (WRITE_KEYS["web"], "")
TS = "2026-11-01T10:00:00Z"
OUTAGE = 1_000_000  # scripted 503s: Customer.io is down until `cio.reset()`


def track(n: int) -> dict:
    return {"type": "track", "userId": f"user_{n}", "event": "Product Viewed", "messageId": f"m{n}", "timestamp": TS}


def malformed(n: int) -> dict:
    return {"type": "track", "userId": f"user_{n}", "messageId": f"bad{n}"}  # a track call needs an event


def ids(*numbers: int) -> set[str]:
    return {track_id(f"user_{n}", f"m{n}", TS) for n in numbers}


def delivered(cio) -> set[str]:
    return {op["id"] for op in cio.accepted if "id" in op}


def deep_track(depth: int = 300) -> bytes:
    """orjson.loads accepts it (up to 1024 levels), orjson.dumps refuses it (over 255)."""
    inner = b'"x"'
    for _ in range(depth):
        inner = b'{"a":' + inner + b"}"
    return (b'{"type":"track","userId":"deep","event":"Product Viewed","messageId":"deep","timestamp":"' +
            TS.encode() + b'","properties":' + inner + b"}")


def quarantine_records(tmp_path) -> list[dict]:
    path = tmp_path / "quarantine.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_a_message_that_cannot_be_serialised_does_not_stall_delivery(tmp_path, cio):
    accepted = 0
    with ThreadService(write_config(tmp_path, cio)) as svc:
        assert httpx.post(svc.url + "/v1/track", json=track(1), auth=WEB).status_code == 200
        for path in ("/v1/track", "/v1/batch"):  # refused at intake (400) or accepted and quarantined: either way ...
            body = deep_track() if path == "/v1/track" else b'{"batch":[' + deep_track() + b"]}"
            answer = httpx.post(svc.url + path, content=body, auth=WEB, headers={"Content-Type": "application/json"})
            assert answer.status_code in (200, 400)
            accepted += answer.status_code == 200
        assert httpx.post(svc.url + "/v1/track", json=track(2), auth=WEB).status_code == 200
        # ... the messages after it are delivered, and nothing is left waiting in the spool
        wait_for(lambda: delivered(cio) == ids(1, 2))
        wait_for(lambda: metrics(svc.url).get("groupspec_spool_depth") == 0)
        assert httpx.get(svc.url + "/health").status_code == 200
    records = quarantine_records(tmp_path)  # one per deep message the intake accepted
    assert [[v["code"] for v in rec["violations"]] for rec in records] == [["malformed"]] * accepted


def test_quarantine_records_are_written_once_across_restarts_during_an_outage(tmp_path, cio):
    cio.script(503, count=OUTAGE)
    with ThreadService(write_config(tmp_path, cio)) as svc:
        batch = [*(malformed(n) for n in range(10)), track(10)]
        assert httpx.post(svc.url + "/v1/batch", json={"batch": batch}, auth=WEB).status_code == 200
        for _ in range(3):  # each delivery process has run the chunk and is retrying it when it is killed
            seen = len(cio.requests)
            wait_for(lambda: len(cio.requests) > seen)
            pid = svc.service.delivery.pid
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: svc.service.delivery.pid not in (None, pid) and svc.service.delivery.running)
        seen = len(cio.requests)
        wait_for(lambda: len(cio.requests) > seen)
        cio.reset()  # Customer.io is back
        wait_for(lambda: metrics(svc.url).get("groupspec_spool_depth") == 0, timeout=20)
        assert delivered(cio) == ids(10)
    records = quarantine_records(tmp_path)
    assert sorted(r["message"]["messageId"] for r in records) == sorted(f"bad{n}" for n in range(10))


def counted(url: str) -> tuple[float, float, dict[str, float], dict]:
    """(received, forwarded, quarantined by code) in `/metrics`, and `/report.json`."""
    shown = metrics(url)
    quarantined = {name: value for name, value in shown.items() if name.startswith("groupspec_quarantined_total{")}
    return (shown["groupspec_received_total"], shown["groupspec_forwarded_total"], quarantined,
            httpx.get(url + "/report.json", headers=OPERATOR).json())


def test_counters_count_each_message_once_across_kills_and_restarts(tmp_path, cio):
    cio.script(503, count=OUTAGE)
    config = write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN})
    first = [*(track(n) for n in range(30)), *(malformed(n) for n in range(5))]
    service = ServiceProcess(config, tmp_path / "first.log")
    try:
        assert httpx.post(service.url + "/v1/batch", json={"batch": first}, auth=WEB).status_code == 200
        # the delivery process has run the chunk, failed to deliver it (3 attempts), recorded its state while it
        # paused, and is trying again (the 4th request): kill it mid-chunk; its successor runs the chunk again
        wait_for(lambda: len(cio.requests) >= 4)
        (child,) = service.children()
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: service.children() not in ([], [child]))
        seen = len(cio.requests)
        wait_for(lambda: len(cio.requests) >= seen + 4)
        cio.reset()  # Customer.io is back
        wait_for(lambda: metrics(service.url).get("groupspec_spool_depth") == 0, timeout=20)
        received, forwarded, quarantined, report = counted(service.url)
        assert (received, forwarded, quarantined) == (35, 30, {'groupspec_quarantined_total{code="malformed"}': 5})
        assert (report["received"], report["forwarded"], report["quarantined"]) == (35, 30, 5)

        cio.script(503, count=OUTAGE)  # down again, with a backlog when the whole service is killed
        second = [track(n) for n in range(30, 40)]
        assert httpx.post(service.url + "/v1/batch", json={"batch": second}, auth=WEB).status_code == 200
        seen = len(cio.requests)
        wait_for(lambda: len(cio.requests) > seen)
    finally:
        service.kill()
    service = ServiceProcess(config, tmp_path / "second.log")
    try:
        assert metrics(service.url).get("groupspec_spool_depth") == 10
        early = delivered(cio)
        assert early == ids(*range(30))
        cio.reset()
        wait_for(lambda: metrics(service.url).get("groupspec_spool_depth") == 0, timeout=30)
        received, forwarded, quarantined, report = counted(service.url)
    finally:
        service.stop()
    assert delivered(cio) == ids(*range(30, 40))
    assert (received, forwarded, quarantined) == (45, 40, {'groupspec_quarantined_total{code="malformed"}': 5})
    assert received == forwarded + sum(quarantined.values())
    assert (report["received"], report["forwarded"], report["quarantined"]) == (45, 40, 5)


def test_a_store_outage_while_idle_names_the_store_once_and_never_blames_the_worker(tmp_path, cio):
    """Issue 17 item 12: the idle path (rollups due) meets the store down; it is an outage of the named store,
    logged once (not a worker failure with a traceback every second), and `/health` says so."""
    port = free_port()  # nobody listens: the Redis store does not answer
    config = write_config(tmp_path, cio, store=f"redis://127.0.0.1:{port}/0")
    svc = ServiceProcess(config, tmp_path / "serve.log")
    try:
        where = f"Redis store at redis://127.0.0.1:{port}/0"
        health = wait_for(lambda: (r := httpx.get(svc.url + "/health")).status_code == 503 and r, timeout=30)
        assert any(where in problem for problem in health.json()["problems"]), health.json()
        assert httpx.post(svc.url + "/v1/track", json=track(1), auth=WEB).status_code == 200  # the same outage
        wait_for(lambda: len(quarantine_records(tmp_path)) == 1, timeout=30)
        time.sleep(3)  # several idle rounds (one a second)
        problems = httpx.get(svc.url + "/health").json()["problems"]
        assert [p for p in problems if "worker" in p] == [] and any(where in p for p in problems), problems
    finally:
        svc.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "delivery worker failed" not in log and "Traceback" not in log, log[-3000:]
    assert log.count("the store does not answer") == 1, log[-3000:]
