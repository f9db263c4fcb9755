"""Dates as the reference destinations send them: Segment's `convertAttributeTimestamps` (`isIsoDate` strings at
any depth of plain objects become unix seconds) and RudderStack's `toUnixSeconds`."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from groupspec.middleware.message import parse_time

#: Segment's `isIsoDate` (from segmentio/isostring): a date, optionally a `T` time, fraction and zone
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d{1,9}))?"
                  r"(Z|[+-]\d{2}:?\d{2})?)?$")


def iso_seconds(value: str) -> int | None:
    """Unix seconds (floored) of an `isIsoDate` string; None for anything else. No zone means UTC (Segment's
    runtime), a date alone its midnight."""
    found = _ISO.match(value)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=timezone.utc)
    except ValueError:  # e.g. month 13: Date.parse fails, the string stays
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return int(moment.timestamp())  # the fraction never changes the floored second


def segment(values: dict[str, Any]) -> dict[str, Any]:
    """Segment's `convertAttributeTimestamps`: ISO-8601 strings -> unix seconds, recursively into objects but not
    into lists; other strings (`"2026-11-18 10:00:00"`), numbers and numeric strings stay."""
    out = dict(values)  # a copy at every depth; only what changes is written again
    for key, value in values.items():
        kind = value.__class__
        if kind is str:
            if value[4:5] == "-":
                seconds = iso_seconds(value)
                if seconds is not None:
                    out[key] = seconds
        elif kind is dict:
            out[key] = segment(value)
    return out


#: from here on a number is milliseconds (1973-03-03 as ms, the year 5138 as seconds)
MILLISECONDS_FROM = 10**11


def unix_seconds(value: Any) -> Any:
    """RudderStack's `Math.floor(new Date(value).getTime() / 1000)` for `createdAt`: a time string, or a number of
    milliseconds (`new Date(number)` reads milliseconds), becomes floored unix seconds. A smaller number is taken
    as seconds and kept (RudderStack would read it as milliseconds, a date in January 1970); anything else stays."""
    if isinstance(value, str):
        ts = parse_time(value)
        if ts is not None:
            return math.floor(ts)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= MILLISECONDS_FROM:
        return math.floor(value / 1000)
    return value
