"""`groupspec serve`: builds the spool, the chain, the worker and the ASGI app from a config and runs them on
uvicorn. `Service` is the assembled whole, usable in-process (tests) as well as from the command line."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from groupspec.middleware import Config, ConfigError, Pipeline, load_config, open_store
from groupspec.middleware.quarantine import QuarantineFile

from ..customerio.dead_letter import DeadLetterFile
from ..customerio.delivery import Delivery
from ..customerio.mapping import to_customerio
from ..customerio.rollups import RollupUpdates
from . import logs
from .app import App
from .commit import GroupCommit
from .metrics import Metrics
from .spool import Spool
from .upstream import Upstream
from .worker import SpoolClock, Worker

log = logging.getLogger("groupspec.service")
DEFAULT_STORE = "sqlite:///groupspec.db"


def customerio_configured(config: Config) -> bool:
    """Customer.io delivery is on unless neither credential is set (nor asked for from the environment)."""
    settings = config.customerio
    asked = any(key.startswith("customerio.") for key in config.missing_env)
    return asked or settings.site_id is not None or settings.api_key is not None


class Service:
    """The spool, the worker and the ASGI app of one config; `start()` the worker, `close()` everything."""

    def __init__(self, config: Config) -> None:
        if not customerio_configured(config) and config.upstream.url is None:
            raise ConfigError(f"{config.path}: nothing to deliver to: set [customerio] site_id and api_key, "
                              f"or [upstream] url and write_key")
        self.config = config
        self.spool = Spool(config.service.spool, config.service.sync)  # first: fails fast if another serve has it
        stopping = threading.Event()  # retry waits end at shutdown
        self.delivery = Delivery.from_config(config, dead_letter=DeadLetterFile(config.customerio.dead_letter).add,
                                             sleep=stopping.wait) if customerio_configured(config) else None
        self.upstream = Upstream(config, sleep=stopping.wait) if config.upstream.url is not None else None
        self.store = open_store(config.store_url(DEFAULT_STORE))
        self.metrics = Metrics(config.contract.version)
        clock = SpoolClock()
        rollups = RollupUpdates(self.store)
        pipeline = Pipeline(config, self.store, extra=[to_customerio, rollups], clock=clock)
        self.worker = Worker(self.spool, pipeline, clock, rollups, self.metrics, QuarantineFile(config.quarantine.path),
                             self.delivery, self.upstream, stopping=stopping)
        self.commit = GroupCommit(self.spool, on_commit=self.worker.wake.set)
        sources = {src.write_key.get_secret_value(): name for name, src in config.sources.items()
                   if src.write_key is not None}
        self.app = App(sources, self.commit, self.metrics, self.problems, lambda: self.spool.depth,
                       on_shutdown=self.close)
        self._closed = False

    def problems(self) -> list[str]:
        """Why the service is unhealthy (empty: healthy)."""
        out = []
        if self.worker.problem:
            out.append(self.worker.problem)
        if not self.worker.is_alive() and self.worker.ident is not None and not self.worker.stopping.is_set():
            out.append("the delivery worker stopped")
        depth, limit = self.spool.depth, self.config.service.max_spool_depth
        if depth > limit:
            out.append(f"the spool holds {depth} messages, over service.max_spool_depth = {limit}")
        return out

    def start(self) -> Service:
        self.worker.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.worker.stop()
        self.commit.close()
        for part in (self.delivery, self.upstream, self.store, self.spool):
            if part is not None:
                part.close()
        log.info("stopped", extra={"spooled": self.spool.depth})


def serve(config: Config, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run the service until SIGINT/SIGTERM; the spool keeps what was not delivered for the next start."""
    import uvicorn

    logs.configure(config)
    service = Service(config).start()
    log.info("serving", extra={"host": host, "port": port, "spool": config.service.spool,
                               "customerio": service.delivery is not None, "upstream": service.upstream is not None,
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
