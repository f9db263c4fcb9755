"""Issue 17 item 11: what holds people's data is created owner-only: the spool, the quarantine, both dead letters
(Customer.io's and the upstream's) and the SQLite store, with their -wal, -shm and lock files (0600); the folders
groupspec makes (a quarantine's or a dead letter's, when missing) 0700. A file that exists keeps its mode."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from service_harness import WRITE_KEYS, ThreadService, wait_for, write_config

from groupspec.middleware import install
from groupspec.middleware.quarantine import QuarantineFile
from sdk_support import make_config

WEB = (WRITE_KEYS["web"], "")
TS = "2026-11-01T10:00:00Z"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The usual umask (022), under which a plain `open` makes world-readable files."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def refusing_upstream() -> Iterator[str]:
    """An upstream that refuses every batch (400): what it is sent goes to the upstream's dead letter."""

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("folders", ["missing", "there"])
def test_the_service_creates_its_files_and_folders_owner_only(tmp_path, cio, refusing_upstream, folders):
    data = tmp_path / "data"
    config = write_config(
        tmp_path, cio, store=f"sqlite:///{data / 'store' / 'store.db'}",
        customerio={"dead_letter": str(data / "dead" / "customerio.jsonl")},
        upstream={"url": refusing_upstream, "write_key": "wk_upstream", "dead_letter": str(data / "dead" / "up.jsonl"),
                  "max_retries": 0})
    text = config.read_text().replace(str(tmp_path / "quarantine.jsonl"), str(data / "quarantine" / "quarantine.jsonl"))
    config.write_text(text.replace(str(tmp_path / "spool.db"), str(data / "spool" / "spool.db")))
    for folder in ("store", "spool") if folders == "missing" else ("store", "spool", "quarantine", "dead"):
        (data / folder).mkdir(parents=True, mode=0o755)  # missing: groupspec makes the others
    cio.script(207)  # Customer.io refuses the batch: its operations go to the dead letter
    files = [data / "store" / "store.db", data / "store" / "store.db-wal", data / "store" / "store.db-shm",
             data / "spool" / "spool.db", data / "spool" / "spool.db-wal", data / "spool" / "spool.db-shm",
             data / "spool" / "spool.db.lock", data / "quarantine" / "quarantine.jsonl",
             data / "dead" / "customerio.jsonl", data / "dead" / "up.jsonl"]
    with ThreadService(config) as svc:
        track = {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "m1", "timestamp": TS}
        malformed = {"type": "track", "userId": "u2", "messageId": "m2"}  # no event: quarantined
        assert httpx.post(svc.url + "/v1/batch", json={"batch": [track, malformed]}, auth=WEB).status_code == 200
        wait_for(lambda: all(path.exists() for path in files), timeout=30)
        modes = {path.name: oct(mode(path)) for path in files}
    assert modes == {path.name: "0o600" for path in files}
    made = [data / "quarantine", data / "dead"]
    expected = "0o700" if folders == "missing" else "0o755"  # a folder that was there keeps its mode
    assert {folder.name: oct(mode(folder)) for folder in made} == {folder.name: expected for folder in made}


def test_the_sdk_hook_creates_its_store_and_quarantine_owner_only(tmp_path):
    from segment.analytics.client import Client

    store = tmp_path / "groupspec.db"
    config = make_config(tmp_path, store={"url": f"sqlite:///{store}"})
    client = install(Client("wk", upload_interval=0.01), config, mode="inline")
    client.join()  # no consumer: nothing is uploaded
    ok, _ = client.track("u1", "Order Placed", {"total": 1}, context={"groupId": "jane@example.com"})
    assert ok is False  # an email as a group id: quarantined
    files = [store, Path(f"{store}-wal"), Path(f"{store}-shm"), tmp_path / "quarantine.jsonl"]
    assert {path.name: oct(mode(path)) for path in files} == {path.name: "0o600" for path in files}


def test_a_missing_store_folder_is_an_error_not_a_new_empty_store(tmp_path):
    from groupspec.middleware.stores import StoreError, open_store

    with pytest.raises(StoreError, match="unable to open database file"):
        open_store(f"sqlite:///{tmp_path / 'mistyped' / 'groupspec.db'}")
    assert not (tmp_path / "mistyped").exists()


def test_a_file_that_exists_keeps_its_mode(tmp_path):
    path = tmp_path / "quarantine.jsonl"
    path.write_bytes(b"")
    path.chmod(0o640)  # the operator's choice (e.g. a log shipper's group)
    QuarantineFile(path).extend([{"message": {}, "violations": []}])
    assert mode(path) == 0o640 and path.read_bytes()


def test_erasures_lock_files_and_rewritten_files_are_owner_only_and_a_fork_lets_go_of_a_threads_lock(tmp_path):
    """Issue 23 under issue 17's rules: `PATH.lock` and a rewritten quarantine are 0600; a forked child does not
    keep a lock another thread of its parent held (its copy is closed), so the parent's release frees it."""
    import fcntl

    from groupspec.middleware import private
    from groupspec.middleware.jsonl import JsonlFile, rewrite

    path = tmp_path / "q.jsonl"
    os.chmod(tmp_path, 0o755)
    JsonlFile(path).extend([{"message": {"userId": "alice"}}, {"message": {"userId": "bob"}}])
    path.chmod(0o644)  # an older file, group-readable
    assert rewrite(path, lambda line: None if b"alice" in line else line) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"{path}.lock").st_mode) == 0o600

    held, release = threading.Event(), threading.Event()

    def holder():
        with private.flock(tmp_path / "x.lock"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: sleeps a while, holding nothing
        import time
        time.sleep(1.0)
        os._exit(0)
    release.set()
    thread.join()
    with private.flock(tmp_path / "x.lock", fcntl.LOCK_EX, wait=0.5):  # free although the child still lives
        pass
    os.waitpid(pid, 0)
