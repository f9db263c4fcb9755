"""Who may read and write the service (issue #9): the operator token on `/report.json` and `/metrics`, signed
webhook sources (Segment's Webhooks destinations), secrets kept out of logs, and crashes logged as JSON lines."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import subprocess
import sys

import httpx
import orjson
import pytest
from groupspec.middleware.config import ConfigError, Store, load_config
from groupspec.plugin.cli import main
from groupspec.plugin.service.serve import Service
from service_harness import WRITE_KEYS, ServiceProcess, ThreadService, wait_for, write_config

TOKEN = "op-token-5f2c9a1e"
SECRET = "whsec-segment-7b1d44"
HOOKS = f'[sources.hooks]\nwebhook_secret = "{SECRET}"\n'  # a source Segment's Webhooks destination posts to


def track(i: int, **extra) -> dict:
    return {"type": "track", "userId": f"user_{i}", "event": "Product Viewed", "messageId": f"m{i}",
            "timestamp": "2026-11-01T10:00:00Z", "properties": {"sku": f"sku_{i}"}, **extra}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Segment's signature: X-Signature, the hex HMAC-SHA1 (RFC 2104) of the request body keyed with the secret."""
    return {"X-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
            "Content-Type": "application/json"}


@pytest.fixture
def guarded(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio, service={"operator_token": TOKEN}, extra=HOOKS)) as svc:
        yield svc


@pytest.fixture
def open_service(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio)) as svc:
        yield svc


# --- the operator token ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/report.json", "/metrics"])
def test_operator_pages_need_the_bearer_token(guarded, path):
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}):
        response = httpx.get(guarded.url + path, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "sources" not in response.text and "Product Viewed" not in response.text
    response = httpx.get(guarded.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert httpx.get(guarded.url + "/health").status_code == 200  # health stays open


def test_without_a_token_the_report_is_off_and_metrics_stay_open(open_service):
    response = httpx.get(open_service.url + "/report.json")
    assert response.status_code == 403
    assert "service.operator_token" in response.json()["message"]
    assert httpx.get(open_service.url + "/report.json", headers={"Authorization": "Bearer x"}).status_code == 403
    assert httpx.get(open_service.url + "/metrics").status_code == 200
    assert httpx.get(open_service.url + "/health").status_code == 200


def test_groupspec_report_sends_the_token(guarded, cio, capsys, monkeypatch):
    assert httpx.post(guarded.url + "/v1/batch", json={"batch": [track(1)]},
                      auth=(WRITE_KEYS["web"], "")).status_code == 200
    wait_for(lambda: cio.accepted)
    monkeypatch.delenv("GROUPSPEC_OPERATOR_TOKEN", raising=False)
    assert main(["report", "--service", guarded.url]) == 1
    assert "--token" in capsys.readouterr().err
    assert main(["report", "--service", guarded.url, "--token", TOKEN]) == 0
    assert "received 1" in capsys.readouterr().out
    monkeypatch.setenv("GROUPSPEC_OPERATOR_TOKEN", TOKEN)
    assert main(["report", "--service", guarded.url]) == 0
    assert "received 1" in capsys.readouterr().out


def test_an_unset_token_variable_stops_the_service_with_file_key_and_variable(tmp_path, cio, monkeypatch):
    monkeypatch.delenv("GS_TEST_OPERATOR_TOKEN", raising=False)
    path = write_config(tmp_path, cio, service={"operator_token": "${GS_TEST_OPERATOR_TOKEN}"})
    with pytest.raises(ConfigError) as error:
        Service(load_config(path))
    assert str(error.value) == f"{path}: service.operator_token: environment variable GS_TEST_OPERATOR_TOKEN is not set"
    path.write_text(path.read_text().replace('"${GS_TEST_OPERATOR_TOKEN}"', '""'))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: service.operator_token: expected a non-empty secret"


# --- signed webhook sources ------------------------------------------------------------------------------------

def test_signature_is_hmac_sha1_hex_of_the_body():
    from groupspec.plugin.service.intake import signature_valid

    # RFC 2202, test case 2 (HMAC-SHA1)
    assert signature_valid(b"what do ya want for nothing?", "Jefe", b"effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert signature_valid(b"what do ya want for nothing?", "Jefe", b"EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79")
    assert not signature_valid(b"what do ya want for nothing!", "Jefe", b"effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert not signature_valid(b"what do ya want for nothing?", "Jefe", None)


def test_a_signed_webhook_post_is_delivered_as_its_source(guarded, cio):
    body = orjson.dumps(track(1))
    response = httpx.post(guarded.url + "/v1/webhook/hooks", content=body, headers=signed(body))
    assert response.status_code == 200
    wait_for(lambda: cio.accepted)
    assert [op["attributes"]["sku"] for op in cio.accepted] == ["sku_1"]
    # the chunk's counts are committed after Customer.io accepted its operations: the report shows them then
    report = wait_for(lambda: (r := httpx.get(guarded.url + "/report.json",
                                              headers={"Authorization": f"Bearer {TOKEN}"}).json())["received"] and r)
    assert [(v["source"], v["code"]) for v in report["violations"]] == []
    assert report["received"] == 1


def test_a_batch_of_webhook_events_is_a_json_array(guarded, cio):
    body = orjson.dumps([track(1), track(2)])  # Segment's Webhooks (Actions) with batching on
    assert httpx.post(guarded.url + "/v1/webhook/hooks", content=body, headers=signed(body)).status_code == 200
    wait_for(lambda: len(cio.accepted) == 2)


@pytest.mark.parametrize("case", ["none", "wrong secret", "other body", "not hex"])
def test_an_unsigned_or_badly_signed_webhook_post_is_refused(guarded, tmp_path, case):
    body = orjson.dumps(track(1))
    headers = {"none": {}, "wrong secret": signed(body, "not-the-secret"), "other body": signed(body + b" "),
               "not hex": {"X-Signature": "sha1=" + signed(body)["X-Signature"]}}[case]
    response = httpx.post(guarded.url + "/v1/webhook/hooks", content=body, headers=headers)
    assert response.status_code == 401
    assert "X-Signature" in response.json()["message"]
    assert SECRET not in response.text


def test_the_webhook_path_names_a_source_with_a_secret(guarded):
    body = orjson.dumps(track(1))
    config = guarded.service.config
    assert config.sources["hooks"].write_key is None  # selected by its path alone
    assert httpx.post(guarded.url + "/v1/webhook/web", content=body, headers=signed(body)).status_code == 404
    assert httpx.post(guarded.url + "/v1/webhook/nope", content=body, headers=signed(body)).status_code == 404
    assert httpx.get(guarded.url + "/v1/webhook/hooks").status_code == 405


def test_a_write_key_source_with_a_secret_refuses_unsigned_bodies(tmp_path, cio):
    hooks = '[sources.hooks]\nwrite_key = "wk_hooks_123"\nwebhook_secret = "' + SECRET + '"\n'
    with ThreadService(write_config(tmp_path, cio, extra=hooks)) as svc:
        body = orjson.dumps({"batch": [track(1)], "writeKey": "wk_hooks_123"})
        assert httpx.post(svc.url + "/v1/batch", content=body).status_code == 401
        assert httpx.post(svc.url + "/v1/batch", content=body, auth=("wk_hooks_123", "")).status_code == 401
        assert httpx.post(svc.url + "/v1/batch", content=body, headers=signed(body)).status_code == 200
        wait_for(lambda: cio.accepted)


# --- logs: no secrets, crashes as JSON lines -------------------------------------------------------------------

def test_tokens_and_webhook_secrets_never_reach_the_logs(tmp_path, cio):
    extra = '[sources.hooks]\nwebhook_secret = "${GS_TEST_HOOK_SECRET}"\n'
    path = write_config(tmp_path, cio, service={"operator_token": "${GS_TEST_OPERATOR_TOKEN}"}, extra=extra)
    log_path = tmp_path / "serve.log"
    svc = ServiceProcess(path, log_path, env={"GS_TEST_OPERATOR_TOKEN": TOKEN, "GS_TEST_HOOK_SECRET": SECRET})
    try:
        body = orjson.dumps(track(1))
        assert httpx.post(svc.url + "/v1/webhook/hooks", content=body, headers=signed(body)).status_code == 200
        assert httpx.post(svc.url + "/v1/webhook/hooks", content=SECRET.encode()).status_code == 401
        assert httpx.get(svc.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(svc.url + "/report.json", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 401
        wait_for(lambda: cio.accepted)
    finally:
        svc.stop()
    text = log_path.read_text()
    assert "request refused" in text
    assert TOKEN not in text and SECRET not in text
    for line in text.splitlines():
        orjson.loads(line)


def test_a_crash_of_the_delivery_process_is_a_json_log_line(tmp_path, cio):
    config = load_config(write_config(tmp_path, cio))
    broken = config.model_copy(update={"store": Store(url=f"sqlite:///{tmp_path}/no/such/dir/store.db")})
    data = pickle.dumps(broken)
    done = subprocess.run([sys.executable, "-m", "groupspec.plugin.service.child"],
                          input=len(data).to_bytes(8, "big") + data, capture_output=True, timeout=60)
    assert done.returncode != 0
    lines = [orjson.loads(line) for line in done.stderr.decode().splitlines()]  # every line is JSON
    crash = [entry for entry in lines if entry["level"] == "critical"]
    assert len(crash) == 1
    assert "Traceback" in crash[0]["error"] and "unable to open database file" in crash[0]["error"]
    assert config.customerio.api_key.get_secret_value() not in done.stderr.decode()


def test_an_uncaught_exception_in_a_thread_of_the_service_is_a_json_log_line(tmp_path, cio):
    path = write_config(tmp_path, cio)
    script = ("import sys, threading\n"
              "from groupspec.middleware.config import load_config\n"
              "from groupspec.plugin.service import logs\n"
              "logs.configure(load_config(sys.argv[1])); logs.capture_uncaught()\n"
              "t = threading.Thread(target=lambda: 1 / 0, name='worker-x'); t.start(); t.join()\n"
              "raise RuntimeError('the service fell over')\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=60)
    assert done.returncode == 1
    lines = [orjson.loads(line) for line in done.stderr.decode().splitlines()]
    assert [(e["level"], e.get("thread_name")) for e in lines] == [("critical", "worker-x"), ("critical", None)]
    assert "ZeroDivisionError" in lines[0]["error"] and "the service fell over" in lines[1]["error"]
