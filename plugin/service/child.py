"""The delivery process that `groupspec serve` starts (`python -m groupspec.plugin.service.child`): it runs the
worker over the spool, so intake and delivery each have a core.

Its stdin is a pipe from the service: first the pickled `Config` (8-byte length first), then one byte per
notice: `w` new entries were spooled, `q` stop cleanly. End of file without `q` means the service died: the
process exits at once (whatever it was delivering stays in the spool), so no orphan keeps sending.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time

from groupspec.middleware import Config, Engine, open_store
from groupspec.middleware.jsonl import JsonlFile

from ..collector import streaming
from ..customerio.delivery import Delivery
from ..erasure import erase_people
from ..customerio.mapping import CUSTOMERIO
from ..sender import DeadLetterFile, rate_limiter
from . import logs
from ..spool import SpoolQueue
from .supervisor import QUIT
from ..sender.upstream import Upstream
from .worker import Worker

PARENT_GONE = 3  # exit status when the service died under the process


def read_config(pipe: int) -> Config:
    size = int.from_bytes(_read_exactly(pipe, 8), "big")
    return pickle.loads(_read_exactly(pipe, size))


def _read_exactly(pipe: int, size: int) -> bytes:
    """Unbuffered, so that no notice after the config is read ahead and lost."""
    data = b""
    while len(data) < size:
        more = os.read(pipe, size - len(data))
        if not more:
            os._exit(PARENT_GONE)
        data += more
    return data


def listen(pipe: int, wake: threading.Event, stopping: threading.Event) -> None:
    """Turn the service's notices into events; exit the process when the service is gone."""
    while notices := os.read(pipe, 4096):  # anything else is a wake-up
        if QUIT in notices:
            stopping.set()
        wake.set()
        if stopping.is_set():
            return
    os._exit(PARENT_GONE)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the service, which stops this process
    config = read_config(sys.stdin.fileno())
    logs.configure(config)
    logs.capture_uncaught()
    stopping = threading.Event()
    delivery = upstream = None

    def pause(seconds: float) -> None:  # the senders wait through the worker, which shows a throttled wait
        worker.pause(seconds)

    def hold(seconds: float) -> None:  # a turn in the rate limit, never cut short by a stop
        worker.hold(seconds)

    store = open_store(config.store_url("live"))
    if config.customerio_configured:
        bucket = rate_limiter(config.store_url("live"), store, "customerio", config.customerio.rate_limit,
                              clock=time.monotonic, sleep=hold)  # shared by the replicas on a Redis store
        delivery = Delivery.from_config(config, dead_letter=DeadLetterFile(config.customerio.dead_letter).add,
                                        sleep=pause, bucket=bucket)
    if config.upstream.url is not None:
        upstream = Upstream(config, sleep=pause)
    spool = SpoolQueue(config.service.spool, config.service.sync)
    engine = Engine(config, store, destination=CUSTOMERIO)
    worker = Worker(spool, engine, JsonlFile(config.quarantine.path), delivery, upstream, stopping=stopping,
                    erase=lambda done: erase_people(config, done))
    signal.signal(signal.SIGTERM, lambda *_: (stopping.set(), worker.wake.set()))
    threading.Thread(target=listen, args=(sys.stdin.fileno(), worker.wake, stopping), daemon=True).start()
    try:
        with streaming():
            worker.run()
    finally:
        for part in (delivery, upstream, store, spool):
            if part is not None:
                part.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
