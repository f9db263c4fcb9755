"""In-process middleware: `install(client, config)` on a Segment, RudderStack or Customer.io analytics client.

The three Python SDKs share one shape: `Client._enqueue(msg)` checks and cleans the message, then either returns
it (`send=False`), posts it at once (`sync_mode`: the module-level `post` of `<sdk>.analytics.client`) or puts
it on `client.queue`; a `Consumer` thread takes batches off the queue and hands each to `Consumer.request(batch)`,
which posts it (with retries). groupspec hooks the SDK after its own checks, so its validation errors, size
limits, id forms and value types stay its own:

- `mode="consumer"` (the default): the caller pays only the SDK's enqueue. groupspec runs in the consumer's
  `request(batch)`, a batch at a time in one store transaction, before the upload; in `sync_mode` it runs in
  the caller's post, as the SDK itself posts there. A drop cannot change what `track()` already returned: it is
  quarantined, counted (`hook_of(client).counts`) and reported through `on_drop(msg, violations)`.
- `mode="inline"`: groupspec runs in the caller at the SDK's `queue.put` (or post), so the call returns the
  decision: `(True, enriched msg)` or `(False, msg)` for a drop. The store learns only once the message was
  handed over (a full queue or a failed post teaches it nothing).

The engine decides on a JSON copy of the SDK's message; the decision (`context.groupId`, `.groups`,
`.groupspec`, strips, the user's edits) is applied to a shallow copy of the SDK's own message, so every value it
did not touch is the same object, of the same type, as without groupspec. The envelope (type, ids, messageId,
timestamp) stays the SDK's.

When groupspec itself fails (a bug, the store unavailable, a user step raising) the message goes on unchanged
and the error is logged once per kind; with `fail_closed=True` it is quarantined (`internal_error`) instead.

Across `os.fork()` (gunicorn `--preload`, Celery, multiprocessing): the hook, its store and its quarantine reset
in the child what another thread of the parent held (`forks.py`). The SDK's consumer threads do not cross a
fork, bare or hooked: a child makes a fresh client (a post-fork hook), and a hooked module hooks it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from . import forks
from .config import Config, did_you_mean, load_config
from .errors import ConfigError
from .counts import Counts
from .engine import Engine
from .learn import Learn
from .message import Message
from .privacy import Erasure, forget_in_quarantine
from .quarantine import QuarantineFile, record
from .stores import Store, open_store

log = logging.getLogger("groupspec.sdk")

#: a user's own rule around groupspec's: the message dict in, the message to keep (or None to drop it) out
UserStep = Callable[[dict[str, Any]], "dict[str, Any] | None"]
#: called with the SDK's message and its violations when groupspec drops a message in consumer mode
OnDrop = Callable[[dict[str, Any], list[dict[str, str]]], None]
#: violations that mean groupspec could not judge the message (not that the message broke the contract)
FAILURE_CODES = frozenset({"internal_error", "store_unavailable"})
MODES = ("consumer", "inline")
#: the SDK's envelope: its ids, type and times are sent in the SDK's own form, never groupspec's normalised one
ENVELOPE = frozenset({"type", "userId", "anonymousId", "groupId", "previousId", "messageId", "timestamp"})
_ABSENT = object()
YIELD_EVERY = 20  # messages a consumer decides on between two offers of the GIL to the app's threads
_local = threading.local()  # .call: the Hook of the `_enqueue` running on this thread; .result; .deferred


def _offer_gil() -> None:
    """Let a waiting app thread have the GIL now rather than after the switch interval (a `track` call's
    latency)."""
    time.sleep(0)


def _behind(queue: Any, batch: int) -> bool:
    """True when the SDK's queue holds at least another `batch` messages: the app is producing faster than the
    consumer takes them, and a GIL offered to it is not back for a whole switch interval (5 ms), in which the app
    queues hundreds more: offering it then fills the queue, and the SDK refuses what the bare SDK would send."""
    try:
        return queue is not None and queue.qsize() >= batch
    except Exception:  # not a queue.Queue: offer as before
        return False


class Failed(Exception):
    """groupspec could not decide on a message; `kind` is (where, what), for logging once per kind."""

    def __init__(self, kind: tuple[str, str], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Dropped(Exception):
    """Inline mode: raised from the SDK's put/post so its `_enqueue` stops and the hook returns `(False, msg)`."""


def install(target: Any, config: Config | str | os.PathLike[str], source: str | None = None, *,
            before: Iterable[UserStep] = (), after: Iterable[UserStep] = (), store: Store | str | None = None,
            fail_closed: bool = False, mode: str = "consumer", on_drop: OnDrop | None = None) -> Any:
    """Run every message `target` uploads through groupspec's chain; returns `target`.

    `target` is a `segment.analytics`, `rudderstack.analytics` or `customerio.analytics` `Client`, or one of
    those modules (its default client, the one behind `analytics.track(...)`, is hooked when it exists or is
    created). `config` is a `Config` or the path of a TOML file. `source` names the `[sources.NAME]` whose
    contract (and owned traits) the messages are held to; by default the source whose `write_key` is the client's
    (`source_of`).
    `before` / `after` are the user's own steps, run before / after groupspec's on the message dict.
    `store` is a `Store` or a store URL (default: the config's `[store] url`, else `sqlite:///groupspec.db`).
    `mode` is "consumer" (groupspec runs off the request path, in the SDK's consumer) or "inline" (in the call,
    which then returns the decision). `on_drop(msg, violations)` hears of every message groupspec drops.
    Installing again on the same target replaces the previous hook.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    is_module = isinstance(target, types.ModuleType)
    if is_module and not (callable(getattr(target, "_proxy", None)) and hasattr(target, "default_client")):
        raise TypeError(f"install() expects a segment, rudderstack or customerio analytics module, "
                        f"got {target.__name__}")
    if not is_module and not callable(getattr(target, "_enqueue", None)):
        raise TypeError(f"install() expects a segment, rudderstack or customerio analytics Client or module, "
                        f"got {type(target).__name__}")
    if not isinstance(config, Config):
        config = load_config(config)
    source = source_of(config, getattr(target, "write_key", None), source)
    if store is None or isinstance(store, str):
        store = open_store(config.store_url("live", store))
    hook = Hook(config, store, QuarantineFile(config.quarantine.path), source, before=before, after=after,
                fail_closed=fail_closed, mode=mode, on_drop=on_drop)
    (_hook_module if is_module else _hook_client)(target, hook)
    return target


def source_of(config: Config, write_key: Any, source: str | None) -> str | None:
    """The source an SDK client's messages belong to: `source` when the config has it (and the client's write key
    is not another source's), else the source whose `write_key` is the client's; None when the config declares no
    sources (the base `[contract]` applies). ConfigError for a source or a client key the config does not know."""
    known = config.source_for_key(write_key) if isinstance(write_key, str) else None
    have = ", ".join(config.sources) or "none is declared"
    if source is not None:
        if source not in config.sources:
            raise ConfigError(f"{config.path}: install(source={source!r}): no such source in [sources] "
                              f"(have: {have}){did_you_mean(source, config.sources)}")
        if known is not None and known != source:
            raise ConfigError(f"{config.path}: install(source={source!r}): the client's write key is "
                              f"sources.{known}.write_key; leave source out (the key finds it) or name {known!r}")
        return source
    if not config.sources:
        return None
    if known is None:
        raise ConfigError(f"{config.path}: install(): the client's write key is not the write_key of any of "
                          f"[sources] ({have}); set it on its source, or name it: install(client, config, "
                          f"source=NAME) (a module's analytics.write_key must be set before install)")
    return known


def hook_of(client: Any) -> Hook | None:
    """The `Hook` installed on `client` (its `counts`, `failures`), or None."""
    return getattr(client._enqueue, "gate", None)


# -- where the hook sits in the SDKs ----------------------------------------------------------------------------

def _hook_client(client: Any, hook: Hook) -> None:
    """Wrap the client's `_enqueue` (marks the call for the sync-mode post), its queue's `put` (inline mode) and
    each of its consumers' `request` (consumer mode)."""
    original = getattr(client._enqueue, "original", client._enqueue)

    def hooked(msg: dict[str, Any]) -> tuple[bool, Any]:
        return hook.enqueue(client, original, msg)

    hooked.original, hooked.gate = original, hook
    client._enqueue = hooked
    _wrap_sync_post(sys.modules.get(type(client).__module__))
    queue = getattr(client, "queue", None)
    if queue is not None:
        put = getattr(queue.put, "original", queue.put)
        if hook.mode == "inline":
            def hooked_put(item: Any, block: bool = True, timeout: float | None = None) -> None:
                return hook.put(put, item, block, timeout)

            hooked_put.original = put
            queue.put = hooked_put
        elif put is not queue.put:
            queue.put = put
    for consumer in _consumers(client):
        request = getattr(consumer.request, "original", consumer.request)
        if hook.mode == "consumer":
            def hooked_request(batch: list[dict[str, Any]], _request: Callable = request,
                               _queue: Any = getattr(consumer, "queue", None)) -> Any:
                return hook.request(_request, batch, _queue)

            hooked_request.original = request
            consumer.request = hooked_request
        elif request is not consumer.request:
            consumer.request = request


def _consumers(client: Any) -> list[Any]:
    """The client's consumer threads. Segment's `thread=N` keeps only the last in `client.consumers`; the
    started others are found by the queue they share."""
    found = list(getattr(client, "consumers", None) or [])
    queue = getattr(client, "queue", None)
    for thread in threading.enumerate():
        if thread not in found and getattr(thread, "queue", None) is queue and callable(getattr(thread, "request", None)):
            found.append(thread)
    return found


def _wrap_sync_post(module: types.ModuleType | None) -> None:
    """Wrap the `post` an SDK's client module calls in `sync_mode`; outside a hooked call it is the SDK's own."""
    post = getattr(module, "post", None)
    if post is None or getattr(post, "groupspec", False):
        return

    def hooked_post(*args: Any, **kwargs: Any) -> Any:
        hook = getattr(_local, "call", None)
        if hook is None or "batch" not in kwargs:
            return post(*args, **kwargs)
        _local.call = None
        return hook.post(post, args, kwargs)

    hooked_post.groupspec, hooked_post.original = True, post
    module.post = hooked_post


def _hook_module(module: types.ModuleType, hook: Hook) -> None:
    """Wrap the module's `_proxy` (behind `analytics.track(...)` etc.) so its default client, created lazily from
    the module's settings at first use, is hooked before it queues anything."""
    proxy = getattr(module._proxy, "original", module._proxy)

    def hooked_proxy(method: str, *args: Any, **kwargs: Any) -> Any:
        client = module.default_client
        if not client or getattr(client._enqueue, "gate", None) is not hook:
            with hook.hooking:
                if not module.default_client:
                    proxy("flush")  # the module creates its default client as on first use; flushing it is a no-op
                client = module.default_client
                if getattr(client._enqueue, "gate", None) is not hook:
                    _hook_client(client, hook)
        return proxy(method, *args, **kwargs)

    hooked_proxy.original = proxy
    module._proxy = hooked_proxy
    if module.default_client:
        _hook_client(module.default_client, hook)


# -- the decision ---------------------------------------------------------------------------------------------

class Hook:
    """groupspec's decision on the SDK's messages: forward each enriched, quarantine it, or let it pass on a
    failure. Shared by the threads of a client (and by the clients of one `install` on a module)."""

    def __init__(self, config: Config, store: Store, quarantine: QuarantineFile, source: str | None, *,
                 before: Iterable[UserStep] = (), after: Iterable[UserStep] = (), fail_closed: bool = False,
                 mode: str = "consumer", on_drop: OnDrop | None = None) -> None:
        engine = self.engine = Engine(config, store, steps=[After(step) for step in after], learn=self._learn)
        self.learn = Learn(engine.store, config.privacy, engine.hasher)  # the store read through its migrations
        self._erasures: list[Erasure] = []  # made by `[privacy] erase_on` events, for the quarantine after commit
        self.quarantine = quarantine
        self.source = source
        self.before = list(before)
        self.fail_closed = fail_closed
        self.mode = mode
        self.on_drop = on_drop
        self.counts = Counts()
        self.contract = engine.config.contract_for(source)
        self.failures = 0  # messages groupspec could not judge (passed through, or quarantined if fail_closed)
        self._lock = threading.Lock()
        self._compacting = threading.Lock()
        self.hooking = threading.Lock()  # a module's default client being made and hooked
        self._logged: set[tuple[str, str]] = set()
        forks.register(self)

    def after_fork(self, child: bool) -> None:
        """A forked child's own locks (the parent's threads that held them are not in the child). Its store and
        quarantine see to themselves; the SDK's consumer threads do not cross a fork: a child makes a fresh client
        (e.g. in a post-fork hook), which this hook hooks when `install` was given the module."""
        if child:
            self._lock, self._compacting, self.hooking = threading.Lock(), threading.Lock(), threading.Lock()

    # the SDK's seams

    def enqueue(self, client: Any, original: Callable, msg: dict[str, Any]) -> tuple[bool, Any]:
        """The client's `_enqueue`: the SDK's own, with this hook marked for its put (inline) or post (sync)."""
        if self.mode == "consumer" and not client.sync_mode:
            return original(msg)
        _local.call, _local.result = self, None
        try:
            ok, out = original(msg)
        except Dropped:
            return False, _local.result
        finally:
            _local.call = None
        if _local.result is not None:  # inline: what the put or post was given
            out, _local.result = _local.result, None
        elif self.mode == "inline" and ok and not client.send:  # send=False: as if queued
            [decided] = self._decide([out], defer=False)
            return (False, out) if decided is None else (True, decided)
        return ok, out

    def put(self, put: Callable, item: Any, block: bool, timeout: float | None) -> None:
        """Inline mode, the client's `queue.put` in the caller: decide, queue, then learn."""
        if getattr(_local, "call", None) is not self:
            return put(item, block, timeout)  # e.g. the consumer re-queuing a rate-limited batch
        _local.call = None
        deferred: list[Message] = []
        [out] = self._decide([item], defer=True, deferred=deferred)
        if out is None:
            _local.result = item
            raise Dropped
        put(out, block, timeout)  # queue.Full: the SDK says so, and the store learns nothing
        _local.result = out
        self._learn_now(deferred)

    def post(self, post: Callable, args: tuple, kwargs: dict[str, Any]) -> Any:
        """`sync_mode`, the SDK's post in the caller: decide, post, then learn (a failed post teaches nothing)."""
        deferred: list[Message] = []
        batch = self._decide(list(kwargs["batch"]), defer=True, deferred=deferred)
        kept = [m for m in batch if m is not None]
        if len(kept) < len(batch) and self.mode == "inline":
            _local.result = kwargs["batch"][0]
            raise Dropped
        if not kept:
            return None
        response = post(*args, **dict(kwargs, batch=kept))
        if self.mode == "inline":
            _local.result = kept[0]
        self._learn_now(deferred)
        return response

    def request(self, request: Callable, batch: list[dict[str, Any]], queue: Any = None) -> Any:
        """Consumer mode, `Consumer.request(batch)` in the consumer thread: one decision (and one store
        transaction) for the batch, then the SDK's own upload of what is kept. `queue` is the SDK's queue the
        batch came from (`_behind`)."""
        kept = [m for m in self._decide(batch, defer=False, queue=queue) if m is not None]
        try:
            return request(kept) if kept else None
        finally:
            self._compact()

    # deciding

    def _decide(self, batch: list[dict[str, Any]], *, defer: bool, deferred: list[Message] | None = None,
                queue: Any = None) -> list[dict[str, Any] | None]:
        """The message to send for each of `batch` (None: dropped). One store transaction for the batch; with
        `defer`, what the messages teach the store is kept in `deferred` for after the hand-over. In the
        consumer thread (not `defer`), every `YIELD_EVERY` messages the GIL is offered to the app's threads
        unless the SDK's `queue` shows the app is a batch ahead (`_behind`)."""
        _local.deferred = deferred if defer else None
        decided: list[tuple[dict[str, Any], Any]] = []  # (msg, Message | Failed | dict to send)
        try:
            with self.engine.transaction():
                self.engine.prefetch(((m, self.source) for m in batch if isinstance(m, dict)), authenticated=True)
                for i, msg in enumerate(batch):
                    if not defer and i % YIELD_EVERY == YIELD_EVERY - 1 and not _behind(queue, len(batch)):
                        _offer_gil()
                    try:
                        decided.append((msg, self._one(msg)))
                    except Failed as failure:
                        decided.append((msg, failure))
                    except Exception as exc:  # a bug in the hook: this message alone
                        decided.append((msg, Failed(("hook", type(exc).__name__), f"{type(exc).__name__}: {exc}")))
        except Exception as exc:  # the transaction itself (e.g. the store unavailable at BEGIN or COMMIT)
            failure = exc if isinstance(exc, Failed) else Failed(("store", type(exc).__name__), f"{exc}")
            decided = [(msg, failure) for msg in batch]
            if deferred:
                deferred.clear()
        finally:
            _local.deferred = None
        return self._settle(decided)

    def _settle(self, decided: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any] | None]:
        """Quarantine the drops (after the commit), report them, count everything."""
        out: list[dict[str, Any] | None] = []
        drops: list[tuple[dict[str, Any], Message]] = []
        for msg, result in decided:
            if isinstance(result, Failed):
                out.append(self._failed(msg, result))
            elif isinstance(result, Message):
                if not result.suppressed:  # a forgotten person's message is written nowhere
                    drops.append((msg, result))
                out.append(None)
            else:
                out.append(result[0])
        if drops:
            try:
                self.quarantine.extend([record(m) for _, m in drops])
            except Exception as exc:  # nothing disappears without a record: pass them through, or (closed) say so
                failure = Failed(("quarantine", type(exc).__name__), f"cannot write {self.quarantine.path}: {exc}")
                self._log_once(failure.kind, str(failure))
                if not self.fail_closed:
                    out = [msg if o is None and isinstance(result, Message) else o
                           for (msg, result), o in zip(decided, out)]
                    drops = []
            for msg, m in drops:
                self._report(msg, m.violations)
        with self._lock:
            for _, result in decided:
                if isinstance(result, Message):
                    self.counts.count(result)
                elif isinstance(result, tuple):
                    self.counts.count(result[1])
                else:
                    self.failures += 1
        self._forget_in_quarantine()
        return out

    def _one(self, msg: dict[str, Any]) -> Any:
        """`(message to send, Message)` when forwarded; the quarantined `Message` when dropped."""
        if not isinstance(msg, dict):
            raise Failed(("hook", "TypeError"), f"not a message dict: {type(msg).__name__}")
        work = _json_copy(msg)
        payload: dict[str, Any] | None = work
        if self.before:
            payload = _json_copy(work)
            for step in self.before:
                payload = self._before(step, payload)
                if payload is None:
                    dropped = Message(work, None, self.source, time.time())
                    return dropped.drop("dropped_by_user", "", f"before step {_name(step)} returned None")
        try:
            out = self._run(work, payload)
        except Exception as exc:  # the engine isolates its steps' errors; this is the engine itself failing
            raise Failed(("pipeline", type(exc).__name__), f"{type(exc).__name__}: {exc}") from exc
        if out.quarantined:
            failure = next((v for v in out.violations if v["code"] in FAILURE_CODES), None)
            if failure is not None and not self.fail_closed:
                code = failure["code"]
                what = code if code == "store_unavailable" else failure["message"].split(":", 1)[0]
                raise Failed((failure["field"] or "pipeline", what), failure["message"])
            return out
        return _apply(msg, work, out.body, top=True), out

    def _run(self, original: dict[str, Any], body: dict[str, Any]) -> Message:
        """The engine's chain on one message. Not `engine.run`: its parsing enforces Segment's 32 KB, and the
        SDK hook keeps the SDK's own limits (the SDK checked them already)."""
        msg = Message(original, dict(body), self.source, time.time())
        msg.contract = self.contract
        self.engine.through(msg)
        return msg

    def _learn(self, msg: Message) -> Message:
        """The chain's last step: learn now, or (inline, sync) keep the message to learn after the hand-over."""
        deferred = getattr(_local, "deferred", None)
        if deferred is None:
            return self._teach(msg)
        deferred.append(msg)
        return msg

    def _teach(self, msg: Message) -> Message:
        self.learn(msg)
        if msg.erasure is not None:
            self._erasures.append(msg.erasure)
        return msg

    def _learn_now(self, deferred: list[Message]) -> None:
        if not deferred:
            return
        try:
            with self.engine.transaction():
                for msg in deferred:
                    self._teach(msg)
        except Exception as exc:  # the message is on its way already: say so, never raise to the caller
            self._log_once(("learn", type(exc).__name__), f"the store did not learn from a sent message: {exc}")
        self._forget_in_quarantine()
        self._compact()

    def _forget_in_quarantine(self) -> None:
        """After the commit of what erased people: their records leave the quarantine file (the one file the hook
        writes); a failure is logged, never raised to the SDK."""
        if not self._erasures:
            return
        done, self._erasures = self._erasures, []
        try:
            forget_in_quarantine(self.quarantine.path, done)
        except Exception as exc:
            self._log_once(("erase", type(exc).__name__), f"cannot remove erased people from "
                           f"{self.quarantine.path}: {exc}; run `groupspec people forget` for them")

    def _compact(self) -> None:
        """With `[store] retention`, compact the store once `compact_every` has passed, after the hand-over (the
        SDK's upload never waits for it), one thread at a time; a failure is logged, never raised to the SDK."""
        if not self._compacting.acquire(blocking=False):
            return  # another thread is at it
        try:
            self.engine.compact()
        except Exception as exc:
            self._log_once(("compact", type(exc).__name__), f"store compaction failed: {exc}")
        finally:
            self._compacting.release()

    def _before(self, step: UserStep, msg: dict[str, Any]) -> dict[str, Any] | None:
        where = f"before step {_name(step)}"
        try:
            result = step(msg)
        except Exception as exc:
            raise Failed((where, type(exc).__name__), f"{type(exc).__name__}: {exc}") from exc
        if result is not None and not isinstance(result, dict):
            raise Failed((where, "TypeError"), f"returned {type(result).__name__}, expected a message dict or None")
        return result

    def _failed(self, msg: dict[str, Any], failure: Failed) -> dict[str, Any] | None:
        """A message groupspec could not judge: sent unchanged, or (fail closed) quarantined as `internal_error`."""
        self._log_once(failure.kind, str(failure))
        if not self.fail_closed:
            return msg
        try:
            rec = Message(orjson.loads(orjson.dumps(msg, default=str, option=orjson.OPT_NON_STR_KEYS)), None,
                          self.source, time.time())
            rec.drop("internal_error", "", f"{failure.kind[0]}: {failure}")
            self.quarantine.add(rec)
            self._report(msg, rec.violations)
        except Exception as exc:  # e.g. a self-referencing dict, a full disk: say so, never raise to the caller
            self._log_once(("quarantine", type(exc).__name__), f"the message could not be quarantined: {exc}")
        return None

    def _report(self, msg: dict[str, Any], violations: list[dict[str, str]]) -> None:
        if self.on_drop is None:
            return
        try:
            self.on_drop(msg, violations)
        except Exception as exc:
            self._log_once(("on_drop", type(exc).__name__), f"on_drop raised {type(exc).__name__}: {exc}")

    def _log_once(self, kind: tuple[str, str], detail: str) -> None:
        if kind in self._logged:
            return
        self._logged.add(kind)
        then = "dropped" if self.fail_closed else "passed through unchanged"
        log.error("groupspec failed in %s (%s): %s; such messages are %s (logged once per kind)", *kind, detail, then)


#: the old name of `Hook`
Gate = Hook


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


# -- the JSON copy and the decision applied back --------------------------------------------------------------

def _json_copy(msg: dict[str, Any]) -> dict[str, Any]:
    """What the engine works on: the message as JSON would carry it (datetimes as ISO text, keys as text, NaN
    as null). The SDK's message itself is never given to the engine."""
    try:
        return orjson.loads(orjson.dumps(msg, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):  # e.g. an int past 64 bits: the slower, wider encoder
        try:
            return json.loads(json.dumps(msg, default=str))
        except (TypeError, ValueError) as exc:
            raise Failed(("copy", type(exc).__name__), f"message is not JSON-serialisable: {exc}") from None


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else next(iter(orjson.loads(
        orjson.dumps({key: 0}, default=str, option=orjson.OPT_NON_STR_KEYS))))


def _apply(original: dict[str, Any], seen: dict[str, Any], decided: dict[str, Any], *, top: bool) -> dict[str, Any]:
    """A shallow copy of `original` with what the chain changed between `seen` (the JSON copy it was given) and
    `decided` (what it forwards): added and changed values taken from `decided`, removed keys removed, every
    value it left alone kept as the original object. At the top, the SDK's envelope is never rewritten."""
    out = dict(original)
    for key, value in decided.items():
        before = seen.get(key, _ABSENT)
        if value is before or (top and key in ENVELOPE):
            continue
        own = key if key in original else _own_key(original, key)
        was = original.get(own, _ABSENT)
        if value.__class__ is dict and before.__class__ is dict and isinstance(was, dict):
            out[own] = _apply(was, before, value, top=False)
        elif before is _ABSENT or value != before or type(value) is not type(before):
            out[own] = value
    for key in seen:
        if key in decided or (top and (key in ENVELOPE or seen[key] is None)):  # the engine drops null ids;
            continue  # the SDK sends them
        out.pop(key if key in original else _own_key(original, key), None)
    return out


def _own_key(original: dict[Any, Any], key: str) -> Any:
    """The key of `original` that the JSON copy spells `key` (an int key 7 is "7"), else `key`."""
    for own in original:
        if own.__class__ is not str and _json_key(own) == key:
            return own
    return key
