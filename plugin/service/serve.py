"""`groupspec serve`: the spool, the ASGI app (run on uvicorn) and the delivery process (`child.py`, which runs
the chain and the worker) of a config. `Service` is the assembled whole, usable in-process (tests) as well as
from the command line."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from groupspec.middleware import Config, ConfigError, load_config, open_store

from . import logs
from .app import App
from .commit import GroupCommit
from .metrics import Metrics
from .spool import Spool
from .supervisor import DeliveryProcess

log = logging.getLogger("groupspec.service")


def customerio_configured(config: Config) -> bool:
    """Customer.io delivery is on unless neither credential is set (nor asked for from the environment)."""
    settings = config.customerio
    asked = any(key.startswith("customerio.") for key in config.missing_env)
    return asked or settings.site_id is not None or settings.api_key is not None


def check_delivery(config: Config) -> None:
    """Fail fast (ConfigError) on what would stop the delivery process at its start."""
    if not customerio_configured(config) and config.upstream.url is None:
        raise ConfigError(f"{config.path}: nothing to deliver to: set [customerio] site_id and api_key, "
                          f"or [upstream] url and write_key")
    if customerio_configured(config):
        config.require("customerio.site_id", config.customerio.site_id)
        config.require("customerio.api_key", config.customerio.api_key)
    if config.upstream.url is not None:
        config.require("upstream.write_key", config.upstream.write_key)
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
        self.app = App(sources, self.commit, self.metrics, self.problems, lambda: self.spool.depth,
                       on_shutdown=self.close, on_read=self.refresh)
        self._closed = False

    def refresh(self) -> None:
        """Take over the counters the delivery process last recorded."""
        self.metrics.restore(self.spool.worker_state())

    def problems(self) -> list[str]:
        """Why the service is unhealthy (empty: healthy)."""
        out = []
        problem = self.spool.worker_state().get("problem")
        if problem:
            out.append(problem)
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


def serve(config: Config, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run the service until SIGINT/SIGTERM; the spool keeps what was not delivered for the next start."""
    import uvicorn

    logs.configure(config)
    service = Service(config).start()
    log.info("serving", extra={"host": host, "port": port, "spool": config.service.spool,
                               "customerio": customerio_configured(config), "upstream": config.upstream.url is not None,
                               "spooled": service.spool.depth})
    server = uvicorn.Server(uvicorn.Config(service.app, host=host, port=port, lifespan="on", access_log=False,
                                           log_config=None, **uvicorn_options))
    try:
        server.run()  # on SIGTERM/SIGINT: drains requests, closes the service (lifespan), re-raises the signal
    finally:
        service.close()


def _serve(args: argparse.Namespace) -> int:
    serve(load_config(args.config), args.host, args.port)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `groupspec serve` to the CLI."""
    cmd = commands.add_parser("serve", help="run the Segment-compatible HTTP service")
    cmd.add_argument("--config", required=True)
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=8080)
    cmd.set_defaults(run=_serve)
