"""Person identifiers as Segment's Customer.io (Actions) destination derives them, so switching from it
creates no duplicate profiles."""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def person(user_id: str | None, anonymous_id: str | None, traits: dict[str, Any]) -> dict[str, str]:
    """`cio_<x>` -> cio_id; an email-looking userId -> email; other userId -> id; else traits.email; else
    anonymous_id."""
    if user_id is not None:
        if user_id.startswith("cio_"):
            return {"cio_id": user_id[4:]}
        if "@" in user_id and _EMAIL.match(user_id):
            return {"email": user_id}
        return {"id": user_id}
    email = traits.get("email")
    if isinstance(email, str) and _EMAIL.match(email):
        return {"email": email}
    return {"anonymous_id": anonymous_id}


def of_id(value: str) -> dict[str, str]:
    """Identifiers for a bare id (alias `previousId`, which has no traits)."""
    return person(value, None, {})
