"""Support for the tests that hold the hooked SDKs to the bare SDKs' behaviour: an endpoint that refuses every
upload, a store that records which thread touches it, a value's shape (types included), and the worker
process of the many-processes test."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from groupspec.middleware.stores.memory import MemoryStore


class FailingServer:
    """`POST /v1/batch` on 127.0.0.1 that refuses every request with `status` (a 400 is not retried)."""

    def __init__(self, status: int = 400) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_error(status)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FailingServer:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class ThreadRecordingStore(MemoryStore):
    """A memory store that notes the thread of every read and write, and counts its transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.transactions = 0

    def transaction(self):
        self.transactions += 1
        self.threads.add(threading.get_ident())
        return super().transaction()

    def admit(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().admit(*args, **kwargs)

    def memberships_at(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().memberships_at(*args, **kwargs)


def shape(value: Any) -> Any:
    """`value` with every leaf as (type name, value) and NaN spelled out, so that equal shapes mean the same
    objects and types (a date stays a date, an int key an int key)."""
    if isinstance(value, dict):
        return {(type(k).__name__, k): shape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def web_worker(sdk: str, host: str, workdir: str, config_path: str, process: int, threads: int,
               per_thread: int) -> dict[str, Any]:
    """One web-server worker process: a hooked client on the default store (`sqlite:///groupspec.db` in
    `workdir`), `threads` request threads each joining a household then tracking `per_thread` events."""
    import importlib

    from groupspec.middleware import install
    from groupspec.middleware.sdk import hook_of

    os.chdir(workdir)
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            if rec.levelno >= logging.ERROR:
                errors.append(rec.getMessage())

    for name in ("groupspec", "groupspec.sdk", "segment", "rudder", "customerio"):
        logging.getLogger(name).addHandler(Collect())
    module = importlib.import_module(f"{sdk}.analytics")
    client = install(module.Client("wk", host=host, upload_interval=0.05), config_path)

    def request_thread(t: int) -> None:
        user = f"u{process}_{t}"
        try:
            assert client.group(user, f"hh_{process}x{t}")[0]
            for i in range(per_thread):
                assert client.track(user, "Order Placed", {"i": i})[0]
        except Exception as exc:  # reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(request_thread, range(threads)))
    client.flush()
    client.join()
    hook = hook_of(client)
    counts = getattr(hook, "counts", None)
    return {"process": process, "errors": errors, "failures": getattr(hook, "failures", 0),
                 "forwarded": counts.forwarded if counts else None,
                 "quarantined": dict(counts.quarantined) if counts else None}


if __name__ == "__main__":  # one worker process: python sdk_bare_support.py SDK HOST WORKDIR CONFIG P THREADS N
    import sys

    sdk_, host_, workdir_, config_, *numbers = sys.argv[1:]
    print(json.dumps(web_worker(sdk_, host_, workdir_, config_, *map(int, numbers))))
