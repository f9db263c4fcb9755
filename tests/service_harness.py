"""Running `groupspec serve` in tests: a config file next to the stand-in Customer.io, the service's intake in a
thread of the test process (fast; its delivery process is a child of the test) or as a real process (for kill -9),
and wait helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from groupspec.middleware.config import load_config
from groupspec.middleware.message import message_key, parse_time
from groupspec.plugin.customerio.mapping import event_id
from groupspec.plugin.service.serve import Service, server_config
from prometheus_client.parser import text_string_to_metric_families

WRITE_KEYS = {"web": "wk_web_secret_123", "billing": "wk_billing_secret_456"}
OPERATOR_TOKEN = "operator-token-789"  # configure it as service.operator_token to read /report.json
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


def write_config(tmp_path: Path, cio: Any = None, *, customerio: dict[str, Any] | None = None,
                 upstream: dict[str, Any] | None = None, service: dict[str, Any] | None = None,
                 store: str | None = None, extra: str = "") -> Path:
    """A config with two sources, the spool/store/quarantine/dead letter under `tmp_path`, Customer.io at `cio`."""
    lines = [
        "[contract]", 'version = "test-1"', 'group_id_pattern = "^hh_[a-z0-9]+$"', 'require_group = ["Order Placed"]',
        "[contract.group_traits]", 'plan = { type = "string", enum = ["basic", "pro"] }',
        "[sources.web]", f'write_key = "{WRITE_KEYS["web"]}"',
        "[sources.billing]", f'write_key = "{WRITE_KEYS["billing"]}"',
        "[store]", f'url = "{store or "sqlite:///" + str(tmp_path / "store.db")}"',
        "[quarantine]", f'path = "{tmp_path / "quarantine.jsonl"}"',
        "[service]", f'spool = "{tmp_path / "spool.db"}"', *_pairs(service or {}),
    ]
    if cio is not None or customerio:
        settings = {"url": cio.url, "site_id": cio.site_id, "api_key": cio.api_key} if cio is not None else {}
        settings.update({"dead_letter": str(tmp_path / "dead-letter.jsonl"), "max_retries": 2, "retry_base": 0.01,
                         "retry_cap": 0.05, "rate_limit": 1000})
        settings.update(customerio or {})
        lines += ["[customerio]", *_pairs(settings)]
    if upstream:
        lines += ["[upstream]", *_pairs(upstream)]
    path = tmp_path / "groupspec.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _pairs(values: dict[str, Any]) -> list[str]:
    return [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]


def track_id(user: str, message_id: str, ts: str, source: str = "web") -> str:
    """The Customer.io event `id` of a track call of `user` (a userId) from `source`."""
    return event_id(message_key(source, f"u:{user}", "track", message_id), parse_time(ts))


def metrics(url: str) -> dict[str, float]:
    """The samples of `GET url/metrics`, keyed as Prometheus writes them: `name{label="value",...}`."""
    out = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", headers=OPERATOR).text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def wait_for(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc), whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if alive(child)]


class ThreadService:
    """The service's intake in this process (uvicorn on a port from the OS, in a thread); its delivery process,
    started with the first request spooled (the spool's first commit wakes it), so a test that spools nothing
    (refusals, CORS, operator pages) never pays for a Python process. A spool that already holds requests, or
    `eager=True` (a test of the process itself), starts it with the service, as `groupspec serve` does."""

    def __init__(self, config_path: Path, *, eager: bool = False) -> None:
        self.service = Service(load_config(config_path))
        self.eager = eager
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(self.service, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadService:
        if self.eager or self.service.spool.depth:
            self.service.start()
        else:
            self.service.commit.on_commit = self._start_delivery(self.service.commit.on_commit)
        self.thread.start()
        wait_for(lambda: self.server.started, 10)
        return self

    def _start_delivery(self, wake: Callable[[], None]) -> Callable[[], None]:
        lock = threading.Lock()

        def start_then_wake() -> None:
            with lock:
                if self.service.delivery.pid is None:
                    self.service.start()
            wake()
        return start_then_wake

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.service.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """`groupspec serve` as a child process; its JSON logs go to `log_path`. With `group`, it leads a process
    group of its own (with its delivery process) that `kill_group` kills at once."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None, *,
                 port: int | None = None, group: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "groupspec.plugin.cli", "serve", "--config", str(config_path),
             "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=group)
        wait_for(self._up, 20)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"groupspec serve exited with {self.proc.returncode}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def children(self) -> list[int]:
        return children(self.proc.pid)

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def kill_group(self) -> None:
        """kill -9 of the service and its delivery process together (a machine or container dying)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode
