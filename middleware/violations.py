"""Violation codes of the data contract and what each may do to a message (a table, as data)."""

from __future__ import annotations

from typing import Literal

Action = Literal["flag", "strip", "drop"]
Code = Literal[
    "malformed",
    "missing_group_id",
    "invalid_group_id",
    "group_id_conflict",
    "group_trait_on_person",
    "invalid_group_trait",
    "stale_group_update",
    "invalid_object_type",
    "not_attribute_owner",
    "future_timestamp",
    "customerio_limit",
    "anonymous_relationship_delete",
    "not_mapped",
    "group_id_migrated",
    "store_unavailable",
    "internal_error",
]

#: code -> (default action, the actions a config may choose)
_TABLE: dict[str, tuple[Action, tuple[Action, ...]]] = {
    "malformed": ("drop", ("drop",)),
    "missing_group_id": ("flag", ("flag", "drop")),
    "invalid_group_id": ("drop", ("flag", "strip", "drop")),
    "group_id_conflict": ("strip", ("flag", "strip", "drop")),
    "group_trait_on_person": ("strip", ("flag", "strip", "drop")),
    "invalid_group_trait": ("strip", ("flag", "strip", "drop")),
    "stale_group_update": ("strip", ("flag", "strip", "drop")),
    "invalid_object_type": ("drop", ("flag", "drop")),
    "not_attribute_owner": ("strip", ("flag", "strip", "drop")),
    "future_timestamp": ("drop", ("flag", "drop")),
    "customerio_limit": ("drop", ("drop",)),
    "anonymous_relationship_delete": ("drop", ("drop",)),
    "not_mapped": ("flag", ("flag", "drop")),
    "group_id_migrated": ("flag", ("flag", "drop")),
    "store_unavailable": ("drop", ("drop",)),
    "internal_error": ("drop", ("drop",)),
}

DEFAULT_ACTIONS: dict[str, Action] = {code: row[0] for code, row in _TABLE.items()}
ALLOWED_ACTIONS: dict[str, tuple[Action, ...]] = {code: row[1] for code, row in _TABLE.items()}


def violation(code: Code, field: str, message: str) -> dict[str, str]:
    """A violation as it appears in `context.groupspec.violations` and quarantine records."""
    return {"code": code, "field": field, "message": message}
