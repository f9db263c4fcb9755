"""When to try a failed request again: exponential backoff with full jitter, or the server's `Retry-After`."""

from __future__ import annotations

import random
import re
from datetime import datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 425, 429})  # plus every 5xx
_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]+)?")


def retryable(status: int) -> bool:
    """Throttled or failing on the server's side: the same request may succeed later."""
    return status in RETRY_STATUSES or status >= 500


def backoff(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (0-based): uniform in [0, min(cap, base * 2**retry)]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(retry, 64)))


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a `Retry-After` header (delay-seconds or an HTTP date), None when absent or
    unreadable; a date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
