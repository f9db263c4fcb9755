"""Person identifiers as the destinations a team switches from derive them, so switching creates no duplicate
profiles: Segment's Customer.io (Actions) `resolveIdentifiers` (the default) and RudderStack's
`personIdentifiers` (`[customerio] compat = "rudderstack"`)."""

from __future__ import annotations

import re
from typing import Any

#: ajv-formats `fullFormats.email`, the test behind Segment's `isEmail` (case-insensitive): domain labels are
#: letters, digits and inner hyphens, with at least one dot; `ann@exa_mple.com` and `a@localhost` are not emails
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
    re.IGNORECASE,
)


def is_email(value: Any) -> bool:
    return isinstance(value, str) and "@" in value and _EMAIL.match(value) is not None


def person(person_id: str | None, anonymous_id: str | None = None, email: str | None = None) -> dict[str, str]:
    """Segment's `resolveIdentifiers`: `cio_<x>` -> cio_id; an email -> email; another person id -> id; else
    `email`; else anonymous_id."""
    if person_id:
        if person_id.startswith("cio_"):
            return {"cio_id": person_id[4:]}
        if is_email(person_id):
            return {"email": person_id}
        return {"id": person_id}
    if email:
        return {"email": email}
    return {"anonymous_id": anonymous_id}


def of_id(value: str) -> dict[str, str]:
    """Identifiers for a bare id (alias `userId` and `previousId`, which have no traits)."""
    return person(value)


def email_or_id(value: str) -> dict[str, str]:
    """RudderStack's key choice for group relationships and alias (`validator.isEmail`): email, else id."""
    return {"email" if is_email(value) else "id": value}


def member(user_id: str, compat: str = "segment") -> dict[str, str]:
    """The identifiers a group call's relationship names an identified member by, under a `[customerio] compat`
    profile: Segment's `resolveIdentifiers`, RudderStack's email-or-id (both of its paths)."""
    return person(user_id) if compat == "segment" else email_or_id(user_id)
