"""`groupspec serve` as a real process: kill -9 of the service or of its delivery process while Customer.io
fails, then a restart; JSON logs without secrets."""

from __future__ import annotations

import os
import signal
from collections import Counter

import httpx
import orjson
from service_harness import (
    metrics,
    WRITE_KEYS,
    ServiceProcess,
    ThreadService,
    alive,
    children,
    track_id,
    wait_for,
    write_config,
)

WEB = (WRITE_KEYS["web"], "")
TS = "2026-11-01T10:00:00Z"


def batch(first: int, count: int) -> dict:
    return {"batch": [{"type": "track", "userId": f"user_{i % 7}", "event": "Product Viewed", "messageId": f"m{i}",
                       "timestamp": TS, "properties": {"n": i}} for i in range(first, first + count)]}


def test_kill_9_while_customerio_fails_then_restart_delivers_every_event_once_by_id(tmp_path, cio):
    config = write_config(tmp_path, cio, customerio={"batch_size": 10})
    cio.script(200, count=2)  # two batches of the first request get through ...
    cio.script(503, count=100_000)  # ... then Customer.io fails
    service = ServiceProcess(config, tmp_path / "first.log")
    try:
        assert httpx.post(service.url + "/v1/batch", json=batch(0, 100), auth=WEB).status_code == 200
        wait_for(lambda: len(cio.requests) >= 4)  # the worker is retrying the first request's third batch
        for first in range(100, 200, 10):
            assert httpx.post(service.url + "/v1/batch", json=batch(first, 10), auth=WEB).status_code == 200
        assert metrics(service.url).get("groupspec_spool_depth") == 200
        (worker,) = service.children()  # the delivery process
    finally:
        service.kill()
    wait_for(lambda: not alive(worker), timeout=5)  # it notices the service is gone and exits: no orphan sends
    before = cio.accepted
    assert len(before) == 20
    cio.reset()  # Customer.io is healthy again

    service = ServiceProcess(config, tmp_path / "second.log")
    try:
        wait_for(lambda: metrics(service.url).get("groupspec_spool_depth") == 0, timeout=30)
        (worker,) = service.children()
    finally:
        assert service.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert not alive(worker)  # SIGTERM stopped the delivery process too
    sent = [op["id"] for op in before + cio.accepted]
    expected = {track_id(f"user_{i % 7}", f"m{i}", TS) for i in range(200)}
    assert set(sent) == expected  # every accepted event delivered ...
    duplicates = Counter(sent) - Counter(set(sent))
    # ... and the only re-sends are the 20 delivered before the crash (at-least-once; the ULID id dedupes them)
    assert sorted(duplicates.elements()) == sorted(track_id(f"user_{i % 7}", f"m{i}", TS) for i in range(20))
    # per-person order holds across the crash: each user's events arrive in message order after the restart
    after = [op for op in cio.accepted]
    for user in range(7):
        numbers = [op["attributes"]["n"] for op in after if op["identifiers"]["id"] == f"user_{user}"]
        assert numbers == sorted(numbers)


def test_kill_9_of_the_delivery_process_restarts_it_and_loses_nothing(tmp_path, cio):
    cio.script(503, count=100_000)  # the delivery process keeps retrying the first chunk
    others = set(children(os.getpid()))  # started before (a session's Redis Cluster servers)
    with ThreadService(write_config(tmp_path, cio, customerio={"batch_size": 10})) as svc:
        assert httpx.post(svc.url + "/v1/batch", json=batch(0, 30), auth=WEB).status_code == 200
        wait_for(lambda: len(cio.requests) >= 2)
        first = svc.service.delivery.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: httpx.get(svc.url + "/health").status_code == 503)  # down until it is restarted
        assert httpx.post(svc.url + "/v1/batch", json=batch(30, 10), auth=WEB).status_code == 200  # still accepting
        cio.reset()
        wait_for(lambda: metrics(svc.url).get("groupspec_spool_depth") == 0)
        assert svc.service.delivery.pid != first
        assert [pid for pid in children(os.getpid()) if pid not in others] == [svc.service.delivery.pid]
        assert httpx.get(svc.url + "/health").status_code == 200
        assert metrics(svc.url).get("groupspec_delivered_total") == 40
    assert {op["id"] for op in cio.accepted} == {track_id(f"user_{i % 7}", f"m{i}", TS) for i in range(40)}
    assert not alive(first)


def test_logs_are_json_lines_without_secrets(tmp_path, cio):
    env = {"GS_SITE": cio.site_id, "GS_KEY": "wrong-api-key-secret-777", "GS_WEB": WRITE_KEYS["web"],
           "GS_UP": "upstream-secret-999"}
    config = write_config(tmp_path, None, customerio={"url": cio.url, "site_id": "${GS_SITE}", "api_key": "${GS_KEY}"},
                          upstream={"url": "http://127.0.0.1:9", "write_key": "${GS_UP}", "max_retries": 0})
    config.write_text(config.read_text().replace(f'write_key = "{WRITE_KEYS["web"]}"', 'write_key = "${GS_WEB}"'))
    log = tmp_path / "service.log"
    service = ServiceProcess(config, log, env=env)
    try:
        assert httpx.post(service.url + "/v1/track", json=batch(0, 1)["batch"][0], auth=WEB).status_code == 200
        assert httpx.post(service.url + "/v1/track", json={}, auth=("wk_unknown_key_1234", "")).status_code == 401
        wait_for(lambda: httpx.get(service.url + "/health").status_code == 503)
    finally:
        service.stop()
    lines = log.read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is a JSON object
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert any(r["msg"] == "request refused" and r["status"] == 401 for r in records)
    assert any("refused the credentials" in r.get("error", "") for r in records)
    text = log.read_text()
    for secret in (*env.values(), "wk_unknown_key_1234"):
        assert secret not in text
