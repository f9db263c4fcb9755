"""When Ctrl-C (SIGINT) or SIGTERM may stop a backfill, so that what was delivered is what the checkpoint says.

An interrupt raised in the middle of a send would leave a batch delivered but not recorded, and the rerun would
send it again. So while a batch is in flight (`sending`), the first signal is only noted: the batch finishes,
its result is recorded and the checkpoint written, then the backfill stops (`check` raises KeyboardInterrupt)
and exits 130. A second signal while the batch is still in flight stops at once (that batch may then be sent
again by the rerun). While a result is being recorded (`recording`: the position advanced, quarantine records
written, the checkpoint saved) every signal waits until it is done. Elsewhere (reading, the engine) a signal
stops at once, as before: nothing is in flight there.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FREE, IN_FLIGHT, RECORDING = 0, 1, 2  # what a signal may interrupt: anything, a send, nothing
NOTICE = (b"groupspec: stopping once the batch in flight is delivered and the checkpoint saved "
          b"(interrupt again to stop now; that batch may then be sent again by the rerun)\n")


class Interrupts:
    """The interrupt policy of one backfill. Without `install` (a library caller, tests) it only counts what
    `signal` is told; `install` makes it the SIGINT and SIGTERM handler until `restore`."""

    def __init__(self) -> None:
        self.received = 0  # signals received
        self._level = FREE
        self._previous: dict[int, object] = {}

    def install(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self.signal)
        return self

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> Interrupts:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def signal(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self._level == RECORDING:
            return  # never between "delivered" and "checkpoint saved": `check` stops it right after
        if self._level == IN_FLIGHT and self.received == 1:
            os.write(2, NOTICE)  # not print(): the main thread may be inside a write to stderr
            return
        raise KeyboardInterrupt

    def sending(self) -> AbstractContextManager[None]:
        """A batch in flight: the first signal waits for its result."""
        return self._at(IN_FLIGHT)

    def recording(self) -> AbstractContextManager[None]:
        """A result being recorded: every signal waits."""
        return self._at(RECORDING)

    @contextmanager
    def _at(self, level: int) -> Iterator[None]:
        previous, self._level = self._level, max(self._level, level)
        try:
            yield
        finally:
            self._level = previous

    def check(self) -> None:
        """Stop (KeyboardInterrupt) if a signal was held off; call it where everything done is recorded."""
        if self.received:
            raise KeyboardInterrupt
