"""In-process middleware: `install(client, config)` on a Segment, RudderStack or Customer.io analytics client.

All three Python SDKs funnel every call (`track`, `identify`, ...) through `Client._enqueue(msg)`, which returns
`(success, msg)`; the hook sits there, so `send=False`, `sync_mode` and the consumer threads all see one outcome:

- forwarded: the enriched message goes to the SDK's own `_enqueue`; its `(True, msg)` comes back;
- dropped (a contract `drop`, or a user step returning None): nothing is queued, the record goes to the
  quarantine file (`[quarantine] path`) and the caller gets `(False, msg)` with its message as it passed it;
- groupspec failed (a bug, the store unavailable, a user step raising): the message passes through unchanged and
  the error is logged once per kind; with `fail_closed=True` it is quarantined (`internal_error`) instead.

The caller's dicts are never written: the chain works on a JSON copy of the message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

from .config import Config, load_config
from .engine import Engine
from .message import Message
from .quarantine import QuarantineFile
from .stores import Store, open_store

log = logging.getLogger("groupspec.sdk")

#: a user's own rule around groupspec's: the message dict in, the message to keep (or None to drop it) out
UserStep = Callable[[dict[str, Any]], "dict[str, Any] | None"]
#: violations that mean groupspec could not judge the message (not that the message broke the contract)
FAILURE_CODES = frozenset({"internal_error", "store_unavailable"})


class Failed(Exception):
    """groupspec could not decide on a message; `kind` is (where, what), for logging once per kind."""

    def __init__(self, kind: tuple[str, str], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def install(target: Any, config: Config | str | os.PathLike[str], source: str | None = "web", *,
            before: Iterable[UserStep] = (), after: Iterable[UserStep] = (), store: Store | str | None = None,
            fail_closed: bool = False) -> Any:
    """Run every message `target` queues through groupspec's chain; returns `target`.

    `target` is a `segment.analytics`, `rudderstack.analytics` or `customerio.analytics` `Client`, or one of
    those modules (its default client, the one behind `analytics.track(...)`, is hooked when it exists or is
    created). `config` is a `Config` or the path of a TOML file. `source` names the `[sources.NAME]` contract.
    `before` / `after` are the user's own steps, run before / after groupspec's on the message dict.
    `store` is a `Store` or a store URL (default: the config's `[store] url`, else `sqlite:///groupspec.db`).
    Installing again on the same target replaces the previous hook.
    """
    is_module = isinstance(target, types.ModuleType)
    if is_module and not (callable(getattr(target, "_proxy", None)) and hasattr(target, "default_client")):
        raise TypeError(f"install() expects a segment, rudderstack or customerio analytics module, "
                        f"got {target.__name__}")
    if not is_module and not callable(getattr(target, "_enqueue", None)):
        raise TypeError(f"install() expects a segment, rudderstack or customerio analytics Client or module, "
                        f"got {type(target).__name__}")
    if not isinstance(config, Config):
        config = load_config(config)
    if store is None or isinstance(store, str):
        store = open_store(config.store_url("live", store))
    engine = Engine(config, store, steps=[After(step) for step in after])
    gate = Gate(engine, QuarantineFile(config.quarantine.path), source, before=before, fail_closed=fail_closed)
    (_hook_module if is_module else _hook_client)(target, gate)
    return target


def _hook_client(client: Any, gate: Gate) -> None:
    original = getattr(client._enqueue, "original", client._enqueue)

    def hooked(msg: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        return gate(msg, original)

    hooked.original, hooked.gate = original, gate
    client._enqueue = hooked


def _hook_module(module: types.ModuleType, gate: Gate) -> None:
    """Wrap the module's `_proxy` (behind `analytics.track(...)` etc.) so its default client, created lazily from
    the module's settings at first use, is hooked before it queues anything."""
    proxy = getattr(module._proxy, "original", module._proxy)
    lock = threading.Lock()

    def hooked_proxy(method: str, *args: Any, **kwargs: Any) -> Any:
        client = module.default_client
        if not client or getattr(client._enqueue, "gate", None) is not gate:
            with lock:
                if not module.default_client:
                    proxy("flush")  # the module creates its default client as on first use; flushing it is a no-op
                client = module.default_client
                if getattr(client._enqueue, "gate", None) is not gate:
                    _hook_client(client, gate)
        return proxy(method, *args, **kwargs)

    hooked_proxy.original = proxy
    module._proxy = hooked_proxy
    if module.default_client:
        _hook_client(module.default_client, gate)


class Gate:
    """The decision on one SDK message: forward it enriched, quarantine it, or let it pass on a failure."""

    def __init__(self, engine: Engine, quarantine: QuarantineFile, source: str | None, *,
                 before: Iterable[UserStep] = (), fail_closed: bool = False) -> None:
        self.engine = engine
        self.quarantine = quarantine
        self.source = source
        self.before = list(before)
        self.fail_closed = fail_closed
        self._logged: set[tuple[str, str]] = set()

    def __call__(self, msg: dict[str, Any], enqueue: Callable[[dict], tuple[bool, Any]]) -> tuple[bool, Any]:
        stamp = msg.get("timestamp")
        if stamp is not None and not isinstance(stamp, datetime):
            return enqueue(msg)  # not a message the SDK accepts: its own error stays its own
        try:
            body = self._decide(msg, stamp)
        except Exception as exc:
            failure = exc if isinstance(exc, Failed) else Failed(("hook", type(exc).__name__),
                                                                 f"{type(exc).__name__}: {exc}")
            self._log_once(failure.kind, str(failure))
            if not self.fail_closed:
                return enqueue(msg)
            self._quarantine_failure(msg, failure)
            return False, msg
        if body is None:
            return False, msg
        return enqueue(body)

    def _decide(self, msg: dict[str, Any], stamp: datetime | None) -> dict[str, Any] | None:
        """The message to forward (the SDK's timestamp restored), or None when it went to quarantine."""
        moment = _aware(stamp) if stamp is not None else datetime.now(timezone.utc)
        work = dict(msg, timestamp=moment.isoformat())
        message_id = msg.get("messageId")
        work["messageId"] = str(uuid.uuid4()) if message_id is None else str(message_id)
        try:
            raw = orjson.dumps(work, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise Failed(("copy", "TypeError"), f"message is not JSON-serialisable: {exc}") from None
        payload: bytes | dict[str, Any] | None = raw
        if self.before:
            payload = orjson.loads(raw)
            for step in self.before:
                payload = self._before(step, payload)
                if payload is None:
                    dropped = Message(orjson.loads(raw), None, self.source, time.time())
                    self._quarantine(dropped.drop("dropped_by_user", "", f"before step {_name(step)} returned None"))
                    return None
        try:
            [out] = self.engine.run(payload, self.source)
        except Exception as exc:  # the engine isolates its steps' errors; this is the engine itself failing
            raise Failed(("pipeline", type(exc).__name__), f"{type(exc).__name__}: {exc}") from exc
        if out.quarantined:
            failure = next((v for v in out.violations if v["code"] in FAILURE_CODES), None)
            if failure is not None and not self.fail_closed:
                code = failure["code"]
                what = code if code == "store_unavailable" else failure["message"].split(":", 1)[0]
                raise Failed((failure["field"] or "pipeline", what), failure["message"])
            self._quarantine(out)
            return None
        body = out.body
        body["timestamp"] = stamp if stamp is not None else moment  # the SDK formats it its own way
        return body

    def _before(self, step: UserStep, msg: dict[str, Any]) -> dict[str, Any] | None:
        where = f"before step {_name(step)}"
        try:
            result = step(msg)
        except Exception as exc:
            raise Failed((where, type(exc).__name__), f"{type(exc).__name__}: {exc}") from exc
        if result is not None and not isinstance(result, dict):
            raise Failed((where, "TypeError"), f"returned {type(result).__name__}, expected a message dict or None")
        return result

    def _quarantine_failure(self, msg: dict[str, Any], failure: Failed) -> None:
        """Fail closed: the message as the SDK passed it (values JSON lacks as text) with `internal_error`."""
        try:
            original = orjson.loads(orjson.dumps(msg, default=str, option=orjson.OPT_NON_STR_KEYS))
            record = Message(original, None, self.source, time.time())
            record.drop("internal_error", "", f"{failure.kind[0]}: {failure}")
            self.quarantine.add(record)
        except Exception as exc:  # e.g. a self-referencing dict, a full disk: say so, never raise to the caller
            self._log_once(("quarantine", type(exc).__name__), f"the message could not be quarantined: {exc}")

    def _quarantine(self, msg: Message) -> None:
        try:
            self.quarantine.add(msg)
        except Exception as exc:
            raise Failed(("quarantine", type(exc).__name__), f"cannot write {self.quarantine.path}: {exc}") from exc

    def _log_once(self, kind: tuple[str, str], detail: str) -> None:
        if kind in self._logged:
            return
        self._logged.add(kind)
        then = "dropped" if self.fail_closed else "passed through unchanged"
        log.error("groupspec failed in %s (%s): %s; such messages are %s (logged once per kind)", *kind, detail, then)


class After:
    """A user's `after` callable as a chain step: it gets a copy of the enriched message before the store learns
    from it, so a message the user drops teaches the store nothing. None drops (`dropped_by_user`); an error or
    a non-dict is an `internal_error` whose field names the step."""

    def __init__(self, step: UserStep) -> None:
        self.step = step
        self.name = f"after step {_name(step)}"

    def __call__(self, msg: Message) -> Message:
        try:
            result = self.step(orjson.loads(orjson.dumps(msg.body)))
        except Exception as exc:
            return msg.drop("internal_error", self.name, f"{type(exc).__name__}: {exc}")
        if result is None:
            return msg.drop("dropped_by_user", "", f"{self.name} returned None")
        if not isinstance(result, dict):
            return msg.drop("internal_error", self.name,
                            f"TypeError: returned {type(result).__name__}, expected a message dict or None")
        msg.body = result
        return msg


def _name(step: UserStep) -> str:
    return getattr(step, "__name__", type(step).__name__)


def _aware(stamp: datetime) -> datetime:
    """The instant the SDKs read a datetime as: naive and within 5 s of now means local time, else UTC."""
    if stamp.tzinfo is not None and stamp.tzinfo.utcoffset(stamp) is not None:
        return stamp
    if (datetime.now() - stamp).total_seconds() < 5:
        return stamp.astimezone()
    return stamp.replace(tzinfo=timezone.utc)


def _jsonable(value: Any) -> Any:
    """What the SDKs' `clean` makes of the values JSON lacks."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
