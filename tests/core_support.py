"""Helpers shared by the core unit tests: a config from TOML text, a memory-store chain with the Customer.io
mapping, and spec messages with readable times."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from typing import Any

from groupspec.middleware import Engine, open_store
from groupspec.middleware.config import Config, parse_config
from groupspec.middleware.message import Message
from groupspec.plugin.customerio.mapping import CUSTOMERIO

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(days: float = 0, hours: float = 0) -> str:
    """An ISO-8601 time `days` + `hours` after 2026-01-01T00:00:00Z."""
    return (T0 + timedelta(days=days, hours=hours)).isoformat().replace("+00:00", "Z")


def unix(days: float = 0, hours: float = 0) -> int:
    return int((T0 + timedelta(days=days, hours=hours)).timestamp())


def config(toml: str = "") -> Config:
    """A validated config from TOML text. The chains' clock stands at 2026-01-01 while test messages are dated
    days or years later, so the future tolerance is wide unless a test sets it."""
    data = tomllib.loads(toml)
    data.setdefault("contract", {}).setdefault("future_tolerance", "100000d")
    return parse_config(data, "test.toml")


class Chain:
    """A pipeline on a fresh memory store with the Customer.io mapping; `run` flattens the messages."""

    def __init__(self, toml: str = "", store_url: str = "memory://") -> None:
        self.config = config(toml)
        self.store = open_store(store_url)
        self.pipeline = Engine(self.config, self.store, destination=CUSTOMERIO, clock=lambda: float(unix()))

    def run(self, *payloads: Any, source: str | None = None) -> list[Message]:
        return [m for p in payloads for m in self.pipeline.run(p, source)]

    def one(self, payload: Any, source: str | None = None) -> Message:
        (msg,) = self.run(payload, source=source)
        return msg

    def last(self, *payloads: Any, source: str | None = None) -> Message:
        return self.run(*payloads, source=source)[-1]


def group(user: str | None, group_id: str, days: float = 0, anon: str | None = None, **traits: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "group", "groupId": group_id, "timestamp": at(days), "traits": traits}
    if user is not None:
        body["userId"] = user
    if anon is not None:
        body["anonymousId"] = anon
    return body


def track(user: str | None, event: str = "Order Placed", days: float = 0, anon: str | None = None,
          **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "track", "event": event, "timestamp": at(days), **extra}
    if user is not None:
        body["userId"] = user
    if anon is not None:
        body["anonymousId"] = anon
    return body


def identify(user: str | None, days: float = 0, anon: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "identify", "timestamp": at(days), **extra}
    if user is not None:
        body["userId"] = user
    if anon is not None:
        body["anonymousId"] = anon
    return body


def left(user: str, group_id: str, days: float, type_id: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"objectId": group_id}
    if type_id is not None:
        props["objectTypeId"] = type_id
    return track(user, "Relationship Deleted", days, properties=props)


def deleted(user: str, group_id: str, days: float) -> dict[str, Any]:
    return track(user, "Object Deleted", days, properties={"objectId": group_id})


def codes(msg: Message) -> list[str]:
    return [v["code"] for v in msg.violations]
