"""The Track API operations that fix a group's drift, built by the Customer.io mapping: the object re-sent with
its current attributes and relationships, the relationships of people the store holds left deleted (of people it
never saw in the group only when asked: `delete_unknown`), an object that should not exist deleted, group
attributes removed from people. A group read `incomplete` gets none."""

from __future__ import annotations

from typing import Any

from ..customerio.mapping import object_deleted, object_state, object_unrelated, person_attributes_removed
from .compare import GroupResult

_RESEND = frozenset({"missing_object", "attribute_differs", "relationship_missing"})


def operations(result: GroupResult, delete_unknown: bool = False) -> list[dict[str, Any]]:
    """The operations for one group, object first; none when it has no drift or was read incomplete."""
    view, findings = result.view, result.findings
    if result.incomplete:
        return []
    ops = []
    if any(f.kind == "deleted_object_exists" for f in findings):
        ops.append(object_deleted(view.object_type_id, view.group_id))
    if any(f.kind in _RESEND for f in findings):
        ops.append(object_state(view.object_type_id, view.group_id, view.traits, view.members))
    deleted = {"relationship_extra", "relationship_unknown"} if delete_unknown else {"relationship_extra"}
    extra = [f.person for f in findings if f.kind in deleted and f.person]
    if extra:
        ops.append(object_unrelated(view.object_type_id, view.group_id, extra))
    on_people: dict[str, tuple[dict[str, str], list[str]]] = {}
    for f in findings:
        if f.kind == "attribute_on_person":
            on_people.setdefault(repr(sorted(f.person.items())), (f.person, []))[1].append(f.attribute)
    ops += [person_attributes_removed(ids, names) for ids, names in on_people.values()]
    return ops
