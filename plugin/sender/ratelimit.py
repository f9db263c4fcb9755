"""A client-side token bucket: at most `rate` requests per second, spaced out rather than bursting."""

from __future__ import annotations

import threading
from collections.abc import Callable


class LimitUnavailable(Exception):
    """No turn can be had from a rate limit (a shared one's Redis does not answer; the service is stopping, see
    the service's `Worker.hold`): nothing may be sent."""


class TokenBucket:
    """`acquire()` blocks (through the injected `sleep`) until a request may go out.

    `capacity` tokens may accumulate while idle (1 by default: requests at least 1/rate seconds apart).
    """

    def __init__(self, rate: float, *, capacity: float = 1.0,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting for it when the bucket is empty; returns the seconds waited."""
        with self._lock:  # waiters queue on the lock, so each one's debt is counted in turn
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            wait = (1.0 - self._tokens) / self.rate if self._tokens < 1.0 else 0.0
            self._tokens -= 1.0
            if wait > 0:
                self._sleep(wait)
            return wait
