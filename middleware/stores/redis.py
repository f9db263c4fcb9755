"""The shared store on Redis (redis-py): several service or app instances see one point-in-time view.

Key layout — every key starts with a namespace prefix (default ``gs``) and carries a hash tag, so each
multi-key script touches one slot and the layout works on Redis Cluster:

| key | type | holds |
|---|---|---|
| ``{p:KEY}:l`` / ``:la`` | set / hash | person keys linked to KEY / linked key -> arrived (absent: always known) |
| ``{p:KEY}:lt`` | hash | linked key -> latest event time asserting the link (absent: never removed) |
| ``{p:KEY}:e`` | hash | membership event ``[type, group, ts, joined]`` -> ``seq arrived`` (HSETNX dedupes) |
| ``{g:[TYPE,ID]}:n`` | string | the group's seq counter (INCR: order of recording) |
| ``{g:[TYPE,ID]}:d`` | set | deletions of the object: ``ts arrived`` |
| ``{g:[TYPE,ID]}:t:NAME`` | hash | trait history: message id -> ``seq [ts, value, arrived]`` |
| ``{g:[TYPE,ID]}:a`` / ``:ad`` | zset / hash | activity log (score = time) / its dedupe: message id -> seq |
| ``{rollups}:due`` / ``:seq`` | zset / hash | groups with unsent rollup changes: due time / up to which seq |
| ``{arrivals}:n`` / ``:ids`` | string / hash | arrival counter / message id -> arrival number |
| ``{arrivals}:t`` | zset | message id, score = its event time (what `compact` prunes arrival records by) |

`arrived` is the arrival number of the message that recorded the fact; it is absent from values written before
arrival numbers existed (always known).

A Redis error (refused connection, timeout, ...) raises `StoreError`; nothing answers "unresolved" on an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis

from .base import Activity, Membership, StoreError
from .history import fold_memberships, latest_at, linked, stale_after

# KEYS: counter, one trait-history hash per name; ARGV: message id, one "[ts, value]" per name.
_APPLY_TRAITS = """
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 0 then
    redis.call('HSET', KEYS[i], ARGV[1], redis.call('INCR', KEYS[1]) .. ' ' .. ARGV[i])
  end
end
"""
# KEYS: linked keys set, their arrivals hash, their times hash; ARGV: other key, arrived ("": always known), event
# time ("": none). The first link's arrival stays; the time is the latest assertion's.
_LINK = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-inf') then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
"""
# KEYS: arrival counter, message id hash, time zset; ARGV: message id, event time. Returns its arrival number, the
# first one given.
_ADMIT = """
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen then return tonumber(seen) end
local arrived = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], arrived)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return arrived
"""
# KEYS: message id hash, time zset; ARGV: horizon, batch. Removes up to `batch` arrival records older than the
# horizon; returns how many.
_PRUNE_ARRIVALS = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
"""
# KEYS: activity zset, its dedupe hash; ARGV: horizon. Removes the entries older than it; returns how many.
_PRUNE_ACTIVITY = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, member in ipairs(old) do
  redis.call('HDEL', KEYS[2], cjson.decode(string.sub(member, string.find(member, ' ') + 1))[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return #old
"""
# KEYS: linked keys set, arrivals hash, times hash; ARGV: horizon. Removes the links last asserted before it.
_PRUNE_LINKS = """
local times = redis.call('HGETALL', KEYS[3])
local removed = 0
for i = 1, #times, 2 do
  if tonumber(times[i + 1]) < tonumber(ARGV[1]) then
    redis.call('SREM', KEYS[1], times[i])
    redis.call('HDEL', KEYS[2], times[i])
    redis.call('HDEL', KEYS[3], times[i])
    removed = removed + 1
  end
end
return removed
"""
# KEYS: counter, activity zset, dedupe hash; ARGV: message id, ts, "[message id, values]". Returns the seq.
_RECORD_ACTIVITY = """
local seen = redis.call('HGET', KEYS[3], ARGV[1])
if seen then return tonumber(seen) end
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], ARGV[1], seq)
redis.call('ZADD', KEYS[2], ARGV[2], seq .. ' ' .. ARGV[3])
return seq
"""

# KEYS: due zset, seq hash; ARGV: group, due, seq. Keeps the earliest due and the highest seq.
_MARK_PENDING = """
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
"""
# KEYS: due zset, seq hash; ARGV: group, seq sent. A newer pending entry stays.
_CLEAR_PENDING = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
"""


class Keys:
    """Key names of the layout above under one namespace prefix."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"Redis key prefix {prefix!r} must not contain braces (they are hash tags)")
        self.prefix = prefix

    def person(self, key: str, kind: str) -> str:
        return f"{self.prefix}{{p:{key}}}:{kind}"

    def group(self, object_type_id: str, group_id: str, kind: str) -> str:
        return f"{self.prefix}{{g:{orjson.dumps([object_type_id, group_id]).decode()}}}:{kind}"

    def pending(self, kind: str) -> str:
        return f"{self.prefix}{{rollups}}:{kind}"

    def arrivals(self, kind: str) -> str:
        return f"{self.prefix}{{arrivals}}:{kind}"


def membership_field(object_type_id: str, group_id: str, ts: float, joined: bool) -> bytes:
    """The hash field of one membership event (identical events share it, so they are stored once)."""
    return orjson.dumps([object_type_id, group_id, float(ts), joined])


def stamped(head: Any, arrived: int | None) -> str:
    """``"head arrived"``, or just ``"head"`` for a fact always known."""
    return str(head) if arrived is None else f"{head} {arrived}"


def unstamped(stored: str) -> tuple[str, int | None]:
    """``(head, arrived)`` of a `stamped` value."""
    head, _, arrived = stored.partition(" ")
    return head, int(arrived) if arrived else None


class RedisStore:
    """Point-in-time membership, identity links, group trait history and activity in Redis."""

    def __init__(self, url: str, prefix: str = "gs") -> None:
        self.keys = Keys(prefix)
        parts = urlsplit(url)
        self._where = f"redis://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"  # no password
        try:
            self.redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5)
        except ValueError as exc:
            raise StoreError(f"bad Redis store url {self._where}: {exc}") from None
        self._admit = self.redis.register_script(_ADMIT)
        self._prune_arrivals = self.redis.register_script(_PRUNE_ARRIVALS)
        self._prune_activity = self.redis.register_script(_PRUNE_ACTIVITY)
        self._prune_links = self.redis.register_script(_PRUNE_LINKS)
        self._link = self.redis.register_script(_LINK)
        self._apply_traits = self.redis.register_script(_APPLY_TRAITS)
        self._record_activity = self.redis.register_script(_RECORD_ACTIVITY)
        self._mark_pending = self.redis.register_script(_MARK_PENDING)
        self._clear_pending = self.redis.register_script(_CLEAR_PENDING)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise StoreError(f"Redis store at {self._where} unavailable: {type(exc).__name__}: {exc}") from None

    def link(self, key: str, other: str, arrived: int | None = None, ts: float | None = None) -> None:
        # two idempotent one-slot writes (the persons may live on different cluster slots)
        if key == other:
            return
        stamp = "" if arrived is None else arrived
        at = "" if ts is None else repr(float(ts))
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            for one, two in ((key, other), (other, key)):
                self._link(keys=[self.keys.person(one, kind) for kind in ("l", "la", "lt")], args=[two, stamp, at],
                           client=pipe)
            pipe.execute()

    def _links(self, key: str) -> list[tuple[str, int | None]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.person(key, "l"))
        pipe.hgetall(self.keys.person(key, "la"))
        others, arrivals = pipe.execute()
        return [(other, int(arrivals[other]) if other in arrivals else None) for other in sorted(others)]

    def identities(self, key: str, before: int | None = None) -> list[str]:
        with self._guard():
            return linked(key, self._links, before)

    def admit(self, message_id: str, ts: float = 0.0) -> int:
        keys = [self.keys.arrivals(kind) for kind in ("n", "ids", "t")]
        with self._guard():
            return int(self._admit(keys=keys, args=[message_id, repr(float(ts))]))

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool,
                          arrived: int | None = None) -> None:
        with self._guard():
            seq = self.redis.incr(self.keys.group(object_type_id, group_id, "n"))
            self.redis.hsetnx(self.keys.person(person, "e"), membership_field(object_type_id, group_id, ts, joined),
                              stamped(seq, arrived))

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float, arrived: int | None = None) -> None:
        with self._guard():
            self.redis.sadd(self.keys.group(object_type_id, group_id, "d"), stamped(repr(float(ts)), arrived))

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            for person in persons:
                pipe.hgetall(self.keys.person(person, "e"))
            events = []
            for stored in pipe.execute():
                for field, value in stored.items():
                    type_id, group_id, at, joined = orjson.loads(field)
                    if at <= ts:
                        seq, arrived = unstamped(value)
                        events.append((type_id, group_id, at, int(seq), joined, arrived))
            if not events:
                return []
            groups = sorted({(type_id, group_id) for type_id, group_id, *_ in events})
            pipe = self.redis.pipeline(transaction=False)
            for type_id, group_id in groups:
                pipe.smembers(self.keys.group(type_id, group_id, "d"))
            deletions = {group: [(float(at), arrived) for at, arrived in map(unstamped, stored)]
                         for group, stored in zip(groups, pipe.execute()) if stored}
        return fold_memberships(events, deletions, ts, before)

    def _trait_histories(self, object_type_id: str, group_id: str,
                         names: list[str]) -> list[list[tuple[float, int, str, Any, int | None]]]:
        """Per name: ``(ts, seq, message_id, value, arrived)`` entries."""
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.keys.group(object_type_id, group_id, "t:" + name))
            out = []
            for stored in pipe.execute():
                entries = []
                for message_id, entry in stored.items():
                    seq, _, payload = entry.partition(" ")
                    at, value, *arrived = orjson.loads(payload)  # no `arrived`: written before it existed
                    entries.append((at, int(seq), message_id, value, arrived[0] if arrived else None))
                out.append(entries)
            return out

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        histories = self._trait_histories(object_type_id, group_id, names)
        return {name for name, entries in zip(names, histories)
                if stale_after(((e[0], e[1], e[2], e[4]) for e in entries), ts, message_id, before)}

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str,
                     arrived: int | None = None) -> None:
        if not traits:
            return
        keys = [self.keys.group(object_type_id, group_id, "n")]
        keys += [self.keys.group(object_type_id, group_id, "t:" + name) for name in traits]
        args = [message_id, *(orjson.dumps([float(ts), value, arrived]) for value in traits.values())]
        with self._guard():
            self._apply_traits(keys=keys, args=args)

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        out = {}
        for name, entries in zip(names, self._trait_histories(object_type_id, group_id, names)):
            best = latest_at(((at, seq, value, arrived) for at, seq, _, value, arrived in entries), ts, before)
            if best is not None:
                out[name] = best[2]
        return out

    def record_activity(self, object_type_id: str, group_id: str, message_id: str, ts: float, values: dict[str, Any]) -> int:
        keys = [self.keys.group(object_type_id, group_id, kind) for kind in ("n", "a", "ad")]
        with self._guard():
            return int(self._record_activity(keys=keys, args=[message_id, repr(float(ts)), orjson.dumps([message_id, values])]))

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        with self._guard():
            stored = self.redis.zrangebyscore(self.keys.group(object_type_id, group_id, "a"), since, "+inf", withscores=True)
        out = []
        for member, at in stored:
            seq, _, entry = member.partition(" ")
            message_id, values = orjson.loads(entry)
            out.append(Activity(at, int(seq), message_id, values))
        out.sort()
        return out

    def mark_rollup_pending(self, object_type_id: str, group_id: str, due: float, seq: int) -> None:
        keys = [self.keys.pending("due"), self.keys.pending("seq")]
        with self._guard():
            self._mark_pending(keys=keys, args=[orjson.dumps([object_type_id, group_id]), repr(float(due)), seq])

    def clear_rollup_pending(self, object_type_id: str, group_id: str, seq: int) -> None:
        keys = [self.keys.pending("due"), self.keys.pending("seq")]
        with self._guard():
            self._clear_pending(keys=keys, args=[orjson.dumps([object_type_id, group_id]), seq])

    def due_rollups(self, until: float) -> list[tuple[str, str, float, int]]:
        with self._guard():
            due = self.redis.zrangebyscore(self.keys.pending("due"), "-inf", until, withscores=True)
            seqs = self.redis.hmget(self.keys.pending("seq"), [member for member, _ in due]) if due else []
        out = [(*orjson.loads(member), at, int(seq)) for (member, at), seq in zip(due, seqs) if seq is not None]
        out.sort(key=lambda row: (row[2], row[0], row[1]))
        return out

    def transaction(self) -> nullcontext[None]:
        return nullcontext()

    def close(self) -> None:
        self.redis.close()

    # -- read-only enumeration for tools (`groupspec verify`): SCAN over the layout above, no writes ----------

    def groups(self) -> list[tuple[str, str]]:
        start = len(self.keys.prefix) + len("{g:")
        with self._guard():
            found = {_group_of(key, start) for key in self._scan("*", "g")}
        found.discard(None)
        return sorted(found)

    def members_at(self, object_type_id: str, group_id: str, ts: float) -> list[str]:
        group = (object_type_id, group_id)
        start = len(self.keys.prefix) + len("{p:")
        with self._guard():
            keys = sorted(self._scan("e", "p"))
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            stored = pipe.execute()
            deleted = self.redis.smembers(self.keys.group(object_type_id, group_id, "d"))
        deletions = {group: [(float(at), arrived) for at, arrived in map(unstamped, deleted)]}
        members = []
        for key, fields in zip(keys, stored):
            events = []
            for field, value in fields.items():
                type_id, gid, at, joined = orjson.loads(field)
                if (type_id, gid) == group:
                    seq, arrived = unstamped(value)
                    events.append((type_id, gid, at, int(seq), joined, arrived))
            if events and fold_memberships(events, deletions, ts):
                members.append(key[start:-len("}:e")])
        return members

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        head = self.keys.group(object_type_id, group_id, "t:")
        with self._guard():
            return sorted(key[len(head):] for key in self.redis.scan_iter(match=_glob(head) + "*", count=1000))

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        with self._guard():
            stored = self.redis.smembers(self.keys.group(object_type_id, group_id, "d"))
        return max((float(unstamped(entry)[0]) for entry in stored), default=None)

    # retention: `compact` and `size` walk the keys of each kind with SCAN (every node of a cluster); each
    # removal is one key's (one slot's) and re-checks the time, so writers may go on meanwhile.

    def _scan(self, kind: str, tag: str) -> Iterator[str]:
        """Every key ``PREFIX{TAG:...}:KIND`` (`kind` may end with ``*``)."""
        return self.redis.scan_iter(match=f"{_glob(self.keys.prefix)}{{{tag}:*}}:{kind}", count=1000)

    def compact(self, horizon: float) -> dict[str, int]:
        removed = dict.fromkeys(("arrivals", "links", "memberships", "deletions", "traits", "activity"), 0)
        h = repr(float(horizon))
        with self._guard():
            ids, times = self.keys.arrivals("ids"), self.keys.arrivals("t")
            while (batch := int(self._prune_arrivals(keys=[ids, times], args=[h, 1000]))) > 0:
                removed["arrivals"] += batch
            for key in self._scan("lt", "p"):
                base = key[:-2]
                removed["links"] += int(self._prune_links(keys=[base + "l", base + "la", key], args=[h]))
            for key in self._scan("e", "p"):
                old = {}
                for field, value in self.redis.hgetall(key).items():
                    type_id, group_id, at, _ = orjson.loads(field)
                    old.setdefault((type_id, group_id), []).append((at, int(unstamped(value)[0]), field))
                removed["memberships"] += self._drop(key, old, horizon, self.redis.hdel)
            for key in self._scan("d", "g"):
                old = {None: [(float(at), 0, stored) for stored in self.redis.smembers(key)
                              for at in [unstamped(stored)[0]]]}
                removed["deletions"] += self._drop(key, old, horizon, self.redis.srem)
            for key in self._scan("t:*", "g"):
                old = {None: [(orjson.loads(entry.partition(" ")[2])[0], int(entry.partition(" ")[0]), message_id)
                              for message_id, entry in self.redis.hgetall(key).items()]}
                removed["traits"] += self._drop(key, old, horizon, self.redis.hdel)
            for key in self._scan("a", "g"):
                removed["activity"] += int(self._prune_activity(keys=[key, key + "d"], args=[h]))
        removed["links"] //= 2  # each way
        return removed

    @staticmethod
    def _drop(key: str, histories: dict[Any, list[tuple[float, int, str]]], horizon: float, remove) -> int:
        """Remove the ``(ts, seq, member)`` entries of each history older than its latest before `horizon`."""
        doomed = []
        for entries in histories.values():
            old = sorted(entry for entry in entries if entry[0] < horizon)
            doomed += [member for _, _, member in old[:-1]]
        if doomed:
            remove(key, *doomed)
        return len(doomed)

    def size(self) -> dict[str, int]:
        with self._guard():
            out = {"arrivals": self.redis.hlen(self.keys.arrivals("ids")),
                   "pending": self.redis.zcard(self.keys.pending("due"))}
            for kind, (suffix, tag, count) in {"links": ("l", "p", "scard"), "memberships": ("e", "p", "hlen"),
                                               "deletions": ("d", "g", "scard"), "traits": ("t:*", "g", "hlen"),
                                               "activity": ("a", "g", "zcard")}.items():
                out[kind] = sum(getattr(self.redis, count)(key) for key in self._scan(suffix, tag))
            out["links"] //= 2
        return out


def _group_of(key: str, start: int) -> tuple[str, str] | None:
    """The ``(type, id)`` in a group key's hash tag (a JSON array starting at `start`): the first prefix that
    ends at a ``]}:`` and parses (a JSON array cannot close earlier than it does)."""
    end = key.find("]}:", start)
    while end != -1:
        try:
            found = orjson.loads(key[start:end + 1])
        except orjson.JSONDecodeError:
            end = key.find("]}:", end + 1)
            continue
        return (found[0], found[1]) if isinstance(found, list) and len(found) == 2 else None
    return None


def _glob(text: str) -> str:
    """`text` matched literally by a Redis SCAN pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)

