"""What the HTTP intake checks before a request is spooled: the write key, the JSON, the Segment size limits,
the gzip framing and a webhook source's signature.

`admit(...)` returns the spool row of an acceptable request or raises `Rejected` with the status to answer.
Everything deeper (spec shape of each message, the contract) is the worker's, and ends in the quarantine.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from typing import Any

import orjson
from groupspec.middleware.message import (
    AMBIGUOUS_BATCH,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    TYPES,
    input_problem,
)

#: path -> the message type it sets (None: a batch envelope). analytics.js (analytics-next) posts to short forms:
#: `/v1/` + the type's first letter (`/v1/t`, `/v1/i`, ...), and `/v1/b` for a batch.
ENDPOINTS: dict[str, str | None] = {
    **{f"/v1/{kind}": kind for kind in ("identify", "track", "page", "screen", "group", "alias")},
    **{f"/v1/{kind[0]}": kind for kind in ("identify", "track", "page", "screen", "group", "alias")},
    "/v1/batch": None,
    "/v1/b": None,
}


GZIP_MAGIC = b"\x1f\x8b"


class Rejected(Exception):
    """A request the intake refuses: `status` and a message safe to send back (no secrets)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def limit_for(kind: str | None) -> int:
    """The most bytes a request body to this endpoint may hold."""
    return MAX_BATCH_BYTES if kind is None else MAX_MESSAGE_BYTES


def basic_user(authorization: bytes | None) -> str | None:
    """The username of an HTTP Basic `Authorization` header (the write key), None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"basic":
        raise Rejected(401, "expected HTTP Basic auth with a write key as the username")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Rejected(401, "unreadable Basic auth header") from None
    return decoded.partition(":")[0] or None


def decompress(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """The body without its `Content-Encoding` (gzip or deflate, as the Segment and RudderStack SDKs send).

    gzip is a series of members (RFC 1952, 2.2): every member is inflated, in order. Anything after the last
    member that is not another member is refused, and so is an output over `limit`: inflating stops at `limit + 1`
    bytes, so a small body that would inflate to gigabytes costs no more than `limit`."""
    if not encoding or encoding.lower() == b"identity":
        return body
    if encoding.lower() not in (b"gzip", b"deflate"):
        raise Rejected(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r}")
    out, rest, wbits = bytearray(), body, 47  # first: a gzip or a zlib header, detected
    while True:
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise Rejected(400, "body is not valid gzip") from None
        if len(out) > limit:
            raise Rejected(413, f"request body is over the {limit // 1024} KB limit once decompressed")
        if not inflater.eof:
            raise Rejected(400, "body is not valid gzip: it ends inside a compressed stream")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(GZIP_MAGIC) or body[:2] != GZIP_MAGIC:
            raise Rejected(400, "body is not valid gzip: data after the end of the compressed stream")
        wbits = 31  # the next gzip member


def signature_valid(body: bytes, secret: str, signature: bytes | None) -> bool:
    """Whether `signature` (an `X-Signature` header) is the hex HMAC-SHA1 of `body` keyed with `secret`, as
    Segment's Webhooks destinations sign what they send; compared in constant time."""
    if not signature:
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, signature.strip().lower())


def admit(kind: str | None, body: bytes, sources: dict[str, str], write_key: str | None,
          received_at: float, source: str | None = None) -> tuple[str, str | None, float, int, bytes]:
    """Check a request to the endpoint of `kind`; its spool row `(source, kind, received_at, messages, body)`.

    `sources` maps write keys to source names; `write_key` comes from Basic auth, else the body's `writeKey`.
    A `source` given (a webhook's, from its path) needs no write key, and its body may also be a JSON array of
    messages (Segment's Webhooks (Actions) destination with batching on): it is spooled as a batch.
    The authenticated source wins: a `writeKey` in the body or in a member that selects another source is
    refused (401), never a way to write as that source.
    """
    limit = limit_for(kind)
    if len(body) > limit:
        raise Rejected(413, f"{'batch' if kind is None else 'message'} of {len(body)} bytes is over the "
                            f"{limit // 1024} KB limit")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(400, "body is not valid JSON") from None
    problem = input_problem(obj, body)
    if problem is not None:  # the same limits the engine applies, refused before anything is spooled
        raise Rejected(400, problem)
    if source is not None and kind is None and isinstance(obj, list):
        obj = {"batch": obj}
        body = orjson.dumps(obj)
    if not isinstance(obj, dict):
        raise Rejected(400, f"expected a JSON object, got {type(obj).__name__}")
    if source is None:
        source = source_of(obj.get("writeKey") if write_key is None else write_key, sources)
    count = _count(kind, obj, len(body))
    _check_body_keys(obj, kind, source, sources)
    return source, kind, received_at, count, body


def source_of(write_key: Any, sources: dict[str, str]) -> str:
    """The source a write key selects; `Rejected` (401) without a known one."""
    if not isinstance(write_key, str):
        raise Rejected(401, "no write key: send it as the Basic auth username or as writeKey")
    source = sources.get(write_key)
    if source is None:
        raise Rejected(401, "unknown write key")
    return source


def _check_body_keys(obj: dict[str, Any], kind: str | None, source: str, sources: dict[str, str]) -> None:
    """`Rejected` (401) when the body's `writeKey` or a batch member's selects another source than `source`,
    the one the request's credential (Basic auth, a webhook path, else the body's own `writeKey`) selected."""
    members = obj["batch"] if kind is None and "type" not in obj else ()
    for index, holder in enumerate((obj, *members)):
        key = holder.get("writeKey")
        if key is not None and (not isinstance(key, str) or sources.get(key) != source):
            where = f"batch[{index - 1}].writeKey" if index else "writeKey"  # named only when refused
            raise Rejected(401, f"{where} is not the key of the source this request is authenticated as")


def _count(kind: str | None, obj: dict[str, Any], size: int) -> int:
    """Messages in the request. A single message may come to any endpoint (RudderStack's webhook destination posts
    every event to one URL); its own `type` wins over the path's, which only fills in a missing one."""
    members = obj.get("batch")
    if kind is None and "type" in obj and isinstance(members, list):
        raise Rejected(400, AMBIGUOUS_BATCH)
    if kind is None and "type" not in obj:
        if not isinstance(members, list):
            raise Rejected(400, 'expected {"batch": [message, ...]} or one message with a type')
        if len(members) > MAX_BATCH_MESSAGES:  # one bad request must not cost more than a good one
            raise Rejected(400, f"batch of {len(members)} members is over the limit of {MAX_BATCH_MESSAGES}")
        if not all(isinstance(member, dict) for member in members):
            raise Rejected(400, "every batch member must be a message object")
        if size > MAX_MESSAGE_BYTES:  # only then can one member be over the 32 KB message limit
            for index, member in enumerate(members):
                member_size = len(orjson.dumps(member))
                if member_size > MAX_MESSAGE_BYTES:
                    raise Rejected(413, f"batch[{index}]: message of {member_size} bytes is over the 32 KB limit")
        return len(members)
    given = obj.get("type")
    if given is not None and (not isinstance(given, str) or given.lower() not in TYPES):
        raise Rejected(400, f"unknown message type {given!r}")
    if size > MAX_MESSAGE_BYTES:
        raise Rejected(413, f"message of {size} bytes is over the 32 KB limit")
    return 1
