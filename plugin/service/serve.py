"""`groupspec serve`: the spool, the ASGI app (run on uvicorn) and the delivery process (`child.py`, which runs
the chain and the worker) of a config. `Service` is the assembled whole, usable in-process (tests) as well as
from the command line.

`server_config` is the uvicorn configuration the service runs with: its HTTP protocol bounds what a client can make
it hold before a request reaches the app (`GuardedHttp`: header size, time to send the headers)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from groupspec.middleware import Config, ConfigError, load_config, open_store

from . import logs
from .app import App
from .commit import GroupCommit
from .cors import browser_access
from .metrics import Metrics
from ..spool import Spool
from .supervisor import DeliveryProcess

log = logging.getLogger("groupspec.service")


def check_delivery(config: Config) -> None:
    """Fail fast (ConfigError) on what would stop the delivery process at its start."""
    if not config.customerio_configured and config.upstream.url is None:
        raise ConfigError(f"{config.path}: nothing to deliver to: set [customerio] site_id and api_key, "
                          f"or [upstream] url")
    if config.customerio_configured:
        config.require("customerio.site_id", config.customerio.site_id)
        config.require("customerio.api_key", config.customerio.api_key)
    if config.upstream.url is not None:  # each source's upstream key (the default only if one needs it)
        for name in config.sources or (None,):
            config.upstream_key(name)
    for key in config.missing_env:  # the service's own secrets: set when asked for
        if key == "service.operator_token" or key.endswith(".webhook_secret"):
            config.require(key, None)
    open_store(config.store_url("live")).close()


class Service:
    """The spool, the ASGI app and the delivery process of one config; `start()` the process, `close()` all."""

    def __init__(self, config: Config) -> None:
        check_delivery(config)
        self.config = config
        self.spool = Spool(config.service.spool, config.service.sync)  # fails fast if another serve has it
        self.metrics = Metrics(config.contract.version)
        self.delivery = DeliveryProcess(config, self.spool.lock_fd)
        self.commit = GroupCommit(self.spool, on_commit=self.delivery.wake)
        sources = {src.write_key.get_secret_value(): name for name, src in config.sources.items()
                   if src.write_key is not None}
        webhook_secrets = {name: src.webhook_secret.get_secret_value() for name, src in config.sources.items()
                           if src.webhook_secret is not None}
        token = config.service.operator_token
        self.app = App(sources, self.commit, self.metrics, self.problems, lambda: self.spool.depth,
                       on_shutdown=self.close, on_read=self.refresh, webhook_secrets=webhook_secrets,
                       operator_token=token.get_secret_value() if token is not None else None,
                       read_timeout=config.service.read_timeout,
                       throttled=lambda: bool(self.spool.worker_state().get("throttled")))
        self._closed = False

    def refresh(self) -> None:
        """Take over the counters the delivery process last recorded."""
        self.metrics.restore(self.spool.worker_state())

    def problems(self) -> list[str]:
        """Why the service is unhealthy (empty: healthy)."""
        out = []
        state = self.spool.worker_state()
        out += [problem for problem in (state.get("problem"), state.get("store"), self.spool.failing) if problem]
        if self.delivery.pid is not None and not self.delivery.running and not self._closed:
            out.append("the delivery process stopped; restarting it")
        depth, limit = self.spool.depth, self.config.service.max_spool_depth
        if depth > limit:
            out.append(f"the spool holds {depth} messages, over service.max_spool_depth = {limit}")
        return out

    def start(self) -> Service:
        self.delivery.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.delivery.stop()
        self.commit.close()
        log.info("stopped", extra={"spooled": self.spool.depth})
        self.spool.close()


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded: a request's line and headers over `max_header_bytes` are refused
    (431) once that much has arrived, and headers not complete within `read_timeout` seconds of their first byte
    (or of the connection) are refused (408); both close the connection. `guarded(...)` makes the class."""

    max_header_bytes = 16_384
    read_timeout = 10.0
    counts: Counter[int] = Counter()  # refusals by status, in the app's `groupspec_requests_total`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes, self._in_head, self._events = 0, True, 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.read_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.read_timeout, self._head_late)
        events = self._events
        super().data_received(data)
        if self._in_head and events == self._events and not self.transport.is_closing():
            self._head_bytes += len(data)  # all of it is head: no request began or ended its head in it
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, f"request headers are over the {self.max_header_bytes} bytes limit")

    def on_headers_complete(self) -> None:
        self._events += 1
        self._in_head, self._head_bytes = False, 0
        self._stop_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._events += 1
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self._refuse(408, f"the request headers did not arrive within {self.read_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self.counts[status] += 1
        log.info("request refused", extra={"status": status, "reason": message})
        body = b'{"success":false,"message":"' + message.encode() + b'"}'
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        self._stop_timer()
        self.transport.close()


def guarded(max_header_bytes: int, read_timeout: float, counts: Counter[int]) -> type[GuardedHttp]:
    """A `GuardedHttp` with these limits, counting its refusals in `counts`."""
    return type("GuardedHttp", (GuardedHttp,), {"max_header_bytes": max_header_bytes, "read_timeout": read_timeout,
                                                "counts": counts})


def server_config(service: Service, **uvicorn_options: Any) -> uvicorn.Config:
    """The uvicorn configuration of `service`: its app (with CORS for `cors_origins`) over the bounded protocol,
    no access log."""
    settings = service.config.service
    options = {"lifespan": "on", "access_log": False, "log_config": None, **uvicorn_options}
    protocol = guarded(settings.max_header_bytes, settings.read_timeout, service.metrics.requests)
    app = browser_access(service.app, settings.cors_origins, service.metrics.requests)
    return uvicorn.Config(app, http=protocol, **options)


def serve(config: Config, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run the service until SIGINT/SIGTERM; the spool keeps what was not delivered for the next start."""
    logs.configure(config)
    logs.capture_uncaught()
    service = Service(config).start()
    log.info("serving", extra={"host": host, "port": port, "spool": config.service.spool,
                               "customerio": config.customerio_configured, "upstream": config.upstream.url is not None,
                               "spooled": service.spool.depth})
    server = uvicorn.Server(server_config(service, host=host, port=port, **uvicorn_options))
    try:
        server.run()  # on SIGTERM/SIGINT: drains requests, closes the service (lifespan), re-raises the signal
    finally:
        service.close()


def run(args: argparse.Namespace) -> int:
    serve(load_config(args.config), args.host, args.port)
    return 0
