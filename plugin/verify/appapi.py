"""A read-only client of Customer.io's App API (bearer key): object attributes, object relationships (paged
with `next`), a person's attributes. At most `[customerio] app_rate_limit` requests per second (the App API
answers 429 above 10); a 429 or 5xx is retried after its `Retry-After` (or a backoff), a 401 names the setting
and never the key. A client reads for `verify_time_limit` from its creation at most, and `verify_max_pages`
relationship pages per object: an answer cut short raises `AppApiError`, never passes for a whole one."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from groupspec.middleware.config import Config, CustomerIO, duration_seconds
from groupspec.middleware.errors import GroupspecError, Unauthorized

from ..sender import TokenBucket
from ..sender.retry import backoff, retry_after, retryable
from ..sender.sender import FORBIDDEN, describe

KEY_SETTING = "[customerio] app_api_key"


class AppApiError(GroupspecError):
    """The App API could not be read whole (unreachable, retries exhausted, an unexpected answer, a 404 or a
    repeated cursor mid-paging, a limit of the run reached)."""


class AppApi:
    """`GET`s against the App API over one kept-alive httpx client (`transport` replaces the network)."""

    def __init__(self, settings: CustomerIO, key: str, *, sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.requests = 0  # sent, retries included
        self._clock = clock
        self._deadline = clock() + duration_seconds(settings.verify_time_limit)
        self._bucket = TokenBucket(settings.app_rate_limit, clock=clock, sleep=sleep)
        self._sleep, self._rng = sleep, rng or random.Random()
        self._client = httpx.Client(base_url=settings.app_base_url, timeout=settings.timeout, transport=transport,
                                    headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> AppApi:
        """A client for `config.customerio`; ConfigError when `app_api_key` is not set."""
        return cls(config.customerio, config.require("customerio.app_api_key", config.customerio.app_api_key),
                   **options)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AppApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def object_attributes(self, object_type_id: str, object_id: str) -> dict[str, Any] | None:
        """The object's attributes, or None when Customer.io has no such object (404)."""
        body = self._get(f"/v1/objects/{_seg(object_type_id)}/{_seg(object_id)}/attributes", {"id_type": "object_id"})
        if body is None:
            return None
        found = (body.get("object") or {}).get("attributes")
        return found if isinstance(found, dict) else {}

    def object_relationships(self, object_type_id: str, object_id: str) -> list[dict[str, Any]] | None:
        """The identifiers of every person related to the object, all pages; None when there is no object.
        AppApiError when the pages cannot all be read: a 404 after the first page, a `next` cursor seen before
        or not text, more than `verify_max_pages` pages."""
        path = f"/v1/objects/{_seg(object_type_id)}/{_seg(object_id)}/relationships"
        where = f"Customer.io App API {path}"
        params: dict[str, str] = {"id_type": "object_id"}
        people: list[dict[str, Any]] = []
        seen: set[str] = set()
        limit = self.settings.verify_max_pages
        while True:
            body = self._get(path, params)
            if body is None:
                if seen:
                    raise AppApiError(f"{where}: HTTP 404 on page {len(seen) + 1}, after {len(people)} relationships")
                return None
            people += [link["identifiers"] for link in body.get("cio_relationships") or []
                       if isinstance(link, dict) and isinstance(link.get("identifiers"), dict)]
            cursor = body.get("next")
            if cursor is None or cursor == "":
                return people
            if not isinstance(cursor, str) or cursor in seen:
                raise AppApiError(f"{where}: page {len(seen) + 1} answers the cursor {cursor!r} "
                                  f"{'again' if cursor in seen else 'that is not text'}")
            if len(seen) + 1 == limit:
                raise AppApiError(f"{where}: more than {limit} pages (customerio.verify_max_pages)")
            seen.add(cursor)
            params = {"id_type": "object_id", "start": cursor}

    def customer_attributes(self, ids: dict[str, str]) -> dict[str, Any] | None:
        """A person's attributes by one identifier (`{"id"|"email"|"cio_id": value}`), None when unknown."""
        (id_type, value), = ids.items()
        body = self._get(f"/v1/customers/{_seg(value)}/attributes", {"id_type": id_type})
        if body is None:
            return None
        found = (body.get("customer") or {}).get("attributes")
        return found if isinstance(found, dict) else {}

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The JSON body of a 2xx, None for a 404; retries 429/5xx/network errors up to `max_retries`."""
        where = f"Customer.io App API {path}"
        settings = self.settings
        attempt = 0
        while True:
            self._in_time(where)
            self._bucket.acquire()
            self.requests += 1
            try:
                response = self._client.get(path, params=params)
            except httpx.RequestError as exc:
                problem, wait = describe(exc), None
            else:
                status = response.status_code
                if status in FORBIDDEN:
                    raise Unauthorized(f"{where}: HTTP {status}: Customer.io refused the App API key; "
                                       f"check {KEY_SETTING}")
                if status == 404:
                    return None
                if 200 <= status < 300:
                    try:
                        body = orjson.loads(response.content)
                    except orjson.JSONDecodeError:
                        raise AppApiError(f"{where}: HTTP {status} with a body that is not JSON") from None
                    if not isinstance(body, dict):
                        raise AppApiError(f"{where}: HTTP {status} with a body that is not a JSON object")
                    return body
                if not retryable(status):
                    raise AppApiError(f"{where}: unexpected HTTP {status}")
                problem = f"HTTP {status}"
                wait = retry_after(response.headers.get("Retry-After"), datetime.now(timezone.utc))
            if attempt == settings.max_retries:
                raise AppApiError(f"{where}: {problem}, still after {settings.max_retries} retries")
            if wait is None:
                wait = backoff(attempt, settings.retry_base, settings.retry_cap, self._rng)
            wait = min(wait, settings.retry_cap)
            self._in_time(where, f"{problem}, and a retry in {wait:g}s would pass the limit", wait)
            self._sleep(wait)
            attempt += 1

    def _in_time(self, where: str, problem: str = "not read", wait: float = 0.0) -> None:
        """AppApiError when the run's time limit is reached (or would be, `wait` seconds from now)."""
        if self._clock() + wait >= self._deadline:
            raise AppApiError(f"{where}: {problem}: the run's time limit of {self.settings.verify_time_limit} "
                              f"(customerio.verify_time_limit) is reached")


def _seg(value: str) -> str:
    """`value` as one URL path segment."""
    return quote(str(value), safe="")
