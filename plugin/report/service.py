"""The coverage numbers of a running service: `GET URL/report.json`, in the shape of `Coverage`."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from .collect import Coverage, ReportError


def fetch(url: str, timeout: float = 10.0, token: str | None = None) -> Coverage:
    """The service's report, read with the operator `token`; a `ReportError` saying why when there is none to read."""
    endpoint = url.rstrip("/") + "/report.json"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(endpoint, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        raise ReportError(f"{endpoint}: cannot reach the service ({type(exc).__name__})") from None
    if response.status_code == 404:
        raise ReportError(f"{endpoint}: not found; this service does not expose a coverage report")
    if response.status_code == 401:
        raise ReportError(f"{endpoint}: HTTP 401: give the service's operator_token with --token or "
                          f"GROUPSPEC_OPERATOR_TOKEN" + (" (the one given was refused)" if token else ""))
    if response.status_code == 403:
        raise ReportError(f"{endpoint}: HTTP 403: the service has no operator_token; set service.operator_token "
                          f"in its config to read the report")
    if response.status_code != 200:
        raise ReportError(f"{endpoint}: HTTP {response.status_code}")
    try:
        return Coverage.model_validate_json(response.content)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors()[:5])
        raise ReportError(f"{endpoint}: not a coverage report ({problems})") from None
