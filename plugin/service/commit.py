"""Group commit: requests waiting on the spool are written together, one transaction (and one fsync) for all
that arrived while the previous commit ran, so durability costs little per request."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from ..spool import Spool

Row = tuple[str | None, str | None, float, int, bytes]
_STOP = object()


class GroupCommit:
    """`await commit.write(row)` returns once the row is in the spool (or raises the spool's error)."""

    def __init__(self, spool: Spool, on_commit: Callable[[], None] = lambda: None) -> None:
        self.spool = spool
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="groupspec-spool-commit", daemon=True)
        self._thread.start()

    async def write(self, row: Row) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((row, future, loop))
        await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            pending = [item]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                pending.append(item)
            try:
                self.spool.append([row for row, _, _ in pending])
                error = None
            except Exception as exc:  # answered as 503 to every waiting request; nothing was accepted
                error = exc
            self.on_commit()
            for loop in {loop for _, _, loop in pending}:
                try:
                    loop.call_soon_threadsafe(_settle, [f for _, f, lp in pending if lp is loop], error)
                except RuntimeError:  # that loop has closed (shutdown): nobody waits for the answer any more
                    pass

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()


def _settle(futures: list[asyncio.Future], error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
