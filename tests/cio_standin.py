"""A local stand-in for Customer.io's Track API v2 (../shared/customerio.md), a real HTTP server on loopback.

It checks Basic auth (401), request sizes (400), each operation's shape (207 naming the invalid ones, the
others accepted), accepts gzip bodies, records every accepted operation and every request, and plays
scripted faults (`script(429, retry_after=1)`, `script(503, count=3)`, `script(503, hang=2)`) so tests can
drive retries. Usable outside pytest (`with CioStandin() as cio: ...`), e.g. by benchmarks.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from groupspec.middleware.config import CustomerIO

MAX_ENTITY_BYTES = 32 * 1024  # a /entity request is under this
MAX_BATCH_BYTES = 500 * 1024  # a /batch request is under this
MAX_OPERATION_BYTES = 32 * 1024  # each operation at most this
MAX_ID_BYTES = 150
_READ_CAP = 16 * 1024 * 1024  # a request body larger than this is refused unread
PERSON_IDS = frozenset({"id", "email", "cio_id", "anonymous_id"})
ACTIONS = {
    "person": frozenset({"identify", "event", "page", "screen", "add_relationships", "delete_relationships",
                         "delete", "suppress", "unsuppress", "merge"}),
    "object": frozenset({"identify", "identify_anonymous", "add_relationships", "delete_relationships",
                         "delete"}),
}


@dataclass(frozen=True)
class Request:
    """One request the stand-in answered."""

    method: str
    path: str
    status: int
    ops: int  # operations in the body (0 when unreadable)
    size: int  # body bytes after gzip decoding
    gzip: bool
    at: float = 0.0  # time.monotonic() when the request had arrived (its body read)


@dataclass
class _Fault:
    status: int
    count: int
    retry_after: str | None
    hang: float | None


def _id_problem(ids: Any, where: str, kind: str) -> tuple[str, str, str] | None:
    """(reason, field, message) when `ids` are not valid identifiers of a `kind` ("person" | "object")."""
    if not isinstance(ids, dict) or not ids:
        return "required", where, "identifiers are required"
    if kind == "person":
        if len(ids) != 1 or not set(ids) <= PERSON_IDS:
            return "invalid", where, f"exactly one of {sorted(PERSON_IDS)} is required"
    else:
        if set(ids) != {"object_type_id", "object_id"}:
            return "invalid", where, "object_type_id and object_id are required"
        type_id = ids["object_type_id"]
        if not isinstance(type_id, str) or not type_id.isascii() or not type_id.isdigit() or type_id[0] == "0":
            return "invalid", f"{where}.object_type_id", "object_type_id must be a string-formatted integer"
    for key, value in ids.items():
        if not isinstance(value, str) or not value:
            return "invalid", f"{where}.{key}", "identifier must be a non-empty string"
        if len(value.encode()) > MAX_ID_BYTES:
            return "too_long", f"{where}.{key}", f"identifier is over {MAX_ID_BYTES} bytes"
    return None


def operation_problem(op: Any) -> tuple[str, str, str] | None:
    """(reason, field, message) for the first thing Customer.io would refuse in `op`, else None."""
    if not isinstance(op, dict):
        return "invalid", "", "operation must be an object"
    kind, action = op.get("type"), op.get("action")
    if kind not in ACTIONS:
        return "invalid", "type", "type must be person or object"
    if action not in ACTIONS[kind]:
        return "invalid", "action", f"unknown {kind} action {action!r}"
    if action == "merge":
        found = _id_problem(op.get("primary"), "primary", "person") or _id_problem(
            op.get("secondary"), "secondary", "person")
    else:
        found = _id_problem(op.get("identifiers"), "identifiers", kind)
    if found:
        return found
    links = op.get("cio_relationships", [])
    if not isinstance(links, list):
        return "invalid", "cio_relationships", "cio_relationships must be a list"
    for i, link in enumerate(links):
        ids = link.get("identifiers") if isinstance(link, dict) else None
        found = _id_problem(ids, f"cio_relationships[{i}].identifiers", "person" if kind == "object" else "object")
        if found:
            return found
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: CioStandin) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.opened = 0  # connections accepted since start
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:  # on the serving thread: no race
        self.opened += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that gave up: not an error
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Customer.io
    disable_nagle_algorithm = True  # small answers go out at once, not after the client's delayed ACK
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self.server.standin._handle(self)

    def do_POST(self) -> None:
        self.server.standin._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CioStandin:
    """The stand-in server. `start()` binds 127.0.0.1 on a port from the OS; `stop()` closes everything."""

    def __init__(self, site_id: str = "site-standin", api_key: str = "key-standin-not-a-real-secret") -> None:
        self.site_id = site_id
        self.api_key = api_key
        self._lock = threading.Lock()
        self._accepted: list[dict[str, Any]] = []
        self._requests: list[Request] = []
        self._faults: deque[_Fault] = deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> CioStandin:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="cio-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        for conn in list(self._server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    def __enter__(self) -> CioStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the test's view -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Every operation accepted, in the order received."""
        with self._lock:
            return list(self._accepted)

    @property
    def requests(self) -> list[Request]:
        """Every request, recorded as it is answered (a hanging one once its hang ends)."""
        with self._lock:
            return list(self._requests)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start: a client that keeps its connection alive opens one."""
        return self._server.opened

    def customerio(self, **settings: Any) -> CustomerIO:
        """A `[customerio]` config pointing at this stand-in with its credentials."""
        return CustomerIO(**{"url": self.url, "site_id": self.site_id, "api_key": self.api_key, **settings})

    def script(self, status: int, count: int = 1, retry_after: float | str | None = None,
               hang: float | None = None) -> None:
        """The next `count` requests wait `hang` seconds (if set), then answer `status` (with `Retry-After` if
        set). A scripted 200 is answered as usual, after the hang."""
        after = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.append(_Fault(status, count, after, hang))

    def reset(self) -> None:
        """Forget accepted operations, requests and scripted faults."""
        with self._lock:
            self._accepted.clear()
            self._requests.clear()
            self._faults.clear()

    # -- serving ---------------------------------------------------------------------------------------------

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self._faults.popleft()
            return fault

    def _handle(self, handler: _Handler) -> None:
        method, path = handler.command, handler.path.split("?", 1)[0]
        length = handler.headers.get("Content-Length", "0" if method == "GET" else "")
        gzipped = handler.headers.get("Content-Encoding", "").lower() == "gzip"
        headers: dict[str, str] = {}
        accepted: list[dict[str, Any]] = []
        body, ops, arrived = b"", 0, time.monotonic()
        if not length.isdigit() or int(length) > _READ_CAP:
            handler.close_connection = True
            status, payload = 411, _error("length_required", "a Content-Length of at most 16 MB is required")
        else:
            body, data, problem = _decode(handler.rfile.read(int(length)), gzipped, path)
            arrived = time.monotonic()
            ops = len(data["batch"]) if _is_batch(data) else int(path == "/api/v2/entity" and data is not None)
            fault = self._next_fault()
            if fault and fault.hang:
                self._stopping.wait(fault.hang)
            if fault and fault.status != 200:
                status, payload = fault.status, _error("scripted", f"scripted HTTP {fault.status}")
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
            elif not self._authorized(handler.headers.get("Authorization", "")):
                status, payload = 401, {"meta": {"error": "Unauthorized request"}}
            else:
                status, payload, accepted = self._route(method, path, data, problem)
        with self._lock:  # recorded before answering: a client that has its answer sees the record
            self._accepted.extend(accepted)
            self._requests.append(Request(method, path, status, ops, len(body), gzipped, arrived))
        answer_json(handler, status, payload, headers)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.site_id and password == self.api_key

    def _route(self, method: str, path: str, data: Any,
               problem: tuple[str, str] | None) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        """(status, response body, accepted operations) of an authorized request."""
        if method == "GET" and path == "/auth":
            return 200, {}, []
        if method != "POST" or path not in ("/api/v2/batch", "/api/v2/entity"):
            return 404, _error("not_found", f"no route {method} {path}"), []
        if problem:
            return 400, _error(*problem), []
        if path == "/api/v2/entity":
            return self._entity(data)
        if not _is_batch(data):
            return 400, _error("invalid", 'expected {"batch": [operation, ...]}', "batch"), []
        return self._batch(data["batch"])

    @staticmethod
    def _entity(op: Any) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        found = operation_problem(op)
        if found:
            return 400, _error(found[0], found[2], found[1]), []
        return 200, {}, [op]

    @staticmethod
    def _batch(ops: list[Any]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        for index, op in enumerate(ops):
            size = len(orjson.dumps(op))
            if size > MAX_OPERATION_BYTES:
                return 400, _error("too_large", f"operation {index} is {size} bytes; the limit is 32 KB"), []
        errors, accepted = [], []
        for index, op in enumerate(ops):
            found = operation_problem(op)
            if found:
                errors.append({"batch_index": index, "reason": found[0], "field": found[1], "message": found[2]})
            else:
                accepted.append(op)
        return (207, {"errors": errors}, accepted) if errors else (200, {}, accepted)


def _error(reason: str, message: str, field: str = "") -> dict[str, Any]:
    return {"errors": [{"reason": reason, "field": field, "message": message}]}


def _is_batch(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("batch"), list)


def _decode(raw: bytes, gzipped: bool, path: str) -> tuple[bytes, Any, tuple[str, str] | None]:
    """(body after gzip decoding, its JSON or None, (reason, message) when the request must be refused)."""
    limit = MAX_ENTITY_BYTES if path == "/api/v2/entity" else MAX_BATCH_BYTES
    body = raw
    if gzipped:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = decoder.decompress(raw, limit)  # reading at most `limit` bytes: a larger body is refused anyway
        except zlib.error as exc:
            return b"", None, ("invalid_encoding", f"not gzip ({exc})")
        if len(body) < limit and not decoder.eof:
            return body, None, ("invalid_encoding", "truncated gzip body")
    if len(body) >= limit:
        return body, None, ("too_large", f"request of {len(body)} bytes or more; the limit is under {limit}")
    if not body:
        return body, None, None
    try:
        return body, orjson.loads(body), None
    except orjson.JSONDecodeError:
        return body, None, ("invalid_json", "the body is not JSON")


def answer_json(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
    """Send `payload` as a JSON response (a client that gave up waiting, as after a scripted hang, is let go)."""
    data = orjson.dumps(payload)
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        handler.close_connection = True
