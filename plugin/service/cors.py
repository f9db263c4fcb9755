"""Browser sources: CORS on the intake endpoints, so analytics.js on an allowed web page can post to the service.

Starlette's `CORSMiddleware` answers for the origins in `[service] cors_origins`, on the intake endpoints alone
(not the webhooks, `/health` or the operator pages). What analytics.js (analytics-next) sends decides the rest:
POST with `Content-Type: text/plain`, `Authorization: Basic base64(writeKey + ":")` and, on a retry, `X-Retry-Count`; no
cookies (its fetch uses the default credentials mode), so credentials are never allowed. A response carries
`Access-Control-Allow-Origin` only for an allowed origin, echoed (never `*`), and `Vary: Origin` either way.

A request from any other page is refused (403) by the service, not only hidden from the page by the browser.
Two answers differ from the middleware's own: an accepted preflight is `204 No Content`, and a refused one is a
403 with no CORS header at all (the middleware would still list the allowed methods and headers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from .intake import ENDPOINTS

METHODS = ("POST",)
HEADERS = ("Authorization", "Content-Type", "X-Retry-Count")  # what analytics-next's dispatchers set
MAX_AGE = 7200  # seconds a browser may keep a preflight's answer (Chromium's own cap)


class _IntakeCors(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code != 200:
            body = orjson.dumps({"success": False, "message": answer.body.decode()})
            return Response(body, 403, {"Vary": answer.headers["vary"]}, media_type="application/json")
        headers = {k: v for k, v in answer.headers.items() if k.startswith("access-control-") or k == "vary"}
        return Response(status_code=204, headers=headers)


def browser_access(app: Callable[..., Any], origins: Sequence[str], refusals: Counter[int]) -> Callable[..., Any]:
    """`app` with CORS for `origins` on its intake endpoints. A request to them from any other web page (an
    `Origin` header, which browsers send and server-side SDKs do not) is refused (403, counted in `refusals`):
    a text/plain POST needs no preflight, so the browser alone would not keep it from being spooled."""
    allowed = frozenset(origins)
    cors = _IntakeCors(app, allow_origins=list(origins), allow_methods=METHODS, allow_headers=HEADERS,
                       allow_credentials=False, max_age=MAX_AGE)

    async def routed(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in ENDPOINTS:
            return await app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if origin is None or origin in allowed or preflight:  # a preflight is the middleware's to refuse
            return await cors(scope, receive, send)
        refusals[403] += 1
        body = orjson.dumps({"success": False, "message": f"origin {origin[:200]!r} is not in service.cors_origins"})
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"vary", b"Origin"), (b"connection", b"close"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return routed
