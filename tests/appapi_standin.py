"""A local stand-in for Customer.io's App API (bearer key), a real HTTP server on loopback, speaking the shapes
of Customer.io's App API reference:

- ``GET /v1/objects/{type}/{id}/attributes`` -> ``{"object": {"attributes", "timestamps", "identifiers",
  "object_type_id"}}``, 404 when there is no such object;
- ``GET /v1/objects/{type}/{id}/relationships?start=&limit=`` -> ``{"cio_relationships": [{"identifiers":
  {"cio_id", "id", "email"}, "object_type_id"}], "next": "..."}`` (``next`` absent on the last page);
- ``GET /v1/customers/{id}/attributes?id_type=id|email|cio_id`` -> ``{"customer": {"id", "attributes",
  "timestamps", "unsubscribed", "devices"}}``, 404 when unknown.

Attribute values are served as the reference's examples show them: strings (``"49"``, ``"true"``). It answers
401 to a wrong bearer key and 429 (``Retry-After: 1``) to more than `limit` requests in the second before a
request, by its `clock` (inject the client's fake clock to count without real time). `apply(ops)` plays Track
API operations on its state (a person `merge` moves the secondary's relationships to the primary and removes the
secondary, when both exist), so a Track API write changes what it serves.

Misbehaviours, for the client's bounds: `script` (the next requests answer a status), `script_page` (a
relationships page answers a status: a 404 or 500 mid-paging), `endless` (that many relationship pages carry a
new `next` cursor and serve the first page again: a cursor that does not end), `cursors` (the `next` the
coming relationship pages answer, whatever their real one: a cursor that repeats).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cio_standin import answer_json

PERSON_KEYS = ("id", "email", "cio_id")


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    status: int
    at: float


def served(value: Any) -> Any:
    """An attribute value as the App API shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class AppApiStandin:
    """`state` is ``{"objects": [{"object_type_id", "object_id", "attributes", "relationships": [person
    identifiers]}], "people": [{"id", "email", "cio_id", "attributes"}]}`` (the fixture's customerio.json)."""

    def __init__(self, state: dict[str, Any] | None = None, key: str = "app-key-standin-not-a-real-secret", *,
                 page_size: int = 2, limit: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.key, self.page_size, self.limit, self.clock = key, page_size, limit, clock
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.people: list[dict[str, Any]] = []
        self.seen: list[Seen] = []
        self.endless = 0
        self.cursors: list[str] = []
        self._faults: list[tuple[int, str | None]] = []
        self._page_faults: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        for person in (state or {}).get("people", []):
            self.people.append({key: person.get(key) for key in PERSON_KEYS} | {"attributes": dict(person["attributes"])})
        for obj in (state or {}).get("objects", []):
            record = self._object(obj["object_type_id"], obj["object_id"])
            record["attributes"].update(obj["attributes"])
            for ids in obj["relationships"]:
                self._relate(record, ids)

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> AppApiStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # small answers go out at once, not after the client's delayed ACK

            def do_GET(self) -> None:
                standin._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, status: int, retry_after: str | None = None, count: int = 1) -> None:
        """The next `count` requests answer `status` (429: with `retry_after`)."""
        self._faults += [(status, retry_after)] * count

    def script_page(self, page: int, status: int, count: int = 1) -> None:
        """The next `count` requests for relationships page `page` (0: the first) answer `status`."""
        self._page_faults.setdefault(page, []).extend([status] * count)

    # -- state -----------------------------------------------------------------------------------------------

    def _object(self, type_id: str, object_id: str) -> dict[str, Any]:
        return self.objects.setdefault((type_id, object_id), {"attributes": {}, "people": []})

    def person(self, ids: dict[str, str], create: bool = True) -> dict[str, Any] | None:
        (key, value), = ids.items()
        for person in self.people:
            if person.get(key) == value:
                return person
        if not create or key not in PERSON_KEYS:
            return None
        person = {"id": None, "email": None, "cio_id": f"cio{len(self.people) + 1:04d}", key: value, "attributes": {}}
        self.people.append(person)
        return person

    def _relate(self, record: dict[str, Any], ids: dict[str, str]) -> None:
        person = self.person(ids)
        if person is not None and all(p is not person for p in record["people"]):
            record["people"].append(person)

    @staticmethod
    def _set(attributes: dict[str, Any], values: dict[str, Any]) -> None:
        for name, value in values.items():
            if value is None or value == "":  # null or "" removes the attribute
                attributes.pop(name, None)
            else:
                attributes[name] = value

    def apply(self, ops: list[dict[str, Any]]) -> None:
        """Play Track API v2 operations (objects, relationships, person attributes) on the state."""
        with self._lock:
            for op in ops:
                ids, action = op.get("identifiers", {}), op["action"]
                links = [link["identifiers"] for link in op.get("cio_relationships", [])]
                if op["type"] == "object":
                    key = (ids["object_type_id"], ids["object_id"])
                    if action == "delete":
                        self.objects.pop(key, None)
                        continue
                    record = self._object(*key)
                    self._set(record["attributes"], op.get("attributes", {}))
                    if action == "delete_relationships":
                        gone = [self.person(link, create=False) for link in links]
                        record["people"] = [p for p in record["people"] if all(p is not g for g in gone)]
                    elif action != "identify_anonymous":
                        for link in links:
                            self._relate(record, link)
                elif action == "merge":
                    self._merge(self.person(op["primary"], create=False), self.person(op["secondary"], create=False))
                elif action == "identify":
                    person = self.person(ids)
                    self._set(person["attributes"], op.get("attributes", {}))
                    for link in links:
                        self._relate(self._object(link["object_type_id"], link["object_id"]), ids)

    def _merge(self, primary: dict[str, Any] | None, secondary: dict[str, Any] | None) -> None:
        """Customer.io's merge: the secondary's relationships and missing attributes go to the primary, the
        secondary is removed; nothing happens unless both exist."""
        if primary is None or secondary is None or primary is secondary:
            return
        for record in self.objects.values():
            if any(p is secondary for p in record["people"]):
                record["people"] = [p for p in record["people"] if p is not secondary]
                if all(p is not primary for p in record["people"]):
                    record["people"].append(primary)
        primary["attributes"] = secondary["attributes"] | primary["attributes"]
        self.people = [p for p in self.people if p is not secondary]

    # -- serving ------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = [unquote(p) for p in parts.path.strip("/").split("/")]
        headers: dict[str, str] = {}
        with self._lock:
            now = self.clock()
            recent = [s for s in self.seen if now - 1.0 < s.at <= now]
            if self._faults:
                status, after = self._faults.pop(0)
                body: dict[str, Any] = {"meta": {"error": f"scripted HTTP {status}"}}
                if after is not None:
                    headers["Retry-After"] = after
            elif handler.headers.get("Authorization") != f"Bearer {self.key}":
                status, body = 401, {"meta": {"error": "Unauthorized request"}}
            elif len(recent) >= self.limit:
                status, body, headers["Retry-After"] = 429, {"meta": {"error": "over 10 requests per second"}}, "1"
            else:
                status, body = self._route(path, query)
            self.seen.append(Seen(parts.path, query, status, now))
        answer_json(handler, status, body, headers)

    def _route(self, path: list[str], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        missing = 404, {"errors": [{"detail": "not found", "status": "404"}]}
        if len(path) == 5 and path[:2] == ["v1", "objects"] and path[4] in ("attributes", "relationships"):
            record = self.objects.get((path[2], path[3]))
            if record is None:
                return missing
            if path[4] == "attributes":
                attributes = {k: served(v) for k, v in record["attributes"].items()}
                return 200, {"object": {"attributes": attributes, "timestamps": dict.fromkeys(attributes, 0),
                                        "identifiers": {"object_id": path[3], "cio_object_id": f"ob{path[3]}"},
                                        "object_type_id": path[2]}}
            cursor = query.get("start", "c0")
            size = int(query.get("limit", self.page_size))
            start = int(cursor[1:].partition("-")[0])
            faults = self._page_faults.get(start // size)
            if faults:
                status = faults.pop(0)
                return status, {"errors": [{"detail": f"scripted HTTP {status}", "status": str(status)}]}
            page = record["people"][start:start + size]
            body: dict[str, Any] = {"cio_relationships": [
                {"identifiers": {k: p[k] for k in PERSON_KEYS}, "object_type_id": path[2],
                 "object_type_disabled": False} for p in page]}
            if self.endless:
                self.endless -= 1
                body["next"] = f"c0-{len(self.seen)}"  # a cursor never answered before, to the first page again
            elif start + size < len(record["people"]):
                body["next"] = f"c{start + size}"
            if self.cursors:
                body["next"] = self.cursors.pop(0)
            return 200, body
        if len(path) == 4 and path[:2] == ["v1", "customers"] and path[3] == "attributes":
            person = self.person({query.get("id_type", "id"): path[2]}, create=False)
            if person is None:
                return missing
            attributes = {k: served(v) for k, v in person["attributes"].items()}
            attributes.update({k: person[k] for k in PERSON_KEYS if person[k] is not None})
            return 200, {"customer": {"id": person["id"], "attributes": attributes,
                                      "timestamps": dict.fromkeys(attributes, 0), "unsubscribed": False,
                                      "devices": []}}
        return missing
