"""The comparison: what Customer.io holds for a group against the store's view. Pure functions over plain
data; `KINDS` is the table of drifts, in the order they are reported."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .expected import GroupView

#: drift kind -> what it means
KINDS: dict[str, str] = {
    "incomplete": "Customer.io's answer for the group was cut short: not compared, never repaired",
    "missing_object": "Customer.io has no such object",
    "deleted_object_exists": "the object was deleted, yet Customer.io still holds it",
    "attribute_differs": "an object attribute is missing or has another value",
    "relationship_missing": "a member is not related to the object (under any id the store knows for them)",
    "relationship_extra": "a person is related to the object whose membership the store holds ended",
    "relationship_unknown": "a person is related to the object whom the store never saw in it",
    "attribute_on_person": "a member carries an attribute the contract gives to groups",
}


@dataclass(frozen=True)
class Finding:
    """One drift of one group."""

    kind: str
    attribute: str | None = None
    person: dict[str, str] | None = None
    expected: Any = None
    actual: Any = None


@dataclass(frozen=True)
class Actual:
    """What the App API answered for a group."""

    attributes: dict[str, Any] | None  # None: no such object
    relationships: list[dict[str, Any]]  # the related people's identifiers
    people: list[tuple[dict[str, str], dict[str, Any] | None]] = field(default_factory=list)  # member -> attributes
    incomplete: str | None = None  # why the answer was cut short (then nothing else is compared)


@dataclass(frozen=True)
class GroupResult:
    view: GroupView
    findings: list[Finding]

    @property
    def drift(self) -> bool:
        return bool(self.findings)

    @property
    def incomplete(self) -> bool:
        return any(f.kind == "incomplete" for f in self.findings)


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def canonical(value: Any) -> str:
    """A value as text the way the App API shows it (attributes come back as strings: `"49"`, `"true"`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number.is_integer() else repr(number)
    if isinstance(value, str):
        return canonical(float(value)) if _NUMBER.fullmatch(value) else value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def same(expected: Any, actual: Any) -> bool:
    return expected == actual or canonical(expected) == canonical(actual)


def related(ids: dict[str, str], relationships: list[dict[str, Any]]) -> bool:
    """Whether a person named by `ids` is among the related people."""
    return any(all(rel.get(key) == value for key, value in ids.items()) for rel in relationships)


def named(rel: dict[str, Any]) -> dict[str, str]:
    """One identifier of a related person: id, else email, else cio_id."""
    for key in ("id", "email", "cio_id"):
        if rel.get(key):
            return {key: rel[key]}
    return {}


def compare(view: GroupView, actual: Actual, owned: set[str]) -> list[Finding]:
    """Every drift of one group, in `KINDS` order; an answer cut short is only `incomplete`."""
    if actual.incomplete is not None:
        return [Finding("incomplete", actual=actual.incomplete)]
    found: list[Finding] = []
    if view.deleted:
        if actual.attributes is not None:
            found.append(Finding("deleted_object_exists"))
    elif actual.attributes is None:
        found.append(Finding("missing_object"))
    else:
        for name in sorted(view.attributes):
            expected, got = view.attributes[name], actual.attributes.get(name)
            if got is None or not same(expected, got):
                found.append(Finding("attribute_differs", attribute=name, expected=expected, actual=got))
        found += [Finding("relationship_missing", person=ids) for index, ids in enumerate(view.members)
                  if not any(related(name, actual.relationships) for name in view.names(index))]
        found += _unexpected(view, actual.relationships)
    for ids, attributes in actual.people:
        for name in sorted(owned & set(attributes or ())):
            if attributes[name] is not None and attributes[name] != "":
                found.append(Finding("attribute_on_person", attribute=name, person=ids, actual=attributes[name]))
    return found


def _unexpected(view: GroupView, relationships: list[dict[str, Any]]) -> list[Finding]:
    """The related people who are not members: `relationship_extra` on the store's positive evidence that they
    left, `relationship_unknown` when the store never saw them in the group."""
    members = [name for index in range(len(view.members)) for name in view.names(index)]
    found = []
    for rel in relationships:
        if any(related(name, [rel]) for name in (*members, *view.unsure)):
            continue
        ids = named(rel)
        if any(related(name, [rel]) for name in view.left):
            found.append(Finding("relationship_extra", person=ids))
        elif set(ids) != {"cio_id"} or not view.anonymous:  # a cio_id alone may be an anonymous member's profile
            found.append(Finding("relationship_unknown", person=ids))
    return found
