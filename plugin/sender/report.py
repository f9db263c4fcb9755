"""What a send did, and the exceptions that stop one: shared by Customer.io delivery and the upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from groupspec.middleware import errors


@dataclass
class SendReport:
    """What one `send` did: items delivered (accepted by the destination) and dead-lettered, retries, HTTP
    requests made, and seconds spent waiting on throttling (the rate limit, 429 or `Retry-After`)."""

    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    requests: int = 0
    throttled_seconds: float = 0.0


class SendFailed(errors.GroupspecError):
    """Sending stopped; `remaining` holds the items not sent, in order, to keep queued; `report` what the
    call did before it stopped."""

    def __init__(self, message: str, remaining: list[Any], report: SendReport) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.report = report


class Unauthorized(SendFailed, errors.Unauthorized):
    """The destination refused the credentials (401/403): stop, report unhealthy, keep everything queued."""


class SendHeld(SendFailed):
    """The shared rate limit could not be read: nothing was sent (never unthrottled); report it, retry later."""
