"""Issue 17 item 9: the SDK hook survives `os.fork()`. A child forked while the parent's consumer held the store
(its lock, its SQLite transaction) used to hang for ever in its consumer thread; now every lock, connection and
file the hook holds is reset in the child (`middleware/forks.py`). Each test: every child's flush returns, and
every message the SDK accepted reaches the upload server exactly once (a local capture server)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from batch_server import BatchServer
from redis_support import REDIS_URL, RedisSandbox, free_port, needs_redis

HERE = Path(__file__).resolve().parent
CONTRACT = """
[contract]
version = "fork"
group_id_pattern = "^hh_[A-Za-z0-9]+$"
require_group = ["Order Placed"]
[contract.group_traits]
plan_type = { type = "string", enum = ["basic", "family"] }
[quarantine]
path = "quarantine.jsonl"
"""
STORES = ["sqlite-default", "memory", pytest.param("redis", marks=needs_redis)]

pytestmark = pytest.mark.long


def run_soak(tmp_path: Path, store: str | None, rounds: int, children: int = 16, per_child: int = 100) -> dict:
    (tmp_path / "groupspec.toml").write_text(CONTRACT)
    with BatchServer() as server:
        spec = {"config": str(tmp_path / "groupspec.toml"), "store": store, "write_key": "wk", "host": server.url,
                "rounds": rounds, "children": children, "per_child": per_child, "wait": 60,
                "folder": str(tmp_path), "out": str(tmp_path / "result.json")}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        subprocess.run([sys.executable, str(HERE / "fork_soak.py"), str(tmp_path / "spec.json")], cwd=tmp_path,
                       check=True, timeout=900)
        uploaded = Counter(message["messageId"] for message in server.messages)
    result = json.loads((tmp_path / "result.json").read_text())
    result["uploaded"] = uploaded
    result["child_sent"] = [mid for path in sorted(tmp_path.glob("child-*.json")) for mid in json.loads(path.read_text())]
    return result


@pytest.mark.parametrize("store", STORES)
def test_children_forked_from_a_busy_hooked_parent_never_hang_and_lose_nothing(tmp_path, store):
    sandbox = RedisSandbox() if store == "redis" else None
    url = {"sqlite-default": None, "memory": "memory://",  # None: the config's default, sqlite:///groupspec.db
           "redis": sandbox and f"{REDIS_URL}?prefix={sandbox.prefix}"}[store]
    try:
        result = run_soak(tmp_path, url, rounds=6)
    finally:
        if sandbox is not None:
            sandbox.clean()
    assert [c for c in result["children"] if c["hung"]] == []
    assert [c for c in result["children"] if c["exitcode"] != 0] == []  # 3: a child's hook could not judge
    assert len(result["children"]) == 6 * 16 and result["failures"] == 0
    expected = Counter(result["sent"] + result["child_sent"])
    assert len(result["child_sent"]) == 6 * 16 * 100 and max(expected.values()) == 1
    assert result["uploaded"] == expected  # every message the SDK accepted, uploaded exactly once


APP = """
import json
import threading

import segment.analytics as analytics
from groupspec.middleware import install

analytics.write_key, analytics.host = "wk", {host!r}
install(analytics, "groupspec.toml")  # the default store: sqlite:///groupspec.db


def heartbeat():  # the preloaded app is busy in the master while the workers are forked
    sent = []
    for n in range(3000):
        ok, _ = analytics.track("master", "Order Placed", {{"n": n}}, context={{"groupId": "hh_master"}},
                                message_id=f"m{{n}}")
        if ok:
            sent.append(f"m{{n}}")
    analytics.flush()
    with open("master-sent.json", "w") as out:
        json.dump(sent, out)


threading.Thread(target=heartbeat).start()


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    if path == "up":  # the test's probe: nothing tracked
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"up"]
    ok, _ = analytics.track("web", "Order Placed", {{}}, context={{"groupId": "hh_web"}}, message_id=path)
    start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"ok"]
"""
HOOKS = """
def post_fork(server, worker):  # the worker's own default client, made (and hooked) at its first track
    import segment.analytics
    segment.analytics.default_client = None


def worker_exit(server, worker):
    import segment.analytics
    segment.analytics.flush()
"""


def test_gunicorn_preload_workers_upload_every_message_once(tmp_path):
    """`gunicorn --preload -w 4`: the app (and groupspec's hook, with the default SQLite store) loads in the
    master, which keeps tracking while the workers are forked; each worker makes its own client after the fork;
    on stop every worker flushes."""
    (tmp_path / "groupspec.toml").write_text(CONTRACT)
    with BatchServer() as server:
        (tmp_path / "webapp.py").write_text(APP.format(host=server.url))
        (tmp_path / "hooks.py").write_text(HOOKS)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-b", f"127.0.0.1:{port}", "-c", "hooks.py",
             "--graceful-timeout", "60", "webapp:app"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_up(f"http://127.0.0.1:{port}/", proc)
            answers = []
            with httpx.Client(timeout=10) as http:
                for n in range(2000):
                    try:
                        answers.append(http.get(f"http://127.0.0.1:{port}/w{n}").status_code)
                    except httpx.HTTPError as exc:  # a worker hung
                        answers.append(type(exc).__name__)
                        break
            wait_for_file = tmp_path / "master-sent.json"
            deadline = time.monotonic() + 60
            while not wait_for_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful: each worker exits (and flushes)
            output = proc.communicate(timeout=120)[0].decode()
        uploaded = Counter(message["messageId"] for message in server.messages)
    assert proc.returncode == 0, output[-3000:]
    assert answers == [200] * 2000
    master = json.loads((tmp_path / "master-sent.json").read_text())
    expected = Counter(master + [f"w{n}" for n in range(2000)])
    assert uploaded == expected, output[-3000:]


def _wait_up(url: str, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            httpx.get(url + "up", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start")
